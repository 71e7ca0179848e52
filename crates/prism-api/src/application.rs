//! `Application`: what to run, how to roll a new version of it out, and where.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::chart::{Chart, WorkloadKind};
use crate::conditions::Condition;
use crate::rules;
use crate::strategy::{
    CapacityStep, Duration, Pipeline, PrometheusSource, Share, Step, Waves, Webhooks,
};

/// The annotation that asks for a new Release of the same template on a fresh schedule (a no-op
/// rollout, e.g. to move an application off a drained cluster): each new value makes one. The
/// Release made for it carries the same annotation and value.
pub const RESCHEDULE_ANNOTATION: &str = "prism.dev/reschedule";

/// An application that Prism rolls out across the fleet. Each change of spec.template makes a
/// new Release, rolled out under spec.strategy to the clusters spec.schedule chooses.
// Each printcolumn(...) repeats `type_`, which the lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "papp",
    category = "prism",
    doc = "An application that Prism rolls out across the fleet: each change of spec.template makes a new Release.",
    printcolumn(name = "Strategy", type_ = "string", json_path = ".status.strategy"),
    printcolumn(name = "Workload", type_ = "string", json_path = ".status.workload"),
    printcolumn(name = "Contender", type_ = "string", json_path = ".status.contender"),
    printcolumn(name = "Incumbent", type_ = "string", json_path = ".status.incumbent"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = rules::NO_TRAFFIC_STEPS_WITHOUT_PROVIDER,
    validation = rules::SELECTOR_SWITCH_WEIGHTS,
    validation = rules::ROUTES_NEED_MATCHING_PROVIDER,
    validation = rules::TRAFFIC_NEEDS_SERVICE,
    validation = rules::TEMPLATE_OR_TARGET,
    validation = rules::TARGET_NEEDS_GATEWAY_API,
    validation = rules::TARGET_HAS_TWO_VERSIONS,
    validation = rules::TARGET_STEPS_SET_NO_CAPACITY,
    validation = rules::DAEMON_SET_HAS_NO_TRAFFIC,
    validation = rules::DAEMON_SET_SHARES_OF_NODES,
    validation = rules::DAEMON_SET_INCUMBENT_FOLLOWS
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// What each cluster runs; a change makes a new Release. Exclusive with spec.target.
    #[serde(default, skip_serializing_if = "Template::is_empty")]
    pub template: Template,
    /// Instead of a template: an existing Service whose traffic Prism shifts between versions
    /// (a change of its spec makes a Release); Prism never writes it, nor what backs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// How a new Release is rolled out.
    pub strategy: StrategyRef,
    /// How requests reach each version. Default: provider podLabels.
    #[serde(default)]
    pub traffic: TrafficPolicy,
    /// Which clusters run the application. Default: every schedulable cluster.
    #[serde(default)]
    pub schedule: Schedule,
    /// How many versions may live at once.
    #[serde(default)]
    pub versions: VersionPolicy,
    /// How many finished Releases to keep for `prism rollback`. Default 10.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(max = 100))]
    pub revision_history_limit: u32,
}

fn default_revision_history_limit() -> u32 {
    10
}

impl ApplicationSpec {
    /// Whether the application serves requests whose traffic Prism shifts.
    pub fn has_traffic(&self) -> bool {
        self.traffic.provider != TrafficProvider::None
    }

    /// The name of the Service the Application targets, when it targets one.
    pub fn target_service(&self) -> Option<&str> {
        Some(self.target.as_ref()?.service.name.as_str())
    }
}

/// What an Application targets instead of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// An existing Service in the Application's namespace of the management cluster, which its
    /// owner changes to release (its selector to the new pods, say). Prism keeps a copy of its
    /// newest spec, `<name>-canary`, and of its newest complete one, `<name>-primary`, in each
    /// scheduled cluster, and splits the HTTPRoutes' backendRefs to `<name>` between them.
    pub service: TargetService,
}

impl Target {
    /// The name of the copy of the Service's newest complete spec, which takes the traffic
    /// outside a rollout.
    pub fn primary(service: &str) -> String {
        format!("{service}-primary")
    }

    /// The name of the copy of the Service's newest spec, the contender's during a rollout.
    pub fn canary(service: &str) -> String {
        format!("{service}-canary")
    }

