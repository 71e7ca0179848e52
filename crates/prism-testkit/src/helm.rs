//! Helm, as the sandbox builds and caches it (`sandbox/sandbox helm`), for the tests of the chart
//! in `deploy/helm/prism`. Running it needs no cluster: `lint` and `template` are offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The repository's root, where the chart's paths start.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `helm ARGS` from the repository's root: its standard output, or an error with its output when
/// it fails (a first run builds helm, which takes minutes).
pub async fn helm(args: &[&str]) -> anyhow::Result<String> {
    let root = repository();
    let output = tokio::process::Command::new(root.join("sandbox/sandbox"))
        .arg("helm")
        .args(args)
        .current_dir(&root)
        .kill_on_drop(true)
        .output()
        .await
        .context("running sandbox/sandbox helm")?;
    if !output.status.success() {
        bail!(
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("helm's output is not UTF-8")
}
