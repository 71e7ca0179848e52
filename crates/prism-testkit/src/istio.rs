//! Istio's CRDs, as Istio publishes them: the file `kubernetes/customresourcedefinitions.gen.yaml`
//! of the Go module `istio.io/api`, which `go mod download` fetches from the Go module proxy (or
//! finds in the module cache). Only the CRDs a test names are installed: the sandbox runs no
//! istiod and no Envoy, so an Istio object is asserted as the API server keeps it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

/// The module, at the version whose CRDs the tests run against.
pub const ISTIO_API_MODULE: &str = "istio.io/api@v1.32.0";

/// The VirtualService CRD's name.
pub const VIRTUAL_SERVICES: &str = "virtualservices.networking.istio.io";

/// The module's CRD file, downloaded into the Go module cache if it is not there yet.
async fn crd_file() -> anyhow::Result<PathBuf> {
    let output = tokio::process::Command::new("go")
        .args(["mod", "download", "-json", ISTIO_API_MODULE])
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .context("running go mod download (is Go installed?)")?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "go mod download -json {ISTIO_API_MODULE} said: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if let Some(error) = info["Error"].as_str() {
        bail!("go mod download {ISTIO_API_MODULE}: {error}");
    }
    let dir = info["Dir"]
        .as_str()
        .with_context(|| format!("go mod download {ISTIO_API_MODULE} gave no Dir: {info}"))?;
    Ok(PathBuf::from(dir).join("kubernetes/customresourcedefinitions.gen.yaml"))
}

/// The CRDs of Istio named `names` (`virtualservices.networking.istio.io`, ...), in that order.
pub async fn crds(names: &[&str]) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let path = crd_file().await?;
    let text = tokio::fs::read_to_string(&path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    // Only the documents wanted are parsed: the file holds 15 CRDs, nearly 1 MB.
    let documents: Vec<&str> = text.split("\n---\n").collect();
    names
        .iter()
        .map(|name| {
            let document = documents
                .iter()
                .find(|document| document.contains(&format!("\n  name: {name}\n")))
                .with_context(|| format!("{} has no CRD {name}", path.display()))?;
            let value: serde_json::Value = serde_saphyr::from_str(document)
                .with_context(|| format!("parsing CRD {name} of {}", path.display()))?;
            serde_json::from_value(value).with_context(|| format!("reading CRD {name}"))
        })
        .collect()
}

/// Installs Istio's CRDs named `names` in the cluster of `client` and waits until they are
/// established.
pub async fn install_crds(client: &Client, names: &[&str]) -> anyhow::Result<()> {
    crate::install_crds(client, crds(names).await?).await
}
