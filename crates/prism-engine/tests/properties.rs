//! The engine's invariants over random strategies, fleets, observed states and times.

mod common;

use std::collections::BTreeMap;

use common::*;
use prism_api::strategy::{
    AnalysisStep, CapacityStep, ClusterScope, Duration, Gate, Pipeline, Share, Step, TrafficStep,
    Waves,
};
use prism_engine::{
    AppPolicy, Capacity, Change, ClusterInfo, ClusterObservation, ClusterPhase, Clusters, Input,
    Phase, Progress, ReleaseInput, ResolvedRoute, Role, Verdict, VersionObservation,
    check_pipeline, decide,
};
use proptest::prelude::*;

const BASE: u32 = 6;

fn share() -> impl Strategy<Value = Share> {
    prop_oneof![
        prop::sample::select(vec![10u32, 25, 50, 100]).prop_map(Share::Percent),
        (1u32..=BASE).prop_map(Share::Replicas),
    ]
}

fn scope() -> impl Strategy<Value = Option<ClusterScope>> {
    prop_oneof![
        3 => Just(None),
        1 => (1u32..4).prop_map(|first| Some(ClusterScope { first: Some(first), ..Default::default() })),
        1 => prop::sample::select(vec!["eu", "us"])
            .prop_map(|region| Some(ClusterScope { region: Some(region.into()), ..Default::default() })),
    ]
}

fn gate() -> impl Strategy<Value = Option<Gate>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(Gate { manual: true, ..Default::default() })),
        1 => (0i64..600).prop_map(|secs| Some(Gate { pause: Some(Duration::from_secs(secs)), ..Default::default() })),
    ]
}

fn random_step(index: usize) -> impl Strategy<Value = Step> {
    let capacity = prop::option::of((
        prop::option::of(share()),
        prop::option::of(prop::sample::select(vec![0u32, 50, 100]).prop_map(Share::Percent)),
        prop::option::weighted(0.3, 1u32..4),
    ));
    let traffic = prop::option::of(0u32..=100);
    (capacity, traffic, scope(), gate(), any::<bool>()).prop_map(
        move |(capacity, traffic, clusters, gate, analysis)| {
            let max_surge = capacity.and_then(|(_, _, surge)| surge);
            Step {
                name: format!("s{index}"),
                capacity: capacity.map(|(contender, incumbent, max_surge)| CapacityStep {
                    contender,
                    incumbent,
                    max_surge,
                }),
                traffic: traffic
                    .filter(|_| max_surge.is_none())
                    .map(|contender| TrafficStep {
                        contender: Some(contender),
                        ..Default::default()
                    }),
                analysis: analysis.then(AnalysisStep::default),
                gate,
                clusters,
            }
        },
    )
}

/// Waves without a progress deadline: an idealised fleet is followed with a clock that jumps to
/// each requeue, which would pass every deadline.
fn waves() -> impl Strategy<Value = Option<Waves>> {
    prop::option::weighted(
        0.3,
        (prop::option::of(1u32..4), prop::option::of(0i64..300)).prop_map(|(max, soak)| Waves {
            max_concurrency: max,
            soak: soak.map(Duration::from_secs),
            ..Default::default()
        }),
    )
}

/// Random steps, then a final full step so that most pipelines are valid.
fn pipeline() -> impl Strategy<Value = Pipeline> {
    (0usize..5).prop_flat_map(|count| {
        let steps: Vec<_> = (0..count).map(random_step).collect();
        (steps, gate(), waves()).prop_map(move |(mut steps, gate, waves)| {
            let mut full = traffic(capacity(step("full"), 100, 0), 100);
            full.gate = gate;
            steps.push(full);
            Pipeline {
                steps,
                waves,
                webhooks: None,
            }
        })
    })
}

fn headless(mut pipeline: Pipeline) -> Pipeline {
    for step in &mut pipeline.steps {
        step.traffic = None;
    }
    pipeline
}

fn observation() -> impl Strategy<Value = Option<VersionObservation>> {
    prop::option::of((0u32..=BASE + 2, 0u32..=BASE + 2, 0u32..=100).prop_map(
        |(replicas, ready, weight)| VersionObservation {
            capacity: Capacity::Replicas(replicas),
            // Pods still ready while they stop may outnumber the capacity.
            ready,
            weight,
        },
    ))
}

