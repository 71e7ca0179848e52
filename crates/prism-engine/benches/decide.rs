//! One decision for an application with 3 versions across 20 clusters, and 10,000 applications
//! of 3 clusters each decided in a loop.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::hint::black_box;

use common::{at, canary, clusters, release, running};
use criterion::{Criterion, criterion_group, criterion_main};
use prism_engine::{AppPolicy, ClusterInfo, ClusterObservation, Input, Phase, decide};

/// Mid-rollout: the contender at step "half" with half of the clusters still at "canary" (10%).
fn observed(clusters: &[ClusterInfo]) -> BTreeMap<String, ClusterObservation> {
    let half = [("v1", 0, 0), ("v2", 5, 50), ("v3", 5, 50)];
    let canary = [("v1", 0, 0), ("v2", 10, 90), ("v3", 1, 10)];
    clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| {
            let versions = if index % 2 == 0 { &half } else { &canary };
            (cluster.name.clone(), running(versions))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pipeline = canary();
    let app = AppPolicy {
        traffic: true,
        max_versions: 3,
        version_ttl: None,
        drain: None,
    };
    let at_step = |name, phase, step| {
        let mut release = release(name, &pipeline, 10, phase);
        release.progress.step = step;
        release
    };
    let on = |clusters| {
        [
            at_step("v1", Phase::Complete, 3),
            at_step("v2", Phase::Complete, 3),
            at_step("v3", Phase::Progressing, 2),
        ]
        .map(|mut release| {
            release.clusters = clusters;
            release
        })
    };

    let twenty = clusters(20);
    let fleet = observed(twenty);
    let releases = on(twenty);
    let input = Input {
        now: at(0),
        app: &app,
        releases: &releases,
        observed: &fleet,
        blocked: None,
    };
    c.bench_function("decide: 3 versions x 20 clusters", |b| {
        b.iter(|| decide(black_box(&input)))
    });

    let three = clusters(3);
    let releases = on(three);
    let fleets: Vec<_> = (0..10_000).map(|_| observed(three)).collect();
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    group.bench_function("decide: 10,000 applications x 3 clusters", |b| {
        b.iter(|| {
            for fleet in &fleets {
                let input = Input {
                    now: at(0),
                    app: &app,
                    releases: &releases,
                    observed: fleet,
                    blocked: None,
                };
                black_box(decide(black_box(&input)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
