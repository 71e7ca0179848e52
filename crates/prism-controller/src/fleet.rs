//! The application clusters: a client and caches of what Prism installed in each, and the watch
//! events that trigger a reconcile of the Application they belong to.
//!
//! Members come and go with the Cluster objects ([`crate::clusters`] keeps them in step). The
//! management cluster itself is a member named [`MANAGEMENT_CLUSTER`] while the fleet has no
//! Cluster objects (a single-cluster installation) or a Release is still scheduled there.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prism_api::Application;
use prism_api::application::TrafficPolicy;
use prism_api::labels::APP_LABEL;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::cached::{
    DaemonSet, Deployment, EndpointSlice, GrpcRoute, HttpRoute, Node, Pod, StatefulSet,
    VirtualService,
};
use crate::expectations::{Expectations, application_of};
use crate::metrics::Metrics;
use crate::write::Kind;

/// The name a Release's schedule gives the management cluster when it is the only cluster.
/// No Cluster object may take this name.
pub const MANAGEMENT_CLUSTER: &str = "local";

/// The kinds each member caches: those the providers declare watched ([`crate::touches`]).
pub const CACHED: &[Kind] = &[
    Kind::Deployment,
    Kind::StatefulSet,
    Kind::DaemonSet,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::VirtualService,
    Kind::Node,
];

/// How long a member that has not listed yet counts as connecting (a reconcile waits for it)
/// rather than unreachable (a reconcile goes on without it).
const CONNECTING: Duration = Duration::from_secs(10);

/// One application cluster: a client, and caches of the objects Prism installed there (those
/// labelled `prism.dev/app`), stripped of what Prism never reads. Dropping the last reference
/// stops its watches.
pub struct Member {
    pub name: String,
    pub client: Client,
    /// The cluster is the management cluster, so its objects can be owned by Releases (owner
    /// references do not cross API servers).
    pub is_management: bool,
    /// What the member was made from; a change of it makes a new member.
    pub source: String,
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub daemon_sets: Store<DaemonSet>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    /// The EndpointSlices of those Services (they carry their Service's labels).
    pub endpoint_slices: Store<EndpointSlice>,
    /// Every HTTPRoute (those of users carry no label of Prism's). Optional: a cluster without
    /// the Gateway API's CRDs is still reachable, and says so only to the Applications that
    /// route through an HTTPRoute ([`Member::optional_listed`]).
    pub http_routes: Store<HttpRoute>,
    /// Every GRPCRoute, optional likewise.
    pub grpc_routes: Store<GrpcRoute>,
    /// Every VirtualService (users' own), optional likewise: a cluster without Istio's CRDs
    /// says so only to the Applications that route through a VirtualService.
    pub virtual_services: Store<VirtualService>,
    /// Every node, its name and labels: a DaemonSet's versions move zone by zone. Optional
    /// likewise: without the right to list nodes (a cluster joined before it was granted),
    /// nodes are taken by name alone.
    pub nodes: Store<Node>,
    health: Arc<Health>,
    joined: Instant,
    watches: tokio::task::JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.watches.abort();
    }
}

/// What the member's watches last said.
#[derive(Default)]
struct Health {
    reachable: AtomicBool,
    /// Unix seconds of the last watch event.
    last_seen: AtomicI64,
    /// The last watch error, while unreachable.
    error: Mutex<Option<String>>,
    /// The last error of each optional watch (of a kind whose CRDs a cluster may lack), while
    /// it fails.
    optional_errors: Mutex<BTreeMap<Kind, String>>,
}

/// Whether a member's caches can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Just joined: its caches have not listed yet.
    Connecting,
    /// Listed, and its watches work.
    Connected,
    /// Its watches fail (the message says how) or it never listed.
    Unreachable(String),
}

impl Member {
    /// Whether every cache of the cluster has listed once.
    pub fn has_listed(&self) -> bool {
        [
            self.deployments.wait_until_ready().now_or_never(),
            self.stateful_sets.wait_until_ready().now_or_never(),
            self.daemon_sets.wait_until_ready().now_or_never(),
            self.pods.wait_until_ready().now_or_never(),
            self.services.wait_until_ready().now_or_never(),
            self.endpoint_slices.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|ready| matches!(ready, Some(Ok(()))))
    }

