//! One test per rule of the engine, through its public API.

mod common;

use common::*;
use prism_api::strategy::{
    AnalysisStep, HeaderMatch, MatchType, Pipeline, QueryParamMatch, Route, RouteMatch, RouteTo,
    TrafficStep,
};
use prism_engine::{
    AbortCause, Capacity, ClusterPhase, ConditionKind, Phase, Role, Verdict, VersionObservation,
};

#[test]
fn roles_follow_age_and_completion() {
    let pipeline = canary();
    let mut app = app(true);
    app.max_versions = 3;
    let releases = vec![
        release("v1", &pipeline, 10, Phase::Complete),
        release("v2", &pipeline, 10, Phase::Complete),
        release("v3", &pipeline, 10, Phase::Complete),
        release("v4", &pipeline, 10, Phase::Progressing),
        release("v5", &pipeline, 10, Phase::Progressing),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v3", 10, 100)]);
    let world = World::new(app, releases, clusters, fleet);
    let round = world.decide();
    assert_eq!(
        round.roles,
        [
            Role::Retiring,
            Role::Retained,
            Role::Incumbent,
            Role::Retiring,
            Role::Contender
        ]
    );
    assert_eq!(round.progress[3].phase, Phase::Superseded);
    assert!(round.events.contains(&("v4".into(), "Superseded")));
}

#[test]
fn with_two_versions_at_most_the_previous_one_retires_once_the_contender_completes() {
    let pipeline = canary();
    let releases = vec![
        release("v1", &pipeline, 10, Phase::Complete),
        release("v2", &pipeline, 10, Phase::Complete),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 0, 0), ("v2", 10, 100)]);
    let world = World::new(app(true), releases, clusters, fleet);
    let round = world.decide();
    assert_eq!(round.roles, [Role::Retiring, Role::Incumbent]);
    assert!(round.events.contains(&("v1".into(), "Retired")));
}

#[test]
fn an_aborted_release_retires_and_the_newest_complete_one_is_incumbent() {
    let pipeline = canary();
    let mut releases = vec![
        release("v1", &pipeline, 10, Phase::Complete),
        release("v2", &pipeline, 10, Phase::Complete),
    ];
    releases[1].aborted = true;
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 0, 0), ("v2", 10, 100)]);
    let world = World::new(app(true), releases, clusters, fleet);
    let round = world.decide();
    assert_eq!(round.roles, [Role::Incumbent, Role::Retiring]);
    assert_eq!(round.progress[1].phase, Phase::RollingBack);
}

#[test]
fn a_retained_version_older_than_the_ttl_retires() {
    let pipeline = canary();
    let mut app = app(true);
    app.max_versions = 5;
    app.version_ttl = Some(prism_api::strategy::Duration::from_secs(3600));
    let mut releases = vec![
        release("v1", &pipeline, 10, Phase::Complete),
        release("v2", &pipeline, 10, Phase::Complete),
        release("v3", &pipeline, 10, Phase::Complete),
    ];
    releases[0].created_at = at(0);
    releases[1].created_at = at(3000);
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v3", 10, 100)]);
    let mut world = World::new(app, releases, clusters, fleet);
    world.now = at(4000);
    let round = world.decide();
    assert_eq!(
        round.roles,
        [Role::Retiring, Role::Retained, Role::Incumbent]
    );
    assert_eq!(
        round.requeue_after,
        Some(prism_api::strategy::Duration::from_secs(2600))
    );
}

#[test]
fn a_retained_version_keeps_the_incumbent_share_of_the_last_step_that_superseded_it() {
    let keep_old = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("switch"), 100, 100), 100)],
        waves: None,
    };
    let mut app = app(true);
    app.max_versions = 3;
    let releases = vec![
        release("v1", &keep_old, 4, Phase::Complete),
        release("v2", &keep_old, 4, Phase::Complete),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 4, 0), ("v2", 4, 100)]);
    let world = World::new(app, releases, clusters, fleet);
    let round = world.decide();
    assert_eq!(round.roles, [Role::Retained, Role::Incumbent]);
    assert_eq!(round.changes, 0, "{}", round.decision_debug);
}

