//! Prism's controller. One reconcile per Application, in two stages, each a pipeline of
//! dereference → validate → build (pure, no client) → apply → status:
//! - [`application`]: each change of the Application's template becomes a Release, a change of
//!   its strategy alone updates the Release rolling out ([`strategy_update`]); old Releases are
//!   pruned; the Application's status.
//! - [`rollout`]: the Application's Releases rolled out across their clusters by the engine's
//!   decision, through the [`workload`] and [`traffic`] providers; each Release's status.
//!
//! Everything is read from caches filled by watches ([`fleet`] for the application clusters,
//! whose members follow the Cluster objects through [`clusters`]), and a reconcile waits until
//! the caches show its own writes ([`expectations`]).

pub mod analysis;
pub mod application;
pub mod blocks;
pub mod cached;
pub mod calls;
pub mod chart;
pub mod cleanup;
pub mod client;
pub mod clusters;
pub mod context;
pub mod drain;
pub mod dry_run;
pub mod error;
pub mod expectations;
pub mod fleet;
pub mod leadership;
pub mod metrics;
pub mod pacing;
pub mod probes;
pub mod refusals;
pub mod rollout;
pub mod service_target;
pub mod side_versions;
pub mod status;
pub mod strategy_update;
pub mod touches;
pub mod traffic;
pub mod webhooks;
pub mod workload;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prism_analysis::prometheus::Prometheus;
use prism_analysis::webhook;
use prism_api::{
    Application, Cluster, ClusterMetricTemplate, ClusterStrategy, MetricTemplate, Release,
    RolloutBlock, SideVersion, Strategy,
};
use tracing::{Instrument, debug, info, warn};

pub use context::{Context, DEFAULT_GLOBAL_NAMESPACE, Options};
pub use error::{Error, ReleasesError, StartError, WriteError};
pub use leadership::LeaderElection;

use crate::calls::Calls;
use crate::expectations::{Expectations, PATIENCE, application_of};
use crate::fleet::{Fleet, MANAGEMENT_CLUSTER, cache_of, scoped, triggers};
use crate::leadership::Leadership;
use crate::refusals::Refusals;

/// Every event a reconcile depends on is watched, so this is only a safety net.
const RESYNC: Duration = Duration::from_secs(300);
const RETRY: Duration = Duration::from_secs(5);