    /// Whether the optional cache of `kind` (HTTPRoutes, VirtualServices) has listed; else why
    /// not (the kind's CRDs missing, say), in the API server's words.
    pub fn optional_listed(&self, kind: Kind) -> Result<(), String> {
        let error = self
            .health
            .optional_errors
            .lock()
            .expect("health lock")
            .get(&kind)
            .cloned();
        let ready = match kind {
            Kind::HttpRoute => self.http_routes.wait_until_ready().now_or_never(),
            Kind::GrpcRoute => self.grpc_routes.wait_until_ready().now_or_never(),
            Kind::VirtualService => self.virtual_services.wait_until_ready().now_or_never(),
            Kind::Node => self.nodes.wait_until_ready().now_or_never(),
            // Not optional: the member's own listing ([`Member::has_listed`]) covers it.
            _ => Some(Ok(())),
        };
        match (ready, error) {
            (_, Some(error)) => Err(error),
            (Some(Ok(())), None) => Ok(()),
            (_, None) => Err(format!("its {}s are not listed yet", kind.resource().kind)),
        }
    }

    pub fn connection(&self) -> Connection {
        let error = self.health.error.lock().expect("health lock").clone();
        let reachable = self.health.reachable.load(Ordering::Relaxed);
        match (self.has_listed(), reachable, error) {
            (true, true, _) => Connection::Connected,
            (_, _, Some(error)) => Connection::Unreachable(error),
            (false, _, None) if self.joined.elapsed() < CONNECTING => Connection::Connecting,
            (false, _, None) => Connection::Unreachable(format!(
                "no answer from the API server in {}s",
                CONNECTING.as_secs()
            )),
            (true, false, None) => Connection::Connecting,
        }
    }

    /// Whether the cluster's caches are current: they have listed, and the watches work.
    pub fn is_observed(&self) -> bool {
        self.connection() == Connection::Connected
    }

    /// When the member last heard from its API server.
    pub fn last_seen(&self) -> Option<jiff::Timestamp> {
        match self.health.last_seen.load(Ordering::Relaxed) {
            0 => None,
            seconds => jiff::Timestamp::from_second(seconds).ok(),
        }
    }
}

/// The members, by name, and the stream of Applications their watch events concern.
pub struct Fleet {
    members: RwLock<BTreeMap<String, Arc<Member>>>,
    /// Every namespaced watch is scoped to it, when set.
    namespace: Option<String>,
    /// The Applications, to find the one naming a user's HTTPRoute.
    applications: Store<Application>,
    expectations: Arc<Expectations>,
    /// Where the members' watches count their restarts.
    metrics: Arc<Metrics>,
    triggers: mpsc::UnboundedSender<ObjectRef<Application>>,
    /// Woken when a member's reachability changes, so its Cluster's status follows.
    pub changed: Arc<Notify>,
    /// Whether the members have followed the Cluster objects once.
    synced: AtomicBool,
}

impl Fleet {
    /// An empty fleet, and the stream of Applications to reconcile on its members' changes.
    pub fn new(
        namespace: Option<&str>,
        applications: Store<Application>,
        expectations: Arc<Expectations>,
        metrics: Arc<Metrics>,
    ) -> (
        Fleet,
        impl Stream<Item = ObjectRef<Application>> + Send + 'static,
    ) {
        let (triggers, changes) = mpsc::unbounded();
        let fleet = Fleet {
            members: RwLock::default(),
            namespace: namespace.map(str::to_owned),
            applications,
            expectations,
            metrics,
            triggers,
            changed: Arc::default(),
            synced: AtomicBool::new(false),
        };
        (fleet, changes)
    }