    /// The pipeline the engine runs for a Service target. Prism scales nothing there (the
    /// Service's owner runs what backs it), so capacity is given: every version has all of it
    /// from the first step on (a version's "capacity" is its copy of the Service, ready once that
    /// lists a ready endpoint), and the steps shift traffic only. Validation refuses steps that
    /// set capacity, so only the first step's is set here.
    pub fn pipeline(pipeline: &Pipeline) -> Pipeline {
        let mut given = pipeline.clone();
        if let Some(first) = given.steps.first_mut() {
            first.capacity = Some(CapacityStep {
                contender: Some(Share::Percent(100)),
                incumbent: Some(Share::Percent(100)),
                max_surge: None,
            });
        }
        given
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetService {
    /// The Service's name (at most 55 characters, so that `-primary` makes a Service name).
    #[schemars(length(min = 1, max = 55))]
    pub name: String,
    /// For a Service of type ExternalName: how Prism judges that the address it names serves
    /// (an HTTP GET there, from the controller), before a version gets requests and while it
    /// has them. Absent: the gateway's `ResolvedRefs` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// An HTTP probe of an ExternalName target's address: `GET http://<externalName>:<port><path>`
/// with `host` as the Host header. A version is ready after one answer below 400, and unready
/// after `failureThreshold` failures in a row (an error, a timeout, or an answer of 400 or
/// more: a gateway that does not know the host answers 404).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"), length(max = 1024))]
    pub path: Option<String>,
    /// Default: the port of the Service's first port's `targetPort` (else its `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// The Host header: the host name the far side routes by (its HTTPRoute's hostname).
    /// Default: the externalName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: Option<u32>,
    /// Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: Option<u32>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub failure_threshold: Option<u32>,
}

impl Probe {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.period_seconds.unwrap_or(5).into())
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(2).into())
    }

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.unwrap_or(3)
    }
}

/// The objects each version runs in a cluster: inline manifests, or a Helm chart rendered when a
/// Release is made.
///
/// On the wire a Release made from a chart keeps what the chart rendered in `rendered`
/// (compressed, [`crate::chart::compress`]); read back, those objects are the template's
/// `manifests`, so that everything that reads a Release's objects reads them alike.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TemplateWire", into = "TemplateWire")]
pub struct Template {
    pub manifests: Vec<Manifest>,
    pub chart: Option<Chart>,
}

/// A template as the API has it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = rules::MANIFESTS_OR_CHART,
    validation = rules::NO_INLINE_SECRETS,
    validation = rules::TEMPLATE_KINDS,
    validation = rules::TEMPLATE_API_VERSIONS,
    validation = rules::ONE_WORKLOAD,
    validation = rules::AT_MOST_ONE_HPA
)]
#[serde(rename_all = "camelCase")]
struct TemplateWire {
    /// Kubernetes objects, inline: exactly one workload (a Deployment, StatefulSet or DaemonSet:
    /// what Prism scales), the Service that receives its traffic, and optionally ConfigMaps, one
    /// HorizontalPodAutoscaler and the objects a chart typically has (ServiceAccount, Role,
    /// RoleBinding, PodDisruptionBudget, Ingress, NetworkPolicy). Secrets are referenced by
    /// name, never inlined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    manifests: Vec<Manifest>,
    /// Instead of manifests: a Helm chart, rendered by Helm when a Release is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chart: Option<Chart>,
    /// Set by the controller in a Release made from a chart: the rendered objects, a gzip of
    /// their JSON array in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rendered: Option<String>,
}

impl TryFrom<TemplateWire> for Template {
    type Error = String;

    fn try_from(wire: TemplateWire) -> Result<Template, String> {
        let manifests = match wire.rendered {
            Some(rendered) => crate::chart::decompress(&rendered)
                .map_err(|error| format!("template.rendered: {error}"))?,
            None => wire.manifests,
        };
        Ok(Template {
            manifests,
            chart: wire.chart,
        })
    }
}

impl From<Template> for TemplateWire {
    fn from(template: Template) -> TemplateWire {
        match template.chart {
            Some(chart) if !template.manifests.is_empty() => TemplateWire {
                manifests: Vec::new(),
                rendered: Some(crate::chart::compress(&template.manifests)),
                chart: Some(chart),
            },
            chart => TemplateWire {
                manifests: template.manifests,
                chart,
                rendered: None,
            },
        }
    }
}

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        TemplateWire::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        TemplateWire::json_schema(generator)
    }
}