#[test]
fn a_first_release_goes_straight_to_the_last_step_and_completes_once_achieved() {
    let pipeline = canary();
    let clusters = clusters(2);
    let fleet = fleet(clusters, &[]);
    let mut world = World::new(
        app(true),
        vec![release("v1", &pipeline, 3, Phase::Progressing)],
        clusters,
        fleet,
    );
    let first = world.round();
    assert_eq!(first.progress[0].step, 3);
    assert!(first.events.contains(&("v1".into(), "InitialDeploy")));
    let settled = world.settle(10);
    assert_eq!(settled.progress[0].phase, Phase::Complete);
    assert_eq!(world.replicas("c1", "v1"), Capacity::Replicas(3));
    assert_eq!(world.weight("c1", "v1"), 100);
}

#[test]
fn capacity_goes_up_before_traffic_and_traffic_moves_before_capacity_goes_down() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("swap"), 100, 0), 100)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    let up = world.round();
    assert_eq!(up.phases, [ClusterPhase::CapacityUp]);
    assert_eq!(
        (world.replicas("c0", "v2"), world.replicas("c0", "v1")),
        (Capacity::Replicas(10), Capacity::Replicas(10))
    );
    assert_eq!(
        world.weight("c0", "v1"),
        100,
        "traffic waits for the capacity"
    );
    let shift = world.round();
    assert_eq!(shift.phases, [ClusterPhase::Traffic]);
    assert_eq!(
        (world.weight("c0", "v2"), world.replicas("c0", "v1")),
        (100, Capacity::Replicas(10))
    );
    let down = world.round();
    assert_eq!(down.phases, [ClusterPhase::CapacityDown]);
    assert_eq!(world.replicas("c0", "v1"), Capacity::Replicas(0));
    let done = world.round();
    assert_eq!(done.phases, [ClusterPhase::Achieved]);
    assert_eq!(done.progress[1].phase, Phase::Complete);
}

#[test]
fn while_the_provider_says_traffic_is_pending_the_step_holds_and_no_version_loses_a_pod() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("swap"), 100, 0), 100)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.round();
    let shift = world.round();
    assert_eq!(shift.phases, [ClusterPhase::Traffic]);
    assert_eq!(world.weight("c0", "v2"), 100);
    // The route is written, but its gateway has not taken it yet.
    let pending = "Gateway gw has not accepted generation 2 of HTTPRoute web yet";
    world.fleet.get_mut("c0").unwrap().traffic_pending = Some(pending.into());
    for _ in 0..3 {
        let held = world.round();
        assert_eq!(held.phases, [ClusterPhase::Traffic]);
        assert_eq!(held.changes, 0, "{}", held.decision_debug);
        assert_eq!(world.replicas("c0", "v1"), Capacity::Replicas(10));
        assert!(
            held.conditions[1]
                .iter()
                .any(|condition| condition.message.contains(pending)),
            "the Release says why: {:?}",
            held.conditions[1]
        );
    }
    world.fleet.get_mut("c0").unwrap().traffic_pending = None;
    let down = world.round();
    assert_eq!(down.phases, [ClusterPhase::CapacityDown]);
    assert_eq!(world.replicas("c0", "v1"), Capacity::Replicas(0));
}

#[test]
fn traffic_waits_for_ready_pods_not_just_for_capacity() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("swap"), 100, 100), 100)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.fleet.get_mut("c0").unwrap().versions.insert(
        "v2".into(),
        VersionObservation {
            capacity: Capacity::Replicas(10),
            ready: 9,
            weight: 0,
        },
    );
    let round = world.round();
    assert_eq!(round.changes, 0);
    assert_eq!(round.phases, [ClusterPhase::CapacityUp]);
}

#[test]
fn weight_of_a_version_without_ready_pods_goes_to_the_ready_ones() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("half"), 50, 50), 50)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    let versions = &mut world.fleet.get_mut("c0").unwrap().versions;
    versions.insert(
        "v1".into(),
        VersionObservation {
            capacity: Capacity::Replicas(5),
            ready: 5,
            weight: 50,
        },
    );
    versions.insert(
        "v2".into(),
        VersionObservation {
            capacity: Capacity::Replicas(5),
            ready: 0,
            weight: 50,
        },
    );
    world.round();
    assert_eq!(
        (world.weight("c0", "v1"), world.weight("c0", "v2")),
        (100, 0)
    );
    assert_eq!(
        world.replicas("c0", "v2"),
        Capacity::Replicas(5),
        "capacity is left to recover"
    );
}

#[test]
fn traffic_is_held_when_no_version_has_ready_pods() {
    let pipeline = canary();
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world
        .fleet
        .get_mut("c0")
        .unwrap()
        .versions
        .get_mut("v1")
        .unwrap()
        .ready = 0;
    let decision = prism_engine::decide(&world.input(&world.releases, &world.fleet));
    assert_eq!(decision.clusters[0].traffic, None);
    assert!(
        !decision
            .changes
            .iter()
            .any(|change| matches!(change, prism_engine::Change::Traffic { .. }))
    );
}

