//! A pipeline edited under the release in flight (a strategy change applies to it), and a pause
//! that never ends before its duration from the real moment its step was achieved.

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use prism_api::strategy::{AnalysisStep, Pipeline, Step};
use prism_engine::{Phase, Progress, Verdict};
use proptest::prelude::*;

fn pipeline(steps: Vec<Step>) -> Pipeline {
    Pipeline {
        webhooks: None,
        steps,
        waves: None,
    }
}

fn full() -> Step {
    traffic(capacity(step("full"), 100, 0), 100)
}

/// v2 at step `canary` (10% of traffic) of `pipeline`, achieved at `at(0)`.
fn at_canary(pipeline: &Pipeline) -> World<'_> {
    let mut world = rollout(pipeline, clusters(2));
    world.settle(10);
    let progress = &world.releases[1].progress;
    assert_eq!(
        (progress.step, progress.achieved_at),
        (0, Some(at(0))),
        "{progress:?}"
    );
    world
}

#[test]
fn a_shortened_pause_ends_sooner_and_a_lengthened_one_later() {
    let long = pipeline(vec![
        pause(traffic(capacity(step("canary"), 10, 100), 10), 300),
        full(),
    ]);
    let short = pipeline(vec![
        pause(traffic(capacity(step("canary"), 10, 100), 10), 60),
        full(),
    ]);
    let longer = pipeline(vec![
        pause(traffic(capacity(step("canary"), 10, 100), 10), 600),
        full(),
    ]);

    let mut world = at_canary(&long);
    world.now = at(100);
    world.releases[1].pipeline = &short;
    let round = world.round();
    assert_eq!(round.progress[1].step, 1, "{}", round.decision_debug);

    let mut world = at_canary(&long);
    world.now = at(300);
    world.releases[1].pipeline = &longer;
    let round = world.round();
    assert_eq!(round.progress[1].step, 0, "{}", round.decision_debug);
    assert_eq!(
        round.progress[1].achieved_at,
        Some(at(0)),
        "counted from then"
    );
    assert_eq!(
        round.requeue_after,
        Some(prism_api::strategy::Duration::from_secs(300))
    );
}

#[test]
fn a_new_weight_of_the_current_step_is_converged_to_without_leaving_the_step() {
    let ten = pipeline(vec![
        manual(traffic(capacity(step("canary"), 10, 100), 10)),
        full(),
    ]);
    let twenty = pipeline(vec![
        manual(traffic(capacity(step("canary"), 20, 100), 20)),
        full(),
    ]);
    let mut world = at_canary(&ten);
    assert_eq!(world.weight("c0", "v2"), 10);
    world.now = at(50);
    world.releases[1].pipeline = &twenty;
    let round = world.settle(10);
    assert_eq!(
        (world.weight("c0", "v2"), world.weight("c1", "v2")),
        (20, 20)
    );
    let progress = &round.progress[1];
    assert_eq!(
        (progress.step, progress.phase),
        (0, Phase::WaitingForCommand)
    );
    assert_eq!(progress.step_name.as_deref(), Some("canary"));
}

#[test]
fn fewer_steps_than_the_current_index_enter_the_last_step_anew() {
    let four = pipeline(vec![
        capacity(step("staging"), 10, 100),
        traffic(capacity(step("canary"), 10, 100), 10),
        manual(traffic(capacity(step("half"), 50, 50), 50)),
        full(),
    ]);
    let two = pipeline(vec![manual(capacity(step("staging"), 10, 100)), full()]);
    let mut world = rollout(&four, clusters(1));
    let held = world.settle(20);
    assert_eq!(held.progress[1].step, 2);
    world.now = at(10);
    world.releases[1].pipeline = &two;
    let round = world.round();
    assert_eq!(round.progress[1].step, 1, "{}", round.decision_debug);
    assert_eq!(round.progress[1].step_name.as_deref(), Some("full"));
    let done = world.settle(20);
    assert_eq!(done.progress[1].phase, Phase::Complete);
    assert_eq!(world.weight("c0", "v2"), 100);
}

#[test]
fn a_step_moved_by_an_insert_before_it_keeps_its_place_and_achievement() {
    let before = pipeline(vec![
        manual(traffic(capacity(step("canary"), 10, 100), 10)),
        full(),
    ]);
    let inserted = pipeline(vec![
        capacity(step("staging"), 10, 100),
        manual(traffic(capacity(step("canary"), 10, 100), 10)),
        full(),
    ]);
    let mut world = at_canary(&before);
    world.now = at(10);
    world.releases[1].pipeline = &inserted;
    let round = world.round();
    let progress = &round.progress[1];
    assert_eq!(
        (progress.step, progress.achieved_at, progress.phase),
        (1, Some(at(0)), Phase::WaitingForCommand),
        "{}",
        round.decision_debug
    );
    assert_eq!(
        round.changes, 0,
        "nothing to converge: the step is the same"
    );
}

