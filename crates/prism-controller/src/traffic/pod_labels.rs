//! The default provider, for clusters without a service mesh: the application's one Service
//! selects the pods labelled `prism.dev/traffic=enabled`, and Prism labels, of each version's
//! ready pods, the share its weight asks for.
//!
//! The split is by pods, not by requests: a version's share of the traffic is its share of the
//! labelled ready pods, so weights are only as fine as the pod counts allow. Prism labels the
//! counts whose shares come closest to the weights (and, among equally close ones, the most
//! pods): with 2 incumbent pods and 1 contender pod a weight of 25 gives the contender a third;
//! with 3 and 1 it gets exactly a quarter. The weights as set are kept in an annotation on the
//! Service, so that the engine sees them, not the rounded split.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{AppView, TrafficProvider, Weights, remove_services, service, service_is};
use crate::application::{APP_LABEL, RELEASE_LABEL};
use crate::fleet::is_ready;
use crate::write::{Kind, Write};

/// The label of the pods that receive traffic.
pub const TRAFFIC_LABEL: &str = "prism.dev/traffic";
/// On the Service: the weights as set, `web-2=75,web-3=25`.
pub const WEIGHTS_ANNOTATION: &str = "prism.dev/weights";

pub struct PodLabels;

impl TrafficProvider for PodLabels {
    fn observe(&self, view: &AppView) -> Weights {
        view.observed_service
            .and_then(|service| service.metadata.annotations.as_ref())
            .and_then(|annotations| annotations.get(WEIGHTS_ANNOTATION))
            .map(|text| parse_weights(text))
            .unwrap_or_default()
    }

    /// Pods gain their label first, then the Service states the weights, then pods lose their
    /// label: at every moment, a version the Service gives a weight has pods serving it, and the
    /// Service always has pods to send requests to.
    fn writes(&self, view: &AppView, weights: &Weights) -> Vec<Write> {
        let pods: Vec<PodState> = view
            .pods
            .iter()
            .filter_map(|pod| {
                Some(PodState {
                    name: pod.metadata.name.clone()?,
                    release: pod.metadata.labels.as_ref()?.get(RELEASE_LABEL)?.clone(),
                    ready: is_ready(pod),
                    labelled: pod
                        .metadata
                        .labels
                        .as_ref()
                        .is_some_and(|labels| labels.contains_key(TRAFFIC_LABEL)),
                })
            })
            .collect();
        let chosen = labelled_pods(weights, &pods);
        let label = |pod: &PodState, on: bool| Write::Label {
            kind: Kind::Pod,
            name: pod.name.clone(),
            labels: [(TRAFFIC_LABEL.to_owned(), on.then(|| "enabled".to_owned()))].into(),
        };
        let mut writes: Vec<Write> = pods
            .iter()
            .filter(|pod| !pod.labelled && chosen.contains(pod.name.as_str()))
            .map(|pod| label(pod, true))
            .collect();
        let selector = Map::from_iter([
            (APP_LABEL.to_owned(), Value::from(view.app)),
            (TRAFFIC_LABEL.to_owned(), Value::from("enabled")),
        ]);
        let annotations = Map::from_iter([(
            WEIGHTS_ANNOTATION.to_owned(),
            Value::from(weights_text(weights)),
        )]);
        if !service_is(view, &selector, &annotations) {
            writes.extend(service(view, selector, annotations));
        }
        writes.extend(
            pods.iter()
                .filter(|pod| pod.labelled && !chosen.contains(pod.name.as_str()))
                .map(|pod| label(pod, false)),
        );
        writes
    }

    /// The Service; the traffic labels go with the pods.
    fn remove(&self, view: &AppView) -> Vec<Write> {
        remove_services(view)
    }
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

    #[test]
    fn weights_round_trip_through_the_annotation() {
        let weights: Weights = [("web-2".to_owned(), 75), ("web-3".to_owned(), 25)].into();
        assert_eq!(weights_text(&weights), "web-2=75,web-3=25");
        assert_eq!(parse_weights("web-2=75,web-3=25"), weights);
    }
}
