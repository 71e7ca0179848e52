//! A fleet: every release on its own schedule, and the clusters of a step moving in waves.

mod common;

use common::*;
use prism_api::strategy::{Duration, Pipeline, Waves};
use prism_engine::{AbortCause, ClusterPhase, ConditionKind, Phase, Role};

fn waves(max_concurrency: Option<u32>, soak: i64, deadline: Option<i64>, budget: u32) -> Waves {
    Waves {
        max_concurrency,
        soak: Some(Duration::from_secs(soak)),
        progress_deadline: deadline.map(Duration::from_secs),
        failure_budget: Some(budget),
    }
}

/// canary: 1 pod of 10 and 10% of the traffic (`manual` gate or none), then everything.
fn canary_then_full(manual_gate: bool, waves: Option<Waves>) -> Pipeline {
    let canary = traffic(capacity(step("canary"), 10, 100), 10);
    Pipeline {
        webhooks: None,
        steps: vec![
            if manual_gate { manual(canary) } else { canary },
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves,
    }
}

fn contender_pods(world: &World, cluster: &str) -> u32 {
    world.replicas(cluster, "v2").floor()
}

/// The contender's pods in `cluster` never become ready.
fn break_pods(world: &mut World, cluster: &str) {
    if let Some(version) = world.fleet.get_mut(cluster).unwrap().versions.get_mut("v2") {
        version.ready = 0;
    }
}

fn condition(round: &Round, release: usize, kind: ConditionKind) -> prism_engine::Condition {
    round.conditions[release]
        .iter()
        .find(|condition| condition.kind == kind)
        .unwrap()
        .clone()
}

#[test]
fn a_vanguard_step_reaches_the_first_cluster_of_the_contender_schedule_before_the_others_move() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            manual(scoped(traffic(capacity(step("vanguard"), 10, 100), 10), 1)),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    // The contender is scheduled c2 first: `first: 1` is c2, whatever the incumbent's order.
    let contender_schedule = named(&["c2", "c0", "c1"]);
    let mut world = common::rollout(&pipeline, clusters(3));
    world.releases[1].clusters = &contender_schedule;
    let waiting = world.settle(10);
    assert_eq!(waiting.progress[1].phase, Phase::WaitingForCommand);
    assert_eq!(
        (world.weight("c2", "v2"), contender_pods(&world, "c2")),
        (10, 1)
    );
    for cluster in ["c0", "c1"] {
        assert_eq!(contender_pods(&world, cluster), 0, "{cluster} moved");
        assert_eq!(world.weight(cluster, "v1"), 100);
    }
}

#[test]
fn with_a_concurrency_of_one_clusters_move_one_at_a_time_in_schedule_order() {
    let pipeline = canary_then_full(true, Some(waves(Some(1), 0, None, 0)));
    let mut world = common::rollout(&pipeline, clusters(3));
    let mut started = Vec::new();
    for _ in 0..20 {
        let round = world.round();
        let moving: Vec<&str> = ["c0", "c1", "c2"]
            .into_iter()
            .filter(|&cluster| contender_pods(&world, cluster) > 0)
            .filter(|&cluster| world.weight(cluster, "v2") != 10)
            .collect();
        assert!(moving.len() <= 1, "{moving:?} move at once");
        for cluster in ["c0", "c1", "c2"] {
            if contender_pods(&world, cluster) > 0 && !started.contains(&cluster) {
                started.push(cluster);
            }
        }
        if started == ["c0"] {
            assert_eq!(
                round.phases[2],
                ClusterPhase::Queued,
                "{}",
                round.decision_debug
            );
        }
        if round.progress[1].phase == Phase::WaitingForCommand {
            break;
        }
    }
    assert_eq!(started, ["c0", "c1", "c2"]);
    assert_eq!(world.releases[1].progress.phase, Phase::WaitingForCommand);
    assert!(
        ["c0", "c1", "c2"]
            .iter()
            .all(|c| world.weight(c, "v2") == 10)
    );
}

