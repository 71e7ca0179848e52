//! Builders shared by the engine's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use prism_api::strategy::{
    CapacityStep, ClusterScope, Duration, Gate, Pipeline, Share, Step, TrafficStep,
};
use prism_engine::{
    AppPolicy, Capacity, ClusterInfo, ClusterObservation, Progress, ReleaseInput, Verdict,
    VersionObservation,
};

pub fn app(traffic: bool) -> AppPolicy {
    AppPolicy {
        traffic,
        max_versions: 2,
        version_ttl: None,
        drain: None,
    }
}

/// Clusters `c0`, `c1`, ... alternately in regions `eu` and `us`.
static FLEET: LazyLock<Vec<ClusterInfo>> = LazyLock::new(|| {
    (0..64)
        .map(|index| ClusterInfo {
            name: format!("c{index}"),
            region: if index % 2 == 0 {
                "eu".into()
            } else {
                "us".into()
            },
        })
        .collect()
});

/// The first `count` clusters of the test fleet (at most 64), in schedule order.
pub fn clusters(count: usize) -> &'static [ClusterInfo] {
    &FLEET[..count]
}

/// The clusters of the test fleet with these names, in this order.
pub fn named(names: &[&str]) -> Vec<ClusterInfo> {
    names
        .iter()
        .map(|name| {
            let found = FLEET.iter().find(|cluster| cluster.name == *name);
            found.cloned().unwrap_or_else(|| ClusterInfo {
                name: (*name).into(),
                region: "eu".into(),
            })
        })
        .collect()
}

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

pub fn step(name: &str) -> Step {
    Step {
        name: name.into(),
        ..Default::default()
    }
}

pub fn capacity(mut step: Step, contender: u32, incumbent: u32) -> Step {
    step.capacity = Some(CapacityStep {
        contender: Some(Share::Percent(contender)),
        incumbent: Some(Share::Percent(incumbent)),
        max_surge: None,
    });
    step
}

pub fn traffic(mut step: Step, contender: u32) -> Step {
    step.traffic = Some(TrafficStep {
        contender: Some(contender),
        ..Default::default()
    });
    step
}

pub fn manual(mut step: Step) -> Step {
    step.gate = Some(Gate {
        manual: true,
        ..Default::default()
    });
    step
}

pub fn pause(mut step: Step, secs: i64) -> Step {
    step.gate = Some(Gate {
        pause: Some(Duration::from_secs(secs)),
        ..Default::default()
    });
    step
}

pub fn scoped(mut step: Step, first: u32) -> Step {
    step.clusters = Some(ClusterScope {
        first: Some(first),
        ..Default::default()
    });
    step
}

/// staging (1 pod, 0%), canary 10/10 (manual), 50/50, full.
pub fn canary() -> Pipeline {
    Pipeline {
        webhooks: None,
        steps: vec![
            capacity(step("staging"), 10, 100),
            manual(traffic(capacity(step("canary"), 10, 100), 10)),
            traffic(capacity(step("half"), 50, 50), 50),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: None,
    }
}

/// A release scheduled nowhere yet: `World::new` schedules it on the world's clusters.
pub fn release<'a>(
    name: &'a str,
    pipeline: &'a Pipeline,
    replicas: u32,
    phase: prism_engine::Phase,
) -> ReleaseInput<'a> {
    ReleaseInput {
        name,
        version_name: name,
        created_at: at(0),
        clusters: &[],
        pipeline,
        capacity: Capacity::Replicas(replicas),
        progress: Progress {
            phase,
            ..Default::default()
        },
        target_step: None,
        aborted: false,
        analysis: Verdict::NotRequired,
        webhook: Verdict::NotRequired,
        pinned: false,
        retire_requested: false,
        side: None,
        drain_reading: None,
    }
}

/// Every cluster running `versions` (name, replicas all ready, weight), with no routes.
pub fn fleet(
    clusters: &[ClusterInfo],
    versions: &[(&str, u32, u32)],
) -> BTreeMap<String, ClusterObservation> {
    clusters
        .iter()
        .map(|cluster| (cluster.name.clone(), running(versions)))
        .collect()
}

/// A reachable cluster running `versions` (name, replicas all ready, weight), with no routes.
pub fn running(versions: &[(&str, u32, u32)]) -> ClusterObservation {
    let versions = versions
        .iter()
        .map(|(name, replicas, weight)| {
            let observation = VersionObservation {
                capacity: Capacity::Replicas(*replicas),
                ready: *replicas,
                weight: *weight,
            };
            (name.to_string(), observation)
        })
        .collect();
    ClusterObservation {
        reachable: true,
        versions,
        routes: vec![],
        refused: None,
        traffic_pending: None,
    }
}

