//! `Release`: one version of an application, immutable, and its progress across its clusters.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::application::{Manifest, Template};
use crate::conditions::Condition;
use crate::rules;
use crate::strategy::Pipeline;

/// One version of an Application, made by the controller when the Application's template changes
/// (or a drain reschedules it): only a template change makes a Release. A change of the
/// Application's strategy alone applies to the Release rolling out, whose strategy the controller
/// updates; everything else but targetStep and aborted is immutable.
// Each printcolumn(...) repeats `type_`, which the lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "Release",
    namespaced,
    status = "ReleaseStatus",
    shortname = "prel",
    category = "prism",
    doc = "One version of an Application and its progress across its clusters, made when the Application's template changes: only a template change makes a Release. A change of the strategy alone applies to the Release rolling out (the controller updates its spec.strategy, and the rollout goes on from its current step); a Release that completed, was rolled back or was superseded keeps the strategy it ran under. Everything else but spec.targetStep and spec.aborted is immutable.",
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".spec.revision"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.stepName"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = rules::TARGET_STEP_EXISTS)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The Application this Release is a version of.
    #[x_kube(validation = rules::IMMUTABLE)]
    pub application: String,
    /// 1 for the Application's first Release, then one more for each.
    #[x_kube(validation = rules::IMMUTABLE)]
    pub revision: u32,
    /// The Application's template when this Release was made (none when it targets a Service).
    #[serde(default, skip_serializing_if = "Template::is_empty")]
    #[x_kube(validation = rules::IMMUTABLE)]
    pub template: Template,
    /// When the Application targets a Service: that Service as it was when this Release was
    /// made (its name and spec; the version Prism copies into `<name>-canary`, then
    /// `<name>-primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::IMMUTABLE)]
    pub target: Option<Manifest>,
    /// The strategy it rolls out under, resolved from the Application's (inline steps, or the
    /// Strategy or ClusterStrategy it names). While the Release rolls out, the controller updates
    /// it when the Application's resolved strategy changes: the rollout goes on from its current
    /// step, found again by name (a step removed or renamed: the one at its index, or the last,
    /// entered anew). Once the Release completed, was rolled back or superseded, it keeps the
    /// strategy it ran under.
    pub strategy: Pipeline,
    /// The clusters chosen for this Release, in schedule order (the order of `first: N` scopes).
    #[schemars(length(max = 1000))]
    #[x_kube(validation = rules::IMMUTABLE)]
    pub clusters: Vec<ScheduledCluster>,
    /// The step a person asked for: `prism promote` raises it, and the rollout moves to it,
    /// skipping the gates before it (past the last step, the last gate too). Absent: the
    /// strategy's gates decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_step: Option<u32>,
    /// Set by `prism abort`, or by the controller when analysis fails: the Release rolls back and
    /// stays rolled back.
    #[serde(default)]
    #[x_kube(validation = rules::ABORT_IS_FINAL)]
    pub aborted: bool,
    /// Set on the Release of a side version (a SideVersion): outside the mainline, never on the
    /// default route, reachable only on these routes. Its revision is 0, so that it never counts
    /// among the mainline's revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::IMMUTABLE)]
    pub side: Option<SideRelease>,
}

/// What makes a Release a side version's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideRelease {
    /// The SideVersion it runs for (its name is `{version}` in the routes).
    #[schemars(length(min = 1, max = 253))]
    pub side_version: String,
    /// Its own routes, each to it alone, named `<sideVersion>-<route>`.
    #[schemars(length(max = 8))]
    pub routes: Vec<crate::strategy::Route>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledCluster {
    /// A Cluster's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Cluster's region when it was chosen.
    #[schemars(length(max = 63))]
    pub region: String,
}

