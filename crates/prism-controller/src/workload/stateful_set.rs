//! The StatefulSet, rolled out in place: one StatefulSet per application keeps its identity, its
//! ordinals and their PersistentVolumeClaims, and holds one release's pod template at a time (the
//! release it is labelled with). The rolling update's `partition` sets how many pods run it: the
//! pods at ordinals from the partition up are replaced by the StatefulSet controller, highest
//! first and one at a time, so no step takes pods away faster than the StatefulSet itself would.
//!
//! A release that is not the one held runs on the pods below the partition that still carry its
//! label. A release grows either as a newcomer (no pod of it yet: the contender moving up), which
//! takes the StatefulSet over at the partition of its share, or back to all of it (an incumbent
//! restored by an abort), at partition 0, so the contender's pods go back highest first. A
//! version shrinking while another is held writes nothing: its pods are replaced as the
//! partition moves. A contender superseded mid-rollout keeps its pods below the new contender's
//! partition, where no partition reaches them: as the incumbent grows back into them, they are
//! deleted one at a time and recreated as the incumbent. Since the pods of all versions always add up to the StatefulSet's replicas,
//! the engine is given a pipeline whose incumbent runs the rest of the contender's share
//! ([`in_place_pipeline`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use prism_api::Release;
use prism_api::chart::WorkloadKind;
use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use prism_api::strategy::{CapacityStep, Pipeline, Share};
use prism_engine::{Capacity, VersionObservation};
use serde_json::{Value, json};

use super::{Version, WorkloadProvider, Workloads, object, objects, version_labels};
use crate::cached::{Pod, StatefulSet};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

/// The StatefulSet provider.
pub struct StatefulSets;

/// The label the StatefulSet controller puts on each pod: the revision of its pod template.
const REVISION_LABEL: &str = "controller-revision-hash";

const TOUCHES: &[Touch] = &[
    Touch {
        kind: Kind::StatefulSet,
        verbs: &[Verb::WatchLabelled, Verb::Apply, Verb::Delete],
        why: "a StatefulSet is rolled out in place: one per application, watched to see which pods run which version's revision, applied with the pod template of the version it holds and the rolling update's partition, deleted when the application's last version leaves the cluster or the Application is deleted (never by a Release's label: it outlives each version, and its PersistentVolumeClaims are never deleted)",
    },
    Touch {
        kind: Kind::Pod,
        verbs: &[Verb::WatchLabelled, Verb::Delete],
        why: "watched to see which pods of each version are ready and at which revision; a StatefulSet's pod below its partition that runs a superseded version (a contender replaced mid-rollout) is deleted, one at a time and only while every other pod is ready, so that the StatefulSet recreates it as the incumbent",
    },
];

