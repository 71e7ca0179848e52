//! Who acts: leader election on Leases, and shards of the Applications for fleets one leader
//! cannot carry.
//!
//! Every replica watches (its caches stay warm, so a new leader decides at once); a replica acts
//! only for the shards it leads. An Application belongs to the shard of a stable hash of its
//! namespace and name, and each shard is a Lease, `prism-shard-<k>` in the controller's namespace,
//! acquired and renewed by kube-lease-manager. With one shard, this is plain leader election.
//!
//! A leader that loses its lease must stop writing before another replica can start: a replica
//! frozen past its lease (a long pause of its VM or process) resumes with reconciles in flight
//! that do not know. So every client the controller writes with passes its requests through
//! [`Leadership::fence`], which refuses a write unless this replica holds a lease renewed, by its
//! own clock, less than the lease's duration minus a margin ago. The renewal times are read from
//! a watch of the Leases; another replica takes a lease only once it is a whole duration old. The
//! check is made as the request leaves, so the only writes that can pass it late are those
//! already on their way when the process froze.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use prism_api::Application;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How this replica takes part in leader election.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// This replica's name in the Leases (its Pod's name).
    pub identity: String,
    /// Where the Leases are (the controller's namespace).
    pub namespace: String,
    /// Shards of the Applications, each led by one replica; 1 is plain leader election.
    pub shards: u32,
    /// How long a lease lasts unrenewed: a dead leader's shards move after this.
    pub lease_duration: Duration,
}

/// The shortest lease: the lease manager counts in whole seconds and renews a third of a lease
/// before it ends.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(3);

impl LeaderElection {
    fn seconds(&self) -> u64 {
        self.lease_duration
            .as_secs()
            .max(MIN_LEASE_DURATION.as_secs())
    }

    /// When before its end a lease is renewed.
    fn grace(&self) -> u64 {
        (self.seconds() / 3).max(1)
    }

    /// How long before a lease's end this replica stops writing: the clock skew between replicas
    /// tolerated. Less than the grace, so that a renewal lands before the fence closes.
    fn margin(&self) -> Duration {
        Duration::from_secs(self.seconds()) / 6
    }
}

/// The name of a shard's Lease.
pub fn lease_name(shard: u32) -> String {
    format!("prism-shard-{shard}")
}

/// The shard of an Application: a hash of its namespace and name that no Rust or crate version
/// changes (the engine's), so that every replica agrees.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    let key = format!("{namespace}/{name}");
    (prism_engine::stable_hash(key.as_bytes()) % u64::from(shards.max(1))) as u32
}

/// Which shards this replica leads, and until when it may write for each.
pub struct Leadership {
    election: Option<LeaderElection>,
    /// Per shard, until when (this replica's clock) its writes pass the fence; `None`: another
    /// replica leads it, or nobody.
    held: Mutex<Vec<Option<SystemTime>>>,
    /// Told when the Leases change.
    changed: Notify,
}

