//! Ordered retirement of a rainbow's versions: routes leave first, capacity stays for the drain
//! period counted from when no cluster routes to the version, then it is scaled to zero, and its
//! objects go after a further delay. Pins exempt a version from retirement by count or age.

mod common;

use common::*;
use prism_api::strategy::{Duration, Pipeline, Route, RouteMatch, RouteTo};
use prism_engine::{
    AppPolicy, Capacity, ConditionKind, Drain, DrainReading, Phase, ReleaseInput, RetireCause,
    Role, VersionState,
};
use proptest::prelude::*;

const REPLICAS: u32 = 4;
const PERIOD: i64 = 60;
const DELETE_AFTER: i64 = 30;

/// One step: the contender takes the default route, every live version keeps its capacity and a
/// hostname of its own.
fn rainbow() -> Pipeline {
    let mut switch = traffic(capacity(step("switch"), 100, 100), 100);
    switch.traffic.as_mut().unwrap().routes = Some(vec![Route {
        name: "by-version".into(),
        to: RouteTo::Each,
        matches: RouteMatch {
            subdomain: Some("{version}".into()),
            ..Default::default()
        },
    }]);
    Pipeline {
        webhooks: None,
        steps: vec![switch],
        waves: None,
    }
}

fn rainbow_app(max: u32) -> AppPolicy {
    let mut app = app(true);
    app.max_versions = max;
    app.drain = Some(Drain {
        period: Duration::from_secs(PERIOD),
        delete_after: Duration::from_secs(DELETE_AFTER),
        quiet_window: None,
    });
    app
}

/// `complete` complete versions live (v1 oldest, the last on the default route, each on its own
/// route), and one more, v<complete+1>, just made.
/// `pin_first` pins v1 from the start.
fn world<'a>(
    pipeline: &'a Pipeline,
    app: AppPolicy,
    complete: usize,
    pin_first: bool,
) -> World<'a> {
    const NAMES: [&str; 6] = ["v1", "v2", "v3", "v4", "v5", "v6"];
    let mut releases: Vec<ReleaseInput> = NAMES[..complete]
        .iter()
        .map(|name| release(name, pipeline, REPLICAS, Phase::Complete))
        .collect();
    for (index, release) in releases.iter_mut().enumerate() {
        release.created_at = at(index as i64 * 10);
    }
    releases[0].pinned = pin_first;
    let clusters = clusters(2);
    let running: Vec<(&str, u32, u32)> = NAMES[..complete]
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let weight = if index + 1 == complete { 100 } else { 0 };
            (*name, REPLICAS, weight)
        })
        .collect();
    let mut world = World::new(app, releases, clusters, fleet(clusters, &running));
    world.now = at(1000);
    // The steady state of the complete versions: their routes in place.
    world.settle(10);
    let mut contender = release(NAMES[complete], pipeline, REPLICAS, Phase::Progressing);
    contender.created_at = at(complete as i64 * 10);
    contender.clusters = clusters;
    world.releases.push(contender);
    world
}

/// Rounds until the newest release completes; that round.
fn complete_newest(world: &mut World) -> Round {
    for _ in 0..10 {
        let round = world.round();
        if round.progress.last().unwrap().phase == Phase::Complete {
            return round;
        }
    }
    panic!("the newest release did not complete");
}

fn capacity_of(world: &World, cluster: &str, release: &str) -> Option<Capacity> {
    world.fleet[cluster]
        .versions
        .get(release)
        .map(|version| version.capacity)
}

fn routed(world: &World, release: &str) -> bool {
    world
        .fleet
        .values()
        .any(|cluster| cluster.routes.iter().any(|route| route.version == release))
}

fn state(world: &World, release: &str) -> Option<VersionState> {
    let index = world.releases.iter().position(|r| r.name == release)?;
    world.releases[index]
        .progress
        .retirement
        .as_ref()
        .map(|retirement| retirement.state)
}