/// A DaemonSet's full capacity: its capacity is counted in hundredths of the nodes it runs on,
/// so that a step's share of it (`"33%"`) is a share of the nodes.
pub const DAEMON_SET_CAPACITY: u32 = 100;

/// The bounds of a template's HorizontalPodAutoscaler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpaBounds {
    pub min: u32,
    pub max: u32,
}

impl Template {
    /// Whether the template holds nothing: an Application that targets a Service has none.
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.chart.is_none()
    }

    /// Whether this template (a Release's) was made from `source` (an Application's): the same
    /// objects, or a render of the same chart with the same values.
    pub fn is_made_from(&self, source: &Template) -> bool {
        match (&self.chart, &source.chart) {
            (Some(rendered), Some(chart)) => rendered == chart,
            _ => self == source,
        }
    }

    /// The object Prism scales: the one the chart names, else the only Deployment, StatefulSet
    /// or DaemonSet.
    pub fn workload(&self) -> Option<&Manifest> {
        if let Some(named) = self
            .chart
            .as_ref()
            .and_then(|chart| chart.workload.as_ref())
        {
            return self.manifests.iter().find(|m| {
                m.kind() == Some(named.kind.as_str()) && m.name() == Some(named.name.as_str())
            });
        }
        let mut workloads = self
            .manifests
            .iter()
            .filter(|m| m.kind().and_then(WorkloadKind::of).is_some());
        match (workloads.next(), workloads.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The workload as people name it: `<kind>/<name>`.
    pub fn workload_name(&self) -> Option<String> {
        let workload = self.workload()?;
        Some(format!("{}/{}", workload.kind()?, workload.name()?))
    }

    /// The kind of the template's workload; a Deployment when it has none that is clear
    /// (validation refuses such a template).
    pub fn workload_kind(&self) -> WorkloadKind {
        self.workload()
            .and_then(|m| m.kind())
            .and_then(WorkloadKind::of)
            .unwrap_or(WorkloadKind::Deployment)
    }

    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Manifest> + 'a {
        self.manifests
            .iter()
            .filter(move |m| m.kind() == Some(kind))
    }

    /// The pod template of the workload, whatever its kind.
    pub fn pod_template(&self) -> Option<PodTemplateSpec> {
        let mut object = self.workload()?.object();
        let template = object.get_mut("spec")?.get_mut("template")?.take();
        serde_json::from_value(template).ok()
    }

    /// The workload's replica count (1 when it leaves it out, as Kubernetes defaults it); for a
    /// DaemonSet, which runs a pod per node, [`DAEMON_SET_CAPACITY`]: its capacity is counted in
    /// hundredths of its nodes. None when the template has no clear workload whose count
    /// parses, or its count is negative.
    pub fn replicas(&self) -> Option<u32> {
        let workload = self.workload()?;
        let replicas = match workload.kind().and_then(WorkloadKind::of)? {
            WorkloadKind::Deployment => workload
                .parse::<Deployment>()
                .ok()?
                .spec
                .and_then(|spec| spec.replicas),
            WorkloadKind::StatefulSet => workload
                .parse::<StatefulSet>()
                .ok()?
                .spec
                .and_then(|spec| spec.replicas),
            WorkloadKind::DaemonSet => return Some(DAEMON_SET_CAPACITY),
        };
        u32::try_from(replicas.unwrap_or(1)).ok()
    }

    /// The bounds of the template's HorizontalPodAutoscaler (a minimum of 1 when it leaves it
    /// out, as Kubernetes defaults it); None when it has none, or its autoscaler does not parse or
    /// has a negative bound.
    pub fn hpa_bounds(&self) -> Option<HpaBounds> {
        let hpa: HorizontalPodAutoscaler = self
            .of_kind("HorizontalPodAutoscaler")
            .next()?
            .parse()
            .ok()?;
        let spec = hpa.spec;
        Some(HpaBounds {
            min: u32::try_from(spec.min_replicas.unwrap_or(1)).ok()?,
            max: u32::try_from(spec.max_replicas).ok()?,
        })
    }

    /// What the template runs at full capacity: its autoscaler's bounds when it has one, else its
    /// Deployment's replicas. None when the count cannot be read (an object that does not parse, a
    /// negative count): `validate::application` refuses such a template, so a valid one always has
    /// a capacity, and nothing ever runs a count the template does not say.
    pub fn full_capacity(&self) -> Option<FullCapacity> {
        if self.of_kind("HorizontalPodAutoscaler").next().is_some() {
            self.hpa_bounds().map(FullCapacity::Autoscaled)
        } else {
            self.replicas().map(FullCapacity::Replicas)
        }
    }
}

