//! 10,000 applications scheduled over a fleet of 50 clusters in 5 regions: 3 clusters of the
//! fleet each, and 2 clusters in each of 2 regions each.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use prism_api::application::{RegionCount, Schedule};
use prism_engine::{Candidate, schedule};

fn bench(c: &mut Criterion) {
    let fleet: Vec<_> = (0..50)
        .map(|index| Candidate {
            name: format!("cluster-{index}"),
            region: format!("region-{}", index % 5),
            capabilities: vec!["gpu".into()],
            weight: 100 + index,
            unschedulable: index % 17 == 0,
        })
        .collect();
    let keys: Vec<_> = (0..10_000)
        .map(|index| format!("team-{}/app-{index}", index % 40))
        .collect();
    let total = Schedule {
        clusters: Some(3),
        capabilities: vec!["gpu".into()],
        ..Default::default()
    };
    let regions = Schedule {
        regions: Some(
            ["region-1", "region-3"]
                .map(|name| RegionCount {
                    name: name.into(),
                    clusters: 2,
                })
                .to_vec(),
        ),
        ..Default::default()
    };

    let mut group = c.benchmark_group("fleet");
    group.sample_size(10);
    for (name, schedule_) in [("clusters: 3", &total), ("2 regions x 2", &regions)] {
        group.bench_function(
            format!("schedule: 10,000 applications x 50 clusters, {name}"),
            |b| {
                b.iter(|| {
                    for key in &keys {
                        black_box(schedule(black_box(key), schedule_, &fleet).unwrap());
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
