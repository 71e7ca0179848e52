//! The apply stage of a Release reconcile: the engine's changes made cluster by cluster, the
//! refusals kept account of, and what the status may count as done.

use std::collections::BTreeSet;

use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use prism_api::{Application, Release};
use prism_engine::{Capacity, Change, ClusterObservation, Decision};
use tracing::warn;

use crate::Context;
use crate::application::publish;
use crate::error::{Error, WriteError};
use crate::fleet::Member;
use crate::status::shows_refusal;
use crate::write::{Refusal, Write, execute};

/// Makes the writes of one reconcile, cluster by cluster, and keeps account of the writes the
/// clusters refuse (`refusals.rs`).
pub(super) struct Writer<'a> {
    pub(super) ctx: &'a Context,
    pub(super) app: &'a ObjectRef<Application>,
    pub(super) namespace: &'a str,
    pub(super) now: jiff::Timestamp,
    /// The clusters that refused a write in this reconcile, or whose refused write waits for its
    /// retry: they make no other write in it.
    pub(super) stopped: BTreeSet<String>,
}

impl Writer<'_> {
    /// Makes `writes` of `release` in `cluster`; true when they were made. A refused one is
    /// recorded, with a Warning Event when it is a new refusal (neither recorded nor shown in the
    /// Release's status); an error that is not a refusal (no answer, a conflict) fails the
    /// reconcile, which is retried.
    pub(super) async fn write(
        &mut self,
        cluster: &str,
        member: &Member,
        release: &Release,
        writes: Vec<Write>,
    ) -> Result<bool, Error> {
        let refusals = &self.ctx.refusals;
        let app = self.app.name.as_str();
        if writes.is_empty() || self.stopped.contains(cluster) {
            return Ok(false);
        }
        if refusals
            .get(self.namespace, app, cluster)
            .is_some_and(|refused| refused.withholds(&writes, self.now))
        {
            self.stopped.insert(cluster.to_owned());
            return Ok(false);
        }
        let written = execute(
            member,
            self.namespace,
            self.app,
            writes,
            &self.ctx.expectations,
        )
        .await;
        let Err(Error::Write(WriteError::Refused { refusal, .. })) = written else {
            return written.map(|()| true);
        };
        self.refuse(cluster, release, refusal).await;
        Ok(false)
    }

    /// Keeps account of a write `cluster` refused (or that its traffic provider cannot build):
    /// the cluster makes no other write in this reconcile, and a new refusal is a Warning Event.
    pub(super) async fn refuse(&mut self, cluster: &str, release: &Release, refusal: Refusal) {
        let refusals = &self.ctx.refusals;
        let app = self.app.name.as_str();
        self.stopped.insert(cluster.to_owned());
        let message = format!("cluster {cluster}: {refusal}");
        warn!(application = app, release = %release.name_any(), "{message}");
        let shown = shows_refusal(release, cluster, &refusal.to_string());
        let new = refusals.refused(
            (self.namespace, app, cluster),
            &release.name_any(),
            refusal,
            self.now,
        );
        if new && !shown {
            publish(
                self.ctx,
                &release.object_ref(&()),
                EventType::Warning,
                "WriteRefused",
                message,
                "Write",
            )
            .await;
        }
    }
}

/// `observation` as it is once `change`, made, is observed: a version installed or scaled runs
/// the capacity it was given (its pods still to become ready), a removed one runs nothing.
/// Traffic waits for its observation: what a route serves depends on more than the write.
pub(super) fn count_as_made(observation: &mut ClusterObservation, change: &Change) {
    match change {
        Change::Capacity {
            release, capacity, ..
        } => {
            let version = observation.set_capacity(release, *capacity);
            // As `workload::observe` counts: no more ready pods than a fixed count asks for.
            if let Capacity::Replicas(count) = capacity {
                version.ready = version.ready.min(*count);
            }
        }
        Change::Remove { release, .. } => {
            observation.versions.remove(*release);
        }
        Change::Idle { release, .. } => {
            let version = observation.set_capacity(release, Capacity::ZERO);
            version.ready = 0;
        }
        Change::Traffic { .. } => {}
    }
}