#[test]
fn a_version_with_traffic_never_loses_all_of_its_capacity() {
    // An invalid step: traffic to the incumbent, but no capacity for it.
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("bad"), 100, 0), 50)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    for _ in 0..6 {
        world.round();
        assert!(world.weight("c0", "v1") == 0 || !world.replicas("c0", "v1").is_zero());
    }
}

#[test]
fn a_surge_step_moves_capacity_in_rounds_within_the_limit() {
    let mut rolling = capacity(step("roll"), 100, 0);
    rolling.capacity.as_mut().unwrap().max_surge = Some(2);
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![rolling],
        waves: None,
    };
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 10, 0)]);
    let releases = vec![
        release("v1", &pipeline, 10, Phase::Complete),
        release("v2", &pipeline, 10, Phase::Progressing),
    ];
    let mut world = World::new(app(false), releases, clusters, fleet);
    let mut rounds = 0;
    while world.releases[1].progress.phase != Phase::Complete {
        world.round();
        let total = world.replicas("c0", "v1").floor() + world.replicas("c0", "v2").floor();
        assert!(total <= 12, "{total} pods");
        rounds += 1;
        assert!(rounds < 20);
    }
    assert!(
        rounds >= 5,
        "a surge of 2 takes several rounds for 10 pods, took {rounds}"
    );
}

#[test]
fn a_step_waits_for_every_cluster_in_its_scope() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            scoped(capacity(step("vanguard"), 100, 100), 1),
            manual(capacity(step("all"), 100, 100)),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(3));
    // The vanguard step only changes c0, so it is achieved once c0 is.
    world.round();
    assert_eq!(
        (world.replicas("c0", "v2"), world.replicas("c1", "v2")),
        (Capacity::Replicas(10), Capacity::ZERO)
    );
    let round = world.round();
    assert_eq!(round.progress[1].step, 1, "{}", round.decision_debug);
    // Step "all" needs every cluster: make c2 unreachable.
    world.fleet.get_mut("c2").unwrap().reachable = false;
    let held = world.settle(5);
    assert_eq!(held.progress[1].step, 1);
    assert_eq!(held.progress[1].achieved_at, None);
    let achieved = held.conditions[1]
        .iter()
        .find(|condition| condition.kind == ConditionKind::StepAchieved)
        .unwrap();
    assert_eq!(
        (achieved.status, achieved.reason),
        (false, "ClusterUnreachable")
    );
    assert!(achieved.message.contains("c2"));
    world.fleet.get_mut("c2").unwrap().reachable = true;
    let reached = world.settle(5);
    assert_eq!(reached.progress[1].phase, Phase::WaitingForCommand);
}

#[test]
fn a_manual_gate_waits_for_a_command_and_a_target_step_moves_there() {
    let pipeline = canary();
    let mut world = common::rollout(&pipeline, common::clusters(2));
    let waiting = world.settle(10);
    assert_eq!(
        (waiting.progress[1].step, waiting.progress[1].phase),
        (1, Phase::WaitingForCommand)
    );
    let again = world.round();
    assert_eq!(
        (again.changes, again.events.len()),
        (0, 0),
        "no transition, no event"
    );
    world.releases[1].target_step = Some(2);
    world.round();
    assert_eq!(world.releases[1].progress.step, 2);
}

#[test]
fn promote_full_skips_every_gate_to_complete() {
    let pipeline = canary();
    let mut world = common::rollout(&pipeline, common::clusters(2));
    world.releases[1].target_step = Some(4);
    let done = world.settle(20);
    assert_eq!(done.progress[1].phase, Phase::Complete);
}

#[test]
fn a_pause_advances_once_its_time_is_up_and_asks_for_a_requeue() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            pause(capacity(step("soak"), 10, 100), 300),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.round();
    let achieved = world.round();
    assert_eq!(achieved.progress[1].achieved_at, Some(at(0)));
    assert_eq!(
        achieved.requeue_after,
        Some(prism_api::strategy::Duration::from_secs(300))
    );
    world.now = at(299);
    assert_eq!(world.round().progress[1].step, 0);
    world.now = at(300);
    assert_eq!(world.round().progress[1].step, 1);
}

