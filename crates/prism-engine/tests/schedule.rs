//! The scheduler: counts, eligibility, its errors, and the stability of weighted rendezvous
//! hashing as the fleet changes.

use std::collections::BTreeMap;

use prism_api::application::{RegionCount, Schedule};
use prism_api::cluster::ClusterSpec;
use prism_api::release::ScheduledCluster;
use prism_engine::{Candidate, schedule};
use proptest::prelude::*;

fn cluster(name: &str, region: &str) -> Candidate {
    Candidate {
        name: name.into(),
        region: region.into(),
        capabilities: vec![],
        weight: 100,
        unschedulable: false,
    }
}

fn with_capabilities(mut candidate: Candidate, capabilities: &[&str]) -> Candidate {
    candidate.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
    candidate
}

fn unschedulable(mut candidate: Candidate) -> Candidate {
    candidate.unschedulable = true;
    candidate
}

fn weighted(mut candidate: Candidate, weight: u32) -> Candidate {
    candidate.weight = weight;
    candidate
}

fn regions(counts: &[(&str, u32)]) -> Schedule {
    Schedule {
        regions: Some(
            counts
                .iter()
                .map(|(name, clusters)| RegionCount {
                    name: name.to_string(),
                    clusters: *clusters,
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn total(clusters: u32) -> Schedule {
    Schedule {
        clusters: Some(clusters),
        ..Default::default()
    }
}

fn requiring(mut schedule: Schedule, capabilities: &[&str]) -> Schedule {
    schedule.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
    schedule
}

fn names(scheduled: &[ScheduledCluster]) -> Vec<&str> {
    scheduled.iter().map(|c| c.name.as_str()).collect()
}

fn error(key: &str, schedule_: &Schedule, fleet: &[Candidate]) -> String {
    schedule(key, schedule_, fleet).unwrap_err().to_string()
}

fn fleet() -> Vec<Candidate> {
    vec![
        cluster("e1", "eu"),
        cluster("e2", "eu"),
        cluster("e3", "eu"),
        with_capabilities(cluster("u1", "us-east"), &["gpu"]),
        with_capabilities(cluster("u2", "us-east"), &["gpu", "ssd"]),
        cluster("u3", "us-east"),
        unschedulable(with_capabilities(cluster("u4", "us-east"), &["gpu"])),
        weighted(with_capabilities(cluster("u5", "us-east"), &["gpu"]), 0),
    ]
}

#[test]
fn regions_take_their_count_each_in_the_order_listed() {
    let chosen = schedule("shop/web", &regions(&[("us-east", 2), ("eu", 1)]), &fleet()).unwrap();
    assert_eq!(chosen.len(), 3);
    assert!(chosen[..2].iter().all(|c| c.region == "us-east"));
    assert_eq!(chosen[2].region, "eu");
    assert!(
        chosen[..2]
            .iter()
            .all(|c| ["u1", "u2", "u3"].contains(&c.name.as_str()))
    );
}

#[test]
fn a_total_count_takes_the_highest_scores_of_the_fleet() {
    let all = schedule("shop/web", &Schedule::default(), &fleet()).unwrap();
    let two = schedule("shop/web", &total(2), &fleet()).unwrap();
    assert_eq!(two, all[..2]);
}

#[test]
fn without_counts_every_eligible_cluster_is_chosen() {
    let mut chosen = names(&schedule("shop/web", &Schedule::default(), &fleet()).unwrap())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    chosen.sort();
    assert_eq!(chosen, ["e1", "e2", "e3", "u1", "u2", "u3"]);
}

#[test]
fn required_capabilities_filter_and_unschedulable_or_weight_0_clusters_are_skipped() {
    let gpu = requiring(Schedule::default(), &["gpu"]);
    let mut chosen = names(&schedule("shop/web", &gpu, &fleet()).unwrap())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    chosen.sort();
    assert_eq!(chosen, ["u1", "u2"]);
    let gpu_ssd = requiring(total(1), &["gpu", "ssd"]);
    assert_eq!(
        names(&schedule("shop/web", &gpu_ssd, &fleet()).unwrap()),
        ["u2"]
    );
}

#[test]
fn a_region_short_of_clusters_says_which_and_why() {
    let schedule_ = requiring(regions(&[("us-east", 3)]), &["gpu"]);
    assert_eq!(
        error("shop/web", &schedule_, &fleet()),
        "region us-east: 3 clusters required, 2 eligible (u1, u2); u3 lacks capability gpu, \
         u4 is unschedulable, u5 has weight 0"
    );
}

#[test]
fn every_region_short_of_clusters_is_reported() {
    let schedule_ = requiring(
        regions(&[("eu", 1), ("us-west", 2), ("us-east", 1)]),
        &["ssd"],
    );
    assert_eq!(
        error("shop/web", &schedule_, &fleet()),
        "region eu: 1 cluster required, 0 eligible; e1 lacks capability ssd, \
         e2 lacks capability ssd, e3 lacks capability ssd. \
         region us-west: 2 clusters required, 0 eligible; no cluster is in region us-west"
    );
}

#[test]
fn a_fleet_short_of_clusters_says_why_for_each_excluded_one() {
    let schedule_ = requiring(total(2), &["gpu", "ssd"]);
    assert_eq!(
        error("shop/web", &schedule_, &fleet()),
        "2 clusters required, 1 eligible (u2); e1 lacks capabilities gpu, ssd, \
         e2 lacks capabilities gpu, ssd, e3 lacks capabilities gpu, ssd, u1 lacks capability ssd, \
         u3 lacks capabilities gpu, ssd, u4 is unschedulable and lacks capability ssd, \
         u5 has weight 0 and lacks capability ssd"
    );
    assert_eq!(
        error("shop/web", &total(7), &fleet()),
        "7 clusters required, 6 eligible (e1, e2, e3, u1, u2, u3); u4 is unschedulable, \
         u5 has weight 0"
    );
}

#[test]
fn no_eligible_cluster_at_all_is_an_error() {
    assert_eq!(
        error(
            "shop/web",
            &requiring(Schedule::default(), &["tpu"]),
            &fleet()[..2]
        ),
        "at least 1 cluster required, 0 eligible; e1 lacks capability tpu, e2 lacks capability tpu"
    );
    assert_eq!(
        error("shop/web", &Schedule::default(), &[]),
        "at least 1 cluster required, 0 eligible; the fleet has no clusters"
    );
}

#[test]
fn a_cluster_spec_weighs_100_by_default() {
    let spec: ClusterSpec = serde_json::from_value(serde_json::json!({
        "region": "eu",
        "credentials": { "secretRef": { "name": "c1", "namespace": "prism" } },
    }))
    .unwrap();
    assert_eq!(Candidate::new("c1", &spec), cluster("c1", "eu"));
}

/// Pins the hash and the score: if this changes, every application moves at its next Release.
#[test]
fn the_schedule_of_a_fixed_input_never_changes() {
    let fleet: Vec<_> = (1..=8).map(|i| cluster(&format!("c{i}"), "eu")).collect();
    let chosen: Vec<_> = ["shop/web", "shop/api", "billing/worker"]
        .iter()
        .map(|key| names(&schedule(key, &total(3), &fleet).unwrap()).join(","))
        .collect();
    assert_eq!(chosen, ["c1,c6,c3", "c3,c6,c1", "c2,c5,c3"]);
}

#[test]
fn the_order_of_candidates_does_not_matter() {
    let mut fleet = fleet();
    let schedule_ = regions(&[("us-east", 2), ("eu", 2)]);
    let expected = schedule("shop/web", &schedule_, &fleet).unwrap();
    fleet.reverse();
    assert_eq!(schedule("shop/web", &schedule_, &fleet).unwrap(), expected);
    fleet.rotate_left(3);
    assert_eq!(schedule("shop/web", &schedule_, &fleet).unwrap(), expected);
}

/// How often each cluster comes first over `keys` applications.
fn first_counts(fleet: &[Candidate], keys: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for index in 0..keys {
        let first = schedule(&format!("team-{}/app-{index}", index % 7), &total(1), fleet)
            .unwrap()
            .remove(0);
        *counts.entry(first.name).or_insert(0) += 1;
    }
    counts
}

// The keys are fixed and the hash deterministic: these bounds are facts, not chances.
#[test]
fn equal_weights_share_the_applications_evenly() {
    let fleet: Vec<_> = (1..=5).map(|i| cluster(&format!("c{i}"), "eu")).collect();
    let counts = first_counts(&fleet, 2_000);
    assert_eq!(counts.len(), 5);
    for (name, count) in counts {
        assert!((280..=520).contains(&count), "{name}: {count} of 2000");
    }
}

#[test]
fn a_cluster_of_weight_2_is_chosen_about_twice_as_often() {
    let fleet = [
        weighted(cluster("heavy", "eu"), 200),
        cluster("light-1", "eu"),
        cluster("light-2", "eu"),
    ];
    let counts = first_counts(&fleet, 3_000);
    for light in ["light-1", "light-2"] {
        let ratio = counts["heavy"] as f64 / counts[light] as f64;
        assert!((1.6..=2.4).contains(&ratio), "{counts:?}");
    }
}

const KEYS: usize = 40;

fn keys() -> impl Iterator<Item = String> {
    (0..KEYS).map(|index| format!("ns-{}/app-{index}", index % 3))
}

/// A fleet of 3 to 12 clusters over two regions, some of them ineligible.
fn random_fleet() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["eu", "us"]),
            prop_oneof![1 => Just(0u32), 8 => 1u32..=300],
            prop::bool::weighted(0.1),
        ),
        3..=12,
    )
    .prop_map(|clusters| {
        clusters
            .into_iter()
            .enumerate()
            .map(|(index, (region, weight, cordoned))| Candidate {
                name: format!("c{index}"),
                region: region.into(),
                capabilities: vec![],
                weight,
                unschedulable: cordoned,
            })
            .collect()
    })
}

fn eligible(fleet: &[Candidate]) -> usize {
    fleet
        .iter()
        .filter(|c| c.weight > 0 && !c.unschedulable)
        .count()
}

fn without(scheduled: &[ScheduledCluster], name: &str) -> Vec<ScheduledCluster> {
    scheduled
        .iter()
        .filter(|c| c.name != name)
        .cloned()
        .collect()
}

proptest! {
    #[test]
    fn removing_a_cluster_moves_only_the_applications_that_had_it(
        fleet in random_fleet(),
        removed in any::<prop::sample::Index>(),
        count in any::<prop::sample::Index>(),
    ) {
        let available = eligible(&fleet);
        prop_assume!(available >= 2);
        let removed = fleet[removed.index(fleet.len())].name.clone();
        let smaller: Vec<_> = fleet.iter().filter(|c| c.name != removed).cloned().collect();
        let count = 1 + count.index(available - 1) as u32;
        for key in keys() {
            let before = schedule(&key, &total(count), &fleet).unwrap();
            let after = schedule(&key, &total(count), &smaller).unwrap();
            if before.iter().any(|c| c.name == removed) {
                // The one that takes its place is the next in rank: it joins at the end.
                prop_assert_eq!(after[..after.len() - 1].to_vec(), without(&before, &removed));
                prop_assert!(!before.contains(&after[after.len() - 1]));
            } else {
                prop_assert_eq!(&after, &before);
            }

            let before = schedule(&key, &Schedule::default(), &fleet).unwrap();
            let after = schedule(&key, &Schedule::default(), &smaller).unwrap();
            prop_assert_eq!(after, without(&before, &removed));
        }
    }

    #[test]
    fn adding_a_cluster_moves_only_the_applications_that_choose_it(
        fleet in random_fleet(),
        weight in 1u32..=300,
        region in prop::sample::select(vec!["eu", "us"]),
        count in any::<prop::sample::Index>(),
    ) {
        let available = eligible(&fleet);
        prop_assume!(available >= 1);
        let added = weighted(cluster("new", region), weight);
        let larger: Vec<_> = fleet.iter().cloned().chain([added]).collect();
        let count = 1 + count.index(available) as u32;
        for key in keys() {
            let before = schedule(&key, &total(count), &fleet).unwrap();
            let after = schedule(&key, &total(count), &larger).unwrap();
            if after.iter().any(|c| c.name == "new") {
                // It pushes out the last in rank.
                prop_assert_eq!(without(&after, "new"), before[..before.len() - 1].to_vec());
            } else {
                prop_assert_eq!(&after, &before);
            }

            let before = schedule(&key, &Schedule::default(), &fleet).unwrap();
            let after = schedule(&key, &Schedule::default(), &larger).unwrap();
            prop_assert_eq!(without(&after, "new"), before);
        }
    }

    #[test]
    fn per_region_schedules_move_only_when_their_region_changes(
        fleet in random_fleet(),
        removed in any::<prop::sample::Index>(),
    ) {
        let removed = &fleet[removed.index(fleet.len())];
        let smaller: Vec<_> = fleet.iter().filter(|c| c.name != removed.name).cloned().collect();
        let schedule_ = regions(&[("eu", 1), ("us", 1)]);
        for key in keys() {
            let (Ok(before), Ok(after)) =
                (schedule(&key, &schedule_, &fleet), schedule(&key, &schedule_, &smaller))
            else {
                continue;
            };
            for (was, is) in before.iter().zip(&after) {
                if was.name != removed.name {
                    prop_assert_eq!(was, is);
                }
            }
        }
    }

    #[test]
    fn the_same_input_gives_the_same_schedule_whatever_the_candidates_order(
        (fleet, shuffled) in random_fleet()
            .prop_flat_map(|fleet| (Just(fleet.clone()), Just(fleet).prop_shuffle())),
    ) {
        for schedule_ in [Schedule::default(), total(2), regions(&[("eu", 1), ("us", 1)])] {
            for key in keys() {
                let expected = schedule(&key, &schedule_, &fleet);
                prop_assert_eq!(&schedule(&key, &schedule_, &fleet), &expected);
                prop_assert_eq!(&schedule(&key, &schedule_, &shuffled), &expected);
            }
        }
    }
}
