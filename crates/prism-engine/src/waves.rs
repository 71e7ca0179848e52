//! Waves within a step: the rules a pipeline's `waves` set, which clusters of a step's scope
//! move, and what each cluster's record says of its way through the current step. The records are
//! persisted with the release's progress and change only on a transition, so a status written
//! from them changes only then too.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use prism_api::strategy::Pipeline;

use crate::follow::recorded;
use crate::model::ClusterStepProgress;

/// A pipeline's `waves`, defaults applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaveRules {
    pub max_concurrency: usize,
    pub soak: SignedDuration,
    pub progress_deadline: Option<SignedDuration>,
    pub failure_budget: usize,
}

impl WaveRules {
    pub fn of(pipeline: &Pipeline) -> WaveRules {
        let waves = pipeline.waves.as_ref();
        WaveRules {
            // The schema refuses 0, which would never move a cluster: it counts as 1.
            max_concurrency: waves
                .and_then(|waves| waves.max_concurrency)
                .map_or(usize::MAX, |max| max.max(1) as usize),
            soak: waves
                .and_then(|waves| waves.soak)
                .map_or(SignedDuration::ZERO, |soak| soak.0),
            progress_deadline: waves
                .and_then(|waves| waves.progress_deadline)
                .map(|deadline| deadline.0),
            failure_budget: waves
                .and_then(|waves| waves.failure_budget)
                .map_or(0, |budget| budget as usize),
        }
    }
}

fn after(time: Timestamp, duration: SignedDuration) -> Timestamp {
    time.saturating_add(duration).unwrap_or(Timestamp::MAX)
}

impl ClusterStepProgress {
    /// A cluster whose wave starts now.
    fn admitted(now: Timestamp) -> ClusterStepProgress {
        ClusterStepProgress {
            since: recorded(now),
            achieved_at: None,
            failed: None,
        }
    }

    /// A cluster found at the step's state before its wave: it stays there, as if admitted and
    /// achieved now.
    fn found_achieved(now: Timestamp) -> ClusterStepProgress {
        let now = recorded(now);
        ClusterStepProgress {
            since: now,
            achieved_at: Some(now),
            failed: None,
        }
    }

    /// Follows what the cluster shows now. One that drops out of the step (a pod died) starts
    /// its soak again once back, and has a full progress deadline to get back.
    fn observe(&mut self, achieved: bool, now: Timestamp) {
        match (achieved, self.achieved_at) {
            (true, None) => self.achieved_at = Some(recorded(now)),
            (false, Some(_)) => {
                self.achieved_at = None;
                self.since = recorded(now);
            }
            _ => {}
        }
    }

    /// Whether the cluster still counts: a failed one holds neither the step nor the next wave.
    fn counts(&self) -> bool {
        self.failed.is_none()
    }

    /// Moving towards the step, neither there nor failed.
    fn is_moving(&self) -> bool {
        self.counts() && self.achieved_at.is_none()
    }

    /// When a moving cluster misses its progress deadline.
    pub(crate) fn deadline(&self, rules: &WaveRules) -> Option<Timestamp> {
        rules
            .progress_deadline
            .filter(|_| self.is_moving())
            .map(|deadline| after(self.since, deadline))
    }

    /// When an achieved cluster will have soaked. Without a soak, at once: the achievement is
    /// recorded rounded up to the next whole second (so that a positive wait never ends early),
    /// and waiting for that moment would only cost another decision and its writes.
    fn soaked_at(&self, rules: &WaveRules) -> Option<Timestamp> {
        self.achieved_at.map(|achieved_at| {
            if rules.soak.is_zero() {
                Timestamp::MIN
            } else {
                after(achieved_at, rules.soak)
            }
        })
    }
}

/// The clusters in a step's scope, in the contender's schedule order, with their records.
pub(crate) struct Scope<'r, 'a> {
    pub rules: WaveRules,
    /// Each cluster's index among the decision's clusters, and its name.
    pub clusters: Vec<(usize, &'a str)>,
    records: &'r mut BTreeMap<String, ClusterStepProgress>,
}

impl<'r, 'a> Scope<'r, 'a> {
    pub fn new(
        rules: WaveRules,
        clusters: Vec<(usize, &'a str)>,
        records: &'r mut BTreeMap<String, ClusterStepProgress>,
    ) -> Self {
        Scope {
            rules,
            clusters,
            records,
        }
    }

    /// Follows what `cluster` shows now; returns its record once its wave started. A cluster
    /// found at the step before its wave stays there.
    pub fn observe(
        &mut self,
        cluster: &str,
        achieved: bool,
        now: Timestamp,
    ) -> Option<&mut ClusterStepProgress> {
        if achieved && !self.records.contains_key(cluster) {
            let record = ClusterStepProgress::found_achieved(now);
            return Some(self.records.entry(cluster.to_owned()).or_insert(record));
        }
        let record = self.records.get_mut(cluster)?;
        record.observe(achieved, now);
        Some(record)
    }

    /// The records of the clusters whose wave started and that have not failed.
    fn counting(&self) -> impl Iterator<Item = (usize, &ClusterStepProgress)> {
        self.clusters.iter().filter_map(|&(cluster, name)| {
            let record = self.records.get(name)?;
            record.counts().then_some((cluster, record))
        })
    }

    /// When every cluster whose wave started has soaked; None while one is still moving.
    pub fn soaked_at(&self) -> Option<Timestamp> {
        self.counting()
            .try_fold(Timestamp::MIN, |latest, (_, record)| {
                record.soaked_at(&self.rules).map(|at| latest.max(at))
            })
    }

    /// Starts the next wave, once every cluster of the earlier ones has soaked (or failed).
    pub fn start_next_wave(&mut self, now: Timestamp) {
        if self.soaked_at().is_none_or(|at| at > now) {
            return;
        }
        let next: Vec<&str> = self
            .queued()
            .take(self.rules.max_concurrency)
            .map(|(_, name)| name)
            .collect();
        for name in next {
            self.records
                .insert(name.to_owned(), ClusterStepProgress::admitted(now));
        }
    }

    /// The clusters waiting for their wave.
    pub fn queued(&self) -> impl Iterator<Item = (usize, &'a str)> {
        self.clusters
            .iter()
            .copied()
            .filter(|(_, name)| !self.records.contains_key(*name))
    }

    /// The first cluster on its way to the step.
    pub fn moving(&self) -> Option<usize> {
        self.counting()
            .find(|(_, record)| record.is_moving())
            .map(|(cluster, _)| cluster)
    }

    /// When the first moving cluster misses its progress deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.counting()
            .filter_map(|(_, record)| record.deadline(&self.rules))
            .min()
    }

    pub fn failed(&self) -> Vec<&'a str> {
        self.clusters
            .iter()
            .filter(|(_, name)| self.records.get(*name).is_some_and(|r| !r.counts()))
            .map(|&(_, name)| name)
            .collect()
    }
}