impl Leadership {
    /// A replica that leads every shard, always: leader election off (one replica).
    pub fn sole() -> Self {
        Self {
            election: None,
            held: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }

    pub fn elected(election: LeaderElection) -> Self {
        let shards = election.shards.max(1) as usize;
        Self {
            election: Some(election),
            held: Mutex::new(vec![None; shards]),
            changed: Notify::new(),
        }
    }

    pub fn shards(&self) -> u32 {
        self.election.as_ref().map_or(1, |e| e.shards.max(1))
    }

    fn held(&self) -> MutexGuard<'_, Vec<Option<SystemTime>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this replica leads the shard now.
    pub fn leads_shard(&self, shard: u32) -> bool {
        self.election.is_none()
            || self.held().get(shard as usize).copied().flatten() > Some(SystemTime::now())
    }

    /// Whether this replica acts for the Application.
    pub fn leads(&self, app: &ObjectRef<Application>) -> bool {
        self.leads_shard(shard_of(
            app.namespace.as_deref().unwrap_or_default(),
            &app.name,
            self.shards(),
        ))
    }

    /// The fleet's own duties (the Clusters' statuses, the sweep of orphans) are the first
    /// shard's leader's.
    pub fn leads_fleet(&self) -> bool {
        self.leads_shard(0)
    }

    /// Whether a write may leave this replica: it leads a shard, by its own clock.
    pub fn may_write(&self) -> bool {
        let now = Some(SystemTime::now());
        self.election.is_none() || self.held().iter().any(|until| *until > now)
    }

    /// The shards this replica leads now.
    pub fn led_shards(&self) -> Vec<u32> {
        (0..self.shards())
            .filter(|&s| self.leads_shard(s))
            .collect()
    }

    /// A client layer that refuses every write (anything but GET) unless [`Self::may_write`].
    pub fn fence(
        self: &Arc<Self>,
    ) -> tower::filter::FilterLayer<
        impl Fn(http::Request<kube::client::Body>) -> Result<http::Request<kube::client::Body>, Fenced>
        + Clone
        + use<>,
    > {
        let leadership = self.clone();
        tower::filter::FilterLayer::new(move |request: http::Request<kube::client::Body>| {
            if request.method() == http::Method::GET || leadership.may_write() {
                Ok(request)
            } else {
                Err(Fenced)
            }
        })
    }

    /// Reads the Leases: which shards this replica holds, and until when.
    fn observe(&self, election: &LeaderElection, leases: &Store<Lease>) -> Vec<(u32, bool)> {
        let mut held = self.held();
        let mut transitions = Vec::new();
        for shard in 0..held.len() as u32 {
            let until = leases
                .get(&ObjectRef::new(&lease_name(shard)).within(&election.namespace))
                .and_then(|lease| holding_until(&lease, election))
                .filter(|(holder, _)| *holder == election.identity)
                .map(|(_, until)| until - election.margin());
            let was = held[shard as usize].is_some();
            if was != until.is_some() {
                transitions.push((shard, until.is_some()));
            }
            held[shard as usize] = until;
        }
        transitions
    }

    /// Shards held by nobody now (no holder, or a lease past its end), in this replica's order
    /// of preference, and the moment the next held one ends.
    fn free_shards(
        &self,
        election: &LeaderElection,
        leases: &Store<Lease>,
    ) -> (Vec<u32>, Option<SystemTime>) {
        let now = SystemTime::now();
        let mut free = Vec::new();
        let mut next_end: Option<SystemTime> = None;
        for shard in 0..self.shards() {
            let lease = leases.get(&ObjectRef::new(&lease_name(shard)).within(&election.namespace));
            match lease.as_deref().and_then(|l| holding_until(l, election)) {
                Some((holder, until)) if until > now => {
                    if holder != election.identity {
                        next_end = Some(next_end.map_or(until, |n| n.min(until)));
                    }
                }
                _ => free.push(shard),
            }
        }
        // Each replica prefers the shards in its own order, so that replicas starting together
        // try different ones first.
        free.sort_by_key(|&shard| {
            prism_engine::stable_hash(format!("{}/{shard}", election.identity).as_bytes())
        });
        (free, next_end)
    }
}

/// The holder of a Lease and when its lease ends, by the renewal time its holder wrote.
fn holding_until(lease: &Lease, election: &LeaderElection) -> Option<(String, SystemTime)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = spec
        .lease_duration_seconds
        .map_or(election.seconds(), |s| s.max(0) as u64);
    let renewed =
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(renewed.as_nanosecond()).ok()?);
    Some((holder, renewed + Duration::from_secs(seconds)))
}

/// A write refused because this replica does not lead.
#[derive(Debug, thiserror::Error)]
#[error(
    "this replica does not hold its lease (any more): its writes are fenced until it leads again"
)]
pub struct Fenced;

