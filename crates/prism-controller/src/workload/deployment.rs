//! The Deployment: each version is a Deployment of its own named after its Release (with its
//! HorizontalPodAutoscaler when the template has one), scaled to the version's capacity, so
//! versions run side by side and traffic can be split between them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use prism_api::Release;
use prism_api::chart::WorkloadKind;
use prism_api::labels::{CAPACITY_ANNOTATION, RELEASE_LABEL};
use prism_engine::{Capacity, VersionObservation};
use serde_json::{Value, json};

use super::{Version, WorkloadProvider, Workloads, object, objects, set_metadata, version_labels};
use crate::cached::Deployment;
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

/// The Deployment provider.
pub struct Deployments;

const TOUCHES: &[Touch] = &[
    Touch {
        kind: Kind::Deployment,
        verbs: &[
            Verb::WatchLabelled,
            Verb::Apply,
            Verb::Delete,
            Verb::DeleteByRelease,
        ],
        why: "each version is a Deployment named after its Release: watched to see what runs and how many pods are ready, applied to install and scale the version, deleted when its capacity there drops to zero or the version retires, or by label when its Release was deleted (owner references do not cross clusters)",
    },
    Touch {
        kind: Kind::Pod,
        verbs: &[Verb::WatchLabelled],
        why: "watched to see which pods of each version are ready",
    },
    Touch {
        kind: Kind::HorizontalPodAutoscaler,
        verbs: &[Verb::Apply, Verb::Delete, Verb::DeleteByRelease],
        why: "an autoscaled version's HorizontalPodAutoscaler, applied with the bounds of the version's capacity and deleted with the version's other objects",
    },
];

impl WorkloadProvider for Deployments {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Deployment
    }

    fn touches(&self) -> &'static [Touch] {
        TOUCHES
    }

    fn observe(&self, cluster: Workloads<'_>) -> BTreeMap<String, VersionObservation> {
        observe(cluster.deployments.iter().map(|d| d.as_ref()))
    }

    /// A version not installed yet gets all its objects, its own first so that its pods find
    /// them. An installed version keeps only those of the traffic provider's pod labels its pod
    /// template has, since a change of the pod template would restart its pods.
    ///
    /// Running nothing of a version is not having it: at zero capacity its objects are deleted
    /// (a version with no Deployment is observed at zero), so a version that leaves a cluster
    /// costs one write, not a scale to zero and then a delete. Should it come back (an abort
    /// restoring an incumbent), it is installed anew, from zero pods either way.
    fn install(
        &self,
        cluster: Workloads<'_>,
        version: Version<'_>,
        capacity: Capacity,
    ) -> Vec<Write> {
        let installed = installed(cluster, version.release);
        if capacity.is_zero() {
            return match installed {
                Some(_) => self.remove(cluster, version.release),
                None => Vec::new(),
            };
        }
        set_capacity(version, capacity, installed)
    }

    /// Scaled to zero; its autoscaler goes, as it cannot hold zero replicas.
    fn idle(&self, cluster: Workloads<'_>, version: Version<'_>) -> Vec<Write> {
        match installed(cluster, version.release) {
            Some(installed) => set_capacity(version, Capacity::ZERO, Some(installed)),
            None => Vec::new(),
        }
    }

    fn remove(&self, _: Workloads<'_>, release: &Release) -> Vec<Write> {
        let name = release.name_any();
        let mut writes = vec![Write::Delete {
            kind: Kind::Deployment,
            name: name.clone(),
        }];
        if release
            .spec
            .template
            .of_kind("HorizontalPodAutoscaler")
            .next()
            .is_some()
        {
            writes.push(Write::Delete {
                kind: Kind::HorizontalPodAutoscaler,
                name,
            });
        }
        writes.extend(objects::remove(release));
        writes
    }
}