/// A random observed state of `clusters` for releases `v0..v{versions}`.
fn observed(
    clusters: usize,
    versions: usize,
) -> impl Strategy<Value = BTreeMap<String, ClusterObservation>> {
    prop::collection::vec(
        (
            prop::bool::weighted(0.9),
            prop::collection::vec(observation(), versions),
        ),
        clusters,
    )
    .prop_map(|fleet| {
        fleet
            .into_iter()
            .enumerate()
            .map(|(cluster, (reachable, versions))| {
                let versions = versions
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, version)| {
                        version.map(|version| (format!("v{index}"), version))
                    })
                    .collect();
                (
                    format!("c{cluster}"),
                    ClusterObservation {
                        reachable,
                        versions,
                        routes: vec![],
                        refused: None,
                        traffic_pending: None,
                    },
                )
            })
            .collect()
    })
}

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(vec![
        Phase::Progressing,
        Phase::Complete,
        Phase::Complete,
        Phase::WaitingForCommand,
        Phase::RollingBack,
        Phase::Aborted,
        Phase::Paused,
    ])
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Pending),
        Just(Verdict::Passed),
        Just(Verdict::NotRequired),
        Just(Verdict::Failed {
            reason: "bad".into()
        }),
        Just(Verdict::Inconclusive {
            reason: "no data".into()
        }),
    ]
}

/// Everything one random decision needs, owned.
#[derive(Clone, Debug)]
struct Case {
    app: AppPolicy,
    pipeline: Pipeline,
    /// Per release.
    schedules: Vec<Vec<ClusterInfo>>,
    progress: Vec<(Phase, u32, bool, Option<u32>, bool, Verdict)>,
    observed: BTreeMap<String, ClusterObservation>,
    now: i64,
}

impl Case {
    fn releases(&self) -> Vec<ReleaseInput<'_>> {
        self.progress
            .iter()
            .enumerate()
            .map(
                |(index, (phase, step, achieved, target_step, aborted, verdict))| ReleaseInput {
                    name: ["v0", "v1", "v2", "v3", "v4"][index],
                    // Not the release's name, so that a route filled with either is told apart.
                    version_name: ["r0", "r1", "r2", "r3", "r4"][index],
                    created_at: at(index as i64 * 100),
                    clusters: &self.schedules[index],
                    pipeline: &self.pipeline,
                    capacity: Capacity::Replicas(BASE),
                    progress: Progress {
                        step: *step,
                        step_name: None,
                        achieved_at: achieved.then(|| at(0)),
                        phase: *phase,
                        abort: None,
                        clusters: BTreeMap::new(),
                        retirement: None,
                    },
                    target_step: *target_step,
                    aborted: *aborted,
                    analysis: verdict.clone(),
                    webhook: verdict.clone(),
                    pinned: false,
                    retire_requested: false,
                    side: None,
                    drain_reading: None,
                },
            )
            .collect()
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=8,
        1usize..=5,
        pipeline(),
        any::<bool>(),
        2u32..5,
        prop::option::of(0i64..2000),
    )
        .prop_flat_map(
            |(clusters, versions, pipeline, traffic, max_versions, ttl)| {
                let steps = pipeline.steps.len() as u32;
                let pipeline = if traffic {
                    pipeline
                } else {
                    headless(pipeline)
                };
                let release = (
                    phase(),
                    0..steps,
                    any::<bool>(),
                    prop::option::weighted(0.2, 0..steps + 2),
                    prop::bool::weighted(0.1),
                    verdict(),
                );
                (
                    prop::collection::vec(release, versions),
                    observed(clusters, versions),
                    0i64..3000,
                )
                    .prop_map(move |(progress, observed, now)| Case {
                        app: AppPolicy {
                            traffic,
                            max_versions,
                            version_ttl: ttl.map(Duration::from_secs),
                            drain: None,
                        },
                        pipeline: pipeline.clone(),
                        schedules: vec![common::clusters(clusters).to_vec(); progress.len()],
                        progress,
                        observed,
                        now,
                    })
            },
        )
}