/// Keeps this replica's leadership: watches the Leases, campaigns for free shards, and sends the
/// Applications of each shard it comes to lead, to be reconciled. Runs until the process stops.
pub async fn keep(
    leadership: Arc<Leadership>,
    // Unfenced: renewing the lease is the one write a replica must make when its lease is old.
    client: Client,
    applications: Store<Application>,
    gained: mpsc::UnboundedSender<ObjectRef<Application>>,
) {
    let Some(election) = leadership.election.clone() else {
        return;
    };
    let (leases, writer) = reflector::store();
    let watch = {
        let leadership = leadership.clone();
        let leases = leases.clone();
        let election = election.clone();
        reflector::reflector(
            writer,
            watcher(
                Api::<Lease>::namespaced(client.clone(), &election.namespace),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .touched_objects()
        .try_for_each(move |_| {
            for (shard, leading) in leadership.observe(&election, &leases) {
                if leading {
                    info!(shard, "leading shard {shard}");
                    let shards = leadership.shards();
                    for app in applications.state() {
                        let app = ObjectRef::from_obj(app.as_ref());
                        if shard_of(
                            app.namespace.as_deref().unwrap_or_default(),
                            &app.name,
                            shards,
                        ) == shard
                        {
                            let _ = gained.unbounded_send(app);
                        }
                    }
                } else {
                    warn!(shard, "no longer leading shard {shard}");
                }
            }
            leadership.changed.notify_waiters();
            futures::future::ready(Ok(()))
        })
    };
    let campaign = campaign(leadership.clone(), client, leases, election.clone());
    tokio::select! {
        result = watch => if let Err(error) = result {
            warn!(%error, "the Lease watch ended");
        },
        () = campaign => {}
    }
}

/// Takes free shards, one at a time. A replica that leads k shards already waits k lease
/// durations before it takes another, so that a replica leading fewer takes it first: shards
/// spread over the replicas, and the shards of a replica that died go to those with the fewest.
async fn campaign(
    leadership: Arc<Leadership>,
    client: Client,
    leases: Store<Lease>,
    election: LeaderElection,
) {
    if leases.wait_until_ready().await.is_err() {
        return;
    }
    let mut holding = BTreeSet::new();
    let (held_tx, mut released) = mpsc::unbounded::<u32>();
    // Dropped with the campaign, which stops renewing the leases it holds.
    let mut holds = tokio::task::JoinSet::new();
    loop {
        while let Ok(shard) = released.try_recv() {
            holding.remove(&shard);
        }
        let (free, next_end) = leadership.free_shards(&election, &leases);
        let Some(&shard) = free.iter().find(|s| !holding.contains(*s)) else {
            wait_for_change(&leadership, next_end, &mut released, &mut holding).await;
            continue;
        };
        if !holding.is_empty() {
            // Not cut short by changes of the Leases: this replica's own renewals are some.
            tokio::time::sleep(election.lease_duration * holding.len() as u32).await;
            let (free, _) = leadership.free_shards(&election, &leases);
            if !free.contains(&shard) {
                continue;
            }
        }
        let manager = match manager(&client, &election, shard).await {
            Ok(manager) => manager,
            Err(error) => {
                warn!(shard, %error, "cannot make the shard's lease manager");
                tokio::time::sleep(election.lease_duration / 3).await;
                continue;
            }
        };
        // Given up as soon as another replica takes the shard: the manager would wait for its
        // lease to end and take it then, whatever this replica leads by then.
        tokio::select! {
            taken = manager.changed() => match taken {
                Ok(true) => {
                    holding.insert(shard);
                    holds.spawn(hold(manager, shard, held_tx.clone()));
                }
                Ok(false) => {}
                Err(error) => {
                    warn!(shard, %error, "cannot take the shard's lease");
                    tokio::time::sleep(election.lease_duration / 3).await;
                }
            },
            () = taken_by_another(&leadership, &election, &leases, shard) => {}
        }
    }
}

/// Returns once the Leases show `shard` held by another replica.
async fn taken_by_another(
    leadership: &Leadership,
    election: &LeaderElection,
    leases: &Store<Lease>,
    shard: u32,
) {
    loop {
        // Made before the check, so that a change between the two is not missed.
        let changed = leadership.changed.notified();
        let lease = leases.get(&ObjectRef::new(&lease_name(shard)).within(&election.namespace));
        if lease
            .as_deref()
            .and_then(|lease| holding_until(lease, election))
            .is_some_and(|(holder, until)| holder != election.identity && until > SystemTime::now())
        {
            return;
        }
        changed.await;
    }
}

async fn wait_for_change(
    leadership: &Leadership,
    next_end: Option<SystemTime>,
    released: &mut mpsc::UnboundedReceiver<u32>,
    holding: &mut BTreeSet<u32>,
) {
    let until_end = next_end
        .and_then(|end| end.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::from_secs(60));
    tokio::select! {
        () = tokio::time::sleep(until_end) => {}
        () = leadership.changed.notified() => {}
        shard = released.next() => if let Some(shard) = shard {
            holding.remove(&shard);
        },
    }
}

async fn manager(
    client: &Client,
    election: &LeaderElection,
    shard: u32,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), lease_name(shard))
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.seconds())
        .with_grace(election.grace())
        .with_field_manager(format!("prism-{}", election.identity))
        .build()
        .await
}

