//! The API's responses, purely from what the caches hold and what the caller may see: the
//! fleet, the application list and one application across every cluster. Everything an
//! application shows is `prism-ops`'s read models, as the CLI shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use prism_api::release::AnalysisStatus;
use prism_api::{Application, Cluster, Release};
use prism_ops::cluster::list::{self as cluster_list, ClusterRow};
use prism_ops::pods::{self, PodFailure};
use prism_ops::status::{self, Rollout, Row};
use prism_ops::summary::{self, AppSummary};
use prism_ops::timeline::{self, Step};
use prism_ops::{history, versions};
use serde::Serialize;

use crate::caches::ClusterView;

/// At most this many Events per application, newest first.
const MAX_EVENTS: usize = 50;

/// The caches at one moment.
pub struct Snapshot {
    pub applications: Vec<Arc<Application>>,
    pub releases: Vec<Arc<Release>>,
    pub clusters: Vec<Arc<Cluster>>,
    pub events: Vec<Arc<Event>>,
    /// What each application cluster runs: pods and HTTPRoutes.
    pub clusters_seen: Vec<ClusterView>,
    pub now: Timestamp,
}

/// The namespaces whose Applications a caller may read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Visible {
    All,
    Namespaces(BTreeSet<String>),
}

impl Visible {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::Namespaces(namespaces) => namespaces.contains(namespace),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    /// Absent when the caller may not list Clusters.
    pub clusters: Option<Vec<ClusterRow>>,
    pub applications: Vec<AppSummary>,
    pub failing_pods: Vec<FailingPod>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Applications {
    pub items: Vec<AppSummary>,
}

/// A pod of an application that fails to start, where, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailingPod {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub application: String,
    pub release: Option<String>,
    #[serde(flatten)]
    pub failure: PodFailure,
}

/// One application across every cluster.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDetail {
    pub summary: AppSummary,
    pub rollout: Option<Rollout>,
    /// Each live version in each cluster, as `prism status` shows them.
    pub grid: Vec<Row>,
    pub timeline: Vec<Step>,
    pub analysis: Option<AnalysisStatus>,
    pub versions: Vec<versions::Row>,
    pub releases: Vec<history::Row>,
    pub events: Vec<EventView>,
    pub failing_pods: Vec<FailingPod>,
    pub allowed: Allowed,
}

/// What the caller may do to the application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Allowed {
    pub promote: bool,
    pub abort: bool,
    pub rollback: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    /// `Release/web-3`.
    pub object: String,
    pub time: Option<Timestamp>,
    pub count: i32,
}