#[test]
fn a_wave_soaks_before_the_next_starts_and_the_last_before_the_step_is_left() {
    let pipeline = canary_then_full(false, Some(waves(Some(1), 120, None, 0)));
    let mut world = common::rollout(&pipeline, clusters(3));
    let soaking = world.settle(10);
    assert_eq!(world.weight("c0", "v2"), 10);
    assert_eq!(contender_pods(&world, "c1"), 0);
    assert_eq!(soaking.requeue_after, Some(Duration::from_secs(120)));
    let progressing = condition(&soaking, 1, ConditionKind::Progressing);
    assert_eq!(progressing.reason, "WaitingForWave");
    assert!(
        progressing.message.contains("c1"),
        "{}",
        progressing.message
    );

    world.now = at(119);
    world.round();
    assert_eq!(contender_pods(&world, "c1"), 0);
    world.now = at(120);
    world.settle(10);
    assert_eq!(world.weight("c1", "v2"), 10);

    // c1 drops out of the step while it soaks (its weight goes to v1), and starts its soak again
    // once back.
    world.now = at(150);
    break_pods(&mut world, "c1");
    assert_eq!(world.round().phases[1], ClusterPhase::CapacityUp);
    assert_eq!(world.weight("c1", "v2"), 0);
    world.now = at(200);
    world
        .fleet
        .get_mut("c1")
        .unwrap()
        .versions
        .get_mut("v2")
        .unwrap()
        .ready = 1;
    let back = world.settle(5);
    assert_eq!(world.weight("c1", "v2"), 10);
    assert_eq!(back.requeue_after, Some(Duration::from_secs(120)));
    world.now = at(319);
    world.round();
    assert_eq!(
        contender_pods(&world, "c2"),
        0,
        "c2 waits for c1's new soak"
    );
    world.now = at(320);
    world.settle(10);
    assert_eq!(world.weight("c2", "v2"), 10);

    // The last wave soaks too before the rollout leaves the step.
    let last = world.settle(5);
    assert_eq!(last.progress[1].step, 0);
    assert_eq!(last.requeue_after, Some(Duration::from_secs(120)));
    assert_eq!(
        condition(&last, 1, ConditionKind::Progressing).reason,
        "Soaking"
    );
    world.now = at(439);
    assert_eq!(world.round().progress[1].step, 0);
    world.now = at(440);
    assert_eq!(world.round().progress[1].step, 1);
}

#[test]
fn a_cluster_past_its_progress_deadline_fails_and_does_not_hold_the_step_within_the_budget() {
    let pipeline = canary_then_full(true, Some(waves(None, 0, Some(600), 1)));
    let mut world = common::rollout(&pipeline, clusters(3));
    let mut waiting = world.round();
    for _ in 0..5 {
        break_pods(&mut world, "c1");
        waiting = world.round();
    }
    assert_eq!(waiting.progress[1].step, 0);
    assert_eq!(waiting.requeue_after, Some(Duration::from_secs(600)));
    assert!(
        condition(&waiting, 1, ConditionKind::StepAchieved)
            .message
            .contains("c1")
    );

    world.now = at(600);
    break_pods(&mut world, "c1");
    let failed = world.round();
    assert!(failed.events.contains(&("v2".into(), "ClusterFailed")));
    let record = &failed.progress[1].clusters["c1"];
    assert_eq!(
        record.failed.as_deref(),
        Some("step 1/2 \"canary\": not achieved within 10m: v2 has 0/1 ready")
    );
    assert_eq!(failed.progress[1].phase, Phase::WaitingForCommand);
    assert!(failed.progress[1].achieved_at.is_some());
    assert_eq!(
        (world.weight("c0", "v2"), world.weight("c2", "v2")),
        (10, 10)
    );
}