impl WorkloadProvider for StatefulSets {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::StatefulSet
    }

    fn touches(&self) -> &'static [Touch] {
        TOUCHES
    }

    fn observe(&self, cluster: Workloads<'_>) -> BTreeMap<String, VersionObservation> {
        match installed(cluster) {
            Some(stateful_set) => observe(stateful_set, cluster.pods),
            None => BTreeMap::new(),
        }
    }

    fn install(
        &self,
        cluster: Workloads<'_>,
        version: Version<'_>,
        capacity: Capacity,
    ) -> Vec<Write> {
        let release = version.release;
        // A side version runs beside the mainline, which one StatefulSet in place cannot do:
        // taking it over would move the mainline's pods.
        if release.spec.side.is_some() {
            return Vec::new();
        }
        let name = release.metadata.name.as_deref().unwrap_or_default();
        let replicas = release.spec.template.replicas().unwrap_or(1);
        let share = capacity.floor().min(replicas);
        let Some(stateful_set) = installed(cluster) else {
            if capacity.is_zero() {
                return Vec::new();
            }
            return take_over(version, replicas, share, None);
        };
        if held(stateful_set) == Some(name) {
            if capacity.is_zero() {
                return self.remove(cluster, release);
            }
            return take_over(version, replicas, share, Some(stateful_set));
        }
        let pods = pods_of(stateful_set, cluster.pods);
        let newcomer = !pods.iter().any(|(_, pod)| release_of(pod) == Some(name));
        let restored = share >= replicas;
        if !capacity.is_zero() && (newcomer || restored) {
            let partition_share = if newcomer { share } else { replicas };
            take_over(version, replicas, partition_share, None)
        } else if share > pods_below_partition(stateful_set, &pods, name) {
            replace_a_stale_pod(stateful_set, &pods, name)
        } else {
            Vec::new()
        }
    }

    /// A version's pods are replaced by the next one's in place: there is nothing to idle.
    fn idle(&self, _: Workloads<'_>, _: Version<'_>) -> Vec<Write> {
        Vec::new()
    }

    /// The StatefulSet goes with the release it holds when no other version has pods in it (the
    /// application's last version here); a version's own ConfigMaps go once none of its pods
    /// is left to read them.
    fn remove(&self, cluster: Workloads<'_>, release: &Release) -> Vec<Write> {
        let name = release.metadata.name.as_deref().unwrap_or_default();
        let Some(stateful_set) = installed(cluster) else {
            return objects::remove(release);
        };
        let pods = pods_of(stateful_set, cluster.pods);
        let own_pods = pods
            .iter()
            .filter(|(_, pod)| release_of(pod) == Some(name))
            .count();
        if held(stateful_set) == Some(name) {
            if own_pods < pods.len() {
                return Vec::new();
            }
            let mut writes = vec![Write::Delete {
                kind: Kind::StatefulSet,
                name: stateful_set.metadata.name.clone().unwrap_or_default(),
            }];
            writes.extend(objects::remove(release));
            return writes;
        }
        if own_pods > 0 {
            return Vec::new();
        }
        objects::remove(release)
    }
}

/// The engine's pipeline for a release of `replicas` replicas in place: each step that sets a
/// capacity gives the incumbent the rest of the contender's pods (the contender's share when a
/// step gives both, as written; the incumbent's when it gives only that), with no surge (the
/// StatefulSet replaces one pod at a time by itself). A pipeline that asked for more pods than
/// the StatefulSet has would never be achieved, and one that asked for fewer would never be.
pub fn in_place_pipeline(pipeline: &Pipeline, replicas: u32) -> Cow<'_, Pipeline> {
    if pipeline.steps.iter().all(|step| step.capacity.is_none()) {
        return Cow::Borrowed(pipeline);
    }
    let mut pipeline = pipeline.clone();
    for step in &mut pipeline.steps {
        let Some(capacity) = &step.capacity else {
            continue;
        };
        let (contender, pods) = match (capacity.contender, capacity.incumbent) {
            (Some(contender), _) => (contender, contender.of(replicas).min(replicas)),
            (None, Some(incumbent)) => {
                let pods = replicas - incumbent.of(replicas).min(replicas);
                (Share::Replicas(pods), pods)
            }
            (None, None) => continue,
        };
        step.capacity = Some(CapacityStep {
            contender: Some(contender),
            incumbent: Some(Share::Replicas(replicas - pods)),
            max_surge: None,
        });
    }
    Cow::Owned(pipeline)
}

/// The application's StatefulSet, unless it is being deleted.
fn installed<'a>(cluster: Workloads<'a>) -> Option<&'a StatefulSet> {
    cluster
        .stateful_sets
        .iter()
        .map(|stateful_set| stateful_set.as_ref())
        .find(|stateful_set| stateful_set.metadata.deletion_timestamp.is_none())
}

/// The release whose pod template the StatefulSet holds.
fn held(stateful_set: &StatefulSet) -> Option<&str> {
    stateful_set
        .metadata
        .labels
        .as_ref()?
        .get(RELEASE_LABEL)
        .map(String::as_str)
}

fn release_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(RELEASE_LABEL)
        .map(String::as_str)
}

/// The StatefulSet's pods, each with its ordinal (read from its name, `<statefulset>-<ordinal>`).
fn pods_of<'p>(stateful_set: &StatefulSet, pods: &'p [std::sync::Arc<Pod>]) -> Vec<(u32, &'p Pod)> {
    let prefix = format!(
        "{}-",
        stateful_set.metadata.name.as_deref().unwrap_or_default()
    );
    pods.iter()
        .filter_map(|pod| {
            let ordinal = pod.metadata.name.as_deref()?.strip_prefix(&prefix)?;
            Some((ordinal.parse().ok()?, pod.as_ref()))
        })
        .collect()
}

