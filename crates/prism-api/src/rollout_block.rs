//! `RolloutBlock`: stops rollouts, with a message and an audited override.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation on an Application that lets its rollouts pass the RolloutBlocks it names,
/// comma-separated: `prism.dev/override-rollout-block: freeze-2025,incident-42`.
pub const OVERRIDE_ROLLOUT_BLOCK_ANNOTATION: &str = "prism.dev/override-rollout-block";

/// Stops every rollout in its namespace; a RolloutBlock in the controller's own namespace
/// (prism-system) stops rollouts in every namespace. An Application passes a block by naming it
/// in its prism.dev/override-rollout-block annotation; each override is recorded in the status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "RolloutBlock",
    namespaced,
    status = "RolloutBlockStatus",
    shortname = "pblock",
    category = "prism",
    doc = "Stops every rollout in its namespace, or everywhere when it is in the controller's namespace.",
    printcolumn(name = "Message", type_ = "string", json_path = ".spec.message"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutBlockSpec {
    /// Why rollouts are stopped, shown to everyone whose rollout waits.
    #[schemars(length(min = 1, max = 1024))]
    pub message: String,
    /// Who set the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutBlockStatus {
    /// The Releases that rolled out through this block by override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<BlockOverride>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockOverride {
    /// The Application, as namespace/name.
    pub application: String,
    pub release: String,
    pub at: Time,
}

/// The block names an annotation value lists, e.g. "freeze, incident-42".
pub fn overridden_blocks(annotation: &str) -> impl Iterator<Item = &str> {
    annotation
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

impl RolloutBlock {
    /// The block as people read it wherever it stops something (the Application's Blocked
    /// condition, the commands that it refuses), with the way past it:
    /// `RolloutBlock team/freeze: release freeze (to pass it, annotate the Application with
    /// prism.dev/override-rollout-block: freeze)`.
    pub fn describe(&self) -> String {
        let name = self.name_any();
        format!(
            "RolloutBlock {}/{name}: {} (to pass it, annotate the Application with \
             {OVERRIDE_ROLLOUT_BLOCK_ANNOTATION}: {name})",
            self.namespace().unwrap_or_default(),
            self.spec.message,
        )
    }
}