/// Analysis results the controller keeps, newest last.
pub const MAX_ANALYSIS_RESULTS: usize = 32;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The index of the current step: the one the clusters move towards, or have achieved when
    /// achievedAt is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The name of that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_name: Option<String>,
    /// When every cluster in the current step's scope first reached it: a pause gate counts from
    /// here. Absent while the step is not achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_at: Option<Time>,
    /// Steps achieved out of the strategy's steps, e.g. "2/4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReleasePhase>,
    /// Why the Release is rolling back or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
    /// This version in each scheduled cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub clusters: Vec<ClusterProgress>,
    /// Scheduled, Progressing, StepAchieved, WaitingForCommand, Blocked, Complete, Aborted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Where the version is in its life: Live, then, once it retires, Draining, Drained and
    /// Retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VersionState>,
    /// Why and since when the version retires, once it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retirement: Option<Retirement>,
    /// The analysis of the current step, and the most recent results of every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// The current step's webhook gate: its last answer, and when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateStatus>,
}

/// Measurements of a step's analysis. The counts are the current step's: the verdict comes from
/// them, and a restarted controller goes on from them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The step counted.
    pub step: u32,
    pub passed: u32,
    pub failed: u32,
    /// Inconclusive measurements in a row; a conclusive one starts the count again, so a rollout
    /// paused by a metric source that went away goes on when it returns.
    pub inconclusive: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_at: Option<Time>,
    /// The most recent results, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ANALYSIS_RESULTS))]
    pub results: Vec<AnalysisResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The step whose gate this is.
    pub step: u32,
    pub asked_at: Time,
    pub verdict: Verdict,
    /// The webhook's answer, or why there was none.
    pub message: String,
}

/// Why a Release rolls back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Abort {
    pub cause: AbortCause,
    /// For humans: what failed, or who aborted.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AbortCause {
    /// `prism abort`, or the Release's `spec.aborted`.
    Command,
    AnalysisFailed,
    WebhookFailed,
    /// More clusters than the strategy's `waves.failureBudget` missed their `progressDeadline`.
    ProgressDeadlineExceeded,
}

/// Where a version is in its life. A complete version that retires (by `versions.max`, its
/// `versions.ttl`, or `prism retire`) goes through each state in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VersionState {
    /// Rolling out, on the default route, or retained on its own routes.
    #[default]
    Live,
    /// Its routes left (they are removed first); it keeps its capacity for the drain period
    /// counted from when no cluster's routes name it any more.
    Draining,
    /// The drain period is over: it is scaled to 0, its objects kept until `versions.deleteAfter`.
    Drained,
    /// Its objects are deleted (or being deleted) from every cluster.
    Retired,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Live => "Live",
            VersionState::Draining => "Draining",
            VersionState::Drained => "Drained",
            VersionState::Retired => "Retired",
        }
    }
}

/// A version's retirement: why, and the moment of each transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    pub cause: RetireCause,
    /// For humans: which limit, or who.
    pub message: String,
    /// When it started Draining: its routes were set to leave.
    pub started_at: Time,
    /// When no cluster's routes named it any more: the drain period counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_left_at: Option<Time>,
    /// Since when its drain metric (`versions.drainMetric`) has read zero, every reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_since: Option<Time>,
    /// The drain period is over, and the drain metric holds it until it reads zero for its
    /// window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain_held: bool,
    /// When it was Drained, and scaled to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<Time>,
    /// When its objects were deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Time>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetireCause {
    /// A newer version would exceed `versions.max`: the oldest unpinned one retires.
    MaxVersions,
    /// Older than `versions.ttl`.
    Ttl,
    /// `prism retire`: the Release's `prism.dev/retire` annotation.
    Command,
    /// A side version's SideVersion was deleted or changed, or its ttl passed.
    SideVersion,
}

impl RetireCause {
    pub fn as_str(self) -> &'static str {
        match self {
            RetireCause::MaxVersions => "MaxVersions",
            RetireCause::Ttl => "Ttl",
            RetireCause::Command => "Command",
            RetireCause::SideVersion => "SideVersion",
        }
    }
}

/// The Release with the highest revision among an application's.
pub fn newest(releases: &[Release]) -> Option<&Release> {
    releases.iter().max_by_key(|r| r.spec.revision)
}

