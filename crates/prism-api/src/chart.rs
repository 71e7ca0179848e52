//! A Helm chart as an Application's template (`spec.template.chart`), and the snapshot of its
//! rendered objects a Release keeps.
//!
//! The chart is rendered by Helm itself when a Release is made; the Release keeps the values it
//! was rendered with and what came out, compressed (`spec.template.rendered`), so a Release never
//! renders differently and a large chart fits the API server's object size limit.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::application::Manifest;

/// Where a chart comes from, which version, and its values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chart {
    /// The chart repository: an `https://` or `http://` URL of a repository with an index.yaml,
    /// or an `oci://` registry path under which the chart is `<repository>/<name>`.
    #[schemars(length(min = 1, max = 2048))]
    pub repository: String,
    /// The chart's name in the repository.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The chart's exact version (a SemVer such as 1.4.2; no ranges, so that a Release is
    /// reproducible).
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Values files from ConfigMaps or Secrets of the Application's namespace, merged in order
    /// over the chart's defaults, before `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub values_from: Vec<ValuesReference>,
    /// Values, merged last: what `helm install --values` takes, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "values_schema")]
    pub values: Option<serde_json::Value>,
    /// The rendered object Prism scales. Absent: the chart's only Deployment, StatefulSet or
    /// DaemonSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadReference>,
    /// Set by the controller in a Release whose chart has valuesFrom: the SHA-256 of the values
    /// files it was rendered with, so that a change of a referenced ConfigMap or Secret makes a
    /// new Release, as a change of the inline values does. Ignored in an Application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_digest: Option<String>,
}

impl Chart {
    /// The reference `helm` takes: `oci://…/<name>` for a registry, else the chart's name (with
    /// the repository given apart, `--repo`).
    pub fn is_oci(&self) -> bool {
        self.repository.starts_with("oci://")
    }

    /// `oci://registry/path/<name>` for an OCI chart.
    pub fn oci_reference(&self) -> Option<String> {
        self.is_oci()
            .then(|| format!("{}/{}", self.repository.trim_end_matches('/'), self.name))
    }
}

fn values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Values, merged last: what `helm install --values` takes, inline.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A values file held in a ConfigMap or a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesReference {
    pub kind: ValuesKind,
    /// The object's name, in the Application's namespace of the management cluster.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding YAML values. Default `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ValuesReference {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("values.yaml")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValuesKind {
    ConfigMap,
    Secret,
}

/// A rendered workload, by kind and name as the chart renders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReference {
    pub kind: WorkloadKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds of workload Prism rolls out.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub const ALL: &[WorkloadKind] = &[
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }

    pub fn of(kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL
            .iter()
            .copied()
            .find(|known| known.as_str() == kind)
    }
}

/// The most a Release's compressed render may hold: the API server refuses objects above 1.5 MiB
/// (etcd's default request limit), and the Release's status and the rest of its spec need room.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The rendered objects of a chart as a Release keeps them: a gzip of their JSON array, in
/// base64.
pub fn compress(manifests: &[Manifest]) -> String {
    let json = serde_json::to_vec(manifests).expect("manifests serialize");
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&json).expect("writing to memory");
    STANDARD.encode(encoder.finish().expect("writing to memory"))
}

/// The objects [`compress`] kept.
pub fn decompress(rendered: &str) -> Result<Vec<Manifest>, String> {
    let gzip = STANDARD
        .decode(rendered)
        .map_err(|error| format!("not base64: {error}"))?;
    let mut json = Vec::new();
    GzDecoder::new(&gzip[..])
        .read_to_end(&mut json)
        .map_err(|error| format!("not gzip: {error}"))?;
    serde_json::from_slice(&json).map_err(|error| format!("not a list of objects: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_survives_compression_and_shrinks() {
        let manifests: Vec<Manifest> = (0..40)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": format!("settings-{i}")},
                    "data": {"greeting": "hello from a chart that repeats itself"},
                }))
                .unwrap()
            })
            .collect();
        let rendered = compress(&manifests);
        assert_eq!(decompress(&rendered).unwrap(), manifests);
        assert!(rendered.len() * 4 < serde_json::to_vec(&manifests).unwrap().len());
    }

    #[test]
    fn an_oci_chart_is_referenced_under_its_repository() {
        let chart = Chart {
            repository: "oci://registry.example/charts/".into(),
            name: "web".into(),
            version: "1.0.0".into(),
            ..Chart::default()
        };
        assert_eq!(
            chart.oci_reference().as_deref(),
            Some("oci://registry.example/charts/web")
        );
    }
}
