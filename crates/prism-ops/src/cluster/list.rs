//! `prism cluster list`: the fleet's capacity, from the management cluster only: each Cluster's
//! state and what the Releases of every namespace run there.
//!
//! [`summary`] and [`table`] are pure; [`read`] lists the objects.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::{Api, Resource};
use prism_api::conditions::{self, cluster as condition};
use prism_api::release::ReleasePhase;
use prism_api::{Cluster, Release};
use serde::Serialize;

use super::Management;
use crate::Error;
use crate::releases;
use crate::text;

/// One Cluster and what runs there.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    pub name: String,
    pub region: String,
    pub zone: Option<String>,
    /// `Ready`, `NotReady` or `Unreachable`, then `,Cordoned` when unschedulable.
    pub state: String,
    pub unschedulable: bool,
    pub weight: u32,
    /// Distinct Applications with a live Release scheduled there.
    pub applications: u32,
    /// Releases that run replicas there.
    pub versions: u32,
    pub ready_replicas: u32,
    /// The replicas the Releases run there now.
    pub replicas: u32,
    /// The cluster's Kubernetes version, as the controller last saw it.
    pub kubernetes_version: Option<String>,
    pub last_seen: Option<Time>,
}

/// `Unreachable` when the Reachable condition is False, `Ready` when Ready is True, else
/// `NotReady` (also before the controller first looked at the cluster); `,Cordoned` when
/// unschedulable.
pub fn state(cluster: &Cluster) -> String {
    let found = |type_| {
        cluster
            .status
            .as_ref()
            .and_then(|status| conditions::find(&status.conditions, type_))
            .map(|c| c.status.as_str())
    };
    let mut state = if found(condition::REACHABLE) == Some("False") {
        "Unreachable"
    } else if found(condition::READY) == Some("True") {
        "Ready"
    } else {
        "NotReady"
    }
    .to_owned();
    if cluster.spec.unschedulable {
        state.push_str(",Cordoned");
    }
    state
}

/// Whether `release` counts as one of its Application's on `cluster`: it is scheduled there, not
/// being deleted, and either still runs replicas there or is its Application's newest Release
/// and not rolled back (`newest`). An older Release scaled to zero there has retired from it.
pub fn is_live_on(release: &Release, cluster: &str, newest: bool) -> bool {
    let scheduled = release.spec.clusters.iter().any(|c| c.name == cluster);
    let runs = replicas_on(release, cluster).is_some_and(|(_, replicas)| replicas > 0);
    let rolled_back =
        release.spec.aborted || releases::phase(release) == Some(ReleasePhase::Aborted);
    scheduled && release.meta().deletion_timestamp.is_none() && (runs || (newest && !rolled_back))
}

/// `(ready, replicas)` of `release` in `cluster`, from its status.
pub fn replicas_on(release: &Release, cluster: &str) -> Option<(u32, u32)> {
    release
        .status
        .as_ref()?
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| (c.ready_replicas, c.replicas))
}

/// The Application a Release belongs to: namespace and name.
pub fn application_of(release: &Release) -> (&str, &str) {
    (
        release.meta().namespace.as_deref().unwrap_or_default(),
        &release.spec.application,
    )
}

/// The highest revision of each Application among `releases`.
pub fn newest_revisions(releases: &[Release]) -> BTreeMap<(&str, &str), u32> {
    let mut newest = BTreeMap::new();
    for release in releases {
        let revision = newest.entry(application_of(release)).or_insert(0);
        *revision = (*revision).max(release.spec.revision);
    }
    newest
}

