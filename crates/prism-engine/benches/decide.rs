//! One decision for an application with 3 versions across 20 clusters, and 10,000 applications
//! of 3 clusters each decided in a loop.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use prism_api::strategy::{CapacityStep, Gate, Pipeline, Share, Step, TrafficStep};
use prism_engine::{
    AppPolicy, Capacity, ClusterInfo, ClusterObservation, Input, Phase, Progress, ReleaseInput,
    Verdict, VersionObservation, decide,
};

fn step(name: &str, contender: u32, incumbent: u32, weight: u32, manual: bool) -> Step {
    Step {
        name: name.into(),
        capacity: Some(CapacityStep {
            contender: Some(Share::Percent(contender)),
            incumbent: Some(Share::Percent(incumbent)),
            max_surge: None,
        }),
        traffic: Some(TrafficStep {
            contender: Some(weight),
            ..Default::default()
        }),
        gate: manual.then(|| Gate {
            manual: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn canary() -> Pipeline {
    Pipeline {
        steps: vec![
            step("staging", 10, 100, 0, false),
            step("canary", 10, 100, 10, true),
            step("half", 50, 50, 50, false),
            step("full", 100, 0, 100, false),
        ],
    }
}

fn clusters(count: usize) -> Vec<ClusterInfo> {
    (0..count)
        .map(|index| ClusterInfo {
            name: format!("cluster-{index}"),
            region: format!("region-{}", index % 3),
        })
        .collect()
}

fn release<'a>(name: &'a str, pipeline: &'a Pipeline, phase: Phase, step: u32) -> ReleaseInput<'a> {
    ReleaseInput {
        name,
        created_at: Timestamp::UNIX_EPOCH,
        pipeline,
        capacity: Capacity::Replicas(10),
        progress: Progress {
            step,
            phase,
            ..Default::default()
        },
        target_step: None,
        aborted: false,
        analysis: Verdict::NotRequired,
        webhook: Verdict::NotRequired,
    }
}

/// Mid-rollout: the contender at step "half" with half of the clusters still at "canary" (10%).
fn observed(clusters: &[ClusterInfo]) -> BTreeMap<String, ClusterObservation> {
    let version = |replicas: u32, weight: u32| VersionObservation {
        capacity: Capacity::Replicas(replicas),
        ready: replicas,
        weight,
    };
    clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| {
            let (contender, incumbent) = if index % 2 == 0 {
                ((5, 50), (5, 50))
            } else {
                ((1, 10), (10, 90))
            };
            let versions = [
                ("v1".to_string(), version(0, 0)),
                ("v2".to_string(), version(incumbent.0, incumbent.1)),
                ("v3".to_string(), version(contender.0, contender.1)),
            ]
            .into_iter()
            .collect();
            (
                cluster.name.clone(),
                ClusterObservation {
                    reachable: true,
                    versions,
                    routes: vec![],
                },
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pipeline = canary();
    let app = AppPolicy {
        traffic: true,
        max_versions: 3,
        version_ttl: None,
    };
    let releases = [
        release("v1", &pipeline, Phase::Complete, 3),
        release("v2", &pipeline, Phase::Complete, 3),
        release("v3", &pipeline, Phase::Progressing, 2),
    ];

    let twenty = clusters(20);
    let fleet = observed(&twenty);
    let input = Input {
        now: Timestamp::UNIX_EPOCH,
        app: &app,
        releases: &releases,
        clusters: &twenty,
        observed: &fleet,
    };
    c.bench_function("decide: 3 versions x 20 clusters", |b| {
        b.iter(|| decide(black_box(&input)))
    });

    let three = clusters(3);
    let fleets: Vec<_> = (0..10_000).map(|_| observed(&three)).collect();
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    group.bench_function("decide: 10,000 applications x 3 clusters", |b| {
        b.iter(|| {
            for fleet in &fleets {
                let input = Input {
                    now: Timestamp::UNIX_EPOCH,
                    app: &app,
                    releases: &releases,
                    clusters: &three,
                    observed: fleet,
                };
                black_box(decide(black_box(&input)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