/// The Deployment of `release`, unless it is being deleted.
fn installed<'a>(cluster: Workloads<'a>, release: &Release) -> Option<&'a Deployment> {
    let name = release.name_any();
    cluster
        .deployments
        .iter()
        .map(|deployment| deployment.as_ref())
        .filter(|deployment| deployment.metadata.deletion_timestamp.is_none())
        .find(|deployment| deployment.metadata.name.as_deref() == Some(name.as_str()))
}

fn set_capacity(
    version: Version<'_>,
    capacity: Capacity,
    installed: Option<&Deployment>,
) -> Vec<Write> {
    let Version {
        release,
        pod_labels,
        owner,
        ..
    } = version;
    let template = &release.spec.template;
    let name = release.name_any();
    let pod_labels: Vec<(&str, &str)> = match installed {
        None => pod_labels.to_vec(),
        Some(deployment) => {
            let has = pod_template_labels(deployment);
            pod_labels
                .iter()
                .copied()
                .filter(|(key, value)| {
                    has.and_then(|labels| labels.get(*key)).map(String::as_str) == Some(*value)
                })
                .collect()
        }
    };
    let mut writes = Vec::new();
    if installed.is_none() {
        writes.extend(objects::install(version));
    }
    if let Some(deployment) = deployment(release, capacity, &pod_labels, owner) {
        writes.push(Write::Apply {
            kind: Kind::Deployment,
            body: deployment,
        });
    }
    if template.of_kind("HorizontalPodAutoscaler").next().is_some() {
        writes.push(match capacity {
            Capacity::Autoscaled { min, max } if max > 0 => Write::Apply {
                kind: Kind::HorizontalPodAutoscaler,
                body: autoscaler(release, min.max(1), max, owner),
            },
            // An autoscaler cannot hold zero replicas: the Deployment does.
            _ => Write::Delete {
                kind: Kind::HorizontalPodAutoscaler,
                name: name.clone(),
            },
        });
    }
    writes
}

/// The labels of the pods a Deployment makes, as the cache keeps them.
pub fn pod_template_labels(deployment: &Deployment) -> Option<&BTreeMap<String, String>> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()
}

/// What a cluster runs of each version, from the Deployments of one application, by release.
fn observe<'d>(
    deployments: impl IntoIterator<Item = &'d Deployment>,
) -> BTreeMap<String, VersionObservation> {
    deployments
        .into_iter()
        .filter(|deployment| deployment.metadata.deletion_timestamp.is_none())
        .filter_map(|deployment| {
            let release = deployment.labels().get(RELEASE_LABEL)?.clone();
            let replicas = deployment
                .spec
                .as_ref()
                .and_then(|spec| spec.replicas)
                .unwrap_or(1);
            let replicas = u32::try_from(replicas).unwrap_or(0);
            let capacity = deployment
                .annotations()
                .get(CAPACITY_ANNOTATION)
                .and_then(|text| parse_capacity(text))
                .filter(|capacity| matches!(capacity, Capacity::Autoscaled { .. }))
                .unwrap_or(Capacity::Replicas(replicas));
            let ready = ready_replicas(deployment).min(replicas);
            Some((
                release,
                VersionObservation {
                    capacity,
                    ready,
                    weight: 0,
                },
            ))
        })
        .collect()
}

fn capacity_text(capacity: Capacity) -> String {
    match capacity {
        Capacity::Replicas(n) => n.to_string(),
        Capacity::Autoscaled { min, max } => format!("{min}-{max}"),
    }
}

fn parse_capacity(text: &str) -> Option<Capacity> {
    match text.split_once('-') {
        Some((min, max)) => Some(Capacity::Autoscaled {
            min: min.parse().ok()?,
            max: max.parse().ok()?,
        }),
        None => Some(Capacity::Replicas(text.parse().ok()?)),
    }
}

