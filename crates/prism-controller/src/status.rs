//! A Release's status as the engine's decision describes it, and back: the status is where a
//! release's progress lives between decisions (and across restarts of the controller). Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use prism_api::Release;
use prism_api::conditions::{self, Condition};
use prism_api::release::{
    self, ClusterPhase as ReleaseClusterPhase, ClusterProgress, ReleaseStatus,
};
use prism_api::strategy::Step;
use prism_engine::{
    ClusterDecision, ClusterObservation, ClusterPhase, ClusterStepProgress, ConditionKind,
    Followed, Phase, Progress, ReleaseDecision, Retirement, Verdict,
};

/// The engine's view of a release's progress, from its status. A release without a status is at
/// its first step, progressing.
pub fn progress(release: &Release) -> Progress {
    followed(release).0
}

/// The progress of `release` on its strategy as it is now, and how its current step was found:
/// the strategy of a Release in flight is edited when the Application's changes, and the step
/// the status names may have moved, or gone.
fn followed(release: &Release) -> (Progress, Followed) {
    let Some(status) = &release.status else {
        return (Progress::default(), Followed::Same);
    };
    let mut progress = Progress {
        step: status.step.unwrap_or(0),
        step_name: status.step_name.clone(),
        achieved_at: status.achieved_at.as_ref().map(|time| time.0),
        phase: status.phase.unwrap_or_default(),
        abort: status.abort.clone(),
        clusters: status
            .clusters
            .iter()
            .filter_map(|cluster| Some((cluster.name.clone(), step_progress(cluster)?)))
            .collect(),
        retirement: status
            .retirement
            .as_ref()
            .zip(status.state)
            .map(|(retirement, state)| Retirement {
                state,
                cause: retirement.cause,
                message: retirement.message.clone(),
                started_at: retirement.started_at.0,
                routes_left_at: retirement.routes_left_at.as_ref().map(|time| time.0),
                quiet_since: retirement.quiet_since.as_ref().map(|time| time.0),
                drain_held: retirement.drain_held,
                drained_at: retirement.drained_at.as_ref().map(|time| time.0),
                retired_at: retirement.retired_at.as_ref().map(|time| time.0),
            }),
    };
    let followed = if progress.phase.is_rolling_out() {
        progress.follow(&release.spec.strategy)
    } else {
        Followed::Same
    };
    (progress, followed)
}

/// The current step of `release` as analyses and webhook gates judge it.
pub struct JudgedStep<'a> {
    /// Its index.
    pub index: u32,
    /// The step, when the strategy has it.
    pub step: Option<&'a Step>,
    /// When it was achieved: `None` while it is not, or once the Release no longer rolls out.
    /// Analyses and webhook gates judge a step from then on.
    pub achieved_at: Option<jiff::Timestamp>,
    /// Whether the status's analysis and gate records of the step at this index are of this
    /// step: not when an edit of the strategy moved the step or put another one in its place.
    pub records_hold: bool,
}

pub fn judged_step(release: &Release) -> JudgedStep<'_> {
    let (progress, followed) = followed(release);
    JudgedStep {
        index: progress.step,
        step: release.spec.strategy.steps.get(progress.step as usize),
        achieved_at: progress
            .achieved_at
            .filter(|_| progress.phase.is_rolling_out()),
        records_hold: followed.keeps_step_records(),
    }
}

/// The verdict of a check not judged yet: pending where the step has one.
pub fn not_judged<T>(check: Option<T>) -> Verdict {
    match check {
        Some(_) => Verdict::Pending,
        None => Verdict::NotRequired,
    }
}

/// A cluster's record of the current step, kept in its entry of the status: a cluster whose
/// wave started has `since`, and a failed one the Failed phase, with the reason as its message.
fn step_progress(cluster: &ClusterProgress) -> Option<ClusterStepProgress> {
    Some(ClusterStepProgress {
        since: cluster.since.as_ref()?.0,
        achieved_at: cluster.achieved_at.as_ref().map(|time| time.0),
        failed: (cluster.phase == ReleaseClusterPhase::Failed)
            .then(|| cluster.message.clone().unwrap_or_default()),
    })
}

