//! Which steps a Release's new status ends, and how long each took: read from the status the
//! controller keeps (the current step, when its clusters started moving towards it, the phase),
//! the one written compared with the one it replaces, so each step is timed once.

use std::time::Duration;

use jiff::Timestamp;
use prism_api::Release;
use prism_api::release::{ReleasePhase, ReleaseStatus};

/// A step that ended: why, and how long after its start.
#[derive(Debug, PartialEq)]
pub(super) struct Ended {
    pub outcome: &'static str,
    pub took: Duration,
}

/// The steps `release` ends by going from its status to `new` at `now`. A step starts when its
/// first cluster starts moving towards it (the earliest `since` of the clusters), and ends when
/// the next step is entered (`advanced`), the Release completes at the last step (`completed`),
/// is aborted by a person (`aborted`), rolls back on its own (`rolled_back`) or is superseded.
/// Steps entered and left within one decision (a promotion past several) took no time.
pub(super) fn ended(release: &Release, new: &ReleaseStatus, now: Timestamp) -> Vec<Ended> {
    let Some(old) = &release.status else {
        return Vec::new();
    };
    let (Some(old_step), Some(old_phase)) = (old.step, old.phase) else {
        return Vec::new();
    };
    if !old_phase.is_rolling_out() {
        return Vec::new();
    }
    // A step no cluster moved towards yet (all waiting for a block, say) is timed from nothing:
    // it is not timed rather than timed wrong.
    let Some(started) = old
        .clusters
        .iter()
        .filter_map(|cluster| cluster.since.as_ref())
        .map(|since| since.0)
        .min()
    else {
        return Vec::new();
    };
    let took = started.duration_until(now).unsigned_abs();
    let new_phase = new.phase.unwrap_or_default();
    let new_step = new.step.unwrap_or(old_step);
    // An edit of the strategy can move the current step to another index: it is the same step
    // while its name is.
    let same_step = old.step_name.is_some() && old.step_name == new.step_name;
    let advanced = if new_step > old_step && !same_step {
        new_step - old_step
    } else {
        0
    };
    let last = match new_phase {
        _ if new_phase.is_rolling_out() => None,
        ReleasePhase::Complete => Some("completed"),
        ReleasePhase::RollingBack | ReleasePhase::Aborted if release.spec.aborted => {
            Some("aborted")
        }
        ReleasePhase::RollingBack | ReleasePhase::Aborted => Some("rolled_back"),
        ReleasePhase::Superseded => Some("superseded"),
        _ => None,
    };
    let mut durations = std::iter::once(took).chain(std::iter::repeat(Duration::ZERO));
    let mut ended: Vec<Ended> = (0..advanced)
        .map(|_| Ended {
            outcome: "advanced",
            took: durations.next().unwrap_or_default(),
        })
        .collect();
    ended.extend(last.map(|outcome| Ended {
        outcome,
        took: durations.next().unwrap_or_default(),
    }));
    ended
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use prism_api::release::ClusterProgress;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// A release at `step` (named `s{step}`), in `phase`, whose clusters started at these
    /// seconds (none: waiting for their wave).
    fn status(step: u32, phase: ReleasePhase, since: &[Option<i64>]) -> ReleaseStatus {
        ReleaseStatus {
            step: Some(step),
            step_name: Some(format!("s{step}")),
            phase: Some(phase),
            clusters: since
                .iter()
                .map(|since| ClusterProgress {
                    since: since.map(|s| Time(at(s))),
                    ..ClusterProgress::default()
                })
                .collect(),
            ..ReleaseStatus::default()
        }
    }

    fn release(status: Option<ReleaseStatus>, aborted: bool) -> Release {
        let mut release: Release = serde_json::from_value(serde_json::json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": "web-2", "namespace": "ns"},
            "spec": {"application": "web", "revision": 2, "strategy": {"steps": []}, "clusters": []},
        }))
        .unwrap();
        release.spec.aborted = aborted;
        release.status = status;
        release
    }

    fn ended_at(old: Option<ReleaseStatus>, aborted: bool, new: ReleaseStatus) -> Vec<Ended> {
        ended(&release(old, aborted), &new, at(1_000))
    }

    fn step(outcome: &'static str, seconds: u64) -> Ended {
        Ended {
            outcome,
            took: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_step_is_timed_from_its_first_cluster_s_start_to_the_next_step() {
        let old = status(0, ReleasePhase::Progressing, &[Some(900), Some(960), None]);
        let new = status(1, ReleasePhase::Progressing, &[Some(1_000)]);
        assert_eq!(ended_at(Some(old), false, new), [step("advanced", 100)]);
    }

    #[test]
    fn the_last_step_ends_with_the_release_complete() {
        let old = status(2, ReleasePhase::Progressing, &[Some(940)]);
        let new = status(2, ReleasePhase::Complete, &[Some(940)]);
        assert_eq!(ended_at(Some(old), false, new), [step("completed", 60)]);
    }

    #[test]
    fn a_promotion_past_steps_ends_each_and_those_skipped_took_nothing() {
        let old = status(0, ReleasePhase::WaitingForCommand, &[Some(990)]);
        let new = status(2, ReleasePhase::Complete, &[Some(1_000)]);
        assert_eq!(
            ended_at(Some(old), false, new),
            [
                step("advanced", 10),
                step("advanced", 0),
                step("completed", 0)
            ]
        );
    }

    #[test]
    fn an_abort_ends_the_current_step_by_whom_it_was_decided() {
        let old = status(1, ReleasePhase::WaitingForCommand, &[Some(700)]);
        let new = status(1, ReleasePhase::RollingBack, &[Some(700)]);
        assert_eq!(
            ended_at(Some(old.clone()), true, new.clone()),
            [step("aborted", 300)]
        );
        assert_eq!(ended_at(Some(old), false, new), [step("rolled_back", 300)]);
    }

    #[test]
    fn nothing_ends_twice_nor_before_a_step_started() {
        let rolling_back = status(1, ReleasePhase::RollingBack, &[Some(700)]);
        let aborted = status(1, ReleasePhase::Aborted, &[Some(700)]);
        assert_eq!(ended_at(Some(rolling_back), true, aborted), []);
        let progressing = status(0, ReleasePhase::Progressing, &[Some(900)]);
        assert_eq!(ended_at(None, false, progressing.clone()), []);
        assert_eq!(ended_at(Some(progressing.clone()), false, progressing), []);
        let held = status(0, ReleasePhase::Paused, &[None]);
        let next = status(1, ReleasePhase::Progressing, &[Some(1_000)]);
        assert_eq!(ended_at(Some(held), false, next), []);
    }

    #[test]
    fn a_step_an_edit_moved_to_another_index_goes_on() {
        let old = status(1, ReleasePhase::Progressing, &[Some(900)]);
        let new = ReleaseStatus {
            step: Some(2),
            ..old.clone()
        };
        assert_eq!(ended_at(Some(old), false, new), []);
    }
}