/// What a template runs at full capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullCapacity {
    /// The Deployment's replicas.
    Replicas(u32),
    /// The HorizontalPodAutoscaler's bounds.
    Autoscaled(HpaBounds),
}

/// One Kubernetes object of a template, kept as written: fields Prism does not know are
/// preserved, and the object is applied to each cluster as it is (with the version's name and
/// labels added).
///
/// Held as its compact JSON text, with the kind, apiVersion and name read off once: every
/// Application and Release in the controller's caches carries a template, and held as parsed
/// JSON (a map per object, an allocation per key and string) templates took nearly half of its
/// memory at 1,000 applications, 5 to 10 times their text. The few readers of the whole object
/// parse it when they need it. Keys are in order (serde_json's map is sorted), so equal objects
/// have equal text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    text: Box<str>,
    kind: Option<Box<str>>,
    api_version: Option<Box<str>>,
    name: Option<Box<str>>,
}

impl Manifest {
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    pub fn api_version(&self) -> Option<&str> {
        self.api_version.as_deref()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The object, parsed anew: a copy to read or to change.
    pub fn object(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.text).unwrap_or_default()
    }

    /// The object as a typed Kubernetes object, e.g. a `Deployment`; an error names the field.
    pub fn parse<K: DeserializeOwned>(
        &self,
    ) -> Result<K, serde_path_to_error::Error<serde_json::Error>> {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&self.text))
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Manifest {
    fn from(object: serde_json::Map<String, serde_json::Value>) -> Manifest {
        let text_of = |value: Option<&serde_json::Value>| value?.as_str().map(Box::from);
        Manifest {
            kind: text_of(object.get("kind")),
            api_version: text_of(object.get("apiVersion")),
            name: text_of(
                object
                    .get("metadata")
                    .and_then(|metadata| metadata.get("name")),
            ),
            text: serde_json::Value::Object(object)
                .to_string()
                .into_boxed_str(),
        }
    }
}

impl Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.object().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Manifest, D::Error> {
        serde_json::Map::deserialize(deserializer).map(Manifest::from)
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonSchema for Manifest {
    fn schema_name() -> Cow<'static, str> {
        "Manifest".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "A Kubernetes object, e.g. a Deployment, Service, ConfigMap or HorizontalPodAutoscaler.",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true,
            "required": ["apiVersion", "kind", "metadata"],
            "properties": {
                "apiVersion": { "type": "string", "maxLength": 253 },
                "kind": { "type": "string", "maxLength": 63 },
                "metadata": {
                    "type": "object",
                    "required": ["name"],
                    "properties": { "name": { "type": "string", "maxLength": 253 } }
                }
            }
        })
    }
}

/// Which strategy rolls a new Release out: exactly one of name, clusterStrategyName or steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::ONE_STRATEGY)]
#[serde(rename_all = "camelCase")]
pub struct StrategyRef {
    /// A Strategy in the application's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// A ClusterStrategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster_strategy_name: Option<String>,
    /// An inline strategy: the steps of a pipeline, as in a Strategy's spec.steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = rules::STEPS_NOT_EMPTY, validation = rules::STEP_NAMES_UNIQUE)]
    pub steps: Option<Vec<Step>>,
    /// With inline steps: how the rollout moves across clusters, as in a Strategy's spec.waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Waves>,
    /// With inline steps: the rollout's webhooks, as in a Strategy's spec.webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

impl StrategyRef {
    /// The inline strategy, when the steps are given here.
    pub fn inline(&self) -> Option<Pipeline> {
        self.steps.clone().map(|steps| Pipeline {
            steps,
            waves: self.waves.clone(),
            webhooks: self.webhooks.clone(),
        })
    }
}

/// How requests reach each version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = rules::GATEWAY_API_NEEDS_HTTP_ROUTE,
    validation = rules::ISTIO_NEEDS_VIRTUAL_SERVICE
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// What shifts traffic between versions. Default podLabels.
    #[serde(default)]
    pub provider: TrafficProvider,
    /// The template's Service whose traffic is shifted. Default: the template's only Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub service: Option<String>,
    /// gatewayAPI: the HTTPRoutes, in the application's namespace of each cluster, whose
    /// backendRefs to the application's Service Prism splits (several, say one per hostname;
    /// each set alike).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub http_routes: Vec<String>,
    /// gatewayAPI: the GRPCRoutes likewise (header routes only: a GRPCRoute matches no paths or
    /// query parameters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub grpc_routes: Vec<String>,
    /// istio: the VirtualService whose route weights Prism sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub virtual_service: Option<String>,
}