/// Renews a shard's lease until it is lost, then says so.
async fn hold(manager: LeaseManager, shard: u32, released: mpsc::UnboundedSender<u32>) {
    loop {
        match manager.changed().await {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                warn!(shard, %error, "renewing the shard's lease failed");
                break;
            }
        }
    }
    let _ = released.unbounded_send(shard);
}

/// Releases the leases this replica holds, so that another takes over at once rather than a
/// lease duration later: at shutdown.
pub async fn release(leadership: &Leadership, client: Client) {
    let Some(election) = &leadership.election else {
        return;
    };
    for shard in leadership.led_shards() {
        if let Ok(manager) = manager(&client, election, shard).await
            && let Err(error) = manager.release().await
        {
            warn!(shard, %error, "cannot release the shard's lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_keeps_its_shard() {
        let shards: Vec<u32> = (0..8)
            .map(|i| shard_of("ns", &format!("app-{i}"), 4))
            .collect();
        let again: Vec<u32> = (0..8)
            .map(|i| shard_of("ns", &format!("app-{i}"), 4))
            .collect();
        assert_eq!(shards, again);
        assert!(shards.iter().all(|&s| s < 4));
    }

    #[test]
    fn applications_spread_over_the_shards() {
        let mut counts = [0u32; 2];
        for i in 0..1000 {
            counts[shard_of("bench", &format!("app-{i}"), 2) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (400..=600).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn one_shard_holds_every_application() {
        assert_eq!(shard_of("a", "b", 1), 0);
        assert_eq!(shard_of("a", "b", 0), 0);
    }

    #[test]
    fn without_election_a_replica_leads_and_writes() {
        let sole = Leadership::sole();
        assert!(sole.may_write());
        assert!(sole.leads_fleet());
    }

    fn election() -> LeaderElection {
        LeaderElection {
            identity: "a".into(),
            namespace: "prism-system".into(),
            shards: 2,
            lease_duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn an_elected_replica_writes_only_while_its_lease_lasts() {
        let leadership = Leadership::elected(election());
        assert!(!leadership.may_write());
        leadership.held()[1] = Some(SystemTime::now() + Duration::from_secs(5));
        assert!(leadership.may_write());
        assert!(leadership.leads_shard(1));
        assert!(!leadership.leads_fleet());
        leadership.held()[1] = Some(SystemTime::now() - Duration::from_millis(1));
        assert!(
            !leadership.may_write(),
            "a lease past its end, unrenewed, fences"
        );
    }

    #[test]
    fn the_fence_closes_before_the_lease_ends() {
        let election = election();
        assert!(election.margin() > Duration::ZERO);
        assert!(election.margin() < Duration::from_secs(election.grace()));
    }
}