impl Release {
    /// Whether this version was given up: aborted (`spec.aborted`), or rolling back or rolled
    /// back by the controller. Only a new template rolls its application out again.
    pub fn is_rolled_back(&self) -> bool {
        self.spec.aborted || self.status.as_ref().is_some_and(|s| s.abort.is_some())
    }
}

impl AbortCause {
    /// The CamelCase reason of the release's Aborted condition.
    pub fn reason(self) -> &'static str {
        match self {
            AbortCause::Command => "AbortedByCommand",
            AbortCause::AnalysisFailed => "AnalysisFailed",
            AbortCause::WebhookFailed => "WebhookFailed",
            AbortCause::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReleasePhase {
    #[default]
    Progressing,
    /// A manual gate waits for `prism promote`.
    WaitingForCommand,
    /// An inconclusive analysis, a webhook that does not say yes, or a RolloutBlock holds the
    /// Release where it is. (A cluster that cannot be reached holds only the steps that need it,
    /// and the Release stays Progressing, saying so in its conditions.)
    Paused,
    Complete,
    /// Moving back towards the incumbent, after an abort or a failed analysis.
    RollingBack,
    /// Rolled back: the incumbent runs as before the Release.
    Aborted,
    /// A newer Release replaced this one before it completed.
    Superseded,
}

impl ReleasePhase {
    /// Still on its way through the steps: the phases of a contender.
    pub fn is_rolling_out(self) -> bool {
        matches!(
            self,
            ReleasePhase::Progressing | ReleasePhase::WaitingForCommand | ReleasePhase::Paused
        )
    }

    /// The phase's name, as the status and condition reasons spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleasePhase::Progressing => "Progressing",
            ReleasePhase::WaitingForCommand => "WaitingForCommand",
            ReleasePhase::Paused => "Paused",
            ReleasePhase::Complete => "Complete",
            ReleasePhase::RollingBack => "RollingBack",
            ReleasePhase::Aborted => "Aborted",
            ReleasePhase::Superseded => "Superseded",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProgress {
    /// The Cluster's name.
    pub name: String,
    pub phase: ClusterPhase,
    /// The index of the latest step achieved in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_step: Option<u32>,
    /// When the cluster's wave started moving it towards the current step (or it was found
    /// there): its progress deadline counts from here. Absent while it waits for its wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// When the cluster reached the current step, while it stays there: its soak counts from
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_at: Option<Time>,
    /// The replicas this version runs here now (the autoscaler's lower bound when autoscaled).
    #[serde(default)]
    pub replicas: u32,
    /// How many of them are ready.
    #[serde(default)]
    pub ready_replicas: u32,
    /// The percent of the application's traffic this version is set to receive here.
    #[serde(default)]
    pub weight: u32,
    /// What the cluster waits for, or what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterPhase {
    /// No step in scope yet, or waiting for its wave.
    #[default]
    Pending,
    /// Moving towards the target step.
    Progressing,
    /// The target step is achieved here.
    Achieved,
    /// The cluster's API server does not answer: nothing changes there until it does.
    Unreachable,
    /// The cluster missed its progress deadline for the current step; the message says what it
    /// waited for. It no longer holds the step.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// The step measured.
    pub step: u32,
    /// The metric check's name.
    pub metric: String,
    /// The cluster measured.
    pub cluster: String,
    /// The measured value (the median of the samples, when compared); absent without data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The incumbent's median, when compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incumbent: Option<f64>,
    pub verdict: Verdict,
    /// Why, in words: the threshold crossed, the difference found, or what was missing.
    pub message: String,
    pub time: Time,
}

impl AnalysisResult {
    /// As conditions, Events and `prism status` say it: `metric error-rate in cluster c2: ...`.
    pub fn describe(&self) -> String {
        format!(
            "metric {} in cluster {}: {}",
            self.metric, self.cluster, self.message
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    Pass,
    Fail,
    /// No data, or the metric source did not answer.
    Inconclusive,
}