#[test]
fn one_failure_beyond_the_budget_rolls_back_every_cluster() {
    let pipeline = canary_then_full(true, Some(waves(Some(1), 0, Some(600), 0)));
    let mut world = common::rollout(&pipeline, clusters(3));
    for _ in 0..6 {
        world.round();
        break_pods(&mut world, "c1");
    }
    assert_eq!(
        world.weight("c0", "v2"),
        10,
        "the first wave reached the canary"
    );
    assert_eq!(contender_pods(&world, "c1"), 1);

    world.now = at(600);
    let failed = world.round();
    assert!(failed.events.contains(&("v2".into(), "ClusterFailed")));
    assert!(failed.events.contains(&("v2".into(), "RollbackStarted")));
    let abort = failed.progress[1].abort.clone().unwrap();
    assert_eq!(abort.cause, AbortCause::ProgressDeadlineExceeded);
    assert!(abort.message.contains("c1"), "{}", abort.message);

    let mut done = failed;
    for _ in 0..10 {
        break_pods(&mut world, "c1");
        done = world.round();
        if done.progress[1].phase == Phase::Aborted {
            break;
        }
    }
    assert_eq!(done.progress[1].phase, Phase::Aborted);
    assert_eq!(
        condition(&done, 1, ConditionKind::Aborted).reason,
        "ProgressDeadlineExceeded"
    );
    for cluster in ["c0", "c1", "c2"] {
        assert_eq!(contender_pods(&world, cluster), 0, "in {cluster}");
        assert_eq!(world.weight(cluster, "v1"), 100, "in {cluster}");
    }
}

/// `cluster` refuses every write of the contender: what the decision installed there is not.
fn refuse_writes(world: &mut World, cluster: &str) {
    let observed = world.fleet.get_mut(cluster).unwrap();
    observed.versions.remove("v2");
    observed.refused = Some("apply of Deployment v2 refused (422 Invalid): denied".into());
}

#[test]
fn a_cluster_refusing_writes_fails_its_step_at_the_deadline_saying_why() {
    let pipeline = canary_then_full(true, Some(waves(None, 0, Some(600), 0)));
    let mut world = common::rollout(&pipeline, clusters(3));
    for _ in 0..5 {
        world.round();
        refuse_writes(&mut world, "c1");
    }
    assert_eq!(world.weight("c0", "v2"), 10, "the other clusters progress");
    assert_eq!(contender_pods(&world, "c1"), 0);
    let waiting = world.decide();
    assert_eq!(
        condition(&waiting, 1, ConditionKind::StepAchieved).message,
        "cluster c1 refuses the writes: apply of Deployment v2 refused (422 Invalid): denied"
    );

    world.now = at(600);
    let failed = world.round();
    assert!(failed.events.contains(&("v2".into(), "ClusterFailed")));
    assert_eq!(
        failed.progress[1].clusters["c1"].failed.as_deref(),
        Some(
            "step 1/2 \"canary\": not achieved within 10m: its writes are refused: \
             apply of Deployment v2 refused (422 Invalid): denied"
        )
    );
    let abort = failed.progress[1].abort.clone().unwrap();
    assert_eq!(abort.cause, AbortCause::ProgressDeadlineExceeded);
    assert!(abort.message.contains("c1"), "{}", abort.message);
}

#[test]
fn a_block_holds_an_achieved_step_and_lets_it_go_once_lifted() {
    let pipeline = canary_then_full(false, None);
    let mut world = common::rollout(&pipeline, clusters(2));
    world.blocked = Some("change freeze until Monday");
    let mut events = Vec::new();
    let mut held = world.round();
    for _ in 0..6 {
        events.extend(held.events.clone());
        held = world.round();
    }
    events.extend(held.events.clone());
    assert_eq!(world.weight("c1", "v2"), 10, "the current step converges");
    assert_eq!(
        (held.progress[1].step, held.progress[1].phase),
        (0, Phase::Paused)
    );
    let blocked_events = events
        .iter()
        .filter(|(_, reason)| *reason == "RolloutBlocked")
        .count();
    assert_eq!(blocked_events, 1);
    let blocked = condition(&held, 1, ConditionKind::Blocked);
    assert_eq!(
        (blocked.status, blocked.reason, blocked.message.as_str()),
        (true, "RolloutBlocked", "change freeze until Monday")
    );

    world.releases[1].target_step = Some(1);
    assert_eq!(world.round().progress[1].step, 0, "a promotion waits too");
    world.releases[1].target_step = None;

    world.blocked = None;
    let advanced = world.round();
    assert_eq!(advanced.progress[1].step, 1);
    assert!(advanced.events.contains(&("v2".into(), "StepAdvanced")));
    assert!(!condition(&advanced, 1, ConditionKind::Blocked).status);
}