/// Whether the application leaves `cluster` with `decision`: every version observed there is
/// removed by it, and no version is to run there. Its traffic objects then go too, after the
/// versions' own (the capacity moved first, so no traffic can still reach a version there), and
/// again in each later decision while they are still there.
pub(super) fn leaves(decision: &Decision, cluster: &str, observed: &ClusterObservation) -> bool {
    let removed = |name: &str| {
        decision.changes.iter().any(|change| {
            matches!(change, Change::Remove { cluster: at, release } if *at == cluster && *release == name)
        })
    };
    let to_run = decision
        .clusters
        .iter()
        .filter(|decided| decided.cluster == cluster)
        .flat_map(|decided| &decided.versions)
        .any(|version| !version.capacity.is_zero() || !version.target.is_zero());
    !to_run && observed.versions.keys().all(|name| removed(name))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use prism_engine::{
        Capacity, ClusterDecision, ClusterPhase, VersionDecision, VersionObservation,
    };

    use super::*;

    fn decision<'a>(versions: &[(&'a str, u32, u32)], removed: &[&'a str]) -> Decision<'a> {
        Decision {
            releases: Vec::new(),
            clusters: vec![ClusterDecision {
                cluster: "c3",
                phase: ClusterPhase::Achieved,
                versions: versions
                    .iter()
                    .map(|&(release, capacity, target)| VersionDecision {
                        release,
                        capacity: Capacity::Replicas(capacity),
                        target: Capacity::Replicas(target),
                        target_weight: 0,
                    })
                    .collect(),
                traffic: None,
            }],
            changes: removed
                .iter()
                .map(|release| Change::Remove {
                    cluster: "c3",
                    release,
                })
                .collect(),
            events: Vec::new(),
            requeue_after: None,
        }
    }

    fn running(releases: &[&str]) -> ClusterObservation {
        ClusterObservation {
            reachable: true,
            versions: releases
                .iter()
                .map(|release| {
                    let version = VersionObservation {
                        capacity: Capacity::ZERO,
                        ready: 0,
                        weight: 100,
                    };
                    ((*release).to_owned(), version)
                })
                .collect(),
            routes: Vec::new(),
            refused: None,
            traffic_pending: None,
        }
    }

    #[test]
    fn the_application_leaves_with_the_removal_of_its_last_version_there() {
        let decision = decision(&[("web-1", 0, 0)], &["web-1"]);
        assert!(leaves(&decision, "c3", &running(&["web-1"])));
    }

    #[test]
    fn it_is_asked_again_while_nothing_runs_or_is_to_run_there() {
        assert!(leaves(&decision(&[], &[]), "c3", &running(&[])));
    }

    #[test]
    fn it_stays_while_another_version_keeps_its_objects_there() {
        let decision = decision(&[("web-1", 0, 0), ("web-2", 0, 0)], &["web-1"]);
        assert!(!leaves(&decision, "c3", &running(&["web-1", "web-2"])));
    }

    #[test]
    fn it_stays_while_a_version_runs_or_is_to_run_there() {
        let scaling_down = decision(&[("web-1", 1, 0)], &[]);
        assert!(!leaves(&scaling_down, "c3", &running(&["web-1"])));
        let coming = decision(&[("web-2", 0, 2)], &[]);
        assert!(!leaves(&coming, "c3", &running(&[])));
    }

    #[test]
    fn a_version_not_removed_yet_keeps_it_there() {
        let retiring = decision(&[("web-1", 0, 0)], &[]);
        assert!(!leaves(&retiring, "c3", &running(&["web-1"])));
    }

    #[test]
    fn a_version_made_counts_its_new_capacity_and_a_removed_one_nothing() {
        let mut observed = running(&["web-1"]);
        observed.versions.get_mut("web-1").unwrap().ready = 4;
        let install = Change::Capacity {
            cluster: "c3",
            release: "web-2",
            capacity: Capacity::Replicas(4),
        };
        count_as_made(&mut observed, &install);
        let web_2 = observed.versions["web-2"];
        assert_eq!((web_2.capacity, web_2.ready), (Capacity::Replicas(4), 0));

        let scale_down = Change::Capacity {
            cluster: "c3",
            release: "web-1",
            capacity: Capacity::Replicas(1),
        };
        count_as_made(&mut observed, &scale_down);
        let web_1 = observed.versions["web-1"];
        assert_eq!((web_1.capacity, web_1.ready), (Capacity::Replicas(1), 1));

        count_as_made(
            &mut observed,
            &Change::Remove {
                cluster: "c3",
                release: "web-1",
            },
        );
        assert!(!observed.versions.contains_key("web-1"));
    }
}