/// The time in whole seconds, as statuses keep times: a status built with nanoseconds differs
/// from the one the API server stored, and would be written again, unchanged, for that. (The
/// engine gets the time itself: it rounds up the moments it records, so that a pause counted
/// from one never ends before its duration.)
pub(crate) fn now() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// Applications reconciled at once. Unbounded, a fleet-wide change (1,000 Applications applied
/// together) put hundreds of requests in flight on the management API server, which then timed
/// them out; the client's retries of those made duplicate creates and writes.
const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Runs the controller on the management cluster of `config` until a signal (SIGINT, SIGTERM)
/// stops it. Every replica watches; with leader election, a replica acts only for the shards
/// it leads ([`leadership`]).
pub async fn run(config: kube::Config, options: Options) -> Result<(), Error> {
    let leadership = Arc::new(match &options.leader_election {
        Some(election) => Leadership::elected(election.clone()),
        None => Leadership::sole(),
    });
    let metrics = Arc::new(metrics::Metrics::default());
    let client = client::build(config.clone(), MANAGEMENT_CLUSTER, &metrics, &leadership)
        .map_err(StartError::Client)?;
    let namespace = options.namespace.as_deref();
    let applications_api: Api<Application> = scoped(&client, namespace);
    // Fail at once, with a message, when the CRDs are missing or access is denied, rather than
    // have the watchers retry forever.
    applications_api
        .list(&ListParams::default().limit(1))
        .await
        .map_err(StartError::ListApplications)?;

    let expectations = Arc::new(Expectations::default());
    let (applications, application_writer) = reflector::store();
    let application_stream = {
        let reader = applications.clone();
        let expectations = expectations.clone();
        reflector::reflector(
            application_writer,
            watcher(applications_api, watcher::Config::default())
                .default_backoff()
                .inspect_err(metrics.watch_restarts::<Application>(MANAGEMENT_CLUSTER))
                .modify(|app: &mut Application| app.metadata.managed_fields = None),
        )
        .applied_objects()
        .inspect_ok(move |app| {
            expectations.observe(&ObjectRef::from_obj(app), MANAGEMENT_CLUSTER, app, &reader);
        })
    };
    let (releases, release_changes) = cache_of::<Release>(
        &client,
        namespace,
        watcher::Config::default(),
        |_| {},
        application_of,
        MANAGEMENT_CLUSTER,
        &expectations,
        &metrics,
    );
    let strategies_api: Api<Strategy> = scoped(&client, namespace);
    let (strategies, strategy_changes) = strategy_cache(
        &metrics,
        strategies_api,
        applications.clone(),
        |apps, s: &Strategy| {
            application::naming_strategy(apps, &s.namespace().unwrap_or_default(), &s.name_any())
        },
    );
    let (cluster_strategies, cluster_strategy_changes) = strategy_cache(
        &metrics,
        Api::all(client.clone()),
        applications.clone(),
        |apps, s: &ClusterStrategy| application::naming_cluster_strategy(apps, &s.name_any()),
    );

    let (clusters, cluster_writer) = reflector::store();
    let cluster_config = match &options.cluster_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let cluster_changes = reflector::reflector(
        cluster_writer,
        watcher(Api::<Cluster>::all(client.clone()), cluster_config)
            .default_backoff()
            .inspect_err(metrics.watch_restarts::<Cluster>(MANAGEMENT_CLUSTER))
            .modify(|cluster: &mut Cluster| cluster.metadata.managed_fields = None),
    )
    // Every event, the end of a (re)list too: an empty fleet has no object to announce it.
    .filter_map(|event| async move { event.ok().map(|_| ()) });

    let global_namespace = options
        .global_namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_GLOBAL_NAMESPACE.to_owned());
    // Every namespace's: a namespaced controller still obeys the global namespace's blocks.
    let (blocks, block_changes) = {
        let global_namespace = global_namespace.clone();
        strategy_cache(
            &metrics,
            Api::<RolloutBlock>::all(client.clone()),
            applications.clone(),
            move |apps, block: &RolloutBlock| {
                let home = block.namespace().unwrap_or_default();
                apps.into_iter()
                    .filter(|app| home == global_namespace || app.namespace() == Some(home.clone()))
                    .collect()
            },
        )
    };

    let side_versions_api: Api<SideVersion> = scoped(&client, namespace);
    let (side_versions, side_version_changes) = strategy_cache(
        &metrics,
        side_versions_api,
        applications.clone(),
        |apps, sv: &SideVersion| {
            apps.into_iter()
                .filter(|app| app.namespace() == sv.namespace())
                .filter(|app| app.name_any() == sv.spec.application)
                .collect()
        },
    );

    // Read when a step is measured; a changed template counts from the next measurement.
    let metric_templates_api: Api<MetricTemplate> = scoped(&client, namespace);
    let (metric_templates, metric_template_changes) = strategy_cache(
        &metrics,
        metric_templates_api,
        applications.clone(),
        |_, _| Vec::new(),
    );
    let (cluster_metric_templates, cluster_metric_template_changes) = strategy_cache(
        &metrics,
        Api::<ClusterMetricTemplate>::all(client.clone()),
        applications.clone(),
        |_, _| Vec::new(),
    );

    // A Service an Application targets is the user's, unlabelled: every Service is watched.
    let services_api: Api<Service> = scoped(&client, namespace);
    let (target_services, target_service_changes) = strategy_cache(
        &metrics,
        services_api,
        applications.clone(),
        |apps, service: &Service| {
            application::targeting(
                apps,
                &service.namespace().unwrap_or_default(),
                &service.name_any(),
            )
        },
    );

    let (fleet, member_changes) = Fleet::new(
        namespace,
        applications.clone(),
        expectations.clone(),
        metrics.clone(),
    );
    let (call_ends, ended_calls) = mpsc::unbounded();
    let context = Arc::new(Context {
        client,
        applications: applications.clone(),
        clusters,
        releases,
        strategies,
        cluster_strategies,
        blocks,
        side_versions,
        global_namespace,
        fleet,
        expectations,
        target_services,
        metric_templates,
        cluster_metric_templates,
        prometheus: Prometheus::default(),
        prometheus_url: options.prometheus_url.clone(),
        webhooks: webhook::Caller::default(),
        measurements: Calls::new(call_ends.clone()),
        gates: Calls::new(call_ends.clone()),
        pre_rollouts: Calls::new(call_ends.clone()),
        probes: probes::Probes::new(call_ends.clone()),
        drain_readings: drain::DrainReadings::new(call_ends),
        metrics,
        failures_reported: Default::default(),
        refusals: Refusals::default(),
        counter_lag: pacing::CounterLag::default(),
        leadership: leadership.clone(),
        charts: chart::Charts::new(prism_chart::Helm::new(
            options.helm.clone().unwrap_or_else(|| "helm".into()),
        )),
    });
    info!(
        namespace = namespace.unwrap_or("*"),
        clusters = options.cluster_selector.as_deref().unwrap_or("*"),
        "starting the controller"
    );
    let membership = tokio::spawn(clusters::keep_in_step(context.clone(), cluster_changes));
    // Unfenced: renewing a lease is the one write a replica makes when its lease is old.
    let lease_client = Client::try_from(config).map_err(StartError::Client)?;
    let (gained, gained_shards) = mpsc::unbounded();
    let leading = tokio::spawn(leadership::keep(
        leadership.clone(),
        lease_client.clone(),
        applications.clone(),
        gained,
    ));
    let health = match options.metrics_address {
        Some(address) => {
            let listener = metrics::bind(address)
                .await
                .map_err(|source| StartError::Serve { address, source })?;
            info!(%address, "serving /metrics, /healthz and /readyz");
            Some(tokio::spawn(metrics::serve(listener, context.clone())))
        }
        None => None,
    };
    Controller::for_stream(application_stream, applications)
        .with_config(controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES))
        .reconcile_on(stream::select_all([
            triggers(release_changes, |health| {
                if let Err(error) = health {
                    warn!(%error, "the Release watch failed");
                }
                Vec::new()
            })
            .boxed(),
            strategy_changes.boxed(),
            cluster_strategy_changes.boxed(),
            block_changes.boxed(),
            side_version_changes.boxed(),
            member_changes.boxed(),
            ended_calls.boxed(),
            metric_template_changes.boxed(),
            cluster_metric_template_changes.boxed(),
            target_service_changes.boxed(),
            gained_shards.boxed(),
        ]))
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((app, _)) => debug!(application = %app, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
    membership.abort();
    leading.abort();
    leadership::release(&leadership, lease_client).await;
    if let Some(health) = health {
        health.abort();
    }
    info!("the controller stopped");
    Ok(())
}

