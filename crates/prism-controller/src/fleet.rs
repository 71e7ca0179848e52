//! The application clusters: a client and caches of what Prism installed in each, and the watch
//! events that trigger a reconcile of the Application they belong to.
//!
//! Until the fleet (issue 5) turns Cluster objects into members, the only member is the
//! management cluster itself, under the name [`MANAGEMENT_CLUSTER`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prism_api::Application;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::application::APP_LABEL;
use crate::expectations::{Expectations, application_of};

/// The name a Release's schedule gives the management cluster while it is the only member.
pub const MANAGEMENT_CLUSTER: &str = "local";

/// One application cluster: a client, and caches of the objects Prism installed there (those
/// labelled `prism.dev/app`), stripped of what Prism never reads.
pub struct Member {
    pub name: String,
    pub client: Client,
    /// The cluster is the management cluster, so its objects can be owned by Releases (owner
    /// references do not cross API servers).
    pub is_management: bool,
    pub deployments: Store<Deployment>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    /// Whether its watches last succeeded.
    reachable: AtomicBool,
}

impl Member {
    /// Whether every cache of the cluster has listed once.
    pub fn has_listed(&self) -> bool {
        [
            self.deployments.wait_until_ready().now_or_never(),
            self.pods.wait_until_ready().now_or_never(),
            self.services.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|ready| matches!(ready, Some(Ok(()))))
    }

    /// Whether the cluster's caches are current: they have listed, and the watches work.
    pub fn is_observed(&self) -> bool {
        self.has_listed() && self.reachable.load(Ordering::Relaxed)
    }
}

/// The members, by name.
#[derive(Default)]
pub struct Fleet {
    members: BTreeMap<String, Arc<Member>>,
}

impl Fleet {
    pub fn get(&self, name: &str) -> Option<&Arc<Member>> {
        self.members.get(name)
    }

    /// Whether every member's caches have listed once (since then, a member not observed is
    /// one whose watches fail).
    pub fn has_listed(&self) -> bool {
        self.members.values().all(|member| member.has_listed())
    }

    /// Adds a member and returns the stream of Applications its watch events concern. The
    /// caches fill as the stream is polled.
    pub fn join(
        &mut self,
        name: &str,
        client: Client,
        is_management: bool,
        namespace: Option<&str>,
        expectations: Arc<Expectations>,
    ) -> impl Stream<Item = ObjectRef<Application>> + Send + 'static {
        // Only what Prism installed: the objects labelled with an application.
        let labelled = || watcher::Config::default().labels(APP_LABEL);
        let (deployments, deployment_events) = cache_of(
            &client,
            namespace,
            labelled(),
            strip_deployment,
            application_of,
            name,
            &expectations,
        );
        let (pods, pod_events) = cache_of(
            &client,
            namespace,
            labelled(),
            strip_pod,
            application_of,
            name,
            &expectations,
        );
        let (services, service_events) = cache_of(
            &client,
            namespace,
            labelled(),
            strip_service,
            application_of,
            name,
            &expectations,
        );
        let member = Arc::new(Member {
            name: name.to_owned(),
            client,
            is_management,
            deployments,
            pods,
            services,
            reachable: AtomicBool::new(false),
        });
        self.members.insert(name.to_owned(), member.clone());
        let changes = stream::select_all([deployment_events, pod_events, service_events]);
        triggers(changes.boxed(), move |health| match health {
            Ok(()) => member.reachable.store(true, Ordering::Relaxed),
            Err(error) => {
                if member.reachable.swap(false, Ordering::Relaxed) {
                    warn!(cluster = %member.name, %error, "lost the cluster's watches");
                }
            }
        })
    }
}

/// The Applications that `changes` concern. `health` hears of each change (Ok) and each watch
/// failure, which the watch's backoff retries.
pub(crate) fn triggers(
    changes: Changes,
    health: impl Fn(Result<(), &watcher::Error>) + Send + 'static,
) -> impl Stream<Item = ObjectRef<Application>> + Send + 'static {
    changes.flat_map(move |change| {
        stream::iter(match change {
            Ok(Change::Objects(apps)) => {
                health(Ok(()));
                apps
            }
            Ok(Change::Pending) => Vec::new(),
            Err(error) => {
                health(Err(&error));
                Vec::new()
            }
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

/// A cache of the `K` objects `config` selects in `namespace` (every namespace when None), and
/// the stream that fills it. `strip` drops what Prism never reads before it is cached; `owner`
/// names the Application an object concerns.
pub(crate) fn cache_of<K>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    strip: fn(&mut K),
    owner: fn(&K) -> Option<ObjectRef<Application>>,
    cluster: &str,
    expectations: &Arc<Expectations>,
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
    let api: Api<K> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let reader = store.clone();
    let cluster = cluster.to_owned();
    let expectations = expectations.clone();
    let changes = reflector::reflector(
        writer,
        watcher(api, config)
            .default_backoff()
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

/// Prism reads a Deployment's labels, annotations, replicas and status, never its pod template.
fn strip_deployment(deployment: &mut Deployment) {
    if let Some(spec) = &mut deployment.spec {
        *spec = DeploymentSpec {
            replicas: spec.replicas,
            ..DeploymentSpec::default()
        };
    }
}

/// Prism reads a pod's labels and whether it is ready.
fn strip_pod(pod: &mut Pod) {
    pod.spec = None;
    pod.metadata.annotations = None;
    if let Some(status) = &mut pod.status {
        *status = PodStatus {
            conditions: status.conditions.take(),
            ..PodStatus::default()
        };
    }
}

/// Prism reads a Service's labels, annotations and selector.
fn strip_service(service: &mut Service) {
    if let Some(spec) = &mut service.spec {
        spec.ports = None;
    }
    service.status = None;
}

/// Whether a pod is ready: its Ready condition is True and it is not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
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