/// How many of the pods below the partition run `release`.
fn pods_below_partition(stateful_set: &StatefulSet, pods: &[(u32, &Pod)], release: &str) -> u32 {
    let (_, partition) = replicas_and_partition(stateful_set);
    let below = pods
        .iter()
        .filter(|(ordinal, pod)| *ordinal < partition && release_of(pod) == Some(release))
        .count();
    u32::try_from(below).unwrap_or(u32::MAX)
}

/// The delete that gives `release`, the StatefulSet's current revision (what a pod below the
/// partition is recreated as), one more pod: the highest pod below the partition that runs
/// neither it nor the held release (a contender superseded mid-rollout, whose pods the partition
/// no longer reaches). One pod at a time, and only while every pod is ready, so that no more
/// pods are down than a rolling update would take down.
fn replace_a_stale_pod(
    stateful_set: &StatefulSet,
    pods: &[(u32, &Pod)],
    release: &str,
) -> Vec<Write> {
    let (replicas, partition) = replicas_and_partition(stateful_set);
    let current_revision = stateful_set
        .status
        .as_ref()
        .and_then(|status| status.current_revision.as_deref());
    let is_current = pods.iter().any(|(_, pod)| {
        release_of(pod) == Some(release)
            && current_revision.is_some()
            && pod_label(pod, REVISION_LABEL) == current_revision
    });
    let all_ready = pods.len() == replicas as usize && pods.iter().all(|(_, pod)| pod.is_ready());
    if !is_current || !all_ready {
        return Vec::new();
    }
    let held = held(stateful_set);
    pods.iter()
        .filter(|(ordinal, pod)| {
            let runs = release_of(pod);
            *ordinal < partition && runs != Some(release) && runs != held
        })
        .max_by_key(|(ordinal, _)| *ordinal)
        .map(|(_, pod)| Write::Delete {
            kind: Kind::Pod,
            name: pod.metadata.name.clone().unwrap_or_default(),
        })
        .into_iter()
        .collect()
}

/// The StatefulSet's replicas and partition (within them).
fn replicas_and_partition(stateful_set: &StatefulSet) -> (u32, u32) {
    let spec = stateful_set.spec.as_ref();
    let replicas = spec.and_then(|spec| spec.replicas).unwrap_or(1);
    let replicas = u32::try_from(replicas).unwrap_or(0);
    let partition = spec
        .and_then(|spec| spec.update_strategy.as_ref())
        .and_then(|strategy| strategy.rolling_update.as_ref())
        .and_then(|rolling_update| rolling_update.partition)
        .unwrap_or(0);
    (
        replicas,
        u32::try_from(partition).unwrap_or(0).min(replicas),
    )
}

/// What the StatefulSet runs of each version. The held release runs the ordinals from the
/// partition up: as many as the partition leaves, ready when a pod there is at the update
/// revision (with the status current for the latest spec) and Ready. Every other release runs
/// the pods below the partition that carry its label; an ordinal below it without a pod (one
/// being recreated, as the release it had) counts for the release with most pods there, so that
/// a pod restarting never reads as a version shrinking.
fn observe(
    stateful_set: &StatefulSet,
    pods: &[std::sync::Arc<Pod>],
) -> BTreeMap<String, VersionObservation> {
    let (replicas, partition) = replicas_and_partition(stateful_set);
    let status = stateful_set.status.as_ref();
    let current = status.is_some_and(|status| {
        status.observed_generation.is_some()
            && status.observed_generation >= stateful_set.metadata.generation
    });
    let update_revision = status.and_then(|status| status.update_revision.as_deref());
    let held = held(stateful_set);
    let mut observed: BTreeMap<String, VersionObservation> = BTreeMap::new();
    if let Some(held) = held {
        add(&mut observed, held, replicas - partition, false);
    }
    let mut below = 0;
    for (ordinal, pod) in pods_of(stateful_set, pods) {
        let Some(release) = release_of(pod) else {
            continue;
        };
        if ordinal < partition {
            if Some(release) != held {
                below += 1;
                add(&mut observed, release, 1, pod.is_ready());
            }
        } else if ordinal < replicas && Some(release) == held {
            let updated = current
                && update_revision.is_some()
                && pod_label(pod, REVISION_LABEL) == update_revision;
            add(&mut observed, release, 0, updated && pod.is_ready());
        }
    }
    let missing = partition.saturating_sub(below);
    let most = observed
        .iter()
        .filter(|(release, _)| Some(release.as_str()) != held)
        .max_by_key(|(_, version)| version.capacity.floor())
        .map(|(release, _)| release.clone());
    if let Some(most) = most {
        add(&mut observed, &most, missing, false);
    }
    observed
}

