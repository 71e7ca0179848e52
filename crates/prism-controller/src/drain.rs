//! A draining version's request rate (`versions.drainMetric`), read from Prometheus once every
//! interval while it drains, in the background ([`Rounds`]). Each reading goes to the engine
//! once; the engine keeps since when it has read zero in the Release's status
//! (`retirement.quietSince`), and a version is Drained only after a whole window of zeros. A
//! reading that fails (Prometheus away, a refused query) is no reading: the version keeps its
//! capacity, the safe side, and the failure is logged.

use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use prism_analysis::prometheus::Prometheus;
use prism_analysis::query::{self, Subject};
use prism_api::application::DrainMetric;
use prism_api::release::VersionState;
use prism_api::{Application, Release};
use prism_engine::DrainReading;
use tracing::warn;

use crate::calls::{Rounds, purpose, round_of, until_next_round};

pub struct DrainReadings {
    rounds: Rounds<Option<DrainReading>>,
}

impl DrainReadings {
    /// `ended` gets the application of each reading taken, to reconcile it again.
    pub fn new(ended: UnboundedSender<ObjectRef<Application>>) -> Self {
        DrainReadings {
            rounds: Rounds::new(ended),
        }
    }

    /// The reading of `release`'s rate taken since the last decision, while it drains with its
    /// routes gone under `metric`; and when to read it again.
    pub fn reading(
        &self,
        prometheus: &Prometheus,
        default_address: Option<&str>,
        metric: &DrainMetric,
        release: &Release,
        now: jiff::Timestamp,
    ) -> (Option<DrainReading>, Option<Duration>) {
        let draining = release.status.as_ref().is_some_and(|status| {
            status.state == Some(VersionState::Draining)
                && status
                    .retirement
                    .as_ref()
                    .is_some_and(|retirement| retirement.routes_left_at.is_some())
        });
        if !draining {
            return (None, None);
        }
        let interval = metric.interval().0.unsigned_abs();
        let unix_seconds = now.as_second().unsigned_abs();
        let again = Some(until_next_round(unix_seconds, interval));
        let Some(address) = metric
            .prometheus
            .as_ref()
            .map(|source| source.address.clone())
            .or(default_address.map(str::to_owned))
        else {
            warn!(release = %release.name_any(), "versions.drainMetric has no Prometheus to ask: give it prometheus.address, or start the controller with --prometheus-url; the version keeps draining");
            return (None, None);
        };
        let namespace = release.namespace().unwrap_or_default();
        let name = release.name_any();
        let promql = query::render(
            &metric.query,
            Subject {
                app: &release.spec.application,
                namespace: &namespace,
                version: &name,
                cluster: "",
            },
        );
        let prometheus = prometheus.clone();
        let reading = self.rounds.take(
            purpose(release, "drain rate"),
            round_of(unix_seconds, interval),
            move || async move {
                let at = jiff::Timestamp::now();
                match prometheus.instant(&address, &promql).await {
                    // No series: no request was counted.
                    Ok(series) => Some(DrainReading {
                        at,
                        rate: series
                            .iter()
                            .filter_map(|series| series.values.last())
                            .sum(),
                    }),
                    Err(error) => {
                        warn!(release = %name, %error, "reading versions.drainMetric failed; the version keeps draining");
                        None
                    }
                }
            },
        );
        (reading.flatten(), again)
    }
}
