//! The default provider, for clusters without a service mesh: the application's one Service
//! selects the pods of the one version that has all the traffic (`prism.dev/release`), or, while
//! versions share it, the pods labelled `prism.dev/traffic=enabled`, of each version's ready pods
//! the share its weight asks for.
//!
//! The split is by pods, not by requests: a version's share of the traffic is its share of the
//! labelled ready pods, so weights are only as fine as the pod counts allow. Prism labels the
//! counts whose shares come closest to the weights (and, among equally close ones, the most
//! pods): with 2 incumbent pods and 1 contender pod a weight of 25 gives the contender a third;
//! with 3 and 1 it gets exactly a quarter. The weights as set are kept in an annotation on the
//! Service while versions share it, so that the engine sees them, not the rounded split.
//!
//! Writes are few: every version's pod template carries the traffic label, so a pod is labelled
//! from its start, and Prism patches only the exceptions (the pods a split leaves out). A version
//! alone on the Service needs no pod label at all, and its weight is the selector itself.

use std::collections::BTreeSet;

use prism_api::labels::{
    APP_LABEL, RELEASE_LABEL, TRAFFIC_ENABLED, TRAFFIC_LABEL, WEIGHTS_ANNOTATION,
};
use serde_json::{Map, Value};

use prism_engine::ResolvedRoute;

use super::{AppView, TrafficProvider, Weights, remove_services, service, service_is};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

pub struct PodLabels;

impl TrafficProvider for PodLabels {
    fn touches(&self) -> &'static [Touch] {
        &[
            Touch {
                kind: Kind::Pod,
                verbs: &[Verb::Patch],
                why: "podLabels: sets and removes the prism.dev/traffic label on pods (a merge patch), so that the application's Service selects each version's share of them",
            },
            Touch {
                kind: Kind::Service,
                verbs: &[Verb::WatchLabelled, Verb::Apply, Verb::Delete],
                why: "podLabels: the application's Service selects the labelled pods of every version, with the weights as set in an annotation; deleted when the application leaves the cluster or its Application is deleted",
            },
        ]
    }

    fn observe(&self, view: &AppView) -> Weights {
        let Some(service) = view.observed_service else {
            return Weights::new();
        };
        let selected = service
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.as_ref())
            .and_then(|selector| selector.get(RELEASE_LABEL));
        if let Some(release) = selected {
            return [(release.clone(), 100)].into();
        }
        service
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(WEIGHTS_ANNOTATION))
            .map(|text| parse_weights(text))
            .unwrap_or_default()
    }

    /// A version with all the traffic is selected by its release label, and no pod is labelled.
    /// A split selects the traffic label: pods gain it first, then the Service states the
    /// weights, then pods lose it, so that at every moment a version the Service gives a weight
    /// has pods serving it and the Service always has pods to send requests to. (Labels do not
    /// matter while the Service selects one release: then they change before the switch.)
    fn writes(&self, view: &AppView, weights: &Weights, _routes: &[ResolvedRoute]) -> Vec<Write> {
        let serving: Vec<&String> = weights
            .iter()
            .filter(|(_, weight)| **weight > 0)
            .map(|(release, _)| release)
            .collect();
        let service_write = |selector: Map<String, Value>, annotations: Map<String, Value>| {
            if service_is(view, &selector, &annotations) {
                None
            } else {
                service(view, selector, annotations)
            }
        };
        match serving.as_slice() {
            [] => Vec::new(),
            [alone] => service_write(
                Map::from_iter([
                    (APP_LABEL.to_owned(), Value::from(view.app)),
                    (RELEASE_LABEL.to_owned(), Value::from(alone.as_str())),
                ]),
                Map::new(),
            )
            .into_iter()
            .collect(),
            _ => {
                let (gain, lose) = label_changes(view, weights);
                let switch = service_write(
                    Map::from_iter([
                        (APP_LABEL.to_owned(), Value::from(view.app)),
                        (TRAFFIC_LABEL.to_owned(), Value::from(TRAFFIC_ENABLED)),
                    ]),
                    Map::from_iter([(
                        WEIGHTS_ANNOTATION.to_owned(),
                        Value::from(weights_text(weights)),
                    )]),
                );
                let selects_labels = view
                    .observed_service
                    .and_then(|service| service.spec.as_ref()?.selector.as_ref())
                    .is_some_and(|selector| selector.contains_key(TRAFFIC_LABEL));
                if selects_labels {
                    gain.into_iter().chain(switch).chain(lose).collect()
                } else {
                    gain.into_iter().chain(lose).chain(switch).collect()
                }
            }
        }
    }

    /// The Service; the traffic labels go with the pods.
    fn remove(&self, view: &AppView) -> Vec<Write> {
        remove_services(view)
    }

    fn pod_template_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[(TRAFFIC_LABEL, TRAFFIC_ENABLED)]
    }
}

