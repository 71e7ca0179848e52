//! The controller's metrics, after Prometheus' naming conventions (`prism_` prefix, base units,
//! `_total` counters), and its health: `/metrics`, `/healthz` and `/readyz` on
//! `Options::metrics_address` ([`serve`]). docs/operations.md lists each metric.
//!
//! Counters and histograms are recorded where things happen (a reconcile's end, a Release's
//! transitions); what the caches already know (Releases by phase, clusters' reachability) is
//! read from them at each scrape rather than kept twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use prism_analysis::webhook::Answer;
use prism_api::Release;
use prism_api::release::{ReleasePhase, ReleaseStatus, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::Context;
use crate::fleet::Connection;

#[cfg(test)]
mod exported;
mod steps;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: u32,
}

/// A request to an API server ([`crate::client`]): the verb and resource as Kubernetes names
/// them, the HTTP status code (or [`crate::client::TRANSPORT_ERROR`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiRequestLabels {
    pub cluster: String,
    pub verb: &'static str,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    cluster: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ReasonLabel, Counter>,
    transitions: Family<ReasonLabel, Counter>,
    rollout_duration: Family<OutcomeLabel, Histogram>,
    releases: Family<PhaseLabels, Gauge>,
    cluster_reachable: Family<ClusterLabel, Gauge>,
    pub(crate) api_requests: Family<ApiRequestLabels, Counter>,
    watch_restarts: Family<WatchLabels, Counter>,
    analysis_measurements: Family<ResultLabel, Counter>,
    webhook_calls: Family<WebhookLabels, Counter>,
    step_duration: Family<OutcomeLabel, Histogram>,
    leader: Family<ShardLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prism");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Application reconciles, by result (ok, error)",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "reconcile_duration",
            "How long an Application's reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason (kube, refused, missing_field, unreadable_capacity, serialize)",
            reconcile_errors.clone(),
        );
        let transitions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "release_transitions",
            "Releases' transitions (StepAchieved, StepAdvanced, Promoted, Complete, RollbackStarted, Aborted, Draining, ...), as their Events say",
            transitions.clone(),
        );
        let rollout_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register_with_unit(
            "rollout_duration",
            "From a Release's creation to its end, by outcome (completed, aborted, rolled_back, superseded)",
            Unit::Seconds,
            rollout_duration.clone(),
        );
        let releases = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "releases",
            "Releases by namespace and phase",
            releases.clone(),
        );
        let cluster_reachable = Family::<ClusterLabel, Gauge>::default();
        registry.register(
            "cluster_reachable",
            "1 when the cluster's API server answers, 0 when it does not or is still connecting",
            cluster_reachable.clone(),
        );
        let leader = Family::<ShardLabel, Gauge>::default();
        registry.register(
            "leader",
            "1 for each shard of the Applications this replica leads (acts for), else 0",
            leader.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API servers, by cluster (local: the management cluster), verb, resource and HTTP code",
            api_requests.clone(),
        );
        let watch_restarts = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watches that failed and started again after their backoff, by cluster and resource",
            watch_restarts.clone(),
        );
        let analysis_measurements = Family::<ResultLabel, Counter>::default();
        registry.register(
            "analysis_measurements",
            "Measurements of steps' analyses, by result (passed, failed, inconclusive)",
            analysis_measurements.clone(),
        );
        let webhook_calls = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_calls",
            "Webhook calls, by kind (confirm-step, pre-rollout, post-rollout, rollback, event) and outcome (accepted, refused, no_answer)",
            webhook_calls.clone(),
        );
        let step_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register_with_unit(
            "step_duration",
            "From a step's start (its first cluster moving towards it) to its end, by outcome (advanced, completed, aborted, rolled_back, superseded)",
            Unit::Seconds,
            step_duration.clone(),
        );
        Metrics {
            registry,
            api_requests,
            watch_restarts,
            analysis_measurements,
            webhook_calls,
            step_duration,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            transitions,
            rollout_duration,
            releases,
            cluster_reachable,
            leader,
        }
    }
}

impl Metrics {
    /// A reconcile that ended: its result (an error's reason) and how long it took.
    pub fn reconciled(&self, took: Duration, error: Option<&'static str>) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.reconcile_errors
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
    }