    /// Whether the members have followed the Cluster objects once: before that, a Release's
    /// cluster without a member is not yet joined rather than gone.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn get(&self, name: &str) -> Option<Arc<Member>> {
        self.members.read().expect("fleet lock").get(name).cloned()
    }

    /// Every member, by name.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.members
            .read()
            .expect("fleet lock")
            .values()
            .cloned()
            .collect()
    }

    /// Adds a member (replacing one of the same name) and starts its watches; its caches fill
    /// as they list. Must run within a tokio runtime.
    pub fn join(&self, name: &str, client: Client, is_management: bool, source: String) {
        let namespace = self.namespace.as_deref();
        // Only what Prism installed: the objects labelled with an application.
        let labelled = || watcher::Config::default().labels(APP_LABEL);
        let expectations = &self.expectations;
        let metrics = &self.metrics;
        let (deployments, deployment_events) = cache_of(
            &client,
            namespace,
            labelled(),
            |_| {},
            application_of,
            name,
            expectations,
            metrics,
        );
        let (stateful_sets, stateful_set_events) = cache_of(
            &client,
            namespace,
            labelled(),
            |_| {},
            application_of,
            name,
            expectations,
            metrics,
        );
        let (daemon_sets, daemon_set_events) = cache_of(
            &client,
            namespace,
            labelled(),
            |_| {},
            application_of,
            name,
            expectations,
            metrics,
        );
        let (pods, pod_events) = cache_of(
            &client,
            namespace,
            labelled(),
            strip_pod,
            application_of,
            name,
            expectations,
            metrics,
        );
        let (services, service_events) = cache_of(
            &client,
            namespace,
            labelled(),
            strip_service,
            application_of,
            name,
            expectations,
            metrics,
        );
        let (endpoint_slices, endpoint_slice_events) = cache_of(
            &client,
            namespace,
            labelled(),
            |_| {},
            application_of,
            name,
            expectations,
            metrics,
        );
        let applications = self.applications.clone();
        let (http_routes, http_route_events) = cache_of(
            &client,
            namespace,
            watcher::Config::default(),
            |_| {},
            move |route: &HttpRoute| {
                named_by(&applications, route, |traffic, name| {
                    traffic.http_routes.iter().any(|named| named == name)
                })
            },
            name,
            expectations,
            metrics,
        );
        let applications = self.applications.clone();
        let (grpc_routes, grpc_route_events) = cache_of(
            &client,
            namespace,
            watcher::Config::default(),
            |_| {},
            move |route: &GrpcRoute| {
                named_by(&applications, route, |traffic, name| {
                    traffic.grpc_routes.iter().any(|named| named == name)
                })
            },
            name,
            expectations,
            metrics,
        );
        let applications = self.applications.clone();
        let (virtual_services, virtual_service_events) = cache_of(
            &client,
            namespace,
            watcher::Config::default(),
            |_| {},
            move |service: &VirtualService| {
                named_by(&applications, service, |traffic, name| {
                    traffic.virtual_service.as_deref() == Some(name)
                })
            },
            name,
            expectations,
            metrics,
        );
        let (nodes, node_events) = nodes_cache(&client, name, metrics);
        let health = Arc::new(Health::default());
        let changes = stream::select_all([
            deployment_events,
            stateful_set_events,
            daemon_set_events,
            pod_events,
            service_events,
            endpoint_slice_events,
            optional(Kind::HttpRoute, http_route_events, health.clone()),
            optional(Kind::GrpcRoute, grpc_route_events, health.clone()),
            optional(Kind::VirtualService, virtual_service_events, health.clone()),
            optional(Kind::Node, node_events, health.clone()),
        ]);
        let cluster = name.to_owned();
        let changed = self.changed.clone();
        let watch_health = health.clone();
        let apps_here = deployments.clone();
        let events = triggers(changes.boxed(), move |outcome| {
            let now = jiff::Timestamp::now().as_second();
            match outcome {
                Ok(()) => {
                    watch_health.last_seen.store(now, Ordering::Relaxed);
                    *watch_health.error.lock().expect("health lock") = None;
                    if !watch_health.reachable.swap(true, Ordering::Relaxed) {
                        info!(cluster, "the cluster's watches work");
                        changed.notify_one();
                    }
                    Vec::new()
                }
                Err(error) => {
                    *watch_health.error.lock().expect("health lock") = Some(error.to_string());
                    if watch_health.reachable.swap(false, Ordering::Relaxed) {
                        warn!(cluster, %error, "lost the cluster's watches");
                        changed.notify_one();
                        // Their status must say the cluster is unreachable.
                        return application_refs(&apps_here);
                    }
                    Vec::new()
                }
            }
        });
        let sender = self.triggers.clone();
        let watches = tokio::spawn(events.for_each(move |app| {
            // The receiver goes only when the controller stops.
            let _ = sender.unbounded_send(app);
            futures::future::ready(())
        }));
        let member = Arc::new(Member {
            name: name.to_owned(),
            client,
            is_management,
            source,
            deployments,
            stateful_sets,
            daemon_sets,
            pods,
            services,
            endpoint_slices,
            http_routes,
            grpc_routes,
            virtual_services,
            nodes,
            health,
            joined: Instant::now(),
            watches,
        });
        info!(cluster = name, "joined the fleet");
        self.members
            .write()
            .expect("fleet lock")
            .insert(name.to_owned(), member);
    }

    /// Removes a member: its watches stop once no reconcile holds it any more.
    pub fn leave(&self, name: &str) {
        if self
            .members
            .write()
            .expect("fleet lock")
            .remove(name)
            .is_some()
        {
            info!(cluster = name, "left the fleet");
        }
    }

    /// Asks for a reconcile of `app`.
    pub fn request(&self, app: ObjectRef<Application>) {
        // The receiver goes only when the controller stops.
        let _ = self.triggers.unbounded_send(app);
    }
}