#[test]
fn a_version_over_max_drains_then_is_scaled_to_zero_then_deleted() {
    let pipeline = rainbow();
    let mut world = world(&pipeline, rainbow_app(3), 3, false);
    assert!(routed(&world, "v1") && routed(&world, "v3"));

    // v4 is made: with it, v1 is one too many (versions.max counts the contender). Its route
    // leaves first, its capacity stays.
    let round = world.round();
    assert_eq!(round.roles[0], Role::Draining, "{}", round.decision_debug);
    assert!(round.events.contains(&("v1".into(), "Draining")));
    let retirement = round.progress[0].retirement.clone().unwrap();
    assert_eq!(retirement.cause, RetireCause::MaxVersions);
    let live = round.conditions[0]
        .iter()
        .find(|condition| condition.kind == ConditionKind::Live)
        .unwrap();
    assert_eq!((live.status, live.reason), (false, "Draining"));

    // v4 rolls out, its traffic change takes v1's route away, v1 keeps its capacity; a decision
    // sees the routes gone: the drain period counts from then.
    world.now = at(1001);
    complete_newest(&mut world);
    assert!(!routed(&world, "v1"), "its route left");
    assert!(routed(&world, "v2"), "v2 keeps its own");
    for cluster in world.clusters {
        assert_eq!(
            capacity_of(&world, &cluster.name, "v1"),
            Some(Capacity::Replicas(REPLICAS))
        );
    }
    let round = world.round();
    let left = round.progress[0]
        .retirement
        .as_ref()
        .unwrap()
        .routes_left_at;
    assert_eq!(left, Some(at(1001)));
    assert_eq!(round.requeue_after, Some(Duration::from_secs(PERIOD)));

    // Just before the period ends, nothing moves.
    world.now = at(1001 + PERIOD - 1);
    let round = world.round();
    assert_eq!(round.changes, 0, "{}", round.decision_debug);
    assert_eq!(state(&world, "v1"), Some(VersionState::Draining));

    // Then it is Drained, and scaled to zero with its objects kept.
    world.now = at(1001 + PERIOD);
    let round = world.round();
    assert!(round.events.contains(&("v1".into(), "Drained")));
    assert_eq!(round.requeue_after, Some(Duration::from_secs(DELETE_AFTER)));
    let round = world.round();
    assert!(
        round.decision_debug.contains("Idle"),
        "{}",
        round.decision_debug
    );
    for cluster in world.clusters {
        assert_eq!(
            capacity_of(&world, &cluster.name, "v1"),
            Some(Capacity::ZERO)
        );
    }
    assert!(!round.retired[0]);

    // Its objects go once they have waited deleteAfter.
    world.now = at(1001 + PERIOD + DELETE_AFTER);
    let round = world.round();
    assert!(round.retired[0]);
    assert!(round.events.contains(&("v1".into(), "Retired")));
    assert_eq!(state(&world, "v1"), Some(VersionState::Retired));
    for cluster in world.clusters {
        assert_eq!(capacity_of(&world, &cluster.name, "v1"), None);
    }
    // v2, v3, v4 stay live, untouched.
    assert_eq!(
        round.roles[1..],
        [Role::Retained, Role::Retained, Role::Incumbent]
    );
    let round = world.round();
    assert_eq!(round.changes, 0);
    assert!(round.events.is_empty(), "{:?}", round.events);
}