    /// A Release's transition, by its Event's reason.
    pub fn transition(&self, reason: &'static str) {
        self.transitions
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A Release that ended (`phase`, a phase of no rollout) `took` after its creation.
    pub fn rollout_ended(&self, release: &Release, phase: ReleasePhase, took: Duration) {
        let outcome = match phase {
            ReleasePhase::Complete => "completed",
            ReleasePhase::Aborted if release.spec.aborted => "aborted",
            ReleasePhase::Aborted => "rolled_back",
            ReleasePhase::Superseded => "superseded",
            _ => return,
        };
        self.rollout_duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }

    /// What counts the failures of a watch of `K`s in `cluster`, for `inspect_err` on the watch:
    /// each is retried, after the watch's backoff, by a new watch or a new list.
    pub fn watch_restarts<K: Resource<DynamicType = ()>>(
        &self,
        cluster: &str,
    ) -> impl FnMut(&watcher::Error) + Send + 'static {
        // Made now, so that a watch that never failed shows 0.
        let restarts = self
            .watch_restarts
            .get_or_create(&WatchLabels {
                cluster: cluster.to_owned(),
                resource: K::plural(&()).into_owned(),
            })
            .clone();
        move |_| {
            restarts.inc();
        }
    }

    /// A measurement of a step's analysis, by its worst verdict across metrics and clusters (the
    /// one the Release's status counts).
    pub fn measured(&self, verdict: Verdict) {
        let result = match verdict {
            Verdict::Pass => "passed",
            Verdict::Fail => "failed",
            Verdict::Inconclusive => "inconclusive",
        };
        self.analysis_measurements
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A call of a webhook of `kind` (what its payload's `kind` says) and how it answered.
    pub fn webhook_called(&self, kind: &'static str, answer: &Answer) {
        let outcome = match answer {
            Answer::Accepted => "accepted",
            Answer::Refused { .. } => "refused",
            Answer::NoAnswer { .. } => "no_answer",
        };
        self.webhook_calls
            .get_or_create(&WebhookLabels { kind, outcome })
            .inc();
    }

    /// The steps `release` ends by taking `status` at `now` ([`steps::ended`]).
    pub fn steps_ended(&self, release: &Release, status: &ReleaseStatus, now: jiff::Timestamp) {
        for ended in steps::ended(release, status, now) {
            self.step_duration
                .get_or_create(&OutcomeLabel {
                    outcome: ended.outcome,
                })
                .observe(ended.took.as_secs_f64());
        }
    }

    /// The metrics as Prometheus' text format, the caches' gauges read now.
    fn scrape(&self, ctx: &Context) -> String {
        self.releases.clear();
        for release in ctx.releases.state() {
            let phase = release
                .status
                .as_ref()
                .and_then(|status| status.phase)
                .unwrap_or_default();
            self.releases
                .get_or_create(&PhaseLabels {
                    namespace: release.namespace().unwrap_or_default(),
                    phase: phase.as_str(),
                })
                .inc();
        }
        self.cluster_reachable.clear();
        for cluster in ctx.clusters.state() {
            let name = cluster.name_any();
            let reachable = ctx
                .fleet
                .get(&name)
                .is_some_and(|member| member.connection() == Connection::Connected);
            self.cluster_reachable
                .get_or_create(&ClusterLabel { cluster: name })
                .set(i64::from(reachable));
        }
        for shard in 0..ctx.leadership.shards() {
            self.leader
                .get_or_create(&ShardLabel { shard })
                .set(i64::from(ctx.leadership.leads_shard(shard)));
        }
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (the caches have listed,
/// so the controller decides on what is there) on `address` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<Context>) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    axum::serve(listener, router).await
}

/// Binds `address` for [`serve`], so that a port in use fails the start, not later.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.scrape(&ctx),
    )
}

async fn ready(State(ctx): State<Arc<Context>>) -> (StatusCode, &'static str) {
    if ctx.listed() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the caches have not listed yet",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_and_a_transition_show_in_the_text_format_by_their_conventional_names() {
        let metrics = Metrics::default();
        metrics.reconciled(Duration::from_millis(3), None);
        metrics.reconciled(Duration::from_millis(5), Some("kube"));
        metrics.transition("Complete");
        let mut text = String::new();
        encode(&mut text, &metrics.registry).unwrap();
        for line in [
            "prism_reconciles_total{result=\"ok\"} 1",
            "prism_reconciles_total{result=\"error\"} 1",
            "prism_reconcile_errors_total{reason=\"kube\"} 1",
            "prism_reconcile_duration_seconds_count 2",
            "prism_release_transitions_total{reason=\"Complete\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