/// A case where every release has a schedule of its own: some of the clusters, in any order.
fn fleet_case() -> impl Strategy<Value = Case> {
    case().prop_flat_map(|case| {
        let clusters = case.schedules[0].clone();
        let count = clusters.len();
        let schedule = Just(clusters)
            .prop_shuffle()
            .prop_flat_map(move |shuffled| prop::sample::subsequence(shuffled, 1..=count));
        let schedules = prop::collection::vec(schedule, case.schedules.len());
        (Just(case), schedules).prop_map(|(mut case, schedules)| {
            case.schedules = schedules;
            case
        })
    })
}

fn ready(observed: &BTreeMap<String, ClusterObservation>, cluster: &str, release: &str) -> u32 {
    observed[cluster]
        .versions
        .get(release)
        .map_or(0, |version| version.ready)
}

fn observed_weight(observed: &ClusterObservation, release: &str) -> u32 {
    observed
        .versions
        .get(release)
        .map_or(0, |version| version.weight)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn traffic_sums_to_100_and_reaches_only_ready_versions(case in prop_oneof![case(), fleet_case()]) {
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        let decision = decide(&input);
        for cluster in &decision.clusters {
            let Some(traffic) = &cluster.traffic else { continue };
            prop_assert!(case.app.traffic);
            prop_assert_eq!(traffic.weights.iter().map(|weight| weight.percent).sum::<u32>(), 100);
            for weight in traffic.weights.iter().filter(|weight| weight.percent > 0) {
                prop_assert!(ready(&case.observed, cluster.cluster, weight.release) > 0, "{} gets {}% in {} without ready pods", weight.release, weight.percent, cluster.cluster);
            }
            for route in &traffic.routes {
                prop_assert!(ready(&case.observed, cluster.cluster, &route.version) > 0);
            }
        }
    }

    #[test]
    fn an_each_route_goes_to_every_live_version_by_the_name_it_goes_by(case in prop_oneof![case(), fleet_case()]) {
        let mut case = case;
        let each = prism_api::strategy::Route {
            name: "by-version".into(),
            to: prism_api::strategy::RouteTo::Each,
            matches: prism_api::strategy::RouteMatch {
                subdomain: Some("{version}".into()),
                ..Default::default()
            },
        };
        for step in &mut case.pipeline.steps {
            if let Some(traffic) = &mut step.traffic {
                traffic.routes = Some(vec![each.clone()]);
            }
        }
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        let decision = decide(&input);
        for cluster in &decision.clusters {
            let Some(traffic) = &cluster.traffic else { continue };
            for route in &traffic.routes {
                let index = releases.iter().position(|release| release.name == route.version);
                prop_assert!(index.is_some(), "{} is no release", route.version);
                let index = index.unwrap();
                prop_assert_eq!(route.matches.subdomain.as_deref(), Some(releases[index].version_name));
                prop_assert_ne!(decision.releases[index].role, Role::Retiring, "a route to retiring {}", route.version);
            }
        }
    }

    #[test]
    fn a_version_with_traffic_keeps_capacity(case in case()) {
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        let decision = decide(&input);
        for change in &decision.changes {
            if let Change::Capacity { cluster, release, capacity } = change {
                let observed = &case.observed[*cluster];
                if observed_weight(observed, release) > 0 {
                    prop_assert!(!capacity.is_zero(), "{} loses all capacity in {} while it has traffic", release, cluster);
                }
            }
            if let Change::Remove { cluster, release } = change {
                prop_assert_eq!(observed_weight(&case.observed[*cluster], release), 0);
            }
        }
    }

    #[test]
    fn the_same_input_gives_the_same_decision(case in prop_oneof![case(), fleet_case()]) {
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        prop_assert_eq!(decide(&input), decide(&input));
    }

    #[test]
    fn only_writes_that_change_something_are_emitted(case in prop_oneof![case(), fleet_case()]) {
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        let decision = decide(&input);
        for change in &decision.changes {
            match change {
                Change::Capacity { cluster, release, capacity } => {
                    let observed = case.observed[*cluster].versions.get(*release).map_or(Capacity::ZERO, |version| version.capacity);
                    prop_assert!(observed != *capacity && !(observed.is_zero() && capacity.is_zero()));
                }
                Change::Traffic { cluster, traffic } => {
                    let observed = &case.observed[*cluster];
                    let same = traffic.weights.iter().all(|weight| observed_weight(observed, weight.release) == weight.percent)
                        && traffic.routes.len() == observed.routes.len();
                    prop_assert!(!same);
                }
                Change::Remove { cluster, release } => prop_assert!(case.observed[*cluster].versions.contains_key(*release)),
                Change::Idle { cluster, release } => {
                    let observed = case.observed[*cluster].versions.get(*release);
                    prop_assert!(observed.is_some_and(|version| !version.capacity.is_zero()));
                }
            }
            let cluster = change.cluster();
            prop_assert!(case.observed[cluster].reachable, "a write to unreachable {}", cluster);
        }
    }

    /// A release never gets capacity outside its schedule (it only goes there), but an incumbent
    /// keeps all of its own where its contender is not scheduled, until the contender completes.
    #[test]
    fn a_release_runs_only_in_its_schedule(case in fleet_case()) {
        let releases = case.releases();
        let input = Input { now: at(case.now), app: &case.app, releases: &releases, observed: &case.observed, blocked: None };
        let decision = decide(&input);
        let scheduled = |release: usize, cluster: &str| releases[release].clusters.iter().any(|c| c.name == cluster);
        let index = |name: &str| releases.iter().position(|release| release.name == name).unwrap();
        for cluster in &decision.clusters {
            for version in &cluster.versions {
                if scheduled(index(version.release), cluster.cluster) {
                    continue;
                }
                let seen = case.observed[cluster.cluster].versions.get(version.release).map_or(Capacity::ZERO, |seen| seen.capacity);
                prop_assert!(version.target.is_zero(), "{} wants {} in {} outside its schedule", version.release, version.target, cluster.cluster);
                prop_assert!(!version.capacity.exceeds(seen), "{} grows in {} outside its schedule", version.release, cluster.cluster);
            }
        }
        let role = |role: Role| decision.releases.iter().position(|release| release.role == role);
        if let (Some(contender), Some(incumbent)) = (role(Role::Contender), role(Role::Incumbent)) {
            for cluster in &decision.clusters {
                if scheduled(incumbent, cluster.cluster) && !scheduled(contender, cluster.cluster) {
                    let kept = cluster.versions.iter().find(|version| version.release == releases[incumbent].name);
                    prop_assert_eq!(kept.map(|version| version.target), Some(Capacity::Replicas(BASE)));
                }
            }
        }
    }

    /// With an incumbent and a contender, a step is achieved (achieved_at set, or advanced past)
    /// only if every cluster in its scope shows exactly the step's state.
    #[test]
    fn a_step_is_achieved_only_when_every_cluster_in_its_scope_is(
        (pipeline, clusters, step, observed, traffic) in (pipeline(), 1usize..=8, any::<bool>()).prop_flat_map(|(pipeline, clusters, traffic)| {
            let steps = pipeline.steps.len() as u32;
            (Just(pipeline), Just(clusters), 0..steps, achievable_fleet(clusters), Just(traffic))
        })
    ) {
        let pipeline = if traffic { pipeline } else { headless(pipeline) };
        let app = AppPolicy { traffic, max_versions: 2, version_ttl: None, drain: None };
        let clusters = common::clusters(clusters);
        let mut releases = vec![release("v0", &pipeline, BASE, Phase::Complete), release("v1", &pipeline, BASE, Phase::Progressing)];
        releases[1].progress.step = step;
        for release in &mut releases {
            release.clusters = clusters;
        }
        let input = Input { now: at(0), app: &app, releases: &releases, observed: &observed, blocked: None };
        let decision = decide(&input);
        let after = &decision.releases[1].progress;
        if after.achieved_at.is_some() || after.step > step || after.phase == Phase::Complete {
            let everywhere = step as usize == pipeline.steps.len() - 1;
            let scope = pipeline.steps[step as usize].clusters.as_ref().filter(|_| !everywhere);
            for (index, cluster) in clusters.iter().enumerate() {
                if !oracle_in_scope(scope, clusters, index) {
                    continue;
                }
                let (contender, incumbent, weight) = oracle_state(&pipeline, step as usize, clusters, index);
                let seen = &observed[&cluster.name];
                prop_assert!(seen.reachable);
                let version = |name: &str| seen.versions.get(name).copied().unwrap_or(VersionObservation { capacity: Capacity::ZERO, ready: 0, weight: 0 });
                let (v0, v1) = (version("v0"), version("v1"));
                prop_assert_eq!(v1.capacity.floor(), contender.of(BASE));
                prop_assert_eq!(v0.capacity.floor(), incumbent.of(BASE));
                prop_assert!(v1.ready >= contender.of(BASE) && v0.ready >= incumbent.of(BASE));
                if traffic {
                    prop_assert_eq!((v1.weight, v0.weight), (weight, 100 - weight));
                }
            }
        }
    }

    #[test]
    fn under_a_surge_step_the_desired_capacity_stays_within_the_bound(
        surge in 1u32..4,
        incumbent_target in 0u32..=100,
        seen in prop::collection::vec((0u32..=BASE, 0u32..=BASE, 0u32..=BASE, 0u32..=BASE), 1..6),
    ) {
        let pipeline = Pipeline { steps: vec![Step {
            name: "roll".into(),
            capacity: Some(CapacityStep { contender: Some(Share::Percent(100)), incumbent: Some(Share::Percent(incumbent_target)), max_surge: Some(surge) }),
            ..Default::default()
        }], waves: None, webhooks: None };
        let clusters = common::clusters(seen.len());
        let observed: BTreeMap<_, _> = clusters.iter().zip(&seen).map(|(cluster, &(old, old_ready, new, new_ready))| {
            let version = |replicas: u32, ready: u32| VersionObservation { capacity: Capacity::Replicas(replicas), ready, weight: 0 };
            let versions = [("v0".to_string(), version(old, old_ready)), ("v1".to_string(), version(new, new_ready))].into_iter().collect();
            (cluster.name.clone(), ClusterObservation { reachable: true, versions, routes: vec![], refused: None, traffic_pending: None })
        }).collect();
        let mut releases = vec![release("v0", &pipeline, BASE, Phase::Complete), release("v1", &pipeline, BASE, Phase::Progressing)];
        for release in &mut releases {
            release.clusters = clusters;
        }
        let app = AppPolicy { traffic: false, max_versions: 2, version_ttl: None, drain: None };
        let input = Input { now: at(0), app: &app, releases: &releases, observed: &observed, blocked: None };
        let decision = decide(&input);
        let bound = BASE + Share::Percent(incumbent_target).of(BASE) + surge;
        for (cluster, &(old, _, new, _)) in decision.clusters.iter().zip(&seen) {
            let total: u32 = cluster.versions.iter().map(|version| version.capacity.floor()).sum();
            prop_assert!(total <= bound.max(old + new), "{} pods in {} above {}", total, cluster.cluster, bound);
            if old + new <= bound {
                prop_assert!(total <= bound);
            }
        }
    }

    /// Following decisions on an idealised fleet completes every valid pipeline, and at no
    /// moment sends traffic to a version without ready pods.
    #[test]
    fn an_idealised_fleet_always_completes(pipeline in pipeline(), clusters in 1usize..=8, traffic in any::<bool>()) {
        let pipeline = if traffic { pipeline } else { headless(pipeline) };
        let app = AppPolicy { traffic, max_versions: 2, version_ttl: None, drain: None };
        let clusters = common::clusters(clusters);
        prop_assume!(check_pipeline(&pipeline, app.traffic, Clusters::Scheduled(clusters)).is_ok());
        let mut world = steady_world(&pipeline, app, clusters);
        let mut done = false;
        // Waves of one cluster at a time take a few rounds per cluster and step.
        for _ in 0..600 {
            follow(&mut world);
            if world.releases[1].progress.phase == Phase::Complete {
                done = true;
                break;
            }
        }
        prop_assert!(done, "not complete: {:?}", world.releases[1].progress);
    }

    /// With `maxConcurrency: N`, at most N clusters are on their way to the contender's step at
    /// any moment of a rollout: every other one is at the step, or waits for its wave at the
    /// previous step's state.
    #[test]
    fn at_most_max_concurrency_clusters_move_at_once(
        pipeline in pipeline(),
        clusters in 1usize..=8,
        max_concurrency in 1u32..4,
        soak in prop::option::of(0i64..300),
    ) {
        let pipeline = Pipeline {
            waves: Some(Waves { max_concurrency: Some(max_concurrency), soak: soak.map(Duration::from_secs), ..Default::default() }),
            ..pipeline
        };
        let app = AppPolicy { traffic: true, max_versions: 2, version_ttl: None, drain: None };
        let clusters = common::clusters(clusters);
        prop_assume!(check_pipeline(&pipeline, app.traffic, Clusters::Scheduled(clusters)).is_ok());
        let mut world = steady_world(&pipeline, app, clusters);
        for _ in 0..600 {
            let round = follow(&mut world);
            if !round.progress[1].phase.is_rolling_out() {
                break;
            }
            let moving = round.phases.iter().filter(|phase| {
                matches!(phase, ClusterPhase::CapacityUp | ClusterPhase::Traffic | ClusterPhase::CapacityDown)
            });
            prop_assert!(moving.count() <= max_concurrency as usize, "{}", round.decision_debug);
        }
        prop_assert_eq!(world.releases[1].progress.phase, Phase::Complete);
    }

    /// An abort at any step, followed on an idealised fleet: the incumbent's capacity is ready
    /// before it regains traffic, no moment has traffic on a version without ready pods, and
    /// the rollback ends with the incumbent alone.
    #[test]
    fn an_abort_restores_the_incumbent_capacity_before_its_traffic(pipeline in pipeline(), clusters in 1usize..=8, rounds in 0usize..12) {
        let app = AppPolicy { traffic: true, max_versions: 2, version_ttl: None, drain: None };
        let clusters = common::clusters(clusters);
        prop_assume!(check_pipeline(&pipeline, app.traffic, Clusters::Scheduled(clusters)).is_ok());
        let mut world = steady_world(&pipeline, app, clusters);
        for _ in 0..rounds {
            follow(&mut world);
            if world.releases[1].progress.phase == Phase::Complete {
                return Ok(());
            }
        }
        prop_assume!(world.releases[1].progress.phase != Phase::Complete);
        world.releases[1].aborted = true;
        for _ in 0..20 {
            let before = world.fleet.clone();
            follow(&mut world);
            for cluster in world.clusters.iter().map(|cluster| cluster.name.as_str()) {
                let gained = world.weight(cluster, "v0") > observed_weight(&before[cluster], "v0");
                if gained {
                    prop_assert!(ready(&before, cluster, "v0") >= BASE, "v0 regains traffic in {} with {} ready", cluster, ready(&before, cluster, "v0"));
                }
                for (name, version) in &world.fleet[cluster].versions {
                    prop_assert!(version.weight == 0 || version.ready > 0, "{} has traffic and no ready pods in {}", name, cluster);
                }
            }
            if world.releases[1].progress.phase == Phase::Aborted {
                break;
            }
        }
        prop_assert_eq!(world.releases[1].progress.phase, Phase::Aborted);
        for cluster in world.clusters {
            prop_assert_eq!(world.weight(&cluster.name, "v0"), 100);
            prop_assert_eq!(world.replicas(&cluster.name, "v0"), Capacity::Replicas(BASE));
        }
    }

    #[test]
    fn at_a_fixed_point_nothing_is_written_and_nothing_is_said(pipeline in pipeline(), clusters in 1usize..=8, rounds in 0usize..30) {
        let app = AppPolicy { traffic: true, max_versions: 2, version_ttl: None, drain: None };
        let clusters = common::clusters(clusters);
        prop_assume!(check_pipeline(&pipeline, app.traffic, Clusters::Scheduled(clusters)).is_ok());
        let mut world = steady_world(&pipeline, app, clusters);
        for _ in 0..rounds {
            follow(&mut world);
        }
        // Land everything the current step asks, without promoting or moving the clock.
        let mut settled = false;
        for _ in 0..40 {
            let before: Vec<Progress> = world.releases.iter().map(|release| release.progress.clone()).collect();
            let round = world.round();
            if round.changes == 0 && round.progress == before {
                settled = true;
                break;
            }
        }
        prop_assert!(settled);
        let round = world.decide();
        prop_assert_eq!(round.changes, 0);
        prop_assert!(round.events.is_empty(), "{:?}", round.events);
        prop_assert!(round.phases.iter().all(|phase| *phase == ClusterPhase::Achieved) || world.releases[1].progress.phase != Phase::Complete);
    }
}

