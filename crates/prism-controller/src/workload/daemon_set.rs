//! The DaemonSet: one pod per node, so a version's capacity is a share of the nodes, counted in
//! hundredths ([`prism_api::application::DAEMON_SET_CAPACITY`]).
//!
//! One DaemonSet per application and cluster (the template's name) with `updateStrategy:
//! OnDelete`, holding one version's pod template at a time (its `prism.dev/release` label). A
//! version's share moves by putting its template in the DaemonSet and deleting the pods of other
//! versions on the nodes its share covers, one batch at a time; the DaemonSet controller itself
//! recreates each deleted pod from the template it holds. The nodes are taken in a stable order,
//! zone (`topology.kubernetes.io/zone`) first, so a step can be a zone of its own.
//!
//! Why OnDelete rather than a DaemonSet per version on node labels Prism manages: one DaemonSet
//! keeps its identity (as a StatefulSet does in place), and Prism never writes Nodes. Patching
//! node labels is cluster-wide power over objects other teams share, and a label flip runs both
//! versions' pods, or none, on a node for a moment.
//!
//! The engine asks the incumbent to stay at its full capacity while the contender grows (a
//! Deployment's versions run side by side), but here the contender's nodes are taken from the
//! incumbent. So a version the DaemonSet does not hold is observed at full capacity while any
//! of its pods runs: it holds every node the held version does not, and it goes as that one
//! grows. The held version is observed at the share it was asked (kept in the DaemonSet's
//! `prism.dev/capacity` annotation) exactly when its pods run on as many nodes as that share
//! covers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use prism_api::Release;
use prism_api::application::DAEMON_SET_CAPACITY;
use prism_api::chart::WorkloadKind;
use prism_api::labels::{CAPACITY_ANNOTATION, RELEASE_LABEL};
use prism_engine::{Capacity, VersionObservation};
use serde_json::Value;

use super::{Version, WorkloadProvider, Workloads, object, objects, set_metadata, version_labels};
use crate::cached::{DaemonSet, Node, Pod};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

/// The DaemonSet provider.
pub struct DaemonSets;

/// The label whose value orders the nodes first.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

const TOUCHES: &[Touch] = &[
    Touch {
        kind: Kind::DaemonSet,
        verbs: &[
            Verb::WatchLabelled,
            Verb::Apply,
            Verb::Delete,
            Verb::DeleteByRelease,
        ],
        why: "one DaemonSet per application (the template's name, OnDelete) holding one version's pod template at a time: watched to see which version it holds, applied to give it a version and record that version's share, deleted with the application",
    },
    Touch {
        kind: Kind::Pod,
        verbs: &[Verb::WatchLabelled, Verb::Delete],
        why: "a DaemonSet's pods are watched to see which version runs on which node, and deleted one batch of nodes at a time, so that the DaemonSet controller recreates them from the version it holds",
    },
    Touch {
        kind: Kind::Node,
        verbs: &[Verb::WatchAll],
        why: "nodes are read for their zone (topology.kubernetes.io/zone), so a DaemonSet's version moves zone by zone",
    },
];

impl WorkloadProvider for DaemonSets {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::DaemonSet
    }

    fn touches(&self) -> &'static [Touch] {
        TOUCHES
    }

    fn observe(&self, cluster: Workloads<'_>) -> BTreeMap<String, VersionObservation> {
        observe(held(cluster), cluster.pods)
    }

    /// The version goes into the DaemonSet first (alone: its pods are deleted only once the
    /// DaemonSet controller has seen the new template, or it would recreate them from the old
    /// one), then the pods of other versions on the nodes its share covers are deleted, once no
    /// earlier batch is still being replaced. A version the DaemonSet does not hold writes
    /// nothing to shrink: it goes as the held one grows. At zero, a held version hands the
    /// DaemonSet to the version the cluster keeps (an abort: the incumbent back).
    fn install(
        &self,
        cluster: Workloads<'_>,
        version: Version<'_>,
        capacity: Capacity,
    ) -> Vec<Write> {
        let release = version.release;
        let name = release.name_any();
        let held = held(cluster);
        let holds = held.is_some_and(|daemon_set| holder(daemon_set) == Some(name.as_str()));
        let share = capacity.floor().min(DAEMON_SET_CAPACITY);
        if share == 0 {
            return match (holds, version.successor) {
                (true, Some(successor)) => vec![apply(successor, DAEMON_SET_CAPACITY, version)],
                // No version to hand the DaemonSet to: the application leaves the cluster.
                (true, None) => self.remove(cluster, release),
                (false, _) => Vec::new(),
            };
        }
        let mut writes = Vec::new();
        let Some(daemon_set) = held.filter(|_| holds) else {
            writes.extend(objects::install(version));
            writes.push(apply(release, share, version));
            return writes;
        };
        if recorded_share(daemon_set) != Some(share) {
            writes.push(apply(release, share, version));
        }
        if is_settled(daemon_set, cluster.pods) {
            let nodes = node_order(cluster.pods, cluster.nodes);
            let covered = nodes_for(share, nodes.len() as u32) as usize;
            writes.extend(
                pods_to_delete(cluster.pods, &nodes[..covered], &name)
                    .into_iter()
                    .map(|pod| Write::Delete {
                        kind: Kind::Pod,
                        name: pod,
                    }),
            );
        }
        writes
    }

    /// A DaemonSet cannot run fewer pods than its nodes: a Drained version keeps its objects,
    /// and its pods go as the held version's share grows.
    fn idle(&self, _: Workloads<'_>, _: Version<'_>) -> Vec<Write> {
        Vec::new()
    }

    /// The version's own objects, and the DaemonSet when it holds the version and no other
    /// version runs a pod: while another does, the DaemonSet stays for it.
    fn remove(&self, cluster: Workloads<'_>, release: &Release) -> Vec<Write> {
        let name = release.name_any();
        let mut writes = Vec::new();
        if let Some(daemon_set) = held(cluster).filter(|d| holder(d) == Some(name.as_str())) {
            let others_run = live_pods(cluster.pods).any(|pod| pod_release(pod) != Some(&name));
            if others_run {
                return Vec::new();
            }
            writes.push(Write::Delete {
                kind: Kind::DaemonSet,
                name: daemon_set.name_any(),
            });
        }
        writes.extend(objects::remove(release));
        writes
    }
}

