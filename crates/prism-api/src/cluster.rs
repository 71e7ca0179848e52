//! `Cluster`: an application cluster that Prism deploys to.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// An application cluster. Its credentials are a kubeconfig in a Secret of the management cluster.
// Each printcolumn(...) repeats `type_`, which the lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "Cluster",
    status = "ClusterStatus",
    shortname = "pcluster",
    category = "prism",
    doc = "An application cluster that Prism deploys to.",
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Unschedulable",
        type_ = "boolean",
        json_path = ".spec.unschedulable"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The cluster's region: schedules count clusters per region, and steps may roll out region by
    /// region.
    #[schemars(length(min = 1, max = 63))]
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,
    /// What the cluster offers (e.g. "gpu"); an Application's schedule may require some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub capabilities: Vec<String>,
    /// The cluster's relative chance to be chosen, against the other clusters of its region.
    /// Default 100; 0 keeps the cluster for Applications that name it.
    #[serde(default = "default_weight")]
    #[schemars(range(max = 10000))]
    pub weight: u32,
    /// A cordoned cluster: no new Release is scheduled to it; running versions stay.
    #[serde(default)]
    pub unschedulable: bool,
    pub credentials: ClusterCredentials,
}

fn default_weight() -> u32 {
    100
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCredentials {
    /// The Secret in the management cluster that holds the kubeconfig.
    pub secret_ref: SecretRef,
    /// The Secret's key that holds the kubeconfig. Default "kubeconfig".
    #[serde(default = "default_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_key() -> String {
    "kubeconfig".to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Ready, Reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the controller last heard from the cluster's API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// The cluster's Kubernetes version, e.g. "v1.36.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Cluster {
    /// The kubeconfig of the Cluster's credentials, from `secret` (the one its
    /// `spec.credentials.secretRef` names, or `None` when it does not exist); errors name the
    /// Secret, the key and the fix.
    pub fn kubeconfig(
        &self,
        secret: Option<&k8s_openapi::api::core::v1::Secret>,
    ) -> Result<kube::config::Kubeconfig, String> {
        let credentials = &self.spec.credentials;
        let secret_ref = &credentials.secret_ref;
        let secret_name = format!("Secret {}/{}", secret_ref.namespace, secret_ref.name);
        let secret = secret.ok_or_else(|| {
            format!(
                "{secret_name} (spec.credentials.secretRef) does not exist: create it, e.g. with `prism cluster join`"
            )
        })?;
        let kubeconfig = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&credentials.key))
            .ok_or_else(|| {
                format!(
                    "{secret_name} has no key {:?} (spec.credentials.key)",
                    credentials.key
                )
            })?;
        let kubeconfig = std::str::from_utf8(&kubeconfig.0)
            .map_err(|_| format!("{secret_name}: key {:?} is not UTF-8", credentials.key))?;
        kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|error| {
            format!(
                "{secret_name}: key {:?} is not a kubeconfig: {error}",
                credentials.key
            )
        })
    }
}