/// The Application a user's routing object (an HTTPRoute, a VirtualService) concerns: the one
/// whose version it routes to (Prism's own, labelled), or the one whose traffic policy `names`
/// it.
fn named_by<K: Resource<DynamicType = ()>>(
    applications: &Store<Application>,
    object: &K,
    names: impl Fn(&TrafficPolicy, &str) -> bool,
) -> Option<ObjectRef<Application>> {
    application_of(object).or_else(|| {
        let namespace = object.meta().namespace.as_deref()?;
        let name = object.meta().name.as_deref()?;
        applications
            .state()
            .iter()
            .find(|app| {
                app.metadata.namespace.as_deref() == Some(namespace)
                    && names(&app.spec.traffic, name)
            })
            .map(|app| ObjectRef::from_obj(app.as_ref()))
    })
}

/// The changes of the optional cache of `kind`, whose failures are its own (kept for
/// [`Member::optional_listed`]) rather than the cluster's.
fn optional(kind: Kind, changes: Changes, health: Arc<Health>) -> Changes {
    Box::pin(changes.map(move |change| {
        let mut errors = health.optional_errors.lock().expect("health lock");
        match change {
            Ok(change) => {
                errors.remove(&kind);
                Ok(change)
            }
            Err(failure) => {
                errors.insert(kind, failure.to_string());
                Ok(Change::Pending)
            }
        }
    }))
}

/// The Applications that have objects in a cache.
fn application_refs<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
) -> Vec<ObjectRef<Application>> {
    let mut apps: Vec<_> = store
        .state()
        .iter()
        .filter_map(|object| application_of(object.as_ref()))
        .collect();
    apps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    apps.dedup();
    apps
}

/// The Applications that `changes` concern. `health` hears of each change (Ok) and each watch
/// failure, which the watch's backoff retries, and names more Applications to reconcile.
pub(crate) fn triggers(
    changes: Changes,
    health: impl Fn(Result<(), &watcher::Error>) -> Vec<ObjectRef<Application>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<Application>> + Send + 'static {
    changes.flat_map(move |change| {
        stream::iter(match change {
            Ok(Change::Objects(mut apps)) => {
                apps.extend(health(Ok(())));
                apps
            }
            Ok(Change::Pending) => Vec::new(),
            Err(error) => health(Err(&error)),
        })
    })
}

/// What one watch event means for the controller.
pub(crate) enum Change {
    /// The cache changed; these Applications are concerned.
    Objects(Vec<ObjectRef<Application>>),
    /// A relist is under way: the cache changes when it is done.
    Pending,
}

pub(crate) type Changes =
    std::pin::Pin<Box<dyn Stream<Item = Result<Change, watcher::Error>> + Send>>;

/// The `K`s of `namespace` alone, or of every namespace: a controller scoped to one namespace
/// watches nothing beyond it.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The waits between a watch's failed attempts: 0.8 s doubling to 10 s, from 0.8 s again once
/// none failed for 2 minutes. Written here because kube-runtime's default backoff is reset by
/// every item of the stream, and its watcher yields `Init` before each (re)list: a list that
/// fails every time (a kind whose CRDs the cluster lacks answers 404) was retried every 0.8 s
/// forever (22 lists of VirtualServices in 23 s of `scripts/bench-retire.py`), for each optional
/// kind and each cluster. Its exponential backoff cannot be built with other bounds.
#[derive(Debug)]
struct WatchBackoff {
    next: Duration,
    last: Option<Instant>,
}

