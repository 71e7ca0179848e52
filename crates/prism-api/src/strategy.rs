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

use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rules;

/// A rollout pipeline, shared by `Strategy`, `ClusterStrategy` and an Application's inline strategy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "Strategy",
    namespaced,
    shortname = "pstrat",
    category = "prism",
    doc = "A reusable rollout strategy, named by the Applications of its namespace in spec.strategy.name."
)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// The steps, in order. The last step must leave the contender with all of the capacity and
    /// all of the default route's traffic: that is what "complete" means.
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::STEPS_NOT_EMPTY, validation = rules::STEP_NAMES_UNIQUE)]
    pub steps: Vec<Step>,
    /// How the clusters in a step's scope move: how many at once, how long each wave soaks, how
    /// long a cluster may take, and how many may fail. Absent: all at once, with no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Waves>,
    /// Webhooks asked before a rollout starts, and told when it completes, rolls back, or makes
    /// any transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

impl Pipeline {
    /// Step `index` (from 0) as people read it: `2/3 "half"`.
    pub fn step_label(&self, index: usize) -> String {
        let name = self.steps.get(index).map(|step| step.name.as_str());
        step_label(index, self.steps.len(), name)
    }
}

/// Step `index` (from 0) of `steps` steps as people read it, counted from 1, with its name
/// when known: `2/3 "half"`, `2/3`. Events, conditions and the CLI all say it this way.
pub fn step_label(index: usize, steps: usize, name: Option<&str>) -> String {
    let name = name.map_or_else(String::new, |name| format!(" {name:?}"));
    format!("{}/{steps}{name}", index + 1)
}

/// Waves within a step: the clusters in its scope move in schedule order, a few at a time, each
/// wave soaking before the next starts. A cluster already at the step stays there; one waiting
/// for its wave keeps the previous step's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Waves {
    /// At most this many clusters move towards a step at once. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// How long a wave stays achieved before the next wave starts, and the last wave before the
    /// rollout leaves the step. A cluster that drops out of its step starts its soak again.
    /// Absent: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Duration>,
    /// A cluster that has not achieved its step this long after its wave started is failed, and
    /// no longer holds the step. Absent: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<Duration>,
    /// Failed clusters tolerated within a step; one more rolls the Release back in every
    /// cluster. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<u32>,
}

/// A ClusterStrategy's spec: a pipeline that Applications of every namespace may name.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "ClusterStrategy",
    shortname = "pcstrat",
    category = "prism",
    doc = "A reusable rollout strategy for every namespace, named by Applications in spec.strategy.clusterStrategyName."
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterStrategySpec(pub Pipeline);

impl Strategy {
    pub fn pipeline(&self) -> &Pipeline {
        &self.spec
    }
}

impl ClusterStrategy {
    pub fn pipeline(&self) -> &Pipeline {
        &self.spec.0
    }
}

/// One step of a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::SURGE_STEP_KEEPS_TRAFFIC)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Unique within the pipeline, a DNS label; shown by `kubectl get releases` and `prism status`.
    #[schemars(length(max = 63))]
    #[x_kube(validation = rules::STEP_NAME_IS_DNS_LABEL)]
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
    #[schemars(range(min = 1))]
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

    /// Whether the share runs no pods whatever the template's replicas.
    pub fn is_zero(self) -> bool {
        matches!(self, Share::Replicas(0) | Share::Percent(0))
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
            // Only the canonical spelling ("5%", not "05%"), which is what the schema's pattern
            // accepts: the CLI must not accept what the API server rejects.
            Raw::Text(text) => text
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| *p <= 100)
                .map(Share::Percent)
                .filter(|share| share.to_string() == text)
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?}: expected {EXPECTED}"))),
        }
    }
}

impl JsonSchema for Share {
    fn schema_name() -> Cow<'static, str> {
        "Share".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Not an anyOf of typed branches: kube strips `type` from anyOf branches (structural
        // schemas), and an untyped `{pattern}` branch would then accept any integer and an
        // untyped `{minimum}` branch any string. At the top, `minimum` applies to integers only
        // and `pattern` and `maxLength` to strings only, which is the intent (`maxLength` also
        // bounds the cost of the CEL rules that read a share as a string).
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A replica count such as 3, or a percentage of the template's replicas such as \"25%\".",
            "minimum": 0,
            "pattern": "^(100|[1-9]?[0-9])%$",
            "maxLength": 4
        })
    }
}