#[test]
fn with_a_drain_metric_a_version_drains_until_its_rate_reads_zero_for_the_window() {
    const WINDOW: i64 = 30;
    let pipeline = rainbow();
    let mut app = rainbow_app(3);
    if let Some(drain) = app.drain.as_mut() {
        drain.quiet_window = Some(Duration::from_secs(WINDOW));
    }
    let mut world = world(&pipeline, app, 3, false);
    world.now = at(1001);
    complete_newest(&mut world);
    world.round();
    let reading = |world: &mut World, secs: i64, rate: f64| {
        world.now = at(secs);
        world.releases[0].drain_reading = Some(DrainReading { at: at(secs), rate });
        let round = world.round();
        world.releases[0].drain_reading = None;
        round
    };

    // Still answering requests when the period ends: it stays Draining, capacity kept.
    reading(&mut world, 1001 + PERIOD - 5, 2.5);
    let round = reading(&mut world, 1001 + PERIOD, 0.5);
    assert_eq!(state(&world, "v1"), Some(VersionState::Draining));
    assert!(!round.events.contains(&("v1".into(), "Drained")));
    let live = round.conditions[0]
        .iter()
        .find(|condition| condition.kind == ConditionKind::Live)
        .unwrap();
    assert!(live.message.contains("does not read 0"), "{}", live.message);

    // Zero, then a request again: the window starts over.
    let quiet = 1001 + PERIOD + 10;
    reading(&mut world, quiet, 0.0);
    let quiet_since = |world: &World| {
        world.releases[0]
            .progress
            .retirement
            .as_ref()
            .unwrap()
            .quiet_since
    };
    assert_eq!(quiet_since(&world), Some(at(quiet)));
    reading(&mut world, quiet + 20, 1.0);
    assert_eq!(quiet_since(&world), None);
    let quiet = quiet + 25;
    let round = reading(&mut world, quiet, 0.0);
    assert_eq!(round.requeue_after, Some(Duration::from_secs(WINDOW)));
    let round = reading(&mut world, quiet + WINDOW - 1, 0.0);
    assert_eq!(state(&world, "v1"), Some(VersionState::Draining));
    assert_eq!(round.changes, 0, "{}", round.decision_debug);
    for cluster in world.clusters {
        assert_eq!(
            capacity_of(&world, &cluster.name, "v1"),
            Some(Capacity::Replicas(REPLICAS))
        );
    }

    // Zero for the whole window: Drained.
    let round = reading(&mut world, quiet + WINDOW, 0.0);
    assert!(round.events.contains(&("v1".into(), "Drained")));
    assert_eq!(state(&world, "v1"), Some(VersionState::Drained));
}

#[test]
fn a_pinned_version_stays_past_max_and_ttl_and_the_oldest_unpinned_retires() {
    let pipeline = rainbow();
    let mut world = world(&pipeline, rainbow_app(3), 3, true);
    world.app.version_ttl = Some(Duration::from_secs(100));
    world.releases[2].created_at = world.now;
    world.releases[3].created_at = world.now;
    let round = complete_newest(&mut world);
    // Past its ttl and the oldest: v1 stays; v2 retires by its age.
    assert_eq!(round.roles[0], Role::Retained);
    assert_eq!(round.roles[1], Role::Draining);
    assert_eq!(
        round.progress[1].retirement.as_ref().unwrap().cause,
        RetireCause::Ttl
    );
    assert!(routed(&world, "v1"));
}

#[test]
fn a_person_retires_a_retained_version() {
    let pipeline = rainbow();
    let mut world = world(&pipeline, rainbow_app(4), 3, false);
    complete_newest(&mut world);
    assert_eq!(world.decide().roles[1], Role::Retained);
    world.releases[1].retire_requested = true;
    let round = world.round();
    assert_eq!(round.roles[1], Role::Draining);
    assert_eq!(
        round.progress[1].retirement.as_ref().unwrap().cause,
        RetireCause::Command
    );
    // Retirement never goes back, whatever the person does next.
    world.releases[1].retire_requested = false;
    world.releases[1].pinned = true;
    assert_eq!(world.decide().roles[1], Role::Draining);
    // The incumbent takes the default route: a command to retire it changes nothing.
    world.releases[3].retire_requested = true;
    assert_eq!(world.decide().roles[3], Role::Incumbent);
}

#[test]
fn without_a_drain_a_version_over_max_goes_at_once() {
    let pipeline = rainbow();
    let mut app = rainbow_app(3);
    app.drain = None;
    let mut world = world(&pipeline, app, 3, false);
    world.settle(5);
    assert_eq!(world.decide().roles[0], Role::Retiring);
    for cluster in world.clusters {
        assert_eq!(capacity_of(&world, &cluster.name, "v1"), None);
    }
    assert_eq!(state(&world, "v1"), None);
}