/// Counts `capacity` more pods of `release`, and one more ready pod if `ready`.
fn add(
    observed: &mut BTreeMap<String, VersionObservation>,
    release: &str,
    capacity: u32,
    ready: bool,
) {
    let version = observed
        .entry(release.to_owned())
        .or_insert(VersionObservation {
            capacity: Capacity::ZERO,
            ready: 0,
            weight: 0,
        });
    version.capacity = Capacity::Replicas(version.capacity.floor() + capacity);
    version.ready += u32::from(ready);
}

fn pod_label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The writes that make `version` the held release with `share` of `replicas` pods: its own
/// objects first when it takes the StatefulSet over, then the StatefulSet. A release that already
/// holds it keeps only those of the traffic provider's pod labels its pod template has, since a
/// change of the pod template is a new revision, which would restart its pods.
fn take_over(
    version: Version<'_>,
    replicas: u32,
    share: u32,
    holding: Option<&StatefulSet>,
) -> Vec<Write> {
    let pod_labels: Vec<(&str, &str)> = match holding {
        None => version.pod_labels.to_vec(),
        Some(stateful_set) => {
            let has = stateful_set
                .spec
                .as_ref()
                .and_then(|spec| spec.template.metadata.as_ref())
                .and_then(|metadata| metadata.labels.as_ref());
            version
                .pod_labels
                .iter()
                .copied()
                .filter(|(key, value)| {
                    has.and_then(|labels| labels.get(*key)).map(String::as_str) == Some(*value)
                })
                .collect()
        }
    };
    let mut writes = Vec::new();
    if holding.is_none() {
        writes.extend(objects::install(version));
    }
    if let Some(body) = stateful_set(version.release, replicas, replicas - share, &pod_labels) {
        writes.push(Write::Apply {
            kind: Kind::StatefulSet,
            body,
        });
    }
    writes
}

/// The template's StatefulSet holding `release`: named as the template names it, labelled with
/// the application and the release, its selector the template's and the application's (never the
/// release's: a selector cannot change, and the StatefulSet outlives each release), its pods
/// labelled with the release (so each pod's version reads from its labels and each release is a
/// revision of its own), ConfigMap references renamed, a rolling update at `partition`. No owner
/// reference: it outlives the Release that holds it.
fn stateful_set(
    release: &Release,
    replicas: u32,
    partition: u32,
    extra_pod_labels: &[(&str, &str)],
) -> Option<Value> {
    let template = &release.spec.template;
    let manifest = template.workload()?;
    let name = manifest.name()?.to_owned();
    let release_name = release.metadata.name.clone().unwrap_or_default();
    let mut body = manifest.object();
    super::set_metadata(&mut body, &name, release, None);
    let spec = object(&mut body, "spec");
    spec.insert("replicas".into(), replicas.into());
    spec.insert(
        "updateStrategy".into(),
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}),
    );
    let match_labels = object(object(spec, "selector"), "matchLabels");
    match_labels.insert(APP_LABEL.into(), release.spec.application.clone().into());
    let pod = object(spec, "template");
    let pod_labels = object(object(pod, "metadata"), "labels");
    pod_labels.extend(version_labels(release));
    pod_labels.extend(
        extra_pod_labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::from(*value))),
    );
    if let Some(pod_spec) = pod.get_mut("spec") {
        objects::rename_references(pod_spec, &release_name, template);
    }
    Some(Value::Object(body))
}

#[cfg(test)]
mod tests;
