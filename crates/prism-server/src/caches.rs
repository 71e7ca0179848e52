//! What the server answers from: watch caches of the management cluster (Applications,
//! Releases, Clusters, Prism's Events) and of each application cluster's pods labelled
//! `prism.dev/app`, kept in step with the Cluster objects as the controller keeps its fleet.
//! No HTTP request makes a request to a cluster; every change of any cache ticks [`Caches::changes`],
//! which the live updates wait on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::config::KubeConfigOptions;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, Resource, ResourceExt};
use prism_api::labels::{APP_LABEL, FIELD_MANAGER};
use prism_api::{Application, Cluster, Release};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// The management cluster's name when no Cluster object exists, as the controller calls it.
pub const MANAGEMENT_CLUSTER: &str = "local";

/// How often the application clusters' caches are checked against the Cluster objects without
/// a change to wake them: a Secret created after its Cluster is found.
const RECHECK: Duration = Duration::from_secs(10);

pub struct Caches {
    pub applications: Store<Application>,
    pub releases: Store<Release>,
    pub clusters: Store<Cluster>,
    /// The Events Prism's controller reported.
    pub events: Store<Event>,
    /// Each application cluster's pods of Prism's applications and its HTTPRoutes, by cluster.
    members: Mutex<BTreeMap<String, Member>>,
    /// When a Cluster's credentials last failed to make a client: tried again after
    /// [`RECHECK`], not on every change of the caches.
    failed: Mutex<BTreeMap<String, std::time::Instant>>,
    /// Ticks on every change of any cache.
    pub changes: watch::Sender<u64>,
}

/// The caches of one application cluster.
struct Member {
    /// The credentials it was made from: new ones make it anew.
    source: String,
    pods: Store<Pod>,
    /// HTTPRoutes, only their hostnames kept: the URLs of an application's versions. A cluster
    /// without the Gateway API has none.
    routes: Store<DynamicObject>,
    _watches: [AbortOnDrop; 2],
}

/// What one application cluster's caches say.
pub struct ClusterView {
    pub cluster: String,
    pub pods: Vec<Arc<Pod>>,
    pub routes: Vec<Arc<DynamicObject>>,
}

