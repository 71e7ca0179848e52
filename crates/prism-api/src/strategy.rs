//! The strategy language.
//!
//! A strategy is a pipeline of named steps. Each step says, per sub-step, what it wants: capacity,
//! traffic, analysis, a gate, and which clusters it applies to. A sub-step left out leaves that
//! aspect as the previous step set it, so a headless worker's strategy simply has no traffic, and
//! a per-cluster vanguard is a step whose `clusters` names the first cluster only.
//!
//! Versions are named by role, never by revision, so one strategy serves every release:
//! the `contender` is the release being rolled out, the `incumbent` the newest complete one.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rollout pipeline, shared by `Strategy`, `ClusterStrategy` and an Application's inline strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// The steps, in order. The last step must leave the contender with all of the capacity and
    /// all of the default route's traffic: that is what "complete" means.
    pub steps: Vec<Step>,
}

/// One step of a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique within the pipeline; shown by `kubectl get releases` and `prism status`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
    /// What lets the rollout leave this step once it is achieved. Absent: advance at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// Which of the release's scheduled clusters this step changes. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterScope>,
}

/// How many replicas each role runs, as a share of the template's replicas (or of the bounds of
/// its HorizontalPodAutoscaler). A role left out keeps its previous share.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contender: Option<Share>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incumbent: Option<Share>,
    /// At most this many replicas above the template's count while the step moves capacity from
    /// one version to another (a surge-limited rolling update). Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<u32>,
}

/// A replica count (`3`) or a percentage of the template's replicas (`"25%"`), rounded up so that
/// any share above zero runs at least one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Share {
    Replicas(u32),
    Percent(u32),
}

impl Share {
    /// The replica count this share asks of a template that runs `total` replicas.
    pub fn of(self, total: u32) -> u32 {
        match self {
            Share::Replicas(n) => n,
            Share::Percent(p) => (u64::from(total) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Replicas(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Share::Replicas(n) => serializer.serialize_u32(*n),
            Share::Percent(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        const EXPECTED: &str = "a replica count such as 3 or a percentage from \"0%\" to \"100%\"";
        match Raw::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom(format!("expected {EXPECTED}")))?
        {
            Raw::Count(n) => Ok(Share::Replicas(n)),
            Raw::Text(text) => text
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| *p <= 100)
                .map(Share::Percent)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?}: expected {EXPECTED}"))),
        }
    }
}

impl JsonSchema for Share {
    fn schema_name() -> Cow<'static, str> {
        "Share".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A replica count such as 3, or a percentage of the template's replicas such as \"25%\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^(100|[1-9]?[0-9])%$" }
            ]
        })
    }
}

/// How requests reach each version. Weights are percentages of the application's default route;
/// routes add matches (header, path prefix, subdomain) that reach one version whatever the weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStep {
    /// Percent of the default route for the contender. Given alone, the incumbent gets the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contender: Option<u32>,
    /// Percent of the default route for the incumbent. Given alone, the contender gets the rest;
    /// given with `contender`, the two must sum to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incumbent: Option<u32>,
    /// Routes that reach a version directly. Absent: keep the previous step's routes; an empty
    /// list removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
}

/// A match that sends requests to one version, for A/B tests and rainbow deployments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub name: String,
    /// Which version the route reaches; `each` gives every live version a route of its own, and
    /// then the match must contain `{version}`, replaced by the version's name.
    pub to: RouteTo,
    #[serde(rename = "match")]
    pub matches: RouteMatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RouteTo {
    Contender,
    Incumbent,
    Each,
}

/// Exactly one of header, pathPrefix or subdomain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

/// Metric checks that run while the step holds; their verdict decides whether the rollout goes on,
/// pauses (inconclusive) or rolls back (failed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    pub metrics: Vec<MetricCheck>,
    /// Time between two measurements. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Measurements that must pass before the step may advance. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Failed measurements tolerated; one more rolls back. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// Inconclusive measurements (no data, source down) tolerated; one more pauses. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// Default `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judge>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    pub name: String,
    /// A MetricTemplate in the application's namespace, or a ClusterMetricTemplate, to take the
    /// query from. Exactly one of templateRef and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<String>,
    /// A PromQL query; `{{app}}`, `{{namespace}}`, `{{version}}` and `{{cluster}}` are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The range a value must lie in to pass (threshold judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// A failed critical metric fails the whole analysis whatever the others say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// Weight of this metric in the statistical judge's score. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Threshold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Judge {
    /// Every metric within its threshold.
    #[default]
    Threshold,
    /// Contender samples compared with incumbent samples per metric (Mann-Whitney U).
    MannWhitney,
}

/// What lets a rollout leave an achieved step. At most one of manual, pause and webhook;
/// none means advance at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Wait for `prism promote` (or a raised `spec.targetStep` on the Release).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// Wait this long after the step is achieved, then advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    /// Advance when this URL answers 2xx to the step's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookGate>,
}

/// The gate's meaning, once at most one of its fields is known to be set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateKind<'a> {
    Auto,
    Manual,
    Pause(Duration),
    Webhook(&'a WebhookGate),
}

impl Gate {
    pub fn kind(&self) -> GateKind<'_> {
        if self.manual {
            GateKind::Manual
        } else if let Some(pause) = self.pause {
            GateKind::Pause(pause)
        } else if let Some(webhook) = &self.webhook {
            GateKind::Webhook(webhook)
        } else {
            GateKind::Auto
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookGate {
    pub url: String,
    /// Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// Which of a release's scheduled clusters a step changes. At most one field; none means all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterScope {
    /// The first N clusters in schedule order (per-cluster vanguard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u32>,
    /// Clusters by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// Every scheduled cluster of one region (region waves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A length of time written as Kubernetes users write it: `30s`, `5m`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub jiff::SignedDuration);

impl Duration {
    pub fn from_secs(secs: i64) -> Self {
        Duration(jiff::SignedDuration::from_secs(secs))
    }

    pub fn as_secs(self) -> i64 {
        self.0.as_secs()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jiff's "friendly" format, without spaces: 1h30m.
        write!(f, "{}", format!("{:#}", self.0).replace(' ', ""))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<jiff::SignedDuration>()
            .ok()
            .filter(|d| !d.is_negative())
            .map(Duration)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?}: expected a duration such as \"30s\", \"5m\" or \"1h30m\""
                ))
            })
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as \"30s\", \"5m\" or \"1h30m\".",
            "pattern": "^([0-9]+(ms|s|m|h))+$"
        })
    }
}