/// The status of `release` after `decision`, given what each cluster runs and the clusters'
/// next moves, why the unreachable ones are, and the release's writes each cluster refuses.
/// Conditions keep their lastTransitionTime unless their status flips; `now` is the time of a
/// flip.
pub fn release_status(
    release: &Release,
    decision: &ReleaseDecision,
    clusters: &[ClusterDecision],
    observed: &BTreeMap<String, ClusterObservation>,
    unreachable: &BTreeMap<String, String>,
    refused: &BTreeMap<String, String>,
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
            let record = progress.clusters.get(cluster.cluster);
            if seen.is_none() && !decided && record.is_none() {
                return None;
            }
            let before = current.clusters.iter().find(|c| c.name == cluster.cluster);
            let failed = record.and_then(|record| record.failed.clone());
            let refused = refused
                .get(cluster.cluster)
                .filter(|_| cluster.phase != ClusterPhase::Unreachable)
                .map(|refusal| refused_message(refusal));
            let (phase, message) = match cluster.phase {
                _ if failed.is_some() => (ReleaseClusterPhase::Failed, failed),
                ClusterPhase::Achieved if refused.is_some() => {
                    (ReleaseClusterPhase::Achieved, refused)
                }
                _ if refused.is_some() => (ReleaseClusterPhase::Progressing, refused),
                ClusterPhase::Achieved => (ReleaseClusterPhase::Achieved, None),
                // A complete release stays at its last step while the cluster moves
                // for a newer one: what moves it is the newer one's status.
                ClusterPhase::CapacityUp | ClusterPhase::Traffic | ClusterPhase::CapacityDown
                    if progress.phase == Phase::Complete =>
                {
                    (ReleaseClusterPhase::Achieved, None)
                }
                ClusterPhase::Queued => (
                    ReleaseClusterPhase::Pending,
                    Some("waiting for its wave".to_owned()),
                ),
                ClusterPhase::Unreachable => (
                    ReleaseClusterPhase::Unreachable,
                    Some(
                        unreachable
                            .get(cluster.cluster)
                            .cloned()
                            .unwrap_or_else(|| {
                                "the cluster's API server does not answer".to_owned()
                            }),
                    ),
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
                since: record.map(|record| Time(record.since)),
                achieved_at: record.and_then(|record| record.achieved_at).map(Time),
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
    desired.push(writes_refused(refused, generation, now));
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
        state: Some(decision.state()),
        retirement: progress
            .retirement
            .as_ref()
            .map(|retirement| release::Retirement {
                cause: retirement.cause,
                message: retirement.message.clone(),
                started_at: Time(retirement.started_at),
                routes_left_at: retirement.routes_left_at.map(Time),
                quiet_since: retirement.quiet_since.map(Time),
                drain_held: retirement.drain_held,
                drained_at: retirement.drained_at.map(Time),
                retired_at: retirement.retired_at.map(Time),
            }),
        analysis: current.analysis,
        gate: current.gate,
    }
}

/// A refusing cluster's message in the status.
fn refused_message(refusal: &str) -> String {
    format!("writes refused: {refusal}")
}

/// Whether the status of `release` already shows `refusal` on `cluster`'s entry: the same
/// refusal found again (by a restarted controller) is not news.
pub fn shows_refusal(release: &Release, cluster: &str, refusal: &str) -> bool {
    release.status.as_ref().is_some_and(|status| {
        status.clusters.iter().any(|entry| {
            entry.name == cluster && entry.message.as_deref() == Some(&refused_message(refusal))
        })
    })
}

/// `WritesRefused`: True while a cluster refuses the release's writes, naming each.
fn writes_refused(
    refused: &BTreeMap<String, String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = if refused.is_empty() {
        (
            "False",
            "WritesAccepted",
            "every cluster accepts this Release's writes".to_owned(),
        )
    } else {
        let each: Vec<String> = refused
            .iter()
            .map(|(cluster, refusal)| format!("cluster {cluster}: {refusal}"))
            .collect();
        ("True", "WriteRefused", each.join("; "))
    };
    Condition {
        type_: conditions::release::WRITES_REFUSED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Whether two statuses of a Release differ only in what moves with every pod (each cluster's
/// replicas, ready replicas and weight, what a progressing cluster is doing, and the words of a
/// condition that keeps its status and reason): such a change can wait a moment for the next
/// ones, while a transition (a step, a phase, a condition's status or reason, a cluster
/// reaching, failing or losing a step, a version coming to a cluster or leaving it) is written
/// at once. A version that leaves is the last change of a retired Release's status: held back,
/// it would count pods that are gone for as long as the controller waits (or, stopped, until
/// it runs again).
pub fn differ_only_in_counters(a: &ReleaseStatus, b: &ReleaseStatus) -> bool {
    fn without_counters(status: &ReleaseStatus) -> ReleaseStatus {
        let mut status = status.clone();
        for condition in &mut status.conditions {
            condition.message.clear();
        }
        for cluster in &mut status.clusters {
            cluster.replicas = u32::from(cluster.replicas > 0);
            cluster.ready_replicas = 0;
            cluster.weight = 0;
            if matches!(
                cluster.phase,
                ReleaseClusterPhase::Progressing | ReleaseClusterPhase::Pending
            ) {
                cluster.message = None;
            }
        }
        status
    }
    without_counters(a) == without_counters(b)
}

fn condition_type(kind: ConditionKind) -> &'static str {
    match kind {
        ConditionKind::Progressing => conditions::release::PROGRESSING,
        ConditionKind::StepAchieved => conditions::release::STEP_ACHIEVED,
        ConditionKind::WaitingForCommand => conditions::release::WAITING_FOR_COMMAND,
        ConditionKind::Blocked => conditions::release::BLOCKED,
        ConditionKind::Complete => conditions::release::COMPLETE,
        ConditionKind::Aborted => conditions::release::ABORTED,
        ConditionKind::Live => conditions::release::LIVE,
    }
}

#[cfg(test)]
mod tests {
    use prism_api::release::{ReleaseSpec, ScheduledCluster};
    use prism_api::strategy::Pipeline;
    use prism_engine::{Capacity, Role, VersionDecision};
    use prism_testkit::fixtures::web_template;

    use super::*;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn cluster<'a>(name: &'a str, phase: ClusterPhase) -> ClusterDecision<'a> {
        ClusterDecision {
            cluster: name,
            phase,
            versions: vec![VersionDecision {
                release: "web-2",
                capacity: Capacity::Replicas(1),
                target: Capacity::Replicas(1),
                target_weight: 10,
            }],
            traffic: None,
        }
    }

    #[test]
    fn a_complete_release_stays_achieved_while_its_cluster_moves_for_a_newer_one() {
        let release = web_2();
        let complete = Progress {
            phase: Phase::Complete,
            ..Progress::default()
        };
        let status = release_status(
            &release,
            &decision(complete),
            &[cluster("c0", ClusterPhase::CapacityUp)],
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &Time(at(0)),
        );
        assert_eq!(
            (
                status.clusters[0].phase,
                status.clusters[0].message.as_deref()
            ),
            (ReleaseClusterPhase::Achieved, None)
        );
    }

    #[test]
    fn counters_are_told_apart_from_transitions() {
        let entry = |phase, ready, message: &str| ClusterProgress {
            name: "c1".into(),
            phase,
            achieved_step: None,
            since: None,
            achieved_at: None,
            replicas: 4,
            ready_replicas: ready,
            weight: 25,
            message: Some(message.into()),
        };
        let status = |clusters| ReleaseStatus {
            step: Some(1),
            clusters,
            ..ReleaseStatus::default()
        };
        let progressing = ReleaseClusterPhase::Progressing;
        let before = status(vec![entry(
            progressing,
            1,
            "scaling up: waiting for ready pods",
        )]);
        let more_ready = status(vec![entry(progressing, 3, "shifting traffic")]);
        assert!(differ_only_in_counters(&before, &more_ready));
        let achieved = status(vec![entry(ReleaseClusterPhase::Achieved, 4, "")]);
        assert!(!differ_only_in_counters(&before, &achieved));
        let failed = status(vec![entry(ReleaseClusterPhase::Failed, 1, "missed")]);
        let failed_otherwise = status(vec![entry(ReleaseClusterPhase::Failed, 1, "other")]);
        assert!(!differ_only_in_counters(&failed, &failed_otherwise));
        let next_step = ReleaseStatus {
            step: Some(2),
            ..more_ready.clone()
        };
        assert!(!differ_only_in_counters(&more_ready, &next_step));
        let left = status(vec![ClusterProgress {
            replicas: 0,
            ready_replicas: 0,
            weight: 0,
            ..entry(ReleaseClusterPhase::Achieved, 0, "")
        }]);
        assert!(!differ_only_in_counters(&achieved, &left));

        let condition = |reason: &str, message: &str| Condition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time(at(0)),
        };
        let with = |condition| ReleaseStatus {
            conditions: vec![condition],
            ..more_ready.clone()
        };
        let scaling_up = with(condition("Converging", "cluster c1 is scaling up"));
        let shifting = with(condition("Converging", "cluster c1 is shifting traffic"));
        let pausing = with(condition("Pausing", "paused until 10:00"));
        assert!(differ_only_in_counters(&scaling_up, &shifting));
        assert!(!differ_only_in_counters(&shifting, &pausing));
    }

    /// Revision 2 of `web`, scheduled on c0, c1 and c2.
    fn web_2() -> Release {
        let scheduled = |name: &str| ScheduledCluster {
            name: name.into(),
            region: "eu".into(),
        };
        Release::new(
            "web-2",
            ReleaseSpec {
                application: "web".into(),
                revision: 2,
                template: serde_json::from_value(web_template("web:2", 4)).unwrap(),
                target: None,
                strategy: Pipeline::default(),
                clusters: vec![scheduled("c0"), scheduled("c1"), scheduled("c2")],
                target_step: None,
                aborted: false,
                side: None,
            },
        )
    }

    fn decision(progress: Progress) -> ReleaseDecision<'static> {
        ReleaseDecision {
            release: "web-2",
            role: Role::Contender,
            progress,
            conditions: vec![],
            retired: false,
        }
    }

    #[test]
    fn a_refused_write_shows_on_its_cluster_and_in_a_condition_until_accepted() {
        let release = web_2();
        let clusters = [
            cluster("c0", ClusterPhase::Achieved),
            cluster("c1", ClusterPhase::CapacityUp),
        ];
        let refused: BTreeMap<String, String> = [(
            "c1".to_owned(),
            "apply of Deployment web-2 refused (422 Invalid): denied".to_owned(),
        )]
        .into();
        let status = |refused: &BTreeMap<String, String>| {
            release_status(
                &release,
                &decision(Progress::default()),
                &clusters,
                &BTreeMap::new(),
                &BTreeMap::new(),
                refused,
                &Time(at(0)),
            )
        };
        let refusing = status(&refused);
        let c1 = &refusing.clusters[1];
        assert_eq!(c1.phase, ReleaseClusterPhase::Progressing);
        assert_eq!(
            c1.message.as_deref(),
            Some("writes refused: apply of Deployment web-2 refused (422 Invalid): denied")
        );
        assert_eq!(refusing.clusters[0].message, None);
        let condition =
            conditions::find(&refusing.conditions, conditions::release::WRITES_REFUSED).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "WriteRefused")
        );
        assert_eq!(
            condition.message,
            "cluster c1: apply of Deployment web-2 refused (422 Invalid): denied"
        );

        let mut shown = release.clone();
        shown.status = Some(refusing.clone());
        assert!(shows_refusal(&shown, "c1", &refused["c1"]));
        assert!(!shows_refusal(&shown, "c0", &refused["c1"]));
        assert!(!shows_refusal(&shown, "c1", "another refusal"));

        let accepted = status(&BTreeMap::new());
        assert_eq!(
            accepted.clusters[1].message.as_deref(),
            Some("scaling up: waiting for ready pods")
        );
        let condition =
            conditions::find(&accepted.conditions, conditions::release::WRITES_REFUSED).unwrap();
        assert_eq!(condition.status, "False");
    }

    #[test]
    fn each_cluster_record_of_the_step_survives_a_restart() {
        let mut release = web_2();
        let record = |since, achieved_at: Option<i64>, failed: Option<&str>| ClusterStepProgress {
            since: at(since),
            achieved_at: achieved_at.map(at),
            failed: failed.map(str::to_owned),
        };
        let progress = Progress {
            step: 1,
            step_name: None,
            clusters: [
                ("c0".to_owned(), record(0, Some(60), None)),
                (
                    "c1".to_owned(),
                    record(60, None, Some("step 2/3: not achieved")),
                ),
            ]
            .into(),
            ..Progress::default()
        };
        let decision = decision(progress.clone());
        let clusters = [
            cluster("c0", ClusterPhase::Achieved),
            cluster("c1", ClusterPhase::CapacityUp),
            cluster("c2", ClusterPhase::Queued),
        ];
        let status = release_status(
            &release,
            &decision,
            &clusters,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &Time(at(90)),
        );
        let phases: Vec<_> = status.clusters.iter().map(|c| c.phase).collect();
        assert_eq!(
            phases,
            [
                ReleaseClusterPhase::Achieved,
                ReleaseClusterPhase::Failed,
                ReleaseClusterPhase::Pending
            ]
        );
        assert_eq!(
            status.clusters[1].message.as_deref(),
            Some("step 2/3: not achieved")
        );
        release.status = Some(status);
        assert_eq!(super::progress(&release), progress);
    }
}