#[test]
fn verdicts_of_a_replaced_step_are_not_taken_for_the_new_one() {
    let analysed = |name: &str| {
        let mut step = traffic(capacity(step(name), 10, 100), 10);
        step.analysis = Some(AnalysisStep::default());
        step
    };
    let before = pipeline(vec![analysed("canary"), full()]);
    let renamed = pipeline(vec![analysed("canary-2"), full()]);
    let mut world = rollout(&before, clusters(2));
    world.releases[1].analysis = Verdict::Pending;
    world.settle(10);
    assert_eq!(world.releases[1].progress.achieved_at, Some(at(0)));
    // The adapters judged `canary`, at index 0: its failure is not `canary-2`'s.
    world.releases[1].analysis = Verdict::Failed {
        reason: "error rate".into(),
    };
    world.releases[1].pipeline = &renamed;
    let round = world.round();
    let progress = &round.progress[1];
    assert_eq!(progress.abort, None, "{}", round.decision_debug);
    assert_eq!(progress.step_name.as_deref(), Some("canary-2"));
    // Entered anew: achieved again now, and waiting for its own analysis.
    assert_eq!(progress.achieved_at, Some(at(0)));
    assert_eq!(progress.phase, Phase::Progressing);
}

/// `at(0)` and `nanos` nanoseconds.
fn sub_second(nanos: i64) -> Timestamp {
    at(0)
        .checked_add(SignedDuration::from_nanos(nanos))
        .unwrap()
}

/// The progress as the API server stores it in the status, in whole seconds (rounded down).
fn stored(progress: &mut Progress) {
    let whole = |time: Timestamp| Timestamp::from_second(time.as_second()).unwrap();
    progress.achieved_at = progress.achieved_at.map(whole);
    for record in progress.clusters.values_mut() {
        record.since = whole(record.since);
        record.achieved_at = record.achieved_at.map(whole);
    }
}

proptest! {
    /// A pause ends no earlier than its duration after the real moment its step was achieved,
    /// whatever fraction of a second that moment had, and at most a second later.
    #[test]
    fn a_pause_never_ends_before_its_duration(
        achieved in 0i64..1_000_000_000,
        pause_secs in 1i64..600,
        probes in prop::collection::vec(0i64..1_000_000_000, 1..8),
    ) {
        let paused = pipeline(vec![
            pause(traffic(capacity(step("canary"), 10, 100), 10), pause_secs),
            full(),
        ]);
        let mut world = rollout(&paused, clusters(1));
        // The first round moves the capacity; the step is achieved in the second one.
        world.now = sub_second(achieved);
        world.settle(10);
        stored(&mut world.releases[1].progress);
        let achieved_at = sub_second(achieved);
        prop_assert_eq!(world.releases[1].progress.step, 0);
        prop_assert!(world.releases[1].progress.achieved_at.unwrap() >= achieved_at);
        let end = achieved_at + SignedDuration::from_secs(pause_secs);
        for probe in probes {
            // A moment in the last second before the end.
            world.now = end - SignedDuration::from_nanos(probe + 1);
            let round = world.decide();
            prop_assert_eq!(round.progress[1].step, 0, "left at {}, before {}", world.now, end);
        }
        world.now = end + SignedDuration::from_secs(1);
        prop_assert_eq!(world.decide().progress[1].step, 1);
    }

    /// Whatever the pipeline becomes under a release in flight (steps removed, renamed,
    /// reordered, gates changed), the rollout goes on from a step of the new pipeline and
    /// completes, and never sends traffic to a version without ready pods.
    #[test]
    fn any_edit_in_flight_goes_on_and_completes(
        at_step in 0u32..3,
        keep in prop::collection::vec(any::<bool>(), 3),
        rename in prop::collection::vec(any::<bool>(), 3),
        reverse in any::<bool>(),
        pauses in prop::collection::vec(prop::option::of(1i64..100), 3),
    ) {
        // Every step but the last waits for a command: the release is in flight at `at_step`.
        let mut before = canary();
        for step in &mut before.steps[..3] {
            *step = manual(step.clone());
        }
        let mut middle: Vec<Step> = before.steps[..3]
            .iter()
            .zip(&keep)
            .zip(&rename)
            .zip(&pauses)
            .filter(|(((_, keep), _), _)| **keep)
            .map(|(((step, _), rename), pause_secs)| {
                let mut step = step.clone();
                if *rename {
                    step.name = format!("{}-2", step.name);
                }
                if let Some(secs) = pause_secs {
                    step = pause(step, *secs);
                }
                step
            })
            .collect();
        if reverse {
            middle.reverse();
        }
        middle.push(before.steps[3].clone());
        let after = pipeline(middle);

        let mut world = rollout(&before, clusters(2));
        world.releases[1].target_step = Some(at_step);
        world.settle(20);
        prop_assert_eq!(world.releases[1].progress.phase, Phase::WaitingForCommand);
        prop_assert_eq!(world.releases[1].progress.step, at_step);
        world.releases[1].pipeline = &after;
        for _ in 0..40 {
            let round = world.round();
            let contender = &mut world.releases[1];
            let step = contender.progress.step as usize;
            prop_assert!(step < after.steps.len());
            prop_assert_eq!(
                contender.progress.step_name.as_deref(),
                Some(after.steps[step].name.as_str())
            );
            if contender.progress.phase == Phase::WaitingForCommand {
                contender.target_step = Some(contender.progress.step + 1);
            }
            if let Some(wait) = round.requeue_after {
                world.now = world.now.saturating_add(wait.0).unwrap();
            }
            for observed in world.fleet.values() {
                for version in observed.versions.values() {
                    prop_assert!(version.weight == 0 || version.ready > 0);
                }
            }
            if world.releases[1].progress.phase == Phase::Complete {
                break;
            }
        }
        prop_assert_eq!(world.releases[1].progress.phase, Phase::Complete);
    }
}