impl Snapshot {
    fn releases_of(&self, namespace: &str, app: &str) -> Vec<Release> {
        self.releases
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(namespace) && r.spec.application == app)
            .map(|r| (**r).clone())
            .collect()
    }

    /// Every failing pod of the applications `visible` admits, by cluster then pod.
    fn failing_pods(&self, include: impl Fn(&str, &str) -> bool) -> Vec<FailingPod> {
        let mut failing: Vec<FailingPod> = self
            .clusters_seen
            .iter()
            .flat_map(|cluster| {
                cluster
                    .pods
                    .iter()
                    .filter_map(|pod| failing_pod(&cluster.cluster, pod, self.now))
            })
            .filter(|pod| include(&pod.namespace, &pod.application))
            .collect();
        failing.sort_by(|a, b| (&a.cluster, &a.pod).cmp(&(&b.cluster, &b.pod)));
        failing
    }

    fn summaries(&self, visible: &Visible, failing: &[FailingPod]) -> Vec<AppSummary> {
        let mut counts: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for pod in failing {
            *counts
                .entry((pod.namespace.as_str(), pod.application.as_str()))
                .or_default() += 1;
        }
        let mut releases: BTreeMap<(String, String), Vec<Release>> = BTreeMap::new();
        for release in &self.releases {
            releases
                .entry((
                    release.namespace().unwrap_or_default(),
                    release.spec.application.clone(),
                ))
                .or_default()
                .push((**release).clone());
        }
        let mut items: Vec<AppSummary> = self
            .applications
            .iter()
            .filter(|app| visible.contains(&app.namespace().unwrap_or_default()))
            .map(|app| {
                let key = (app.namespace().unwrap_or_default(), app.name_any());
                let count = counts.get(&(key.0.as_str(), key.1.as_str())).copied();
                summary::summary(
                    app,
                    releases.get(&key).map_or(&[][..], Vec::as_slice),
                    count.unwrap_or(0),
                )
            })
            .collect();
        // What rolls out now first, then by namespace and name.
        items.sort_by(|a, b| {
            (!a.rolling_out, &a.namespace, &a.name).cmp(&(!b.rolling_out, &b.namespace, &b.name))
        });
        items
    }

    pub fn applications(&self, visible: &Visible) -> Applications {
        let failing = self.failing_pods(|namespace, _| visible.contains(namespace));
        Applications {
            items: self.summaries(visible, &failing),
        }
    }

    pub fn fleet(&self, visible: &Visible, may_list_clusters: bool) -> Fleet {
        let failing_pods = self.failing_pods(|namespace, _| visible.contains(namespace));
        let clusters = may_list_clusters.then(|| {
            let clusters: Vec<Cluster> = self.clusters.iter().map(|c| (**c).clone()).collect();
            let releases: Vec<Release> = self.releases.iter().map(|r| (**r).clone()).collect();
            cluster_list::summary(&clusters, &releases)
        });
        Fleet {
            clusters,
            applications: self.summaries(visible, &failing_pods),
            failing_pods,
        }
    }

    pub fn application(&self, namespace: &str, name: &str, allowed: Allowed) -> Option<AppDetail> {
        let app = self
            .applications
            .iter()
            .find(|app| app.namespace().as_deref() == Some(namespace) && app.name_any() == name)?;
        let releases = self.releases_of(namespace, name);
        let failing_pods = self.failing_pods(|ns, app| ns == namespace && app == name);
        let status = status::status(app, &releases);
        let newest = prism_ops::releases::newest(&releases);
        let hosts = self.hosts_of(app);
        Some(AppDetail {
            summary: summary::summary(
                app,
                &releases,
                u32::try_from(failing_pods.len()).unwrap_or(u32::MAX),
            ),
            rollout: status.rollout,
            grid: status.rows,
            timeline: newest.map(timeline::timeline).unwrap_or_default(),
            analysis: newest.and_then(|r| r.status.as_ref()?.analysis.clone()),
            versions: versions::rows(app, &releases, &hosts, self.now),
            releases: history::rows(app, releases.clone(), self.now),
            events: self.events_of(namespace, name, &releases),
            failing_pods,
            allowed,
        })
    }

    /// The hostnames of the HTTPRoutes the application routes through, in any cluster: its
    /// versions' URLs.
    fn hosts_of(&self, app: &Application) -> Vec<String> {
        let namespace = app.namespace();
        let mut hosts = BTreeSet::new();
        for cluster in &self.clusters_seen {
            for route in &cluster.routes {
                if route.metadata.namespace == namespace
                    && app.spec.traffic.http_routes.contains(&route.name_any())
                    && let Some(names) = route
                        .data
                        .pointer("/spec/hostnames")
                        .and_then(|h| h.as_array())
                {
                    hosts.extend(names.iter().filter_map(|h| h.as_str().map(str::to_owned)));
                }
            }
        }
        hosts.into_iter().collect()
    }

    /// The Events about the application and its Releases, newest first.
    fn events_of(&self, namespace: &str, app: &str, releases: &[Release]) -> Vec<EventView> {
        let names: BTreeSet<String> = releases.iter().map(ResourceExt::name_any).collect();
        let mut events: Vec<EventView> = self
            .events
            .iter()
            .filter(|event| event.namespace().as_deref() == Some(namespace))
            .filter(|event| {
                let object = &event.involved_object;
                match object.kind.as_deref() {
                    Some("Application") => object.name.as_deref() == Some(app),
                    Some("Release") => object.name.as_ref().is_some_and(|n| names.contains(n)),
                    _ => false,
                }
            })
            .map(|event| EventView {
                type_: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
                reason: event.reason.clone().unwrap_or_default(),
                message: event.message.clone().unwrap_or_default(),
                object: format!(
                    "{}/{}",
                    event.involved_object.kind.as_deref().unwrap_or_default(),
                    event.involved_object.name.as_deref().unwrap_or_default()
                ),
                time: event_time(event),
                count: event.count.unwrap_or(1),
            })
            .collect();
        events.sort_by_key(|event| std::cmp::Reverse(event.time));
        events.truncate(MAX_EVENTS);
        events
    }
}

