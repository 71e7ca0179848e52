//! A Release's steps as a timeline: what each step sets, what lets the rollout leave it, and
//! whether it is done, current, pending or where the rollout failed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prism_api::Release;
use prism_api::release::ReleasePhase;
use prism_api::strategy::{GateKind, step_label};
use serde::Serialize;

use crate::releases;
use crate::status;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub index: u32,
    pub name: String,
    /// `2/3 "half"`.
    pub label: String,
    /// The contender's capacity the step sets, e.g. `50%` or `3`.
    pub capacity: Option<String>,
    /// The contender's traffic weight the step sets, percent.
    pub weight: Option<u32>,
    /// What lets the rollout leave the step: `approval`, `pause 30s`, `webhook`, or `analysis`
    /// (which also holds a step whose gate is automatic).
    pub gate: Option<String>,
    pub state: StepState,
    /// When the step was achieved; known for the current step.
    pub achieved_at: Option<Time>,
    /// What the current step waits for.
    pub waits_for: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Done,
    Current,
    Pending,
    /// The step the rollout failed at: it rolls back or was rolled back.
    Failed,
}

/// `release`'s steps, in order.
pub fn timeline(release: &Release) -> Vec<Step> {
    let rollout = status::rollout(release);
    let phase = releases::phase(release).unwrap_or_default();
    let steps = &release.spec.strategy.steps;
    let current = rollout.step.unwrap_or(0) as usize;
    let failed = release.spec.aborted || phase == ReleasePhase::Aborted;
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let state = match () {
                () if phase == ReleasePhase::Complete || index < current => StepState::Done,
                () if index > current => StepState::Pending,
                () if failed => StepState::Failed,
                () if phase == ReleasePhase::Superseded => StepState::Pending,
                () => StepState::Current,
            };
            let gate = match step.gate.as_ref().map(|gate| gate.kind()) {
                Some(GateKind::Manual) => Some("approval".to_owned()),
                Some(GateKind::Pause(pause)) => Some(format!("pause {pause}")),
                Some(GateKind::Webhook(_)) => Some("webhook".to_owned()),
                Some(GateKind::Auto) | None => {
                    step.analysis.as_ref().map(|_| "analysis".to_owned())
                }
            };
            let is_current = state == StepState::Current || state == StepState::Failed;
            Step {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                name: step.name.clone(),
                label: step_label(index, steps.len(), Some(&step.name)),
                capacity: step
                    .capacity
                    .as_ref()
                    .and_then(|capacity| capacity.contender)
                    .map(|share| share.to_string()),
                weight: step.traffic.as_ref().and_then(|traffic| traffic.contender),
                gate,
                state,
                achieved_at: rollout.achieved_at.clone().filter(|_| is_current),
                waits_for: rollout.waiting_for.clone().filter(|_| is_current),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::release;
    use serde_json::json;

    fn states(release: &Release) -> Vec<StepState> {
        timeline(release).iter().map(|step| step.state).collect()
    }

    #[test]
    fn steps_before_the_current_one_are_done_and_after_it_pending() {
        let release = release(3, "web:3", json!({"phase": "Progressing", "step": 1}));
        assert_eq!(
            states(&release),
            [StepState::Done, StepState::Current, StepState::Pending]
        );
        let steps = timeline(&release);
        assert_eq!(steps[1].label, "2/3 \"half\"");
        assert_eq!(
            (steps[1].capacity.as_deref(), steps[1].weight),
            (Some("50%"), Some(50))
        );
    }

    #[test]
    fn a_complete_release_has_every_step_done_and_an_aborted_one_fails_at_its_step() {
        let complete = release(3, "web:3", json!({"phase": "Complete", "step": 2}));
        assert_eq!(states(&complete), [StepState::Done; 3]);
        let aborted = release(3, "web:3", json!({"phase": "Aborted", "step": 1}));
        assert_eq!(
            states(&aborted),
            [StepState::Done, StepState::Failed, StepState::Pending]
        );
    }

    #[test]
    fn only_the_current_step_says_what_it_waits_for() {
        let release = release(
            3,
            "web:3",
            json!({"phase": "Progressing", "step": 0,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "R",
                "message": "waiting for c2", "lastTransitionTime": "2026-11-22T11:00:00Z"}]}),
        );
        let steps = timeline(&release);
        assert_eq!(steps[0].waits_for.as_deref(), Some("waiting for c2"));
        assert_eq!(steps[1].waits_for, None);
    }
}
