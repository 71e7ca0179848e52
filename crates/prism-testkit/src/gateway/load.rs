//! A steady stream of requests through one or more gateways, for as long as a test runs a
//! rollout, reporting every failed request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::{Gateway, Request, Tally};

/// Requests under way per gateway at most: a stalled gateway slows the loop down instead of
/// piling up requests.
const IN_FLIGHT_PER_GATEWAY: usize = 64;

/// Requests sent at a steady rate through each gateway until [`LoadLoop::stop`].
///
/// ```no_run
/// # use prism_testkit::gateway::{Gateway, LoadLoop, Request};
/// # async fn example(gateways: Vec<Gateway>) {
/// let load = LoadLoop::start(gateways, Request::new("web.example.test"), 100.0);
/// // ... roll out a new version ...
/// let report = load.stop().await;
/// assert!(report.failures().is_empty(), "{report}");
/// # }
/// ```
pub struct LoadLoop {
    stop: watch::Sender<bool>,
    tallies: Arc<Mutex<BTreeMap<String, Tally>>>,
    tasks: JoinSet<()>,
}

impl LoadLoop {
    /// Starts sending `request` through each gateway, `per_second` requests a second to each.
    /// Each failure is recorded with the time it ended.
    ///
    /// # Panics
    /// When `per_second` is not positive.
    pub fn start(gateways: Vec<Gateway>, request: Request, per_second: f64) -> LoadLoop {
        assert!(per_second > 0.0, "a load loop needs a positive rate");
        let (stop, stopped) = watch::channel(false);
        let tallies = Arc::new(Mutex::new(
            gateways
                .iter()
                .map(|gateway| (gateway.cluster().to_owned(), Tally::default()))
                .collect::<BTreeMap<_, _>>(),
        ));
        let mut tasks = JoinSet::new();
        for gateway in gateways {
            tasks.spawn(drive(
                gateway,
                request.clone(),
                Duration::from_secs_f64(1.0 / per_second),
                stopped.clone(),
                tallies.clone(),
            ));
        }
        LoadLoop {
            stop,
            tallies,
            tasks,
        }
    }

    /// The counts so far, per cluster.
    pub fn snapshot(&self) -> LoadReport {
        LoadReport {
            per_cluster: self.tallies.lock().expect("never poisoned").clone(),
        }
    }

    /// Stops sending, waits for the requests under way, and reports all of them.
    pub async fn stop(mut self) -> LoadReport {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.snapshot()
    }
}

async fn drive(
    gateway: Gateway,
    request: Request,
    period: Duration,
    mut stopped: watch::Receiver<bool>,
    tallies: Arc<Mutex<BTreeMap<String, Tally>>>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_PER_GATEWAY));
    let mut requests = JoinSet::new();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        let permit = tokio::select! {
            _ = stopped.changed() => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (gateway, request, tallies) = (gateway.clone(), request.clone(), tallies.clone());
        requests.spawn(async move {
            let outcome = gateway.request(&request).await;
            drop(permit);
            tallies
                .lock()
                .expect("never poisoned")
                .get_mut(gateway.cluster())
                .expect("a tally per gateway")
                .add(outcome, jiff::Timestamp::now());
        });
        // Finished requests leave the set, so it does not grow over a long run.
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
}

/// What a [`LoadLoop`] saw, per cluster.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub per_cluster: BTreeMap<String, Tally>,
}

impl LoadReport {
    /// Every failed request of every cluster, as `(cluster, failure)`, in time order.
    pub fn failures(&self) -> Vec<(String, super::Failure)> {
        let mut failures: Vec<_> = self
            .per_cluster
            .iter()
            .flat_map(|(cluster, tally)| {
                tally
                    .failures
                    .iter()
                    .map(|failure| (cluster.clone(), failure.clone()))
            })
            .collect();
        failures.sort_by_key(|(_, failure)| failure.at);
        failures
    }

    /// Requests sent, over all clusters.
    pub fn total(&self) -> u64 {
        self.per_cluster.values().map(Tally::total).sum()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (cluster, tally) in &self.per_cluster {
            writeln!(f, "{cluster}: {tally}")?;
        }
        Ok(())
    }
}
