//! What the controller's parts share: [`Context`], made once by [`crate::run`] from the caches
//! every replica keeps, and [`Options`], what the command line decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use prism_analysis::prometheus::Prometheus;
use prism_analysis::webhook;
use prism_api::application::PreRolloutHold;
use prism_api::release::{AnalysisResult, GateStatus};
use prism_api::{
    Application, Cluster, ClusterMetricTemplate, ClusterStrategy, MetricTemplate, Release,
    RolloutBlock, SideVersion, Strategy,
};

use crate::calls::Calls;
use crate::expectations::Expectations;
use crate::fleet::{Connection, Fleet};
use crate::leadership::{LeaderElection, Leadership};
use crate::refusals::Refusals;
use crate::{drain, metrics, pacing, probes};

/// What every reconcile shares.
pub struct Context {
    /// Renders Applications' charts.
    pub charts: crate::chart::Charts,
    /// The management cluster's.
    pub client: Client,
    pub applications: Store<Application>,
    /// The Cluster objects the controller deploys to (those its selector picks).
    pub clusters: Store<Cluster>,
    pub releases: Store<Release>,
    pub strategies: Store<Strategy>,
    pub cluster_strategies: Store<ClusterStrategy>,
    /// Every namespace's.
    pub blocks: Store<RolloutBlock>,
    pub side_versions: Store<SideVersion>,
    /// Where a RolloutBlock stops every Application.
    pub global_namespace: String,
    pub fleet: Fleet,
    pub expectations: Arc<Expectations>,
    /// The Services of the management cluster, among which those Applications target.
    pub target_services: Store<Service>,
    pub metric_templates: Store<MetricTemplate>,
    pub cluster_metric_templates: Store<ClusterMetricTemplate>,
    pub prometheus: Prometheus,
    /// Where metrics without a `prometheus.address` of their own are read.
    pub prometheus_url: Option<String>,
    pub webhooks: webhook::Caller,
    /// The analyses' measurements in flight, and those not counted yet.
    pub measurements: Calls<Vec<AnalysisResult>>,
    /// The steps' webhook gates asked, and their answers not taken yet.
    pub gates: Calls<GateStatus>,
    /// The pre-rollout webhooks asked: a hold, or `None` when all accepted.
    pub pre_rollouts: Calls<Option<PreRolloutHold>>,
    /// The probes of ExternalName targets' addresses, and their verdicts.
    pub probes: probes::Probes,
    /// The readings of draining versions' request rates (`versions.drainMetric`).
    pub drain_readings: drain::DrainReadings,
    pub metrics: Arc<metrics::Metrics>,
    /// The failure last reported (a Warning Event) for each Application whose reconciles fail.
    pub failures_reported: Mutex<HashMap<ObjectRef<Application>, String>>,
    /// The writes application clusters refuse, and when to try them again.
    pub refusals: Refusals,
    /// The Releases whose status waits for more changes of counters before it is written.
    pub counter_lag: pacing::CounterLag,
    /// The shards this replica acts for, and the fence on its writes.
    pub leadership: Arc<Leadership>,
}

/// Which objects a controller looks after.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Watch this namespace only: every namespaced watch is scoped to it (tests run one
    /// controller per test namespace). ClusterStrategies are watched cluster-wide either way.
    pub namespace: Option<String>,
    /// Deploy only to the Clusters with these labels (a label selector, e.g. `fleet=eu`).
    pub cluster_selector: Option<String>,
    /// A RolloutBlock in this namespace stops every Application. Default: prism-system.
    pub global_namespace: Option<String>,
    /// The Prometheus server of metrics that name none.
    pub prometheus_url: Option<String>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; none when absent.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Leader election and shards; none: this replica acts for every Application (one replica).
    pub leader_election: Option<LeaderElection>,
    /// The helm binary that renders charts (`spec.template.chart`). Default: `helm` on the PATH.
    pub helm: Option<std::path::PathBuf>,
}

/// Where the controller runs by default, and where a RolloutBlock stops every Application.
pub const DEFAULT_GLOBAL_NAMESPACE: &str = "prism-system";

impl Context {
    pub(crate) fn failures_reported_lock(
        &self,
    ) -> MutexGuard<'_, HashMap<ObjectRef<Application>, String>> {
        self.failures_reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every cache of the management cluster has listed once: before that, an empty
    /// cache would pass for no Releases (and make revision 1 again) or for no Clusters.
    pub(crate) fn listed(&self) -> bool {
        self.fleet.is_synced()
            && [
                self.releases.wait_until_ready().now_or_never(),
                self.strategies.wait_until_ready().now_or_never(),
                self.cluster_strategies.wait_until_ready().now_or_never(),
                self.clusters.wait_until_ready().now_or_never(),
                self.target_services.wait_until_ready().now_or_never(),
                self.side_versions.wait_until_ready().now_or_never(),
            ]
            .iter()
            .all(|ready| matches!(ready, Some(Ok(()))))
    }

    /// Whether a cluster of the application's Releases is still connecting: deciding now would
    /// take it for unreachable, and report so, for no reason.
    pub(crate) fn connecting(&self, releases: &[Release]) -> bool {
        releases
            .iter()
            .flat_map(|release| &release.spec.clusters)
            .filter_map(|cluster| self.fleet.get(&cluster.name))
            .any(|member| member.connection() == Connection::Connecting)
    }
}