/// What shifts traffic between versions. There is no SMI provider (the SMI project is archived)
/// and no NGINX Ingress one (ingress-nginx is retired): an NGINX-based gateway is driven through
/// `gatewayAPI`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TrafficProvider {
    /// The workload serves no requests (a headless worker): strategies have no traffic steps.
    None,
    /// One Service selects the pods of every version; a version's weight is its share of the
    /// pods labelled to receive traffic. A split by pods, not by requests.
    #[default]
    PodLabels,
    /// The Service's selector switches from one version to another: weights are 0 or 100.
    ServiceSelector,
    /// A Gateway API HTTPRoute's backend weights and matches.
    #[serde(rename = "gatewayAPI")]
    GatewayApi,
    /// An Istio VirtualService's route weights and matches.
    Istio,
}

/// Which clusters run the application. With neither regions nor clusters, every schedulable
/// cluster with the required capabilities runs it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = rules::ONE_CLUSTER_COUNT)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// How many clusters in each region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = rules::REGION_NAMES_UNIQUE)]
    pub regions: Option<Vec<RegionCount>>,
    /// How many clusters in all, whatever their regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub clusters: Option<u32>,
    /// Capabilities every chosen cluster must have (see a Cluster's spec.capabilities).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub capabilities: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionCount {
    /// A region, as in a Cluster's spec.region.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// How many of the region's clusters.
    #[schemars(range(min = 1))]
    pub clusters: u32,
}

/// How many versions may live at once, and the name each goes by in its routes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionPolicy {
    /// Live versions at most, contender and incumbent included. Default 2; above 2, older
    /// complete versions are retained (a rainbow deployment), each reachable by its own routes,
    /// and the oldest retires when a new contender would exceed this.
    #[serde(default = "default_max_versions")]
    #[schemars(range(min = 2, max = 16))]
    pub max: u32,
    /// A retained version older than this (counted from its Release's creation) retires.
    /// Absent: retained versions retire only by max. A pinned Release (`prism pin`) never
    /// retires by age or count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// How long a retiring version keeps its capacity once its routes left every cluster, so
    /// that a gateway still routing to it (their configuration lags) finds its pods: it is
    /// Draining, then Drained and scaled to 0. Default 5m when `max` is above 2 (a rainbow);
    /// otherwise absent, and a version no longer live goes at once, as the strategy's last step
    /// left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_period: Option<Duration>,
    /// How long a Drained version's objects (its Deployment at 0 replicas, its Service, its
    /// ConfigMaps) stay before they are deleted and it is Retired. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<Duration>,
    /// The request rate of a draining version: once the drain period has passed, it stays
    /// Draining until this reads zero for a whole window (clients that pinned a connection, or
    /// a version's own hostname kept in bookmarks, still reaching it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_metric: Option<DrainMetric>,
    /// The name a version goes by in its routes, for `{version}` in a route's match (e.g.
    /// `v{revision}`: `v7.docs.example.com`): `{revision}` (required, so that no two versions
    /// share a name) and `{app}` (the Application's name) filled in. It must make a DNS label.
    /// Absent: the Release's name, `<app>-<revision>`. Objects keep the Release's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = rules::VERSION_NAME_HAS_REVISION,
        validation = rules::VERSION_NAME_IS_DNS_LABEL
    )]
    pub name: Option<String>,
    /// Side versions (SideVersion objects) of this Application live at most. They never count
    /// in `max`. Default 3; a SideVersion beyond it is refused (its `Valid` condition says so)
    /// and installs nothing.
    #[serde(default = "default_side_max")]
    #[schemars(range(max = 32))]
    pub side_max: u32,
}

fn default_max_versions() -> u32 {
    2
}

fn default_side_max() -> u32 {
    3
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy {
            max: default_max_versions(),
            ttl: None,
            drain_period: None,
            delete_after: None,
            drain_metric: None,
            name: None,
            side_max: default_side_max(),
        }
    }
}