fn analysed(pipeline_step: prism_api::strategy::Step) -> prism_api::strategy::Step {
    let mut analysed = pipeline_step;
    analysed.analysis = Some(AnalysisStep::default());
    analysed
}

#[test]
fn an_analysis_holds_the_step_until_it_passes() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            analysed(capacity(step("canary"), 10, 100)),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.releases[1].analysis = Verdict::Pending;
    let held = world.settle(5);
    assert_eq!(held.progress[1].step, 0);
    let progressing = &held.conditions[1][0];
    assert_eq!(progressing.reason, "WaitingForAnalysis");
    world.releases[1].analysis = Verdict::Inconclusive {
        reason: "no data".into(),
    };
    assert_eq!(world.round().progress[1].phase, Phase::Paused);
    world.releases[1].analysis = Verdict::Passed;
    assert_eq!(world.round().progress[1].step, 1);
}

#[test]
fn a_webhook_that_does_not_say_yes_pauses_the_step_with_its_answer_and_never_rolls_back() {
    let mut gated = traffic(capacity(step("canary"), 50, 50), 50);
    gated.gate = Some(prism_api::strategy::Gate {
        webhook: Some(prism_api::strategy::Webhook {
            url: "http://hooks.example/confirm".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![gated, traffic(capacity(step("full"), 100, 0), 100)],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.releases[1].webhook = Verdict::Pending;
    let asking = world.settle(5);
    assert_eq!(asking.conditions[1][0].reason, "WaitingForWebhook");
    world.releases[1].webhook = Verdict::Inconclusive {
        reason: "http://hooks.example/confirm refused with HTTP 403".into(),
    };
    let held = world.round();
    assert_eq!(
        (held.progress[1].step, held.progress[1].phase),
        (0, Phase::Paused)
    );
    assert!(held.progress[1].abort.is_none());
    let progressing = &held.conditions[1][0];
    assert_eq!(progressing.reason, "WebhookHeld");
    assert!(
        progressing.message.contains("HTTP 403"),
        "{}",
        progressing.message
    );
    assert!(held.events.contains(&("v2".into(), "WebhookHeld")));
    assert_eq!(
        world.round().events,
        Vec::new(),
        "said once, on the transition"
    );
    world.releases[1].webhook = Verdict::Passed;
    assert_eq!(world.round().progress[1].step, 1);
}

#[test]
fn a_failed_analysis_rolls_back_restoring_the_incumbent_capacity_before_its_traffic() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            analysed(traffic(capacity(step("half"), 50, 50), 50)),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.releases[1].analysis = Verdict::Pending;
    world.settle(5);
    assert_eq!(world.weight("c0", "v2"), 50);
    world.releases[1].analysis = Verdict::Failed {
        reason: "error rate 5% > 1%".into(),
    };
    let rollback = world.round();
    assert_eq!(rollback.progress[1].phase, Phase::RollingBack);
    assert_eq!(
        rollback.progress[1].abort.as_ref().unwrap().cause,
        AbortCause::AnalysisFailed
    );
    assert_eq!(world.replicas("c0", "v1"), Capacity::Replicas(10));
    assert_eq!(world.weight("c0", "v1"), 50, "capacity first");
    world.round();
    assert_eq!(
        (world.weight("c0", "v1"), world.replicas("c0", "v2")),
        (100, Capacity::Replicas(5))
    );
    world.round();
    assert_eq!(world.replicas("c0", "v2"), Capacity::Replicas(0));
    let aborted = world.round();
    assert_eq!(aborted.progress[1].phase, Phase::Aborted);
    assert!(aborted.retired[1]);
    let condition = aborted.conditions[1]
        .iter()
        .find(|condition| condition.kind == ConditionKind::Aborted)
        .unwrap();
    assert!(condition.status && condition.message.contains("error rate"));
}

#[test]
fn an_abort_command_rolls_back() {
    let pipeline = canary();
    let mut world = common::rollout(&pipeline, common::clusters(2));
    world.settle(10);
    world.releases[1].aborted = true;
    let started = world.round();
    assert!(started.events.contains(&("v2".into(), "RollbackStarted")));
    let done = world.settle(10);
    assert_eq!(done.progress[1].phase, Phase::Aborted);
    assert_eq!(world.weight("c1", "v1"), 100);
    assert!(
        !world.fleet["c1"].versions.contains_key("v2"),
        "retired objects are removed"
    );
}

#[test]
fn achieved_steps_cascade_within_one_decision() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            capacity(step("a"), 10, 100),
            step("b"),
            step("c"),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.round();
    let round = world.round();
    assert_eq!(round.progress[1].step, 3, "{}", round.decision_debug);
}

#[test]
fn nothing_is_written_and_nothing_is_said_at_the_steady_state() {
    let pipeline = canary();
    let clusters = clusters(3);
    let fleet = fleet(clusters, &[("v1", 10, 100)]);
    let mut complete = release("v1", &pipeline, 10, Phase::Complete);
    complete.progress.step = 3;
    let world = World::new(app(true), vec![complete], clusters, fleet);
    let round = world.decide();
    assert_eq!((round.changes, round.events.len()), (0, 0));
    assert_eq!(round.progress[0], world.releases[0].progress);
}

#[test]
fn each_routes_reach_every_live_version_by_name() {
    let mut rainbow_step = traffic(capacity(step("full"), 100, 100), 100);
    rainbow_step.traffic.as_mut().unwrap().routes = Some(vec![Route {
        name: "by-version".into(),
        to: RouteTo::Each,
        matches: RouteMatch {
            subdomain: Some("{version}".into()),
            ..Default::default()
        },
    }]);
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![rainbow_step],
        waves: None,
    };
    let mut app = app(true);
    app.max_versions = 3;
    let releases = vec![
        release("v1", &pipeline, 2, Phase::Complete),
        release("v2", &pipeline, 2, Phase::Complete),
        release("v3", &pipeline, 2, Phase::Progressing),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 2, 0), ("v2", 2, 100)]);
    let mut world = World::new(app, releases, clusters, fleet);
    let done = world.settle(10);
    assert_eq!(done.progress[2].phase, Phase::Complete);
    let mut subdomains: Vec<_> = world.fleet["c0"]
        .routes
        .iter()
        .map(|route| route.matches.subdomain.clone().unwrap())
        .collect();
    subdomains.sort();
    assert_eq!(subdomains, ["v1", "v2", "v3"]);
    assert_eq!(world.weight("c0", "v3"), 100);
    assert_eq!(
        world.replicas("c0", "v1"),
        Capacity::Replicas(2),
        "rainbow keeps older versions running"
    );
}

