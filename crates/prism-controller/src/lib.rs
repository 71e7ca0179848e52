//! Prism's controller. One reconcile per Application, in two stages, each a pipeline of
//! dereference → validate → build (pure, no client) → apply → status:
//! - [`application`]: each change of the Application's template or strategy becomes an
//!   immutable Release; old Releases are pruned; the Application's status.
//! - [`rollout`]: the Application's Releases rolled out across their clusters by the engine's
//!   decision, through the [`workload`] and [`traffic`] providers; each Release's status.
//!
//! Everything is read from caches filled by watches ([`fleet`] for the application clusters),
//! and a reconcile waits until the caches show its own writes ([`expectations`]).

pub mod application;
pub mod error;
pub mod expectations;
pub mod fleet;
pub mod rollout;
pub mod status;
pub mod traffic;
pub mod workload;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prism_api::{Application, ClusterStrategy, Release, Strategy};
use tracing::{debug, info, warn};

pub use application::FIELD_MANAGER;
pub use error::Error;

use crate::expectations::{Expectations, PATIENCE, application_of};
use crate::fleet::{Fleet, MANAGEMENT_CLUSTER, cache_of, triggers};

/// Every event a reconcile depends on is watched, so this is only a safety net.
const RESYNC: Duration = Duration::from_secs(300);
const RETRY: Duration = Duration::from_secs(5);

/// What every reconcile shares.
pub struct Context {
    /// The management cluster's.
    pub client: Client,
    pub releases: Store<Release>,
    pub strategies: Store<Strategy>,
    pub cluster_strategies: Store<ClusterStrategy>,
    pub fleet: Fleet,
    pub expectations: Arc<Expectations>,
}

/// Runs the controller until a signal (SIGINT, SIGTERM) stops it. With a `namespace`, every
/// namespaced watch is scoped to it (tests run one controller per test namespace);
/// ClusterStrategies are watched cluster-wide either way.
pub async fn run(client: Client, namespace: Option<String>) -> Result<(), Error> {
    let namespace = namespace.as_deref();
    let applications_api: Api<Application> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Fail at once, with a message, when the CRDs are missing or access is denied, rather than
    // have the watchers retry forever.
    applications_api
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::kube(
            "listing Applications (are the CRDs installed?)",
        ))?;

    let expectations = Arc::new(Expectations::default());
    let (applications, application_writer) = reflector::store();
    let application_stream = {
        let reader = applications.clone();
        let expectations = expectations.clone();
        reflector::reflector(
            application_writer,
            watcher(applications_api, watcher::Config::default())
                .default_backoff()
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
    );
    let strategies_api: Api<Strategy> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (strategies, strategy_changes) = strategy_cache(
        strategies_api,
        applications.clone(),
        |apps, s: &Strategy| {
            application::naming_strategy(apps, &s.namespace().unwrap_or_default(), &s.name_any())
        },
    );
    let (cluster_strategies, cluster_strategy_changes) = strategy_cache(
        Api::all(client.clone()),
        applications.clone(),
        |apps, s: &ClusterStrategy| application::naming_cluster_strategy(apps, &s.name_any()),
    );

    let mut fleet = Fleet::default();
    let member_changes = fleet.join(
        MANAGEMENT_CLUSTER,
        client.clone(),
        true,
        namespace,
        expectations.clone(),
    );
    let context = Arc::new(Context {
        client,
        releases,
        strategies,
        cluster_strategies,
        fleet,
        expectations,
    });
    info!(
        namespace = namespace.unwrap_or("*"),
        "starting the controller"
    );
    Controller::for_stream(application_stream, applications)
        .reconcile_on(stream::select_all([
            triggers(release_changes, |health| {
                if let Err(error) = health {
                    warn!(%error, "the Release watch failed");
                }
            })
            .boxed(),
            strategy_changes.boxed(),
            cluster_strategy_changes.boxed(),
            member_changes.boxed(),
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
    info!("the controller stopped");
    Ok(())
}

impl Context {
    /// Whether every cache has listed once: before that, an empty cache would pass for no
    /// Releases (and make revision 1 again) or for a cluster that runs nothing.
    fn listed(&self) -> bool {
        self.fleet.has_listed()
            && [
                self.releases.wait_until_ready().now_or_never(),
                self.strategies.wait_until_ready().now_or_never(),
                self.cluster_strategies.wait_until_ready().now_or_never(),
            ]
            .iter()
            .all(|ready| matches!(ready, Some(Ok(()))))
    }
}

async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.listed() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    if ctx.expectations.waiting(&ObjectRef::from_obj(app.as_ref())) {
        // The watch events of this application's last writes are on their way, and each
        // triggers a reconcile; this one would decide on stale caches.
        return Ok(Action::requeue(PATIENCE));
    }
    let releases = application::reconcile(&app, &ctx).await?;
    let after = rollout::reconcile(&app, &releases, &ctx).await?;
    Ok(Action::requeue(
        after.map_or(RESYNC, |after| after.min(RESYNC)),
    ))
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

/// A cache of strategies, and the Applications to reconcile when one changes: those that
/// `naming` finds among the cached Applications.
fn strategy_cache<S>(
    api: Api<S>,
    applications: Store<Application>,
    naming: for<'a> fn(Vec<&'a Application>, &S) -> Vec<&'a Application>,
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
        watcher(api, watcher::Config::default()).default_backoff(),
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