/// The ready pods of the Deployment's current pod template. Only updated pods count: after a
/// change of the template (by hand: Prism never changes a version's), ready pods of the old one
/// are not this version. A status not yet updated for the latest spec may still count pods a
/// scale-down is removing; the caller caps it by the replicas asked for.
fn ready_replicas(deployment: &Deployment) -> u32 {
    let Some(status) = &deployment.status else {
        return 0;
    };
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let ready = count(status.ready_replicas);
    let current = status.observed_generation >= deployment.metadata.generation;
    if current {
        ready.min(count(status.updated_replicas))
    } else {
        ready
    }
}

/// The template's Deployment as this version's: named after the release, its selector and pods
/// labelled with the application and the release, ConfigMap references renamed, and the
/// replicas of `capacity` (an autoscaler's lower bound when autoscaled).
fn deployment(
    release: &Release,
    capacity: Capacity,
    extra_pod_labels: &[(&str, &str)],
    owner: Option<&OwnerReference>,
) -> Option<Value> {
    let template = &release.spec.template;
    let manifest = template.workload()?;
    let name = release.name_any();
    let mut body = manifest.object();
    set_metadata(&mut body, &name, release, owner);
    let annotations = object(object(&mut body, "metadata"), "annotations");
    annotations.insert(CAPACITY_ANNOTATION.into(), capacity_text(capacity).into());
    let labels = version_labels(release);
    let spec = object(&mut body, "spec");
    spec.insert("replicas".into(), capacity.floor().into());
    let match_labels = object(object(spec, "selector"), "matchLabels");
    match_labels.insert(RELEASE_LABEL.into(), name.clone().into());
    let pod = object(spec, "template");
    let pod_labels = object(object(pod, "metadata"), "labels");
    pod_labels.extend(labels);
    pod_labels.extend(
        extra_pod_labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::from(*value))),
    );
    if let Some(pod_spec) = pod.get_mut("spec") {
        objects::rename_references(pod_spec, &name, template);
    }
    Some(Value::Object(body))
}