#[test]
fn each_routes_fill_in_the_name_a_version_goes_by_and_send_to_its_release() {
    let mut rainbow_step = traffic(capacity(step("full"), 100, 100), 100);
    rainbow_step.traffic.as_mut().unwrap().routes = Some(vec![Route {
        name: "by-version".into(),
        to: RouteTo::Each,
        matches: RouteMatch {
            subdomain: Some("{version}".into()),
            ..Default::default()
        },
    }]);
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![rainbow_step],
        waves: None,
    };
    let mut app = app(true);
    app.max_versions = 3;
    let mut releases = vec![
        release("docs-1", &pipeline, 2, Phase::Complete),
        release("docs-2", &pipeline, 2, Phase::Progressing),
    ];
    releases[0].version_name = "v1";
    releases[1].version_name = "v2";
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("docs-1", 2, 100)]);
    let mut world = World::new(app, releases, clusters, fleet);
    world.settle(10);
    let mut routes: Vec<_> = world.fleet["c0"]
        .routes
        .iter()
        .map(|route| {
            (
                route.matches.subdomain.clone().unwrap(),
                route.version.clone(),
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            ("v1".to_owned(), "docs-1".to_owned()),
            ("v2".to_owned(), "docs-2".to_owned())
        ]
    );
}

#[test]
fn each_routes_fill_the_version_into_query_params_and_keep_the_match_type() {
    let mut rainbow_step = traffic(capacity(step("full"), 100, 100), 100);
    rainbow_step.traffic.as_mut().unwrap().routes = Some(vec![
        Route {
            name: "by-query".into(),
            to: RouteTo::Each,
            matches: RouteMatch {
                query_param: Some(QueryParamMatch {
                    name: "version".into(),
                    value: "{version}".into(),
                    match_type: MatchType::Exact,
                }),
                ..Default::default()
            },
        },
        Route {
            name: "by-header".into(),
            to: RouteTo::Each,
            matches: RouteMatch {
                header: Some(HeaderMatch {
                    name: "x-version".into(),
                    value: "^{version}(-.*)?$".into(),
                    match_type: MatchType::RegularExpression,
                }),
                ..Default::default()
            },
        },
    ]);
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![rainbow_step],
        waves: None,
    };
    let mut app = app(true);
    app.max_versions = 3;
    let releases = vec![
        release("v1", &pipeline, 2, Phase::Complete),
        release("v2", &pipeline, 2, Phase::Progressing),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 2, 100)]);
    let mut world = World::new(app, releases, clusters, fleet);
    world.settle(10);
    let mut filled: Vec<_> = world.fleet["c0"]
        .routes
        .iter()
        .map(|route| (route.version.clone(), route.matches.clone()))
        .collect();
    filled.sort_by_key(|(version, matches)| (version.clone(), matches.header.is_some()));
    let query = |value: &str| RouteMatch {
        query_param: Some(QueryParamMatch {
            name: "version".into(),
            value: value.into(),
            match_type: MatchType::Exact,
        }),
        ..Default::default()
    };
    let header = |value: &str| RouteMatch {
        header: Some(HeaderMatch {
            name: "x-version".into(),
            value: value.into(),
            match_type: MatchType::RegularExpression,
        }),
        ..Default::default()
    };
    assert_eq!(
        filled,
        [
            ("v1".to_owned(), query("v1")),
            ("v1".to_owned(), header("^v1(-.*)?$")),
            ("v2".to_owned(), query("v2")),
            ("v2".to_owned(), header("^v2(-.*)?$")),
        ]
    );
}