async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Another replica acts for it; this one is told when it comes to lead its shard.
    if !ctx.leadership.leads(&ObjectRef::from_obj(app.as_ref())) {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    // Every log line of the reconcile carries its application, so that concurrent reconciles'
    // lines can be told apart.
    let span = tracing::info_span!(
        "reconcile",
        application = %app.name_any(),
        namespace = %app.namespace().unwrap_or_default()
    );
    let app_ref = ObjectRef::from_obj(app.as_ref());
    let object = app.object_ref(&());
    let result = reconcile_application(app, &ctx).instrument(span).await;
    let error = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.reconciled(started.elapsed(), error);
    report_failure(&ctx, app_ref, &object, result.as_ref().err()).await;
    result
}

/// A reconcile that failed is a Warning Event on its Application, with the error's category and
/// the fix: people read Events, not the controller's log. Once per distinct failure (the
/// reconcile is retried every 5 s), and again if it comes back after a success.
async fn report_failure(
    ctx: &Context,
    app: ObjectRef<Application>,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    error: Option<&Error>,
) {
    let Some(error) = error else {
        ctx.failures_reported_lock().remove(&app);
        return;
    };
    let note = format!("{error} ({}): {}", error.metric_label(), error.fix());
    if ctx
        .failures_reported_lock()
        .insert(app, note.clone())
        .as_ref()
        == Some(&note)
    {
        return;
    }
    application::publish(
        ctx,
        object,
        kube::runtime::events::EventType::Warning,
        "ReconcileFailed",
        note,
        "Reconcile",
    )
    .await;
}

async fn reconcile_application(app: Arc<Application>, ctx: &Arc<Context>) -> Result<Action, Error> {
    if !ctx.listed() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let app_ref = ObjectRef::from_obj(app.as_ref());
    if ctx.expectations.waiting(&app_ref) {
        // The watch events of this application's last writes are on their way, and each
        // triggers a reconcile; this one would decide on stale caches.
        return Ok(Action::requeue(PATIENCE));
    }
    // The runtime read `app` from the cache when it dispatched this reconcile, and may have
    // handled watch events since, the one that ticked off the write awaited above among them: so
    // `app` can be older than the cache. Deciding on it wrote the Application's status again,
    // unchanged (4 in 2,000 writes with 1,000 Applications rolled out at once).
    let Some(app) = ctx.applications.get(&app_ref) else {
        return Ok(Action::await_change());
    };
    let outcome = application::reconcile(&app, ctx).await?;
    let (sides, side_after) =
        side_versions::reconcile(&app, &outcome.releases, outcome.sides.clone(), ctx).await?;
    // Side versions first: the engine's newest release is the mainline's.
    let releases: Vec<Release> = sides.into_iter().chain(outcome.releases).collect();
    if ctx.connecting(&releases) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let after = rollout::reconcile(&app, &releases, outcome.blocked.as_deref(), ctx).await?;
    let after = [after, outcome.recheck_after, side_after, Some(RESYNC)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(RESYNC);
    Ok(Action::requeue(after))
}

fn error_policy(app: Arc<Application>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(
        application = %app.name_any(),
        error = %error,
        kind = error.metric_label(),
        "reconcile failed"
    );
    Action::requeue(RETRY)
}

/// A cache of strategies (or of anything Applications depend on by name), and the Applications
/// to reconcile when one changes: those that `naming` finds among the cached Applications.
fn strategy_cache<S>(
    metrics: &metrics::Metrics,
    api: Api<S>,
    applications: Store<Application>,
    naming: impl for<'a> Fn(Vec<&'a Application>, &S) -> Vec<&'a Application> + Send + 'static,
) -> (
    Store<S>,
    impl Stream<Item = ObjectRef<Application>> + Send + 'static,
)
where
    S: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changes = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .inspect_err(metrics.watch_restarts::<S>(MANAGEMENT_CLUSTER)),
    )
    .touched_objects()
    .filter_map(|strategy| async move { strategy.ok() })
    .flat_map(move |strategy| {
        let apps = applications.state();
        let named: Vec<ObjectRef<Application>> =
            naming(apps.iter().map(|a| a.as_ref()).collect(), &strategy)
                .into_iter()
                .map(ObjectRef::from_obj)
                .collect();
        stream::iter(named)
    });
    (store, changes)
}