proptest! {
    /// Whatever the clock and the gateways do (a cluster's route change not accepted yet), a
    /// retiring version's capacity drops only after no cluster routes to it, and not before the
    /// drain period since then; its objects go only after deleteAfter more; a pinned version
    /// never retires by count or age.
    #[test]
    fn routes_leave_before_capacity_and_capacity_stays_for_the_drain_period(
        ticks in prop::collection::vec((1i64..40, prop::option::of(0usize..2)), 1..40),
        pinned in any::<bool>(),
        ttl in prop::option::of(1i64..200),
    ) {
        let pipeline = rainbow();
        let mut world = world(&pipeline, rainbow_app(3), 3, pinned);
        world.app.version_ttl = ttl.map(Duration::from_secs);
        let mut routes_gone_since = None;
        for (seconds, pending) in ticks {
            world.now = world.now.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap();
            for (index, cluster) in world.clusters.iter().enumerate() {
                world.fleet.get_mut(&cluster.name).unwrap().traffic_pending =
                    (pending == Some(index)).then(|| "the gateway has not taken the route".into());
            }
            let before: Vec<Option<Capacity>> = world.clusters.iter().map(|c| capacity_of(&world, &c.name, "v1")).collect();
            let routed_before = routed(&world, "v1");
            let pending_before = world.fleet.values().any(|c| c.traffic_pending.is_some());
            let round = world.round();
            if pinned {
                prop_assert!(matches!(round.roles[0], Role::Retained), "{:?}", round.roles);
                continue;
            }
            if !routed_before && !pending_before && routes_gone_since.is_none() && state(&world, "v1").is_some() {
                routes_gone_since = Some(world.now);
            }
            let after: Vec<Option<Capacity>> = world.clusters.iter().map(|c| capacity_of(&world, &c.name, "v1")).collect();
            for (before, after) in before.iter().zip(&after) {
                let dropped = after.is_none_or(|after| before.is_some_and(|before| after.floor() < before.floor()));
                if dropped && before.is_some() {
                    prop_assert!(!routed_before, "capacity dropped while a route named v1");
                    let since = routes_gone_since.expect("routes observed gone before capacity dropped");
                    prop_assert!(world.now.duration_since(since) >= jiff::SignedDuration::from_secs(PERIOD));
                    let retirement = world.releases[0].progress.retirement.clone().unwrap();
                    let drained_at = retirement.drained_at.expect("Drained before its capacity dropped");
                    prop_assert!(drained_at.duration_since(since) >= jiff::SignedDuration::from_secs(PERIOD));
                    if after.is_none() {
                        prop_assert!(world.now.duration_since(drained_at) >= jiff::SignedDuration::from_secs(DELETE_AFTER));
                    }
                }
            }
        }
    }
}

#[test]
fn a_version_with_nothing_left_anywhere_is_recorded_retired_without_a_drain() {
    let pipeline = rainbow();
    let mut world = world(&pipeline, rainbow_app(3), 3, false);
    // v1 runs nowhere any more, and no route names it (gone before this controller's time).
    for cluster in world.clusters {
        let observed = world.fleet.get_mut(&cluster.name).unwrap();
        observed.versions.remove("v1");
        observed.routes.retain(|route| route.version != "v1");
    }
    let round = world.round();
    assert_eq!(round.roles[0], Role::Retiring);
    assert!(round.retired[0]);
    assert_eq!(state(&world, "v1"), Some(VersionState::Retired));
    assert!(
        !round.events.iter().any(|(release, _)| release == "v1"),
        "{:?}",
        round.events
    );
    // A cluster out of sight later starts no drain of it.
    world.fleet.get_mut("c1").unwrap().reachable = false;
    assert_eq!(world.decide().roles[0], Role::Retiring);
}