#[test]
fn a_drain_keeps_the_old_release_where_the_new_one_is_not_until_it_completes() {
    let pipeline = canary_then_full(false, None);
    let (old, new) = (named(&["c0", "c1"]), named(&["c1", "c2"]));
    let mut world = common::rollout(&pipeline, clusters(3));
    world.fleet.get_mut("c2").unwrap().versions.clear();
    world.releases[0].clusters = &old;
    world.releases[1].clusters = &new;

    let mut complete = false;
    for _ in 0..20 {
        let round = world.round();
        complete |= round.progress[1].phase == Phase::Complete;
        if !complete {
            assert_eq!(
                world.replicas("c0", "v1").floor(),
                10,
                "{}",
                round.decision_debug
            );
            assert_eq!(world.weight("c0", "v1"), 100);
        }
        assert_eq!(contender_pods(&world, "c0"), 0, "v2 is not scheduled on c0");
        if complete && round.changes == 0 {
            break;
        }
    }
    let done = world.decide();
    assert_eq!(done.roles, [Role::Retiring, Role::Incumbent]);
    assert!(done.retired[0]);
    for cluster in ["c0", "c1"] {
        assert!(
            !world.fleet[cluster].versions.contains_key("v1"),
            "v1 left in {cluster}"
        );
    }
    for cluster in ["c1", "c2"] {
        assert_eq!(
            (contender_pods(&world, cluster), world.weight(cluster, "v2")),
            (10, 100)
        );
    }
}

#[test]
fn the_decision_lists_the_newest_release_clusters_first() {
    let pipeline = canary_then_full(false, None);
    let (old, new) = (named(&["c0", "c1"]), named(&["c2", "c1"]));
    let mut world = common::rollout(&pipeline, clusters(3));
    world.releases[0].clusters = &old;
    world.releases[1].clusters = &new;
    let input = world.input(&world.releases, &world.fleet);
    let decision = prism_engine::decide(&input);
    let order: Vec<&str> = decision.clusters.iter().map(|c| c.cluster).collect();
    assert_eq!(order, ["c2", "c1", "c0"]);
    assert_eq!(
        prism_engine::scheduled_clusters(&world.releases)
            .iter()
            .map(|cluster| cluster.name.as_str())
            .collect::<Vec<_>>(),
        order
    );
}

#[test]
fn where_only_the_contender_is_scheduled_it_takes_all_of_the_traffic() {
    let pipeline = canary_then_full(true, None);
    let mut world = common::rollout(&pipeline, clusters(2));
    world.fleet.get_mut("c1").unwrap().versions.clear();
    world.releases[0].clusters = &clusters(2)[..1];
    let waiting = world.settle(10);
    assert_eq!(waiting.progress[1].phase, Phase::WaitingForCommand);
    assert_eq!(
        (contender_pods(&world, "c1"), world.weight("c1", "v2")),
        (1, 100)
    );
    assert_eq!(world.weight("c0", "v2"), 10);
}

#[test]
fn a_first_release_installs_in_waves_too() {
    let pipeline = canary_then_full(false, Some(waves(Some(1), 0, None, 0)));
    let clusters = clusters(3);
    let mut world = World::new(
        app(true),
        vec![release("v1", &pipeline, 2, Phase::Progressing)],
        clusters,
        fleet(clusters, &[]),
    );
    let first = world.round();
    assert_eq!(first.progress[0].step, 1);
    let installed: Vec<u32> = ["c0", "c1", "c2"]
        .iter()
        .map(|cluster| world.replicas(cluster, "v1").floor())
        .collect();
    assert_eq!(installed, [2, 0, 0]);
    assert_eq!(world.settle(20).progress[0].phase, Phase::Complete);
    assert!(
        ["c0", "c1", "c2"]
            .iter()
            .all(|c| world.weight(c, "v1") == 100)
    );
}