/// The label patches that make the labelled ready pods split as `weights` ask: the pods to
/// label, and the pods to unlabel. Pods not ready are left alone (a starting pod keeps its
/// template's label, and the split is mended when it is ready), and so are pods being deleted:
/// they are going away, and a patch could find them gone.
fn label_changes(view: &AppView, weights: &Weights) -> (Vec<Write>, Vec<Write>) {
    let pods: Vec<PodState> = view
        .pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let labels = pod.metadata.labels.as_ref()?;
            Some(PodState {
                name: pod.metadata.name.clone()?,
                release: labels.get(RELEASE_LABEL)?.clone(),
                ready: pod.is_ready(),
                labelled: labels.get(TRAFFIC_LABEL).map(String::as_str) == Some(TRAFFIC_ENABLED),
            })
        })
        .collect();
    let chosen = labelled_pods(weights, &pods);
    let label = |pod: &PodState, on: bool| Write::Label {
        kind: Kind::Pod,
        name: pod.name.clone(),
        labels: [(
            TRAFFIC_LABEL.to_owned(),
            on.then(|| TRAFFIC_ENABLED.to_owned()),
        )]
        .into(),
    };
    let gain = pods
        .iter()
        .filter(|pod| !pod.labelled && chosen.contains(pod.name.as_str()))
        .map(|pod| label(pod, true))
        .collect();
    let lose = pods
        .iter()
        .filter(|pod| pod.ready && pod.labelled && !chosen.contains(pod.name.as_str()))
        .map(|pod| label(pod, false))
        .collect();
    (gain, lose)
}

/// One pod of the application, as the provider needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub release: String,
    pub ready: bool,
    /// It carries the traffic label now.
    pub labelled: bool,
}

/// The names of the pods to label so that the labelled ready pods split as `weights` ask: per
/// version, a count of its ready pods whose shares come closest to the weights (the largest
/// error across versions is what counts; ties go to more pods), taking pods already labelled
/// first so that as few labels as possible change.
pub fn labelled_pods<'p>(weights: &Weights, pods: &'p [PodState]) -> BTreeSet<&'p str> {
    // Versions with a weight and ready pods, with their ready pods in the order to take them.
    let mut versions: Vec<(u32, Vec<&PodState>)> = weights
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .map(|(release, weight)| {
            let mut ready: Vec<&PodState> = pods
                .iter()
                .filter(|pod| pod.ready && &pod.release == release)
                .collect();
            ready.sort_by_key(|pod| (!pod.labelled, pod.name.clone()));
            (*weight, ready)
        })
        .filter(|(_, ready)| !ready.is_empty())
        .collect();
    let total_weight: u32 = versions.iter().map(|(weight, _)| weight).sum();
    let total_ready: usize = versions.iter().map(|(_, ready)| ready.len()).sum();
    let mut best: Option<(f64, usize, Vec<usize>)> = None;
    for total in versions.len()..=total_ready {
        let counts: Vec<usize> = versions
            .iter()
            .map(|(weight, ready)| {
                let ideal = f64::from(*weight) * total as f64 / f64::from(total_weight);
                (ideal.round() as usize).clamp(1, ready.len())
            })
            .collect();
        let labelled: usize = counts.iter().sum();
        let error = versions
            .iter()
            .zip(&counts)
            .map(|((weight, _), count)| {
                (*count as f64 / labelled as f64 - f64::from(*weight) / f64::from(total_weight))
                    .abs()
            })
            .fold(0.0, f64::max);
        let better = best.as_ref().is_none_or(|(best_error, best_labelled, _)| {
            error < best_error - 1e-9 || (error < best_error + 1e-9 && labelled > *best_labelled)
        });
        if better {
            best = Some((error, labelled, counts));
        }
    }
    let counts = best.map(|(_, _, counts)| counts).unwrap_or_default();
    versions
        .iter_mut()
        .zip(counts)
        .flat_map(|((_, ready), count)| ready.drain(..count))
        .map(|pod| pod.name.as_str())
        .collect()
}