/// An application on an idealised fleet, decided round by round.
pub struct World<'a> {
    pub now: Timestamp,
    pub app: AppPolicy,
    pub releases: Vec<ReleaseInput<'a>>,
    pub clusters: &'a [ClusterInfo],
    pub fleet: BTreeMap<String, ClusterObservation>,
    pub blocked: Option<&'a str>,
}

/// What one round decided, owned so that the world can change afterwards.
pub struct Round {
    pub decision_debug: String,
    pub changes: usize,
    pub events: Vec<(String, &'static str)>,
    pub progress: Vec<Progress>,
    pub roles: Vec<prism_engine::Role>,
    pub retired: Vec<bool>,
    pub phases: Vec<prism_engine::ClusterPhase>,
    pub requeue_after: Option<Duration>,
    pub conditions: Vec<Vec<prism_engine::Condition>>,
}

fn summarize(decision: &prism_engine::Decision) -> Round {
    Round {
        decision_debug: format!("{decision:#?}"),
        changes: decision.changes.len(),
        events: decision
            .events
            .iter()
            .map(|event| (event.release.to_string(), event.reason))
            .collect(),
        progress: decision
            .releases
            .iter()
            .map(|release| release.progress.clone())
            .collect(),
        roles: decision
            .releases
            .iter()
            .map(|release| release.role)
            .collect(),
        retired: decision
            .releases
            .iter()
            .map(|release| release.retired)
            .collect(),
        phases: decision
            .clusters
            .iter()
            .map(|cluster| cluster.phase)
            .collect(),
        requeue_after: decision.requeue_after,
        conditions: decision
            .releases
            .iter()
            .map(|release| release.conditions.clone())
            .collect(),
    }
}

impl<'a> World<'a> {
    /// Every release is scheduled on `clusters`; give one its own schedule in `releases` after.
    pub fn new(
        app: AppPolicy,
        mut releases: Vec<ReleaseInput<'a>>,
        clusters: &'a [ClusterInfo],
        fleet: BTreeMap<String, ClusterObservation>,
    ) -> Self {
        for release in &mut releases {
            release.clusters = clusters;
        }
        World {
            now: at(0),
            app,
            releases,
            clusters,
            fleet,
            blocked: None,
        }
    }

    pub fn input<'i>(
        &'i self,
        releases: &'i [ReleaseInput<'a>],
        observed: &'i BTreeMap<String, ClusterObservation>,
    ) -> prism_engine::Input<'i> {
        prism_engine::Input {
            now: self.now,
            app: &self.app,
            releases,
            observed,
            blocked: self.blocked,
        }
    }

    /// One decision, without landing it.
    pub fn decide(&self) -> Round {
        summarize(&prism_engine::decide(
            &self.input(&self.releases, &self.fleet),
        ))
    }

    /// One decision, landed on the idealised fleet, with every release's progress carried on.
    pub fn round(&mut self) -> Round {
        let (fleet, releases) = (self.fleet.clone(), self.releases.clone());
        // Not `self.input`: the decision borrows `self.app` while the fleet changes.
        let input = prism_engine::Input {
            now: self.now,
            app: &self.app,
            releases: &releases,
            observed: &fleet,
            blocked: self.blocked,
        };
        let decision = prism_engine::decide(&input);
        prism_engine::land(&mut self.fleet, &decision);
        for (release, decided) in self.releases.iter_mut().zip(&decision.releases) {
            release.progress = decided.progress.clone();
        }
        summarize(&decision)
    }

    /// Rounds until nothing is written and no progress changes, at most `limit`.
    pub fn settle(&mut self, limit: usize) -> Round {
        let mut last = self.round();
        for _ in 0..limit {
            let before: Vec<Progress> = self
                .releases
                .iter()
                .map(|release| release.progress.clone())
                .collect();
            let round = self.round();
            let moved = round.changes > 0 || round.progress != before;
            last = round;
            if !moved {
                break;
            }
        }
        last
    }

    pub fn weight(&self, cluster: &str, release: &str) -> u32 {
        self.fleet[cluster]
            .versions
            .get(release)
            .map_or(0, |version| version.weight)
    }

    pub fn replicas(&self, cluster: &str, release: &str) -> Capacity {
        self.fleet[cluster]
            .versions
            .get(release)
            .map_or(Capacity::ZERO, |version| version.capacity)
    }
}

/// v1 complete with 10 pods and all of the traffic on `clusters`, v2 rolling out under
/// `pipeline`.
pub fn rollout<'a>(pipeline: &'a Pipeline, clusters: &'a [ClusterInfo]) -> World<'a> {
    let fleet = fleet(clusters, &[("v1", 10, 100)]);
    World::new(
        app(true),
        vec![
            release("v1", pipeline, 10, prism_engine::Phase::Complete),
            release("v2", pipeline, 10, prism_engine::Phase::Progressing),
        ],
        clusters,
        fleet,
    )
}