/// How requests reach each version. Weights are percentages of the application's default route;
/// routes add matches (header, path prefix, query parameter, subdomain) that reach one version
/// whatever the weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::WEIGHTS_SUM_TO_100)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStep {
    /// Percent of the default route for the contender. Given alone, the incumbent gets the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub contender: Option<u32>,
    /// Percent of the default route for the incumbent. Given alone, the contender gets the rest;
    /// given with `contender`, the two must sum to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub incumbent: Option<u32>,
    /// Routes that reach a version directly. Absent: keep the previous step's routes; an empty
    /// list removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = rules::ROUTE_NAMES_UNIQUE)]
    pub routes: Option<Vec<Route>>,
}

/// A match that sends requests to one version, for A/B tests and rainbow deployments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = rules::EACH_ROUTE_HAS_PLACEHOLDER,
    validation = rules::PLACEHOLDER_ONLY_IN_EACH_ROUTE
)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Which version the route reaches; `each` gives every live version a route of its own, and
    /// then the match must contain `{version}`, replaced by the version's name.
    pub to: RouteTo,
    #[serde(rename = "match")]
    pub matches: RouteMatch,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RouteTo {
    Contender,
    Incumbent,
    Each,
}

/// Exactly one of header, pathPrefix, queryParam or subdomain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = rules::ONE_ROUTE_MATCH,
    validation = rules::PATH_PREFIX_IS_ABSOLUTE
)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Requests carrying this header with this value (exactly, or matching a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Requests whose path starts with this prefix, e.g. "/beta".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path_prefix: Option<String>,
    /// Requests whose query string has this parameter with this value (exactly, or matching a
    /// regular expression), e.g. `?beta=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<QueryParamMatch>,
    /// Requests to this subdomain of the application's host, e.g. "beta" for beta.example.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub subdomain: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[schemars(length(max = 4096))]
    pub value: String,
    /// How `value` is compared with the header's. Default `Exact`.
    #[serde(default, rename = "type", skip_serializing_if = "MatchType::is_exact")]
    pub match_type: MatchType,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryParamMatch {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[schemars(length(max = 1024))]
    pub value: String,
    /// How `value` is compared with the parameter's. Default `Exact`.
    #[serde(default, rename = "type", skip_serializing_if = "MatchType::is_exact")]
    pub match_type: MatchType,
}

/// How a route's value is compared with the request's, named as the Gateway API names them.
/// A regular expression is unanchored in most implementations: anchor it with `^` and `$` to
/// match the whole value.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum MatchType {
    #[default]
    Exact,
    RegularExpression,
}

impl MatchType {
    pub fn is_exact(&self) -> bool {
        *self == MatchType::Exact
    }
}

/// Metric checks that run while the step holds; their verdict decides whether the rollout goes on,
/// pauses (inconclusive) or rolls back (failed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::THRESHOLD_JUDGE_NEEDS_THRESHOLDS)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = rules::METRIC_NAMES_UNIQUE)]
    pub metrics: Vec<MetricCheck>,
    /// Time between two measurements. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Measurements that must pass before the step may advance. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
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
    /// The Mann-Whitney judge's pass and marginal scores. Default 80 and 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreThresholds>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::ONE_METRIC_SOURCE)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A MetricTemplate in the application's namespace, or else a ClusterMetricTemplate, of this
    /// name. Its fields are the defaults of the check's own. Exactly one of templateRef and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub template_ref: Option<String>,
    #[serde(flatten)]
    pub metric: Metric,
    /// A failed critical metric fails the whole analysis whatever the others say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// Weight of this metric in the statistical judge's score. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub weight: Option<u32>,
}

/// A query and how to judge its values: a metric check's own fields, and a metric template's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// A PromQL query; `{{app}}`, `{{namespace}}`, `{{version}}` (the Release's name) and
    /// `{{cluster}}` are replaced. The threshold judge reads one value (an instant query); the
    /// Mann-Whitney judge reads the samples of the last interval for both versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub query: Option<String>,
    /// Where to send the query. Default: the controller's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// The range a value must lie in to pass (threshold judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// How the contender may differ from the incumbent (Mann-Whitney judge). Default: an
    /// increase of more than 10% fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