/// An incumbent complete and at its steady state everywhere, and a contender at step 0.
fn steady_world<'a>(
    pipeline: &'a Pipeline,
    app: AppPolicy,
    clusters: &'a [ClusterInfo],
) -> World<'a> {
    let traffic = app.traffic;
    let fleet = fleet(clusters, &[("v0", BASE, if traffic { 100 } else { 0 })]);
    let mut incumbent = release("v0", pipeline, BASE, Phase::Complete);
    incumbent.progress.step = pipeline.steps.len() as u32 - 1;
    let mut contender = release("v1", pipeline, BASE, Phase::Progressing);
    contender.analysis = Verdict::Pending;
    World::new(app, vec![incumbent, contender], clusters, fleet)
}

/// One round on the idealised fleet, playing the adapters and the person like `prism plan`:
/// analyses pass, manual gates are promoted, pauses run out. Checks traffic safety on the way.
fn follow(world: &mut World) -> Round {
    let step_before = world.releases[1].progress.step;
    let round = world.round();
    let contender = &mut world.releases[1];
    if contender.progress.step != step_before {
        contender.analysis = Verdict::Pending;
    } else if contender.progress.achieved_at.is_some() {
        contender.analysis = Verdict::Passed;
    }
    if contender.progress.phase == Phase::WaitingForCommand {
        contender.target_step = Some(contender.progress.step + 1);
    }
    if let Some(wait) = round.requeue_after {
        world.now = world.now.saturating_add(wait.0).unwrap();
    }
    for observed in world.fleet.values() {
        for version in observed.versions.values() {
            assert!(version.weight == 0 || version.ready > 0);
        }
        let routes: &Vec<ResolvedRoute> = &observed.routes;
        assert!(routes.iter().all(|route| {
            observed
                .versions
                .get(&route.version)
                .is_some_and(|version| version.ready > 0)
        }));
    }
    round
}

