//! The template's StatefulSet, which Prism rolls out in place (one StatefulSet, its partition
//! moved): it needs the Service that governs its pods' names, and its replicas are what the
//! steps share, so no autoscaler may change them. Part of [`super::manifests`]' checks.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::{Checker, syntax};
use crate::application::Manifest;
use crate::strategy::Step;

impl Checker {
    /// Checks the StatefulSet: it parses, names its governing Service, and runs 0 or more pods.
    pub(super) fn stateful_set(&mut self, manifest: &Manifest, path: &str) {
        let Some(stateful_set) = self.typed::<StatefulSet>(manifest, path) else {
            return;
        };
        self.metadata(&stateful_set.metadata, path, syntax::dns_subdomain);
        let spec = stateful_set.spec.unwrap_or_default();
        if spec.service_name.as_deref().is_none_or(str::is_empty) {
            self.fail(
                format!("{path}.spec.serviceName"),
                &spec.service_name,
                "a StatefulSet names the Service that governs its pods' network identity: set spec.serviceName (a headless Service, which the template may hold)",
            );
        }
        if let Some(replicas) = spec.replicas.filter(|replicas| *replicas < 0) {
            self.fail(
                format!("{path}.spec.replicas"),
                &replicas,
                "replicas is the number of pods to run: 0 or more",
            );
        }
    }

    /// A StatefulSet is rolled out in place, each step's share of its replicas set by its
    /// partition: an autoscaler changing the replicas under it would change every share.
    pub(super) fn stateful_set_not_autoscaled(&mut self, hpa_path: &str, workload: &Manifest) {
        if workload.kind() == Some("StatefulSet") {
            self.fail(
                hpa_path,
                &"HorizontalPodAutoscaler",
                "Prism rolls a StatefulSet out in place, sharing its replicas between versions by its partition, so it cannot be autoscaled: remove the HorizontalPodAutoscaler, or use a Deployment",
            );
        }
    }

    /// In place, a pod stays at its version below the partition: a partition moved back up
    /// reaches none of the contender's pods, so no step may give the contender fewer pods than
    /// an earlier one gave it in the same clusters (an abort, which moves every pod back, is
    /// another matter).
    pub(super) fn in_place_steps(&mut self, steps: &[Step], path: &str, replicas: u32) {
        let mut earlier: Vec<(&Step, u32)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let Some(contender) = step.capacity.as_ref().and_then(|c| c.contender) else {
                continue;
            };
            let pods = contender.of(replicas);
            // Steps of different clusters each: a step of every cluster overlaps any other.
            let same_clusters = |other: &Step| {
                other.clusters.is_none()
                    || step.clusters.is_none()
                    || other.clusters == step.clusters
            };
            if let Some((before, more)) = earlier
                .iter()
                .find(|(before, more)| same_clusters(before) && *more > pods)
            {
                self.fail(
                    format!("{path}[{i}].capacity.contender"),
                    &contender,
                    format!("Prism rolls a StatefulSet out in place, and its partition cannot move back over the contender's pods: step {} gives the contender {more} of {replicas} pods, so this step cannot give it {pods}; keep each step's share at least the one before", before.name),
                );
            }
            earlier.push((step, pods));
        }
    }
}