const WATCH_BACKOFF_FIRST: Duration = Duration::from_millis(800);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(10);
const WATCH_BACKOFF_RESET: Duration = Duration::from_secs(120);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_BACKOFF_FIRST,
            last: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self
            .last
            .is_some_and(|last| last.elapsed() > WATCH_BACKOFF_RESET)
        {
            self.next = WATCH_BACKOFF_FIRST;
        }
        self.last = Some(Instant::now());
        let wait = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    /// Not on an item: see the type's doc.
    fn reset(&mut self) {}
}

/// A cache of the `K` objects `config` selects in `namespace` (every namespace when None), and
/// the stream that fills it. `strip` drops what Prism never reads before it is cached; `owner`
/// names the Application an object concerns; `cluster` names where it is, for `expectations` and
/// for the count of the watch's restarts in `metrics`.
// Each argument is one thing the cache needs; a struct of them would only rename the list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cache_of<K>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    strip: fn(&mut K),
    owner: impl Fn(&K) -> Option<ObjectRef<Application>> + Send + 'static,
    cluster: &str,
    expectations: &Arc<Expectations>,
    metrics: &Metrics,
) -> (Store<K>, Changes)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = scoped(client, namespace);
    let (store, writer) = reflector::store();
    let reader = store.clone();
    let cluster = cluster.to_owned();
    let expectations = expectations.clone();
    let changes = reflector::reflector(
        writer,
        watcher(api, config)
            .backoff(WatchBackoff::default())
            .inspect_err(metrics.watch_restarts::<K>(&cluster))
            .modify(move |object| {
                object.meta_mut().managed_fields = None;
                strip(object);
            }),
    )
    .map_ok(move |event| match event {
        watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
            let app = owner(&object);
            if let Some(app) = &app {
                expectations.observe(app, &cluster, &object, &reader);
            }
            Change::Objects(app.into_iter().collect())
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => Change::Pending,
        // After a (re)list, whatever changed while the watch was down concerns every
        // Application with objects here.
        watcher::Event::InitDone => {
            let mut apps: Vec<_> = reader
                .state()
                .iter()
                .filter_map(|object| owner(object.as_ref()))
                .collect();
            apps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            apps.dedup();
            Change::Objects(apps)
        }
    });
    (store, Box::pin(changes))
}

/// A cache of the cluster's nodes, their names and labels alone. A node's change concerns no
/// Application by itself: its pods' changes do.
fn nodes_cache(client: &Client, cluster: &str, metrics: &Metrics) -> (Store<Node>, Changes) {
    let (store, writer) = reflector::store();
    let changes = reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .backoff(WatchBackoff::default())
            .inspect_err(metrics.watch_restarts::<Node>(cluster))
            .modify(|node| {
                node.metadata.managed_fields = None;
                node.metadata.annotations = None;
            }),
    )
    .map_ok(|event| match event {
        watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone => {
            Change::Objects(Vec::new())
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => Change::Pending,
    });
    (store, Box::pin(changes))
}

/// Prism reads none of a pod's annotations.
fn strip_pod(pod: &mut Pod) {
    pod.metadata.annotations = None;
}

/// Prism reads a Service's labels, annotations, selector and ports (those of a copy of an
/// ExternalName target become its EndpointSlice's).
fn strip_service(service: &mut Service) {
    service.status = None;
}

/// The objects of `app` (by the `prism.dev/app` label) in `namespace` of a cache.
pub fn of_app<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
    app: &str,
) -> Vec<Arc<K>> {
    store.state_filter(|object| {
        object.meta().namespace.as_deref() == Some(namespace)
            && object.labels().get(APP_LABEL).map(String::as_str) == Some(app)
    })
}

#[cfg(test)]
mod tests {
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn a_watch_that_keeps_failing_waits_longer_each_time_up_to_the_max() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u128> = (0..6)
            .map(|_| backoff.next().unwrap().as_millis())
            .collect();
        assert_eq!(waits, [800, 1600, 3200, 6400, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(
            backoff.next(),
            Some(WATCH_BACKOFF_MAX),
            "an item resets nothing"
        );
    }
}