fn weights_text(weights: &Weights) -> String {
    weights
        .iter()
        .map(|(release, weight)| format!("{release}={weight}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_weights(text: &str) -> Weights {
    text.split(',')
        .filter_map(|pair| {
            let (release, weight) = pair.split_once('=')?;
            Some((release.to_owned(), weight.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(release: &str, ready: usize, labelled: usize) -> Vec<PodState> {
        (0..ready)
            .map(|index| PodState {
                name: format!("{release}-pod{index}"),
                release: release.into(),
                ready: true,
                labelled: index < labelled,
            })
            .collect()
    }

    fn counts(weights: &[(&str, u32)], pods: &[PodState]) -> Vec<(String, usize)> {
        let weights: Weights = weights.iter().map(|(r, w)| (r.to_string(), *w)).collect();
        let chosen = labelled_pods(&weights, pods);
        weights
            .keys()
            .map(|release| {
                let count = pods
                    .iter()
                    .filter(|pod| &pod.release == release && chosen.contains(pod.name.as_str()))
                    .count();
                (release.clone(), count)
            })
            .collect()
    }

    #[test]
    fn two_incumbent_pods_and_one_contender_pod_give_the_contender_a_third() {
        let all = [pods("new", 1, 0), pods("old", 2, 2)].concat();
        assert_eq!(
            counts(&[("new", 25), ("old", 75)], &all),
            [("new".into(), 1), ("old".into(), 2)]
        );
    }

    #[test]
    fn exact_shares_leave_surplus_pods_unlabelled() {
        let all = [pods("new", 1, 0), pods("old", 4, 4)].concat();
        assert_eq!(
            counts(&[("new", 25), ("old", 75)], &all),
            [("new".into(), 1), ("old".into(), 3)]
        );
    }

    #[test]
    fn a_small_weight_gets_one_pod_however_few_the_others() {
        let all = [pods("new", 1, 0), pods("old", 4, 4)].concat();
        assert_eq!(
            counts(&[("new", 10), ("old", 90)], &all),
            [("new".into(), 1), ("old".into(), 4)]
        );
    }

    #[test]
    fn a_lone_version_gets_every_ready_pod() {
        let mut all = pods("old", 3, 1);
        all.push(PodState {
            name: "old-starting".into(),
            release: "old".into(),
            ready: false,
            labelled: false,
        });
        assert_eq!(counts(&[("old", 100)], &all), [("old".into(), 3)]);
    }

    #[test]
    fn a_weightless_version_gets_no_pod() {
        let all = [pods("new", 2, 2), pods("old", 2, 2)].concat();
        assert_eq!(
            counts(&[("new", 100), ("old", 0)], &all),
            [("new".into(), 2), ("old".into(), 0)]
        );
    }

    #[test]
    fn pods_already_labelled_are_kept() {
        let mut all = pods("old", 4, 0);
        all[3].labelled = true;
        all[2].labelled = true;
        let weights: Weights = [("new".to_owned(), 50), ("old".to_owned(), 50)].into();
        let all = [all, pods("new", 2, 0)].concat();
        let chosen = labelled_pods(&weights, &all);
        assert!(chosen.contains("old-pod2") && chosen.contains("old-pod3"));
        assert!(!chosen.contains("old-pod0"));
    }

    mod writes {
        use std::sync::Arc;

        use k8s_openapi::api::core::v1::Service;

        use crate::cached::Pod;
        use prism_api::application::{Manifest, TrafficPolicy};
        use serde_json::json;

        use super::super::*;
        use crate::traffic::{AppView, TrafficProvider, Weights};

        fn pod(name: &str, release: &str, ready: bool, labelled: bool, deleting: bool) -> Arc<Pod> {
            let mut labels = json!({"prism.dev/app": "web", "prism.dev/release": release});
            if labelled {
                labels["prism.dev/traffic"] = "enabled".into();
            }
            let mut pod = json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
            });
            if deleting {
                pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            Arc::new(serde_json::from_value(pod).unwrap())
        }

        fn service(selector: Value, weights: Option<&str>) -> Service {
            let mut annotations = json!({"prism.dev/template-of": "web-2"});
            if let Some(weights) = weights {
                annotations["prism.dev/weights"] = weights.into();
            }
            serde_json::from_value(json!({
                "metadata": {"name": "web", "annotations": annotations},
                "spec": {"selector": selector}
            }))
            .unwrap()
        }

        /// The Service of versions that share the traffic, set to `weights`.
        fn split(weights: &str) -> Service {
            service(
                json!({"prism.dev/app": "web", "prism.dev/traffic": "enabled"}),
                Some(weights),
            )
        }

        fn weights(pairs: &[(&str, u32)]) -> Weights {
            pairs.iter().map(|(r, w)| ((*r).to_owned(), *w)).collect()
        }

        /// What each write does, in order: `pod/NAME+` or `pod/NAME-`, or `service SELECTOR`.
        fn writes(observed: Option<&Service>, pods: &[Arc<Pod>], asked: &Weights) -> Vec<String> {
            let manifest: Manifest = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}]}
            }))
            .unwrap();
            let view = AppView {
                target: None,
                app: "web",
                service: Some((&manifest, "web-2")),
                observed_service: observed,
                services: &[],
                endpoint_slices: &[],
                pods,
                owner: None,
                policy: &TrafficPolicy::default(),
                releases: &[],
                http_routes: Ok(&[]),
                grpc_routes: Ok(&[]),
                virtual_services: Ok(&[]),
            };
            PodLabels
                .writes(&view, asked, &[])
                .iter()
                .map(|write| match write {
                    Write::Label { name, labels, .. } => {
                        let on = labels[TRAFFIC_LABEL].is_some();
                        format!("pod/{name}{}", if on { "+" } else { "-" })
                    }
                    Write::Apply { body, .. } => format!("service {}", body["spec"]["selector"]),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        }

        #[test]
        fn a_version_alone_is_selected_by_its_release_and_no_pod_is_patched() {
            let pods = [
                pod("old-0", "web-1", true, true, false),
                pod("new-0", "web-2", true, true, false),
                pod("new-1", "web-2", true, false, false),
            ];
            let split = split("web-1=50,web-2=50");
            assert_eq!(
                writes(
                    Some(&split),
                    &pods,
                    &weights(&[("web-1", 0), ("web-2", 100)])
                ),
                [r#"service {"prism.dev/app":"web","prism.dev/release":"web-2"}"#]
            );
            let alone = service(
                json!({"prism.dev/app": "web", "prism.dev/release": "web-2"}),
                None,
            );
            assert_eq!(
                writes(Some(&alone), &pods, &weights(&[("web-2", 100)])),
                Vec::<String>::new()
            );
            let view_weights = PodLabels.observe(&AppView {
                target: None,
                app: "web",
                service: None,
                observed_service: Some(&alone),
                services: &[],
                endpoint_slices: &[],
                pods: &pods,
                owner: None,
                policy: &TrafficPolicy::default(),
                releases: &[],
                http_routes: Ok(&[]),
                grpc_routes: Ok(&[]),
                virtual_services: Ok(&[]),
            });
            assert_eq!(view_weights, weights(&[("web-2", 100)]));
        }

        #[test]
        fn a_split_patches_only_the_pods_it_leaves_out_before_the_switch() {
            // Every pod carries its template's label; 3 of the incumbent's 4 serve next to the
            // contender's one.
            let pods = [
                pod("old-0", "web-1", true, true, false),
                pod("old-1", "web-1", true, true, false),
                pod("old-2", "web-1", true, true, false),
                pod("old-3", "web-1", true, true, false),
                pod("new-0", "web-2", true, true, false),
            ];
            let alone = service(
                json!({"prism.dev/app": "web", "prism.dev/release": "web-1"}),
                None,
            );
            assert_eq!(
                writes(
                    Some(&alone),
                    &pods,
                    &weights(&[("web-1", 75), ("web-2", 25)])
                ),
                [
                    "pod/old-3-".to_owned(),
                    r#"service {"prism.dev/app":"web","prism.dev/traffic":"enabled"}"#.to_owned()
                ]
            );
        }

        #[test]
        fn pods_starting_or_being_deleted_are_never_patched() {
            let pods = [
                pod("old-0", "web-1", true, true, false),
                pod("old-1", "web-1", true, true, true),
                pod("new-0", "web-2", true, true, false),
                pod("new-1", "web-2", false, true, false),
            ];
            let split = split("web-1=50,web-2=50");
            assert_eq!(
                writes(
                    Some(&split),
                    &pods,
                    &weights(&[("web-1", 50), ("web-2", 50)])
                ),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn weights_round_trip_through_the_annotation() {
        let weights: Weights = [("web-2".to_owned(), 75), ("web-3".to_owned(), 25)].into();
        assert_eq!(weights_text(&weights), "web-2=75,web-3=25");
        assert_eq!(parse_weights("web-2=75,web-3=25"), weights);
    }
}
