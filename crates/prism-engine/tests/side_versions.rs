//! Side versions (a SideVersion's Release): full capacity in their clusters, weight 0, their own
//! routes only, and no say in the mainline: its roles, steps, weights and routes are the same with
//! or without them.

mod common;

use common::*;
use prism_api::strategy::{Duration, HeaderMatch, MatchType, Pipeline, Route, RouteMatch, RouteTo};
use prism_engine::{Capacity, Drain, Phase, ReleaseInput, RetireCause, Role, Side, VersionState};
use proptest::prelude::*;

const SIDE_REPLICAS: u32 = 2;
const PERIOD: i64 = 20;
const DELETE_AFTER: i64 = 10;

fn side_routes() -> Vec<Route> {
    vec![
        Route {
            name: "pr-42-header".into(),
            to: RouteTo::Each,
            matches: RouteMatch {
                header: Some(HeaderMatch {
                    name: "x-version".into(),
                    value: "{version}".into(),
                    match_type: MatchType::Exact,
                }),
                ..Default::default()
            },
        },
        Route {
            name: "pr-42-host".into(),
            to: RouteTo::Each,
            matches: RouteMatch {
                subdomain: Some("{version}".into()),
                ..Default::default()
            },
        },
    ]
}

fn side<'a>(pipeline: &'a Pipeline, routes: &'a [Route]) -> ReleaseInput<'a> {
    let mut side = release("docs-pr-42-1", pipeline, SIDE_REPLICAS, Phase::Progressing);
    side.version_name = "pr-42";
    side.side = Some(Side {
        routes,
        drain: Drain {
            period: Duration::from_secs(PERIOD),
            delete_after: Duration::from_secs(DELETE_AFTER),
            quiet_window: None,
        },
    });
    side
}

/// The canary rollout of v2 over v1 on three clusters, promoted through its manual gate, with the
/// side version at `at` among the releases (None: without it).
fn world<'a>(pipeline: &'a Pipeline, routes: &'a [Route], at: Option<usize>) -> World<'a> {
    let mut world = rollout(pipeline, clusters(3));
    world.releases[1].target_step = Some(4);
    if let Some(at) = at {
        let mut side = side(pipeline, routes);
        side.clusters = world.clusters;
        world.releases.insert(at, side);
    }
    world
}

/// Per cluster: the mainline's versions (name, capacity, weight) and routes.
type Mainline = Vec<(String, Vec<(String, u32, u32)>, Vec<String>)>;

fn mainline(world: &World) -> Mainline {
    world
        .fleet
        .iter()
        .map(|(cluster, observed)| {
            let versions = observed
                .versions
                .iter()
                .filter(|(name, _)| name.starts_with('v'))
                .map(|(name, v)| (name.clone(), v.capacity.floor(), v.weight))
                .collect();
            let routes = observed
                .routes
                .iter()
                .filter(|route| route.version.starts_with('v'))
                .map(|route| format!("{route:?}"))
                .collect();
            (cluster.clone(), versions, routes)
        })
        .collect()
}

fn side_routed(world: &World) -> Vec<String> {
    world
        .fleet
        .values()
        .flat_map(|observed| {
            observed
                .routes
                .iter()
                .filter(|route| route.version == "docs-pr-42-1")
                .map(|route| route.name.clone())
        })
        .collect()
}

/// Runs the world with and without the side version in lockstep and checks, every round, that the
/// mainline moves the same and that the side version has no weight anywhere.
fn lockstep(at: usize, side_ready: bool, rounds: usize) -> Result<(), TestCaseError> {
    let pipeline = canary();
    let routes = side_routes();
    let mut without = world(&pipeline, &routes, None);
    let mut with = world(&pipeline, &routes, Some(at));
    for round in 0..rounds {
        let a = without.round();
        let b = with.round();
        if !side_ready {
            for observed in with.fleet.values_mut() {
                if let Some(version) = observed.versions.get_mut("docs-pr-42-1") {
                    version.ready = 0;
                }
            }
        }
        let mut mainline_b = b.progress.clone();
        let mut roles_b = b.roles.clone();
        prop_assert_eq!(roles_b.remove(at), Role::Side, "round {}", round);
        mainline_b.remove(at);
        prop_assert_eq!(&a.progress, &mainline_b, "round {}", round);
        prop_assert_eq!(&a.roles, &roles_b, "round {}", round);
        prop_assert_eq!(&a.phases, &b.phases, "round {}", round);
        let events_b: Vec<_> = b
            .events
            .iter()
            .filter(|(release, _)| release != "docs-pr-42-1")
            .cloned()
            .collect();
        prop_assert_eq!(&a.events, &events_b, "round {}", round);
        prop_assert_eq!(mainline(&without), mainline(&with), "round {}", round);
        for cluster in with.clusters {
            prop_assert_eq!(with.weight(&cluster.name, "docs-pr-42-1"), 0);
            prop_assert_eq!(
                with.replicas(&cluster.name, "docs-pr-42-1"),
                Capacity::Replicas(SIDE_REPLICAS)
            );
        }
        prop_assert_eq!(b.progress[at].phase, Phase::Complete);
    }
    if rounds >= 12 {
        prop_assert_eq!(without.releases[1].progress.phase, Phase::Complete);
    }
    Ok(())
}