/// When the Event last happened: events.k8s.io's eventTime, else the core fields.
fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|series| series.last_observed_time.as_ref())
        .map(|time| time.0)
        .or_else(|| event.event_time.as_ref().map(|time| time.0))
        .or_else(|| event.last_timestamp.as_ref().map(|time| time.0))
        .or_else(|| event.first_timestamp.as_ref().map(|time| time.0))
        .or_else(|| {
            event
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0)
        })
}

fn failing_pod(cluster: &str, pod: &Pod, now: Timestamp) -> Option<FailingPod> {
    let failure = pods::failure(pod, now)?;
    let labels = pod.labels();
    Some(FailingPod {
        cluster: cluster.to_owned(),
        namespace: pod.namespace().unwrap_or_default(),
        pod: pod.name_any(),
        application: labels.get(APP_LABEL)?.clone(),
        release: labels.get(RELEASE_LABEL).cloned(),
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use prism_ops::releases::fixtures::{application, release};
    use serde_json::json;

    fn snapshot(routes: Vec<DynamicObject>, pods: Vec<Pod>) -> Snapshot {
        let mut app = application("web:2", json!({"contender": "web-2", "incumbent": "web-1"}));
        app.spec.traffic.http_routes = vec!["web".into()];
        Snapshot {
            applications: vec![Arc::new(app)],
            releases: vec![
                Arc::new(release(1, "web:1", json!({"phase": "Complete", "step": 2}))),
                Arc::new(release(
                    2,
                    "web:2",
                    json!({"phase": "Progressing", "step": 0}),
                )),
            ],
            clusters: vec![],
            events: vec![],
            clusters_seen: vec![ClusterView {
                cluster: "eu-1".into(),
                pods: pods.into_iter().map(Arc::new).collect(),
                routes: routes.into_iter().map(Arc::new).collect(),
            }],
            now: "2026-11-22T12:00:00Z".parse().unwrap(),
        }
    }

    fn route(namespace: &str, name: &str, hostnames: &[&str]) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hostnames": hostnames},
        }))
        .unwrap()
    }

    #[test]
    fn versions_are_reached_at_the_hostnames_of_the_applications_routes() {
        let routes = vec![
            route("team", "web", &["web.example"]),
            route("team", "other", &["other.example"]),
            route("elsewhere", "web", &["elsewhere.example"]),
        ];
        let detail = snapshot(routes, vec![])
            .application("team", "web", Allowed::default())
            .unwrap();
        let urls: Vec<&String> = detail.versions.iter().flat_map(|v| &v.routes).collect();
        assert!(!urls.is_empty());
        assert!(
            urls.iter().all(|url| url.contains("web.example")),
            "{urls:?}"
        );
    }

    #[test]
    fn a_failing_pod_is_listed_under_its_cluster_and_counted_in_the_summary() {
        let crashing: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-2-abc", "namespace": "team",
                "labels": {"prism.dev/app": "web", "prism.dev/release": "web-2"},
                "creationTimestamp": "2026-11-22T11:00:00Z"},
            "spec": {"containers": [{"name": "web", "image": "web:2"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "web", "image": "web:2",
                "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}]},
        }))
        .unwrap();
        let snapshot = snapshot(vec![], vec![crashing]);
        let detail = snapshot
            .application("team", "web", Allowed::default())
            .unwrap();
        assert_eq!(detail.failing_pods.len(), 1);
        assert_eq!(detail.failing_pods[0].cluster, "eu-1");
        assert_eq!(detail.failing_pods[0].failure.reason, "CrashLoopBackOff");
        assert_eq!(detail.summary.failing_pods, 1);
        let hidden = snapshot.fleet(&Visible::Namespaces(BTreeSet::new()), false);
        assert!(hidden.applications.is_empty() && hidden.failing_pods.is_empty());
    }
}