impl Metric {
    /// This metric, each field it leaves out taken from `defaults` (its template).
    pub fn or(&self, defaults: &Metric) -> Metric {
        Metric {
            query: self.query.clone().or_else(|| defaults.query.clone()),
            prometheus: self
                .prometheus
                .clone()
                .or_else(|| defaults.prometheus.clone()),
            threshold: self
                .threshold
                .clone()
                .or_else(|| defaults.threshold.clone()),
            comparison: self
                .comparison
                .clone()
                .or_else(|| defaults.comparison.clone()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::PROMETHEUS_ADDRESS_IS_HTTP)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// The server's base URL, e.g. http://prometheus.monitoring:9090.
    #[schemars(length(max = 2048))]
    pub address: String,
}

/// How a contender's samples may differ from its incumbent's before the metric fails: the
/// difference must be significant (Mann-Whitney U, p below alpha), in the bad direction, and
/// larger than the tolerance, so that noise alone does not fail a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Which change is bad. Default `increase` (errors, latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The relative change of the median tolerated, e.g. 0.1 for 10%. Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
    /// The significance level of the test. Default 0.05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    #[default]
    Increase,
    Decrease,
    Either,
}

/// The Mann-Whitney judge's score (0-100, the weighted share of passing metrics) needed to pass,
/// and below which the analysis fails; in between it is marginal and counts as inconclusive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::SCORE_MARGINAL_NOT_ABOVE_PASS)]
#[serde(rename_all = "camelCase")]
pub struct ScoreThresholds {
    #[schemars(range(min = 0.0, max = 100.0))]
    pub pass: f64,
    #[schemars(range(min = 0.0, max = 100.0))]
    pub marginal: f64,
}

impl Default for ScoreThresholds {
    fn default() -> Self {
        ScoreThresholds {
            pass: 80.0,
            marginal: 50.0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = rules::THRESHOLD_HAS_BOUND,
    validation = rules::THRESHOLD_MIN_NOT_ABOVE_MAX
)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::ONE_GATE)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Wait for `prism promote` (or a raised `spec.targetStep` on the Release).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// Wait this long after the step is achieved, then advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    /// Advance when this URL answers 2xx to the step's payload. A refusal, or no answer after
    /// the retries, holds the step (phase Paused) and the webhook is asked again a little later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// The gate's meaning, once at most one of its fields is known to be set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateKind<'a> {
    Auto,
    Manual,
    Pause(Duration),
    Webhook(&'a Webhook),
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

/// An HTTP endpoint Prism POSTs a JSON payload to. With a secret, the payload is signed:
/// `X-Prism-Signature: sha256=<hex HMAC-SHA256 of the body>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::WEBHOOK_URL_IS_HTTP)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[schemars(length(max = 2048))]
    pub url: String,
    /// How long one attempt may take. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Attempts after the first when one fails to answer (or answers 5xx). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The key of a Secret in the application's namespace holding the HMAC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key: Option<String>,
}

/// Webhooks about a rollout as a whole; a step's own webhook is its gate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhooks {
    /// Asked, in order, before a new Release is made; each must answer 2xx. Until then there is
    /// no Release (the Application's PreRolloutPassed condition is False and says why), and
    /// they are asked again every 15 s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub pre_rollout: Vec<Webhook>,
    /// Told when a Release completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub post_rollout: Vec<Webhook>,
    /// Told when a Release starts rolling back, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub rollback: Vec<Webhook>,
    /// Told of every transition, as the Release's Events say it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub event: Vec<Webhook>,
}

/// Which of a release's scheduled clusters a step changes. At most one field; none means all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::ONE_CLUSTER_SCOPE)]
#[serde(rename_all = "camelCase")]
pub struct ClusterScope {
    /// The first N clusters in schedule order (per-cluster vanguard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub first: Option<u32>,
    /// Clusters by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 253)))]
    pub names: Option<Vec<String>>,
    /// Every scheduled cluster of one region (region waves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
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
        // Only what the schema's pattern accepts: jiff alone would also take "5 minutes" or ISO
        // 8601, which the API server rejects.
        Some(&text)
            .filter(|text| is_kubernetes_duration(text))
            .and_then(|text| text.parse::<jiff::SignedDuration>().ok())
            .filter(|d| !d.is_negative())
            .map(Duration)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?}: expected a duration such as \"30s\", \"5m\" or \"1h30m\""
                ))
            })
    }
}

/// Whether `text` matches `^([0-9]+(ms|s|m|h))+$`, the schema's pattern for a Duration.
fn is_kubernetes_duration(text: &str) -> bool {
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|unit| rest.starts_with(unit));
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    !text.is_empty()
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