#[test]
fn routes_left_out_of_a_step_keep_the_incumbent_routes() {
    let routes = TrafficStep {
        contender: Some(100),
        incumbent: None,
        routes: Some(vec![Route {
            name: "current".into(),
            to: RouteTo::Contender,
            matches: RouteMatch {
                path_prefix: Some("/current".into()),
                ..Default::default()
            },
        }]),
    };
    let mut full = capacity(step("full"), 100, 0);
    full.traffic = Some(routes);
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![capacity(step("staging"), 10, 100), full],
        waves: None,
    };
    let mut world = common::rollout(&pipeline, common::clusters(1));
    world.fleet.get_mut("c0").unwrap().routes = vec![prism_engine::ResolvedRoute {
        name: "current".into(),
        version: "v1".into(),
        matches: RouteMatch {
            path_prefix: Some("/current".into()),
            ..Default::default()
        },
    }];
    let staging = world.round();
    assert_eq!(
        staging.changes, 1,
        "only the contender's capacity: {}",
        staging.decision_debug
    );
    world.settle(10);
    assert_eq!(world.fleet["c0"].routes[0].version, "v2");
}

#[test]
fn autoscaled_capacity_shares_both_bounds_and_waits_for_the_lower_one() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            capacity(step("canary"), 50, 100),
            capacity(step("full"), 100, 0),
        ],
        waves: None,
    };
    let clusters = clusters(1);
    let hpa = Capacity::Autoscaled { min: 4, max: 10 };
    let mut fleet = fleet(clusters, &[]);
    fleet.get_mut("c0").unwrap().versions.insert(
        "v1".into(),
        VersionObservation {
            capacity: hpa,
            ready: 6,
            weight: 0,
        },
    );
    let mut releases = vec![
        release("v1", &pipeline, 0, Phase::Complete),
        release("v2", &pipeline, 0, Phase::Progressing),
    ];
    for release in &mut releases {
        release.capacity = hpa;
    }
    let mut world = World::new(app(false), releases, clusters, fleet);
    world.round();
    assert_eq!(
        world.replicas("c0", "v2"),
        Capacity::Autoscaled { min: 2, max: 5 }
    );
    let done = world.settle(10);
    assert_eq!(done.progress[1].phase, Phase::Complete);
    assert_eq!(world.replicas("c0", "v2"), hpa);
}

#[test]
fn a_step_without_a_soak_is_left_in_the_decision_that_achieves_it_whatever_the_subsecond() {
    // Moments are recorded rounded up to the whole second; a wait of nothing must not wait
    // for that second (one more decision, one more status write and Event per step).
    let one_step = Pipeline {
        webhooks: None,
        steps: vec![traffic(capacity(step("all"), 100, 0), 100)],
        waves: None,
    };
    let releases = vec![
        release("v1", &one_step, 10, Phase::Complete),
        release("v2", &one_step, 10, Phase::Progressing),
    ];
    let clusters = clusters(1);
    let fleet = fleet(clusters, &[("v1", 0, 0), ("v2", 10, 100)]);
    let mut world = World::new(app(true), releases, clusters, fleet);
    world.now = at(0)
        .checked_add(jiff::SignedDuration::from_millis(500))
        .unwrap();
    let round = world.decide();
    assert_eq!(
        round.progress[1].phase,
        Phase::Complete,
        "{}",
        round.decision_debug
    );
}