#[test]
fn a_side_version_runs_at_full_capacity_on_its_own_routes_and_never_gets_weight() {
    let pipeline = canary();
    let routes = side_routes();
    let mut world = world(&pipeline, &routes, Some(0));
    world.settle(20);
    assert_eq!(world.releases[2].progress.phase, Phase::Complete);
    let mut names = side_routed(&world);
    names.sort();
    names.dedup();
    assert_eq!(names, ["pr-42-header", "pr-42-host"]);
    let route = world.fleet["c0"]
        .routes
        .iter()
        .find(|route| route.name == "pr-42-host")
        .unwrap();
    assert_eq!(route.matches.subdomain.as_deref(), Some("pr-42"));
    for cluster in world.clusters {
        assert_eq!(world.weight(&cluster.name, "docs-pr-42-1"), 0);
        assert_eq!(world.weight(&cluster.name, "v2"), 100);
    }
}

#[test]
fn a_side_version_without_ready_pods_holds_nothing_and_gets_no_route() {
    lockstep(0, false, 12).unwrap();
    let pipeline = canary();
    let routes = side_routes();
    let mut world = world(&pipeline, &routes, Some(0));
    for _ in 0..12 {
        world.round();
        for observed in world.fleet.values_mut() {
            observed.versions.get_mut("docs-pr-42-1").unwrap().ready = 0;
        }
    }
    assert!(side_routed(&world).is_empty());
}

#[test]
fn a_side_version_alone_never_gets_the_default_route() {
    let pipeline = canary();
    let routes = side_routes();
    let mut world = World::new(
        app(true),
        vec![side(&pipeline, &routes)],
        clusters(2),
        fleet(clusters(2), &[]),
    );
    let round = world.settle(10);
    assert_eq!(round.roles, [Role::Side]);
    for cluster in world.clusters {
        assert_eq!(world.weight(&cluster.name, "docs-pr-42-1"), 0);
    }
}

#[test]
fn a_side_version_retires_in_order_when_its_object_goes() {
    let pipeline = canary();
    let routes = side_routes();
    let mut world = world(&pipeline, &routes, Some(0));
    world.now = at(100);
    world.settle(20);
    assert!(!side_routed(&world).is_empty());

    world.releases[0].retire_requested = true;
    let round = world.round();
    assert_eq!(round.roles[0], Role::Draining);
    let retirement = round.progress[0].retirement.clone().unwrap();
    assert_eq!(retirement.cause, RetireCause::SideVersion);
    assert!(side_routed(&world).is_empty(), "its routes leave first");
    for cluster in world.clusters {
        assert_eq!(
            world.replicas(&cluster.name, "docs-pr-42-1"),
            Capacity::Replicas(SIDE_REPLICAS),
            "its pods stay while it drains"
        );
    }
    world.round();
    world.now = at(100 + PERIOD);
    let drained = world.round();
    assert_eq!(
        state(&world),
        Some(VersionState::Drained),
        "{}",
        drained.decision_debug
    );
    let round = world.round();
    for cluster in world.clusters {
        assert_eq!(
            world.replicas(&cluster.name, "docs-pr-42-1"),
            Capacity::ZERO,
            "{}",
            round.decision_debug
        );
    }
    world.now = at(100 + PERIOD + DELETE_AFTER);
    let round = world.round();
    assert!(round.retired[0]);
    let retirement = round.progress[0].retirement.clone().unwrap();
    assert_eq!(retirement.state, VersionState::Retired);
    for cluster in world.clusters {
        assert!(
            !world.fleet[&cluster.name]
                .versions
                .contains_key("docs-pr-42-1")
        );
        assert_eq!(world.weight(&cluster.name, "v2"), 100);
    }
    assert_eq!(round.roles[1..], [Role::Retiring, Role::Incumbent]);
}

fn state(world: &World) -> Option<VersionState> {
    let retirement = world.releases[0].progress.retirement.as_ref();
    retirement.map(|retirement| retirement.state)
}

proptest! {
    #[test]
    fn a_side_version_never_changes_the_mainline_nor_gets_weight(
        at in 0usize..=2,
        side_ready in any::<bool>(),
        rounds in 1usize..14,
    ) {
        lockstep(at, side_ready, rounds)?;
    }
}

#[test]
fn a_side_version_retires_while_the_mainline_waits_at_a_manual_gate() {
    let pipeline = canary();
    let routes = side_routes();
    let mut world = world(&pipeline, &routes, Some(0));
    world.releases[2].target_step = None;
    world.now = at(100);
    world.settle(20);
    assert_eq!(world.releases[2].progress.phase, Phase::WaitingForCommand);
    world.releases[0].retire_requested = true;
    let mut requeues = Vec::new();
    for _ in 0..8 {
        let round = world.settle(5);
        requeues.push(round.requeue_after);
        match round.requeue_after {
            Some(after) => world.now += after.0,
            None => break,
        }
    }
    assert_eq!(state(&world), Some(VersionState::Retired), "{requeues:?}");
}
