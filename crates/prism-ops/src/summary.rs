//! An Application in one line of a fleet-wide list: where its newest Release is, what it waits
//! for, and what it runs across its clusters. The HTTP API's application list and fleet page.

use kube::ResourceExt;
use prism_api::application::ApplicationPhase;
use prism_api::{Application, Release};
use serde::Serialize;

use crate::releases;
use crate::status;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    pub namespace: String,
    pub name: String,
    pub phase: Option<ApplicationPhase>,
    pub strategy: Option<String>,
    /// The newest Release's name and revision.
    pub release: Option<String>,
    pub revision: Option<u32>,
    /// The newest Release's phase, `Pending` before the controller sets one.
    pub release_phase: Option<String>,
    pub step: Option<u32>,
    pub step_name: Option<String>,
    pub steps: u32,
    /// The newest Release is on its way through its steps.
    pub rolling_out: bool,
    pub waiting_for: Option<String>,
    pub aborted_because: Option<String>,
    /// Clusters the newest Release is scheduled to.
    pub clusters: u32,
    /// Ready and desired replicas of every live version in every cluster.
    pub ready_replicas: u32,
    pub replicas: u32,
    pub failing_pods: u32,
}

/// `app`'s summary, from its Releases (any order, other applications' left out by the caller)
/// and how many of its pods fail to start.
pub fn summary(app: &Application, releases: &[Release], failing_pods: u32) -> AppSummary {
    let app_status = app.status.clone().unwrap_or_default();
    let rollout = releases::newest(releases).map(status::rollout);
    let newest = releases::newest(releases);
    let (ready_replicas, replicas) = releases
        .iter()
        .filter_map(|release| release.status.as_ref())
        .flat_map(|status| &status.clusters)
        .fold((0, 0), |(ready, desired), cluster| {
            (ready + cluster.ready_replicas, desired + cluster.replicas)
        });
    AppSummary {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        phase: app_status.phase,
        strategy: app_status.strategy,
        release: rollout.as_ref().map(|r| r.release.clone()),
        revision: rollout.as_ref().map(|r| r.revision),
        release_phase: rollout.as_ref().map(|r| r.phase.clone()),
        step: rollout.as_ref().and_then(|r| r.step),
        step_name: rollout.as_ref().and_then(|r| r.step_name.clone()),
        steps: rollout.as_ref().map_or(0, |r| r.steps),
        rolling_out: newest.is_some_and(|release| {
            !release.spec.aborted
                && releases::phase(release)
                    .unwrap_or_default()
                    .is_rolling_out()
        }),
        waiting_for: rollout.as_ref().and_then(|r| r.waiting_for.clone()),
        aborted_because: rollout.and_then(|r| r.aborted_because),
        clusters: newest.map_or(0, |r| {
            u32::try_from(r.spec.clusters.len()).unwrap_or(u32::MAX)
        }),
        ready_replicas,
        replicas,
        failing_pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::{application, release};
    use serde_json::json;

    #[test]
    fn a_release_waiting_for_a_person_is_rolling_out_and_says_so() {
        let app = application("web:3", json!({"contender": "web-3", "incumbent": "web-2"}));
        let releases = [
            release(
                2,
                "web:2",
                json!({"phase": "Complete", "step": 2,
                "clusters": [{"name": "eu-1", "phase": "Achieved", "readyReplicas": 2, "replicas": 2}]}),
            ),
            release(
                3,
                "web:3",
                json!({"phase": "WaitingForCommand", "step": 1, "stepName": "half",
                "clusters": [{"name": "eu-1", "phase": "Achieved", "readyReplicas": 1, "replicas": 2}],
                "conditions": [{"type": "WaitingForCommand", "status": "True", "reason": "Gate",
                    "message": "run prism promote web", "lastTransitionTime": "2026-11-22T11:00:00Z"}]}),
            ),
        ];
        let summary = summary(&app, &releases, 1);
        assert_eq!(summary.release.as_deref(), Some("web-3"));
        assert_eq!((summary.step, summary.steps), (Some(1), 3));
        assert!(summary.rolling_out);
        assert_eq!(
            summary.waiting_for.as_deref(),
            Some("run prism promote web")
        );
        assert_eq!((summary.ready_replicas, summary.replicas), (3, 4));
        assert_eq!((summary.clusters, summary.failing_pods), (2, 1));
    }

    #[test]
    fn a_complete_or_aborted_release_is_not_rolling_out() {
        let app = application("web:3", json!({}));
        let complete = [release(3, "web:3", json!({"phase": "Complete"}))];
        assert!(!summary(&app, &complete, 0).rolling_out);
        let mut aborted = release(3, "web:3", json!({"phase": "Progressing"}));
        aborted.spec.aborted = true;
        assert!(!summary(&app, &[aborted], 0).rolling_out);
        assert!(!summary(&app, &[], 0).rolling_out);
    }
}
