//! The clusters of an application's releases. Each release has its own fixed schedule (a drain
//! makes a new release of the same version on other clusters), and a decision covers every
//! cluster any of them is scheduled to.

use std::collections::{BTreeMap, BTreeSet};

use crate::effective::ClusterPlace;
use crate::model::{ClusterInfo, ReleaseInput};

/// Every cluster of the releases' schedules, once: the newest release's in its schedule order,
/// then each older release's not listed yet, newest release first. Decisions list their clusters
/// in this order, so a contender's (always the newest release's) lead, in its schedule order.
pub fn scheduled_clusters<'a>(releases: &[ReleaseInput<'a>]) -> Vec<&'a ClusterInfo> {
    let mut listed = BTreeSet::new();
    releases
        .iter()
        .rev()
        .flat_map(|release| release.clusters)
        .filter(|cluster| listed.insert(cluster.name.as_str()))
        .collect()
}

/// The clusters of one decision, and where each release is scheduled among them.
pub(crate) struct Schedules<'a> {
    /// As [`scheduled_clusters`] lists them.
    pub clusters: Vec<&'a ClusterInfo>,
    /// Per release (input order), its schedule.
    schedules: Vec<&'a [ClusterInfo]>,
    /// Per release, per cluster above: the cluster's index in the release's schedule.
    places: Vec<Vec<Option<usize>>>,
}

impl<'a> Schedules<'a> {
    pub fn of(releases: &[ReleaseInput<'a>]) -> Schedules<'a> {
        let clusters = scheduled_clusters(releases);
        let index: BTreeMap<&str, usize> = clusters
            .iter()
            .enumerate()
            .map(|(index, cluster)| (cluster.name.as_str(), index))
            .collect();
        let places = releases
            .iter()
            .map(|release| {
                let mut places = vec![None; clusters.len()];
                for (place, cluster) in release.clusters.iter().enumerate() {
                    places[index[cluster.name.as_str()]].get_or_insert(place);
                }
                places
            })
            .collect();
        Schedules {
            clusters,
            schedules: releases.iter().map(|release| release.clusters).collect(),
            places,
        }
    }

    /// `cluster` (an index into `clusters`) as the steps of `release` see it, if the release is
    /// scheduled there.
    pub fn place(&self, release: usize, cluster: usize) -> Option<ClusterPlace<'a>> {
        self.places[release][cluster]
            .map(|place| ClusterPlace::scheduled(self.schedules[release], place))
    }

    pub fn is_scheduled(&self, release: usize, cluster: usize) -> bool {
        self.places[release][cluster].is_some()
    }
}