/// An observed fleet where each cluster is, at random, at a step's exact state or slightly off.
fn achievable_fleet(
    clusters: usize,
) -> impl Strategy<Value = BTreeMap<String, ClusterObservation>> {
    prop::collection::vec(
        (
            prop::bool::weighted(0.95),
            prop::sample::select(vec![0u32, 1, 3, BASE]),
            prop::sample::select(vec![0u32, 3, BASE]),
            prop::sample::select(vec![0u32, 10, 50, 100]),
            any::<bool>(),
        ),
        clusters,
    )
    .prop_map(|fleet| {
        fleet
            .into_iter()
            .enumerate()
            .map(
                |(index, (reachable, contender, incumbent, weight, ready))| {
                    let version = |replicas: u32, weight: u32| VersionObservation {
                        capacity: Capacity::Replicas(replicas),
                        ready: if ready {
                            replicas
                        } else {
                            replicas.saturating_sub(1)
                        },
                        weight: if replicas == 0 { 0 } else { weight },
                    };
                    let versions = [
                        ("v1".to_string(), version(contender, weight)),
                        ("v0".to_string(), version(incumbent, 100 - weight)),
                    ]
                    .into_iter()
                    .collect();
                    (
                        format!("c{index}"),
                        ClusterObservation {
                            reachable,
                            versions,
                            routes: vec![],
                            refused: None,
                            traffic_pending: None,
                        },
                    )
                },
            )
            .collect()
    })
}