fn autoscaler(release: &Release, min: u32, max: u32, owner: Option<&OwnerReference>) -> Value {
    let name = release.name_any();
    let manifest = release
        .spec
        .template
        .of_kind("HorizontalPodAutoscaler")
        .next()
        .map(|manifest| manifest.object())
        .unwrap_or_default();
    let mut body = manifest;
    set_metadata(&mut body, &name, release, owner);
    let spec = object(&mut body, "spec");
    spec.insert("minReplicas".into(), min.into());
    spec.insert("maxReplicas".into(), max.into());
    spec.insert(
        "scaleTargetRef".into(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name}),
    );
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The provider's writes for a cluster that holds `installed`.
    fn install(
        release: &Release,
        capacity: Capacity,
        installed: Option<&Deployment>,
        pod_labels: &[(&str, &str)],
        owner: Option<&OwnerReference>,
    ) -> Vec<Write> {
        let deployments = installed_as(release, installed);
        let cluster = Workloads {
            deployments: &deployments,
            ..Workloads::default()
        };
        let version = Version {
            release,
            pod_labels,
            owner,
            app_owner: None,
            successor: None,
        };
        Deployments.install(cluster, version, capacity)
    }

    fn remove(release: &Release) -> Vec<Write> {
        Deployments.remove(Workloads::default(), release)
    }

    /// `installed` as the cache holds it: the Deployment named after its Release.
    fn installed_as(release: &Release, installed: Option<&Deployment>) -> Vec<Arc<Deployment>> {
        installed
            .cloned()
            .map(|mut deployment| {
                deployment.metadata.name = Some(release.name_any());
                Arc::new(deployment)
            })
            .into_iter()
            .collect()
    }

    fn release(manifests: Value) -> Release {
        crate::workload::test_release(
            "web-3",
            "web",
            3,
            serde_json::from_value(json!({ "manifests": manifests })).unwrap(),
        )
    }

    fn web(replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web", "image": "web:2",
                            "envFrom": [{"configMapRef": {"name": "settings"}}],
                            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "x"}}}]
                        }],
                        "volumes": [{"name": "conf", "configMap": {"name": "settings"}}]
                    }
                }
            }
        })
    }

    fn settings() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})
    }

    fn body(write: &Write) -> &Value {
        match write {
            Write::Apply { body, .. } => body,
            other => panic!("not an apply: {other:?}"),
        }
    }

    #[test]
    fn a_new_version_gets_its_config_maps_then_its_deployment() {
        let release = release(json!([web(4), settings()]));
        let writes = install(&release, Capacity::Replicas(1), None, &[], None);
        assert_eq!(writes.len(), 2);
        let config_map = body(&writes[0]);
        assert_eq!(config_map["metadata"]["name"], "web-3-settings");
        assert_eq!(
            config_map["metadata"]["labels"]["prism.dev/release"],
            "web-3"
        );
        assert_eq!(config_map["data"]["a"], "1");

        let deployment = body(&writes[1]);
        assert_eq!(deployment["metadata"]["name"], "web-3");
        assert_eq!(
            deployment["metadata"]["labels"]["tier"], "front",
            "template labels stay"
        );
        assert_eq!(
            deployment["metadata"]["annotations"][CAPACITY_ANNOTATION],
            "1"
        );
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            json!({"app": "web", "prism.dev/release": "web-3"})
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "prism.dev/app": "web", "prism.dev/release": "web-3"})
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "web-3-settings");
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "web-3-settings"
        );
        assert_eq!(
            pod["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"], "other",
            "a ConfigMap the template does not hold is left alone"
        );
    }

    #[test]
    fn an_installed_version_is_only_scaled() {
        let release = release(json!([web(4), settings()]));
        let writes = install(
            &release,
            Capacity::Replicas(4),
            Some(&installed(&[])),
            &[],
            None,
        );
        assert_eq!(writes.len(), 1);
        assert_eq!(body(&writes[0])["spec"]["replicas"], 4);
    }

    fn installed(pod_labels: &[(&str, &str)]) -> Deployment {
        let labels: BTreeMap<&str, &str> = pod_labels.iter().copied().collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web-3"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": labels}}}
        }))
        .unwrap()
    }

    fn pod_template_labels_of(write: &Write) -> &Value {
        &body(write)["spec"]["template"]["metadata"]["labels"]
    }

    #[test]
    fn a_new_version_s_pods_carry_the_provider_s_labels_from_their_start() {
        let release = release(json!([web(4)]));
        let traffic = [("prism.dev/traffic", "enabled")];
        let writes = install(&release, Capacity::Replicas(1), None, &traffic, None);
        assert_eq!(
            pod_template_labels_of(&writes[0])["prism.dev/traffic"],
            "enabled"
        );
    }

    #[test]
    fn an_installed_version_keeps_its_pod_template_so_its_pods_never_restart() {
        let release = release(json!([web(4)]));
        let traffic = [("prism.dev/traffic", "enabled")];
        let without = installed(&[("app", "web")]);
        let writes = install(
            &release,
            Capacity::Replicas(2),
            Some(&without),
            &traffic,
            None,
        );
        assert_eq!(
            pod_template_labels_of(&writes[0]).get("prism.dev/traffic"),
            None
        );
        let with = installed(&[("prism.dev/traffic", "enabled")]);
        let writes = install(&release, Capacity::Replicas(2), Some(&with), &traffic, None);
        assert_eq!(
            pod_template_labels_of(&writes[0])["prism.dev/traffic"],
            "enabled"
        );
    }

    #[test]
    fn in_the_management_cluster_the_release_owns_its_objects() {
        let release = release(json!([web(4), settings()]));
        let owner = OwnerReference {
            api_version: "prism.dev/v1alpha1".into(),
            kind: "Release".into(),
            name: "web-3".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        for write in install(&release, Capacity::Replicas(1), None, &[], Some(&owner)) {
            assert_eq!(body(&write)["metadata"]["ownerReferences"][0]["uid"], "u");
        }
    }

    #[test]
    fn an_autoscaled_version_gets_bounds_and_at_zero_goes_with_its_autoscaler() {
        let hpa = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"minReplicas": 2, "maxReplicas": 10,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
        });
        let release = release(json!([web(4), hpa]));
        let writes = install(
            &release,
            Capacity::Autoscaled { min: 1, max: 5 },
            Some(&installed(&[])),
            &[],
            None,
        );
        assert_eq!(
            body(&writes[0])["metadata"]["annotations"][CAPACITY_ANNOTATION],
            "1-5"
        );
        let autoscaler = body(&writes[1]);
        assert_eq!(autoscaler["spec"]["minReplicas"], 1);
        assert_eq!(autoscaler["spec"]["maxReplicas"], 5);
        assert_eq!(autoscaler["spec"]["scaleTargetRef"]["name"], "web-3");

        let writes = install(
            &release,
            Capacity::Autoscaled { min: 0, max: 0 },
            Some(&installed(&[])),
            &[],
            None,
        );
        assert_eq!(writes, remove(&release), "at zero, the version goes");
    }

    #[test]
    fn a_version_at_zero_is_deleted_and_one_not_installed_is_left_alone() {
        let release = release(json!([web(4), settings()]));
        let zero = Capacity::Replicas(0);
        assert_eq!(
            install(&release, zero, Some(&installed(&[])), &[], None),
            remove(&release)
        );
        assert_eq!(install(&release, zero, None, &[], None), Vec::new());
    }

    #[test]
    fn removal_deletes_every_object_of_the_version() {
        let release = release(json!([web(4), settings()]));
        let names: Vec<String> = remove(&release)
            .iter()
            .map(|write| match write {
                Write::Delete { kind, name } => format!("{kind:?}/{name}"),
                other => panic!("not a delete: {other:?}"),
            })
            .collect();
        assert_eq!(names, ["Deployment/web-3", "ConfigMap/web-3-settings"]);
    }

    #[test]
    fn observation_reads_replicas_ready_and_autoscaler_bounds() {
        let deployment = |name: &str, replicas: i32, ready: i32, capacity: &str| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"prism.dev/release": name},
                             "annotations": {CAPACITY_ANNOTATION: capacity}},
                "spec": {"replicas": replicas, "selector": {}, "template": {}},
                "status": {"readyReplicas": ready, "updatedReplicas": ready}
            }))
            .unwrap()
        };
        let observed = observe(&[
            deployment("web-2", 4, 3, "4"),
            deployment("web-3", 2, 2, "2-6"),
        ]);
        assert_eq!(observed["web-2"].capacity, Capacity::Replicas(4));
        assert_eq!(observed["web-2"].ready, 3);
        assert_eq!(
            observed["web-3"].capacity,
            Capacity::Autoscaled { min: 2, max: 6 }
        );
    }

    #[test]
    fn only_ready_pods_of_the_current_template_count_up_to_the_replicas_asked_for() {
        let deployment =
            |generation: i64, observed: i64, replicas: i32, ready: i32, updated: i32| {
                let deployment: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": "web-2", "generation": generation,
                                 "labels": {"prism.dev/release": "web-2"}},
                    "spec": {"replicas": replicas, "selector": {}, "template": {}},
                    "status": {"observedGeneration": observed, "readyReplicas": ready,
                               "updatedReplicas": updated}
                }))
                .unwrap();
                observe(&[deployment])["web-2"].ready
            };
        assert_eq!(deployment(2, 2, 4, 4, 4), 4);
        // Someone changed the pod template: the old template's ready pods are not this version.
        assert_eq!(deployment(3, 3, 4, 4, 1), 1);
        // Scaled down from 4 to 2, and the status does not show it yet.
        assert_eq!(deployment(3, 2, 2, 4, 4), 2);
    }
}