/// The rows of `clusters`, by name, with what `releases` (of every namespace) run there.
pub fn summary(clusters: &[Cluster], releases: &[Release]) -> Vec<ClusterRow> {
    let revisions = newest_revisions(releases);
    let newest: Vec<bool> = releases
        .iter()
        .map(|r| revisions.get(&application_of(r)) == Some(&r.spec.revision))
        .collect();
    let mut rows: Vec<ClusterRow> = clusters
        .iter()
        .map(|cluster| {
            let name = cluster.name_any();
            let mut applications = BTreeSet::new();
            let (mut versions, mut ready_replicas, mut replicas) = (0, 0, 0);
            for (release, newest) in releases.iter().zip(&newest) {
                if is_live_on(release, &name, *newest) {
                    applications.insert(application_of(release));
                }
                if let Some((ready, desired)) = replicas_on(release, &name) {
                    ready_replicas += ready;
                    replicas += desired;
                    if desired > 0 && release.meta().deletion_timestamp.is_none() {
                        versions += 1;
                    }
                }
            }
            let status = cluster.status.clone().unwrap_or_default();
            ClusterRow {
                region: cluster.spec.region.clone(),
                zone: cluster.spec.zone.clone(),
                state: state(cluster),
                unschedulable: cluster.spec.unschedulable,
                weight: cluster.spec.weight,
                applications: u32::try_from(applications.len()).unwrap_or(u32::MAX),
                versions,
                ready_replicas,
                replicas,
                kubernetes_version: status.version,
                last_seen: status.last_seen,
                name,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The rows as people read them.
pub fn table(rows: &[ClusterRow]) -> String {
    let lines: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                row.name.clone(),
                row.region.clone(),
                row.state.clone(),
                row.weight.to_string(),
                row.applications.to_string(),
                row.versions.to_string(),
                format!("{}/{}", row.ready_replicas, row.replicas),
            ]
        })
        .collect();
    text::table(
        [
            "NAME",
            "REGION",
            "STATE",
            "WEIGHT",
            "APPLICATIONS",
            "VERSIONS",
            "READY/DESIRED",
        ],
        &lines,
    )
}

/// Lists the Clusters and the Releases of every namespace.
pub async fn read(management: &Management) -> Result<Vec<ClusterRow>, Error> {
    let clusters = management
        .clusters()
        .list(&ListParams::default())
        .await
        .map_err(|e| management.explain_list("listing Clusters", e))?;
    let releases = Api::<Release>::all(management.client())
        .list(&ListParams::default())
        .await
        .map_err(|e| management.explain_list("listing Releases in every namespace", e))?;
    Ok(summary(&clusters.items, &releases.items))
}

/// Clusters and Releases made up for unit tests, here and in the CLI's `cluster drain`.
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use prism_api::{Cluster, Release};
    use serde_json::{Value, json};

    /// The Cluster `name` in `region`, with `conditions` (type → status) and `unschedulable`.
    pub fn cluster(
        name: &str,
        region: &str,
        conditions: &[(&str, &str)],
        unschedulable: bool,
    ) -> Cluster {
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|(type_, status)| {
                json!({"type": type_, "status": status, "reason": "R", "message": "",
                       "lastTransitionTime": "2026-11-22T11:00:00Z"})
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {
                "region": region,
                "unschedulable": unschedulable,
                "credentials": {"secretRef": {"name": format!("cluster-{name}"), "namespace": "prism-system"}},
            },
            "status": {"conditions": conditions, "version": "v1.36.4"},
        }))
        .unwrap()
    }

    /// Release `<app>-<revision>` in `namespace`, scheduled to `clusters`, with `phase` and
    /// `(cluster, ready, replicas)` in its status.
    pub fn release(
        namespace: &str,
        app: &str,
        revision: u32,
        clusters: &[&str],
        phase: &str,
        running: &[(&str, u32, u32)],
    ) -> Release {
        let mut release = crate::releases::fixtures::release(
            revision,
            "web:1",
            json!({
                "phase": phase,
                "step": 2,
                "clusters": running.iter().map(|(name, ready, replicas)| json!({
                    "name": name, "phase": "Achieved", "readyReplicas": ready, "replicas": replicas,
                })).collect::<Vec<_>>(),
            }),
        );
        release.metadata.name = Some(format!("{app}-{revision}"));
        release.metadata.namespace = Some(namespace.into());
        release.spec.application = app.into();
        release.spec.clusters = clusters
            .iter()
            .map(|name| prism_api::release::ScheduledCluster {
                name: (*name).into(),
                region: "eu-west".into(),
            })
            .collect();
        release
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{cluster, release};
    use super::*;
    use serde_json::json;

    fn fleet() -> (Vec<Cluster>, Vec<Release>) {
        let clusters = vec![
            cluster(
                "c3",
                "eu-west",
                &[("Reachable", "True"), ("Ready", "True")],
                true,
            ),
            cluster(
                "c1",
                "eu-west",
                &[("Reachable", "True"), ("Ready", "True")],
                false,
            ),
            cluster(
                "c2",
                "us-east",
                &[("Reachable", "False"), ("Ready", "False")],
                false,
            ),
            cluster("c4", "us-east", &[], false),
        ];
        let releases = vec![
            // team/web: web-1 retired from c1 (0 replicas), still runs in c2; web-2 serves.
            release(
                "team",
                "web",
                1,
                &["c1", "c2"],
                "Complete",
                &[("c1", 0, 0), ("c2", 1, 1)],
            ),
            release(
                "team",
                "web",
                2,
                &["c1", "c3"],
                "Complete",
                &[("c1", 2, 2), ("c3", 2, 2)],
            ),
            // other/web: a different Application of the same name, rolling out to c3.
            release("other", "web", 4, &["c3"], "Progressing", &[("c3", 1, 2)]),
            // team/api: its newest Release was rolled back; the incumbent runs in c1.
            release("team", "api", 1, &["c1"], "Complete", &[("c1", 3, 3)]),
            release(
                "team",
                "api",
                2,
                &["c1", "c2"],
                "Aborted",
                &[("c1", 0, 0), ("c2", 0, 0)],
            ),
        ];
        (clusters, releases)
    }

    #[test]
    fn states_come_from_conditions_and_cordoning() {
        let (clusters, _) = fleet();
        let states: Vec<String> = clusters.iter().map(state).collect();
        assert_eq!(
            states,
            ["Ready,Cordoned", "Ready", "Unreachable", "NotReady"]
        );
    }

    #[test]
    fn each_cluster_counts_its_applications_versions_and_replicas() {
        let (clusters, releases) = fleet();
        let rows = summary(&clusters, &releases);
        let counts: Vec<(&str, u32, u32, u32, u32)> = rows
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.applications,
                    r.versions,
                    r.ready_replicas,
                    r.replicas,
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                // web-2 and api-1; web-1 retired there, api-2 was rolled back.
                ("c1", 2, 2, 5, 5),
                // web-1 still runs there.
                ("c2", 1, 1, 1, 1),
                // team/web and other/web are two Applications.
                ("c3", 2, 2, 3, 4),
                ("c4", 0, 0, 0, 0),
            ]
        );
    }

    #[test]
    fn the_table() {
        let (clusters, releases) = fleet();
        insta::assert_snapshot!(table(&summary(&clusters, &releases)));
    }

    #[test]
    fn the_json_is_stable() {
        let (clusters, releases) = fleet();
        let json = serde_json::to_value(summary(&clusters, &releases)).unwrap();
        assert_eq!(
            json[2],
            json!({
                "name": "c3",
                "region": "eu-west",
                "zone": null,
                "state": "Ready,Cordoned",
                "unschedulable": true,
                "weight": 100,
                "applications": 2,
                "versions": 2,
                "readyReplicas": 3,
                "replicas": 4,
                "kubernetesVersion": "v1.36.4",
                "lastSeen": null,
            })
        );
    }
}