/// The test's own reading of the rules: per aspect, the latest in-scope step that sets it.
fn oracle_state(
    pipeline: &Pipeline,
    step: usize,
    clusters: &[ClusterInfo],
    cluster: usize,
) -> (Share, Share, u32) {
    let (mut contender, mut incumbent, mut weight) = (Share::Percent(0), Share::Percent(100), 0);
    for step in &pipeline.steps[..=step] {
        if !oracle_in_scope(step.clusters.as_ref(), clusters, cluster) {
            continue;
        }
        if let Some(capacity) = &step.capacity {
            contender = capacity.contender.unwrap_or(contender);
            incumbent = capacity.incumbent.unwrap_or(incumbent);
        }
        if let Some(contender_weight) = step.traffic.as_ref().and_then(|traffic| traffic.contender)
        {
            weight = contender_weight;
        }
    }
    (contender, incumbent, weight)
}

fn oracle_in_scope(scope: Option<&ClusterScope>, clusters: &[ClusterInfo], cluster: usize) -> bool {
    match scope {
        None => true,
        Some(ClusterScope {
            first: Some(first), ..
        }) => cluster < *first as usize,
        Some(ClusterScope {
            region: Some(region),
            ..
        }) => clusters[cluster].region == *region,
        Some(_) => true,
    }
}