/// A draining version's request rate, read from Prometheus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainMetric {
    /// A PromQL query of the version's requests per second, everywhere it runs; `{{app}}`,
    /// `{{namespace}}` and `{{version}}` (the Release's name, its pods' `prism.dev/release`
    /// label) are replaced. Its values are summed; no series reads zero.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// Where to send the query. Default: the controller's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// How long the rate must read zero, every reading of it. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// How often it is read while a version drains. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// A drain metric's window when it names none.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration(jiff::SignedDuration::from_secs(60));
/// How often a drain metric is read when it names no interval.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration(jiff::SignedDuration::from_secs(10));

impl DrainMetric {
    pub fn window(&self) -> Duration {
        self.window.unwrap_or(DEFAULT_DRAIN_WINDOW)
    }

    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(DEFAULT_DRAIN_INTERVAL)
    }
}

/// A rainbow's drain period when `versions.drainPeriod` is absent.
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration(jiff::SignedDuration::from_secs(300));
/// How long a Drained version's objects stay when `versions.deleteAfter` is absent.
pub const DEFAULT_DELETE_AFTER: Duration = Duration(jiff::SignedDuration::from_secs(60));

impl VersionPolicy {
    /// How long a retiring version keeps its capacity once its routes left; None: it goes at once.
    pub fn drain_period(&self) -> Option<Duration> {
        self.drain_period
            .or((self.max > 2).then_some(DEFAULT_DRAIN_PERIOD))
    }

    /// How long a Drained version's objects stay.
    pub fn delete_after(&self) -> Duration {
        self.delete_after.unwrap_or(DEFAULT_DELETE_AFTER)
    }

    /// The name revision `revision` of application `app` goes by in its routes; None: its
    /// Release's name.
    pub fn version_name(&self, app: &str, revision: u32) -> Option<String> {
        let template = self.name.as_deref()?;
        Some(fill_version_name(template, app, revision))
    }
}

/// `template` with its placeholders filled in.
pub(crate) fn fill_version_name(template: &str, app: &str, revision: u32) -> String {
    template
        .replace("{revision}", &revision.to_string())
        .replace("{app}", app)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Valid, Blocked, Progressing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The strategy in use: a Strategy's name, `ClusterStrategy/<name>`, or `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The newest Release's workload, `<kind>/<name>` (a chart's, as it rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The Release being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contender: Option<String>,
    /// The newest complete Release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incumbent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ApplicationPhase>,
    /// The revision of the newest Release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u32>,
    /// The pre-rollout webhook that holds the next Release back, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_rollout: Option<PreRolloutHold>,
}

/// A pre-rollout webhook's refusal (or silence), kept so that it is asked again only later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreRolloutHold {
    /// The revision held back.
    pub revision: u32,
    pub asked_at: Time,
    /// The webhook's answer, or why there was none.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApplicationPhase {
    /// The spec is invalid; the Valid condition says why. Nothing is rolled out.
    Invalid,
    /// A RolloutBlock stops the rollout.
    Blocked,
    Progressing,
    /// A step waits for `prism promote`.
    WaitingForCommand,
    RollingBack,
    Aborted,
    /// The contender is complete; no rollout is under way.
    Complete,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::VersionPolicy;

    fn named(template: &str) -> VersionPolicy {
        VersionPolicy {
            name: Some(template.into()),
            ..VersionPolicy::default()
        }
    }

    #[test]
    fn a_version_name_fills_in_the_revision_and_the_app() {
        assert_eq!(
            named("v{revision}").version_name("docs", 12).unwrap(),
            "v12"
        );
        assert_eq!(
            named("{app}-r{revision}").version_name("docs", 3).unwrap(),
            "docs-r3"
        );
        assert_eq!(VersionPolicy::default().version_name("docs", 3), None);
    }

    #[test]
    fn no_two_revisions_share_a_name() {
        // Digits around the placeholder are where a collision could hide (`1{revision}`: 11 for
        // revision 1, 111 for revision 11, never 11 again).
        for template in [
            "v{revision}",
            "1{revision}",
            "{revision}1",
            "{revision}-{revision}",
        ] {
            let policy = named(template);
            let names: BTreeSet<String> = (1..=2000)
                .map(|revision| policy.version_name("a", revision).unwrap())
                .collect();
            assert_eq!(names.len(), 2000, "{template}");
        }
    }
}