impl Caches {
    /// Starts every watch of the management cluster (of Prism's namespaced kinds, in `namespace`
    /// alone when given); the application clusters' follow the
    /// Cluster objects (those `cluster_selector` selects) until the returned task is dropped
    /// with the server.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
        cluster_selector: Option<String>,
    ) -> (Arc<Caches>, JoinHandle<()>) {
        let selected = match &cluster_selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        };
        let (changes, _) = watch::channel(0);
        let (applications, applications_watch) = cache::<Application>(
            scoped(&client, namespace),
            watcher::Config::default(),
            &changes,
        );
        let (releases, releases_watch) = cache::<Release>(
            scoped(&client, namespace),
            watcher::Config::default(),
            &changes,
        );
        let (clusters, clusters_watch) =
            cache::<Cluster>(Api::all(client.clone()), selected, &changes);
        let (events, events_watch) = cache::<Event>(
            scoped(&client, namespace),
            watcher::Config::default().fields(&format!("reportingComponent={FIELD_MANAGER}")),
            &changes,
        );
        let caches = Arc::new(Caches {
            applications,
            releases,
            clusters,
            events,
            members: Mutex::default(),
            failed: Mutex::default(),
            changes,
        });
        let keeper = tokio::spawn({
            let caches = caches.clone();
            async move {
                let _watches = [applications_watch, releases_watch, events_watch].map(AbortOnDrop);
                let mut cluster_changes = caches.changes.subscribe();
                let clusters_watch = AbortOnDrop(clusters_watch);
                loop {
                    if caches.clusters.wait_until_ready().await.is_ok() {
                        caches.follow_clusters(&client).await;
                    }
                    tokio::select! {
                        _ = cluster_changes.changed() => {}
                        () = tokio::time::sleep(RECHECK) => {}
                    }
                    if clusters_watch.0.is_finished() {
                        return;
                    }
                }
            }
        });
        (caches, keeper)
    }

    /// Every application cluster's caches, by cluster name.
    pub fn clusters(&self) -> Vec<ClusterView> {
        self.members
            .lock()
            .unwrap()
            .iter()
            .map(|(cluster, member)| ClusterView {
                cluster: cluster.clone(),
                pods: member.pods.state(),
                routes: member.routes.state(),
            })
            .collect()
    }

    /// One pod cache per Cluster (made from its Secret's kubeconfig), or the management
    /// cluster's as `local` when there is no Cluster.
    async fn follow_clusters(&self, management: &Client) {
        let clusters = self.clusters.state();
        let mut wanted = BTreeMap::new();
        if clusters.is_empty() {
            wanted.insert(MANAGEMENT_CLUSTER.to_owned(), MANAGEMENT_CLUSTER.to_owned());
        }
        for cluster in &clusters {
            let credentials = &cluster.spec.credentials;
            wanted.insert(
                cluster.name_any(),
                format!(
                    "{}/{}#{}",
                    credentials.secret_ref.namespace, credentials.secret_ref.name, credentials.key
                ),
            );
        }
        self.members
            .lock()
            .unwrap()
            .retain(|name, member| wanted.get(name) == Some(&member.source));
        for (name, source) in wanted {
            if self.members.lock().unwrap().contains_key(&name) {
                continue;
            }
            if self
                .failed
                .lock()
                .unwrap()
                .get(&name)
                .is_some_and(|at| at.elapsed() < RECHECK)
            {
                continue;
            }
            let client = if name == MANAGEMENT_CLUSTER {
                Ok(management.clone())
            } else {
                let cluster = clusters.iter().find(|c| c.name_any() == name);
                match cluster {
                    Some(cluster) => client_of(management, cluster).await,
                    None => continue,
                }
            };
            match client {
                Ok(client) => {
                    let (pods, pods_watch) = cache::<Pod>(
                        Api::all(client.clone()),
                        watcher::Config::default().labels(APP_LABEL),
                        &self.changes,
                    );
                    let (routes, routes_watch) = route_cache(client, &self.changes);
                    let member = Member {
                        source,
                        pods,
                        routes,
                        _watches: [AbortOnDrop(pods_watch), AbortOnDrop(routes_watch)],
                    };
                    self.failed.lock().unwrap().remove(&name);
                    self.members.lock().unwrap().insert(name, member);
                }
                Err(error) => {
                    warn!(cluster = %name, %error, "cannot watch the cluster");
                    self.failed
                        .lock()
                        .unwrap()
                        .insert(name, std::time::Instant::now());
                }
            }
        }
    }
}

/// `K` in `namespace`, or in every namespace.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A client of the Cluster's API server, from the kubeconfig in its Secret.
async fn client_of(management: &Client, cluster: &Cluster) -> Result<Client, String> {
    let secret_ref = &cluster.spec.credentials.secret_ref;
    let secret = Api::<Secret>::namespaced(management.clone(), &secret_ref.namespace)
        .get_opt(&secret_ref.name)
        .await
        .map_err(|error| {
            format!(
                "reading Secret {}/{}: {error}",
                secret_ref.namespace, secret_ref.name
            )
        })?;
    let kubeconfig = cluster.kubeconfig(secret.as_ref())?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| format!("unusable kubeconfig: {error}"))?;
    Client::try_from(config).map_err(|error| error.to_string())
}

/// A cache of `api`'s objects, stripped of their managed fields, whose watch (the returned task)
/// ticks `changes` on every change.
fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: &watch::Sender<u64>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changes = changes.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.meta_mut().managed_fields = None)
        .reflect(writer);
    let task = tokio::spawn(tick_on_each(stream, changes));
    (store, task)
}

/// A cache of the cluster's HTTPRoutes, each stripped to its name, namespace and hostnames.
fn route_cache(
    client: Client,
    changes: &watch::Sender<u64>,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let stream = watcher(
        Api::<DynamicObject>::all_with(client, &resource),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|route| {
        route.metadata.managed_fields = None;
        route.metadata.annotations = None;
        let hostnames = route.data.pointer("/spec/hostnames").cloned();
        route.data = serde_json::json!({"spec": {"hostnames": hostnames}});
    })
    .reflect(writer);
    (store, tokio::spawn(tick_on_each(stream, changes.clone())))
}

async fn tick_on_each<T, E: std::fmt::Display>(
    stream: impl Stream<Item = Result<T, E>>,
    changes: watch::Sender<u64>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changes.send_modify(|tick| *tick += 1),
            Err(error) => warn!(%error, "a watch failed; it retries"),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