/// The application's DaemonSet, unless it is being deleted.
fn held<'a>(cluster: Workloads<'a>) -> Option<&'a DaemonSet> {
    cluster
        .daemon_sets
        .iter()
        .map(|daemon_set| daemon_set.as_ref())
        .find(|daemon_set| daemon_set.metadata.deletion_timestamp.is_none())
}

/// The release whose pod template the DaemonSet holds.
fn holder(daemon_set: &DaemonSet) -> Option<&str> {
    daemon_set.labels().get(RELEASE_LABEL).map(String::as_str)
}

fn recorded_share(daemon_set: &DaemonSet) -> Option<u32> {
    daemon_set
        .annotations()
        .get(CAPACITY_ANNOTATION)?
        .parse()
        .ok()
}

fn live_pods(pods: &[Arc<Pod>]) -> impl Iterator<Item = &Pod> {
    pods.iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
}

fn pod_release(pod: &Pod) -> Option<&str> {
    pod.labels().get(RELEASE_LABEL).map(String::as_str)
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Whether the DaemonSet controller has seen the DaemonSet's template, and every node it runs
/// on has a pod not being deleted: no batch is under way, so another may start.
fn is_settled(daemon_set: &DaemonSet, pods: &[Arc<Pod>]) -> bool {
    let status = daemon_set.status.as_ref();
    let observed = status.and_then(|status| status.observed_generation);
    let seen = observed.is_some() && observed >= daemon_set.metadata.generation;
    let desired = status
        .and_then(|status| status.desired_number_scheduled)
        .unwrap_or(0);
    let terminating = pods
        .iter()
        .any(|pod| pod.metadata.deletion_timestamp.is_some());
    let live = live_pods(pods).filter(|pod| node_of(pod).is_some()).count();
    seen && !terminating && i64::try_from(live).unwrap_or(0) >= i64::from(desired)
}

/// The nodes the DaemonSet's pods run on, in the order versions take them: by zone, then name.
/// A node the cache does not know has no zone, and comes first.
pub fn node_order(pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> Vec<String> {
    let zone_of = |name: &str| -> String {
        nodes
            .iter()
            .find(|node| node.metadata.name.as_deref() == Some(name))
            .and_then(|node| node.labels().get(ZONE_LABEL).cloned())
            .unwrap_or_default()
    };
    let names: BTreeSet<&str> = pods.iter().filter_map(|pod| node_of(pod)).collect();
    let mut ordered: Vec<(String, &str)> = names.into_iter().map(|n| (zone_of(n), n)).collect();
    ordered.sort();
    ordered
        .into_iter()
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// How many of `nodes` a share (hundredths) covers: the nearest whole count, so that 33% and
/// 67% of three nodes are one and two, at least one node for a share above zero, and a node
/// left to the other versions for a share below all.
pub fn nodes_for(share: u32, nodes: u32) -> u32 {
    if share == 0 || nodes == 0 {
        return 0;
    }
    if share >= DAEMON_SET_CAPACITY {
        return nodes;
    }
    let nearest = (u64::from(share) * u64::from(nodes) + 50) / 100;
    let nearest = u32::try_from(nearest).unwrap_or(nodes);
    nearest.clamp(1, nodes.saturating_sub(1).max(1))
}

/// The pods on `covered` nodes that are not `release`'s.
fn pods_to_delete(pods: &[Arc<Pod>], covered: &[String], release: &str) -> Vec<String> {
    let mut names: Vec<String> = live_pods(pods)
        .filter(|pod| node_of(pod).is_some_and(|node| covered.iter().any(|c| c == node)))
        .filter(|pod| pod_release(pod) != Some(release))
        .map(|pod| pod.name_any())
        .collect();
    names.sort();
    names
}

/// The share (hundredths) that `running` of `nodes` nodes is of a version asked `asked`: the
/// asked share when the count is the one it covers, else a share on the same side of it as the
/// count is of that one, so that the engine's comparison holds exactly when the count does.
pub fn share_of(running: u32, nodes: u32, asked: u32) -> u32 {
    // Before the DaemonSet controller has counted the nodes, nothing is known to run.
    if nodes == 0 {
        return 0;
    }
    let wanted = nodes_for(asked, nodes);
    if running == wanted {
        return asked;
    }
    let proportion = u64::from(running) * 100 / u64::from(nodes);
    let proportion = u32::try_from(proportion).unwrap_or(DAEMON_SET_CAPACITY);
    if running < wanted {
        proportion.min(asked.saturating_sub(1))
    } else {
        proportion.max(asked + 1).min(DAEMON_SET_CAPACITY)
    }
}

/// What the cluster runs of each version. The held version: the share its pods' nodes are of
/// the DaemonSet's (ready likewise from its ready pods). Every other version with a pod: all of
/// it (see the module's doc), ready when all its pods are.
fn observe(
    daemon_set: Option<&DaemonSet>,
    pods: &[Arc<Pod>],
) -> BTreeMap<String, VersionObservation> {
    let mut running: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for pod in live_pods(pods) {
        if let Some(release) = pod_release(pod) {
            let counts = running.entry(release).or_default();
            counts.0 += 1;
            counts.1 += u32::from(pod.is_ready());
        }
    }
    let mut observed: BTreeMap<String, VersionObservation> = running
        .iter()
        .map(|(release, &(pods, ready))| {
            let ready = if ready == pods {
                DAEMON_SET_CAPACITY
            } else {
                ready * DAEMON_SET_CAPACITY / pods
            };
            (
                (*release).to_owned(),
                VersionObservation {
                    capacity: Capacity::Replicas(DAEMON_SET_CAPACITY),
                    ready,
                    weight: 0,
                },
            )
        })
        .collect();
    let Some(daemon_set) = daemon_set else {
        return observed;
    };
    let Some(holder) = holder(daemon_set) else {
        return observed;
    };
    let asked = recorded_share(daemon_set).unwrap_or(DAEMON_SET_CAPACITY);
    let nodes = daemon_set
        .status
        .as_ref()
        .and_then(|status| status.desired_number_scheduled)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let (pods, ready) = running.get(holder).copied().unwrap_or_default();
    observed.insert(
        holder.to_owned(),
        VersionObservation {
            capacity: Capacity::Replicas(share_of(pods, nodes, asked)),
            ready: share_of(ready, nodes, asked),
            weight: 0,
        },
    );
    observed
}

/// The template's DaemonSet as `release`'s, recording its share: named as the template names
/// it, OnDelete, labelled with the application and the release, its pods likewise (selected by
/// the application alone, since the selector cannot change), ConfigMap references renamed.
fn apply(release: &Release, share: u32, version: Version<'_>) -> Write {
    let template = &release.spec.template;
    let manifest = template
        .workload()
        .filter(|m| m.kind() == Some("DaemonSet"));
    let name = manifest
        .and_then(|m| m.name())
        .unwrap_or_default()
        .to_owned();
    let mut body = manifest.map(|m| m.object()).unwrap_or_default();
    let owner = version
        .owner
        .filter(|_| release.name_any() == version.release.name_any());
    set_metadata(&mut body, &name, release, owner);
    let annotations = object(object(&mut body, "metadata"), "annotations");
    annotations.insert(CAPACITY_ANNOTATION.into(), share.to_string().into());
    let spec = object(&mut body, "spec");
    spec.insert(
        "updateStrategy".into(),
        serde_json::json!({"type": "OnDelete"}),
    );
    let match_labels = object(object(spec, "selector"), "matchLabels");
    match_labels.insert(
        prism_api::labels::APP_LABEL.into(),
        release.spec.application.clone().into(),
    );
    let pod = object(spec, "template");
    object(object(pod, "metadata"), "labels").extend(version_labels(release));
    if let Some(pod_spec) = pod.get_mut("spec") {
        objects::rename_references(pod_spec, &release.name_any(), template);
    }
    Write::Apply {
        kind: Kind::DaemonSet,
        body: Value::Object(body),
    }
}

#[cfg(test)]
mod tests;
