//! A Release's status as the engine's decision describes it, and back: the status is where a
//! release's progress lives between decisions (and across restarts of the controller). Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use prism_api::Release;
use prism_api::conditions::{self, Condition};
use prism_api::release::{ClusterPhase as ReleaseClusterPhase, ClusterProgress, ReleaseStatus};
use prism_engine::{
    ClusterDecision, ClusterObservation, ClusterPhase, ConditionKind, Phase, Progress,
    ReleaseDecision,
};

/// The engine's view of a release's progress, from its status. A release without a status is at
/// its first step, progressing.
pub fn progress(release: &Release) -> Progress {
    let Some(status) = &release.status else {
        return Progress::default();
    };
    Progress {
        step: status.step.unwrap_or(0),
        achieved_at: status.achieved_at.as_ref().map(|time| time.0),
        phase: status.phase.unwrap_or_default(),
        abort: status.abort.clone(),
    }
}

/// The status of `release` after `decision`, given what each cluster runs and the clusters'
/// next moves. Conditions keep their lastTransitionTime unless their status flips; `now` is the
/// time of a flip.
pub fn release_status(
    release: &Release,
    decision: &ReleaseDecision,
    clusters: &[ClusterDecision],
    observed: &BTreeMap<String, ClusterObservation>,
    now: &Time,
) -> ReleaseStatus {
    let current = release.status.clone().unwrap_or_default();
    let progress = &decision.progress;
    let steps = &release.spec.strategy.steps;
    let achieved = match progress.phase {
        Phase::Complete => steps.len() as u32,
        _ if progress.achieved_at.is_some() => progress.step + 1,
        _ => progress.step,
    };
    let name = release.name_any();
    let cluster_progress = clusters
        .iter()
        .filter_map(|cluster| {
            let seen = observed
                .get(cluster.cluster)
                .and_then(|observation| observation.versions.get(&name));
            let decided = cluster.versions.iter().any(|v| v.release == name);
            if seen.is_none() && !decided {
                return None;
            }
            let before = current.clusters.iter().find(|c| c.name == cluster.cluster);
            let (phase, message) = match cluster.phase {
                ClusterPhase::Achieved => (ReleaseClusterPhase::Achieved, None),
                ClusterPhase::Unreachable => (
                    ReleaseClusterPhase::Unreachable,
                    Some("the cluster's API server does not answer".to_owned()),
                ),
                ClusterPhase::CapacityUp => (
                    ReleaseClusterPhase::Progressing,
                    Some("scaling up: waiting for ready pods".to_owned()),
                ),
                ClusterPhase::Traffic => (
                    ReleaseClusterPhase::Progressing,
                    Some("shifting traffic".to_owned()),
                ),
                ClusterPhase::CapacityDown => (
                    ReleaseClusterPhase::Progressing,
                    Some("scaling down".to_owned()),
                ),
            };
            let last = (steps.len() as u32).checked_sub(1);
            let achieved_step = match progress.phase {
                Phase::Complete => last,
                phase if phase.is_rolling_out() && cluster.phase == ClusterPhase::Achieved => {
                    Some(progress.step)
                }
                _ => before.and_then(|c| c.achieved_step),
            };
            Some(ClusterProgress {
                name: cluster.cluster.to_owned(),
                phase,
                achieved_step,
                replicas: seen.map_or(0, |seen| seen.capacity.floor()),
                ready_replicas: seen.map_or(0, |seen| seen.ready),
                weight: seen.map_or(0, |seen| seen.weight),
                message,
            })
        })
        .collect();

    let generation = release.metadata.generation;
    let mut desired: Vec<Condition> = decision
        .conditions
        .iter()
        .map(|condition| Condition {
            type_: condition_type(condition.kind).to_owned(),
            status: if condition.status { "True" } else { "False" }.to_owned(),
            reason: condition.reason.to_owned(),
            message: condition.message.clone(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        })
        .collect();
    let scheduled = release
        .spec
        .clusters
        .iter()
        .map(|cluster| cluster.name.as_str())
        .collect::<Vec<_>>();
    desired.insert(
        0,
        Condition {
            type_: conditions::release::SCHEDULED.to_owned(),
            status: "True".to_owned(),
            reason: "Scheduled".to_owned(),
            message: format!("scheduled on {}", scheduled.join(", ")),
            observed_generation: generation,
            last_transition_time: now.clone(),
        },
    );
    desired.push(Condition {
        type_: conditions::release::BLOCKED.to_owned(),
        status: "False".to_owned(),
        reason: "NotBlocked".to_owned(),
        message: "no RolloutBlock stops this Release".to_owned(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    });
    for condition in &mut desired {
        if let Some(before) = conditions::find(&current.conditions, &condition.type_)
            && before.status == condition.status
        {
            condition.last_transition_time = before.last_transition_time.clone();
        }
    }

    ReleaseStatus {
        observed_generation: generation,
        step: Some(progress.step),
        step_name: steps
            .get(progress.step as usize)
            .map(|step| step.name.clone()),
        achieved_at: progress.achieved_at.map(Time),
        progress: Some(format!("{achieved}/{}", steps.len())),
        phase: Some(progress.phase),
        abort: progress.abort.clone(),
        clusters: cluster_progress,
        conditions: desired,
        analysis: current.analysis,
    }
}

fn condition_type(kind: ConditionKind) -> &'static str {
    match kind {
        ConditionKind::Progressing => conditions::release::PROGRESSING,
        ConditionKind::StepAchieved => conditions::release::STEP_ACHIEVED,
        ConditionKind::WaitingForCommand => conditions::release::WAITING_FOR_COMMAND,
        ConditionKind::Complete => conditions::release::COMPLETE,
        ConditionKind::Aborted => conditions::release::ABORTED,
    }
}
