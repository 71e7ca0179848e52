//! The engine's inputs and outputs.

use std::collections::BTreeMap;

use jiff::Timestamp;
use prism_api::strategy::{Duration, Pipeline, RouteMatch};
use serde::{Deserialize, Serialize};

pub use crate::capacity::Capacity;

/// What the engine needs to know about an application, beyond its releases.
#[derive(Clone, Debug, PartialEq)]
pub struct AppPolicy {
    /// The application has a traffic provider; without one, weights and routes are never emitted
    /// and never waited for (a headless worker).
    pub traffic: bool,
    /// How many versions may live at once (contender, incumbent and retained ones): 2 for a
    /// canary or blue/green, more for rainbow. Below 2 counts as 2: a rollout needs both.
    pub max_versions: u32,
    /// Retained versions older than this retire.
    pub version_ttl: Option<Duration>,
    /// How a complete version that stops being live retires: None, at once (its objects go as
    /// soon as it has neither traffic nor routes); else Draining, Drained, Retired.
    pub drain: Option<Drain>,
}

/// The waits of an ordered retirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drain {
    /// How long a retiring version keeps its capacity once no cluster's routes name it.
    pub period: Duration,
    /// How long a Drained version, at zero capacity, keeps its objects.
    pub delete_after: Duration,
    /// With a drain metric: how long it must read zero, after the period, before the version is
    /// Drained (`ReleaseInput::drain_reading` brings its readings).
    pub quiet_window: Option<Duration>,
}

/// One reading of a draining version's drain metric: its requests per second, and when it was
/// read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrainReading {
    pub at: Timestamp,
    pub rate: f64,
}

/// One cluster of a release's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub region: String,
}

/// One live release, as the controller read it from its Release object.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseInput<'a> {
    pub name: &'a str,
    /// The name it goes by in its routes (`{version}` in a match): the Application's
    /// `versions.name` filled in, else the release's name.
    pub version_name: &'a str,
    pub created_at: Timestamp,
    /// The clusters chosen for this release, in schedule order (the order `first: N` counts). It
    /// has capacity and traffic nowhere else.
    pub clusters: &'a [ClusterInfo],
    /// The strategy this release rolls out under.
    pub pipeline: &'a Pipeline,
    /// What this release runs at 100%: its template's replicas, or its autoscaler's bounds.
    pub capacity: Capacity,
    /// As persisted in the Release's status by the previous decision.
    pub progress: Progress,
    /// A person's command (`prism promote`): move to this step, skipping the gates before it.
    /// At or past the step count (`prism promote --full`), the last step's gate is skipped too.
    pub target_step: Option<u32>,
    /// A person's command (`prism abort`).
    pub aborted: bool,
    /// The verdict of the current step's analysis, from the analysis adapter.
    pub analysis: Verdict,
    /// The verdict of the current step's webhook gate, from the webhook adapter.
    pub webhook: Verdict,
    /// A person's pin (`prism pin`): never retired by `max_versions` or `version_ttl`.
    pub pinned: bool,
    /// A person's command (`prism retire`): a retained version retires. For a side version:
    /// its SideVersion was deleted or changed, or its ttl passed.
    pub retire_requested: bool,
    /// Some for a side version (a SideVersion's Release): outside the mainline, never given
    /// weight, reachable only on these routes.
    pub side: Option<Side<'a>>,
    /// While it drains under a drain metric: the reading taken since the last decision, if any.
    pub drain_reading: Option<DrainReading>,
}

/// What makes a release a side version.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Side<'a> {
    /// Its own routes, each to this release alone (their `to` is not read: the controller writes
    /// `each`); `{version}` in a match is its `version_name`.
    pub routes: &'a [prism_api::strategy::Route],
    /// How it retires: a side version always drains, whatever the application's mainline does,
    /// so that its hostname answers 404 rather than 503 once its routes left.
    pub drain: Drain,
}

/// Where a release is in its rollout; persisted in the Release's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Index of the current step.
    pub step: u32,
    /// The current step's name when this progress was recorded: a pipeline edited under the
    /// release (a strategy change applies to the release in flight) is followed by it, see
    /// [`Progress::follow`]. None: the step at `step`, whatever its name.
    pub step_name: Option<String>,
    /// When every cluster in the step's scope first reached it, rounded up to the whole second
    /// (the status keeps whole seconds): pauses count from here, so never from before the real
    /// moment.
    pub achieved_at: Option<Timestamp>,
    pub phase: Phase,
    /// Why the release is rolling back or was rolled back.
    pub abort: Option<Abort>,
    /// Per cluster name, the clusters in the current step's scope whose wave has started.
    /// Emptied when the step changes.
    pub clusters: BTreeMap<String, ClusterStepProgress>,
    /// Once a complete version retires in order (`AppPolicy::drain`): its way out.
    pub retirement: Option<Retirement>,
}

/// A version's way out, once it started: it never becomes live again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    /// Draining, Drained or Retired.
    pub state: VersionState,
    pub cause: RetireCause,
    pub message: String,
    /// Each moment recorded rounded up to the whole second, as every moment of a progress.
    pub started_at: Timestamp,
    /// When no cluster's routes named it any more (and every gateway had taken that): the drain
    /// period counts from here.
    pub routes_left_at: Option<Timestamp>,
    /// Since when its drain metric has read zero, every reading (`Drain::quiet_window`).
    pub quiet_since: Option<Timestamp>,
    /// The drain period is over, and the drain metric holds it.
    pub drain_held: bool,
    pub drained_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
}

pub use prism_api::release::{RetireCause, VersionState};

/// One cluster's way through the current step; it changes only on a transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStepProgress {
    /// When the cluster's wave started moving it towards the step (or it was found there), or it
    /// last dropped out of the step: its progress deadline counts from here. Like every moment
    /// recorded, rounded up to the whole second.
    pub since: Timestamp,
    /// When the cluster reached the step, while it stays there: its soak counts from here.
    pub achieved_at: Option<Timestamp>,
    /// Why the cluster failed the step: it missed its progress deadline.
    pub failed: Option<String>,
}

/// Why a release rolls back, as its status shows it.
pub use prism_api::release::{Abort, AbortCause};

/// A release's phase is the one its status shows.
pub use prism_api::release::ReleasePhase as Phase;

/// The outcome of an analysis or a webhook gate, as an adapter reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// The step has no such check.
    #[default]
    NotRequired,
    Pending,
    Passed,
    Failed {
        reason: String,
    },
    Inconclusive {
        reason: String,
    },
}

/// What one cluster runs for this application, as the controller last observed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterObservation {
    /// False when the cluster's API server could not be reached: nothing below is current.
    pub reachable: bool,
    /// Per release name. A release not listed has nothing installed.
    pub versions: BTreeMap<String, VersionObservation>,
    pub routes: Vec<ResolvedRoute>,
    /// The API server's words when it last refused one of the application's writes here (an
    /// admission policy, a quota, permissions, an invalid object), while it refuses them: why
    /// the cluster does not progress, said when it misses its progress deadline.
    pub refused: Option<String>,
    /// Why the cluster may not serve the weights and routes it is set to yet (its gateway has
    /// not accepted the route's current generation, say): until it does, its traffic is not in
    /// place, so the step is not achieved there and no version loses capacity.
    pub traffic_pending: Option<String>,
}

impl ClusterObservation {
    /// The version of `release` as a write of `capacity` leaves it: its capacity set, and a
    /// version new here with no pod ready yet and no traffic.
    pub fn set_capacity(&mut self, release: &str, capacity: Capacity) -> &mut VersionObservation {
        let version = self
            .versions
            .entry(release.to_owned())
            .or_insert(VersionObservation {
                capacity,
                ready: 0,
                weight: 0,
            });
        version.capacity = capacity;
        version
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionObservation {
    /// As installed (the Deployment's replicas, or its autoscaler's bounds).
    pub capacity: Capacity,
    pub ready: u32,
    /// Percent of the application's default route.
    pub weight: u32,
}

/// A route that reaches one release; `{version}` in its match is already replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRoute {
    pub name: String,
    pub version: String,
    pub matches: RouteMatch,
}

/// Everything one decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub now: Timestamp,
    pub app: &'a AppPolicy,
    /// The application's live releases, oldest first.
    pub releases: &'a [ReleaseInput<'a>],
    /// Per cluster name. A scheduled cluster not listed is treated as unreachable.
    pub observed: &'a BTreeMap<String, ClusterObservation>,
    /// The message of a RolloutBlock that applies to the application: while there is one, the
    /// contender does not leave its current step (which still converges; aborts still roll back).
    pub blocked: Option<&'a str>,
}

/// What the controller should do next.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    /// One per input release, in input order.
    pub releases: Vec<ReleaseDecision<'a>>,
    /// One per cluster of any release's schedule, in the order of [`scheduled_clusters`].
    ///
    /// [`scheduled_clusters`]: crate::scheduled_clusters
    pub clusters: Vec<ClusterDecision<'a>>,
    /// The writes to make: only what differs from the observed state.
    pub changes: Vec<Change<'a>>,
    /// Transitions only.
    pub events: Vec<Event<'a>>,
    /// Decide again after this long even if nothing is observed to change (a pause or a soak
    /// ends, a cluster reaches its progress deadline, a retained version reaches its TTL).
    pub requeue_after: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    /// The release being rolled out.
    Contender,
    /// The newest complete release.
    Incumbent,
    /// An older complete release kept alive (rainbow): its own routes, no share of the default route.
    Retained,
    /// Going away: traffic 0, then capacity 0, then its objects are deleted.
    Retiring,
    /// Retiring in order, first step: no traffic and no routes, but its capacity kept while
    /// gateways may still route to it.
    Draining,
    /// A side version (a SideVersion's Release): full capacity in its clusters, weight 0, its
    /// own routes only; outside the mainline's roles, steps and `max_versions`.
    Side,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseDecision<'a> {
    pub release: &'a str,
    pub role: Role,
    /// To persist in the Release's status.
    pub progress: Progress,
    pub conditions: Vec<Condition>,
    /// Retiring and gone from the traffic and capacity of every cluster: its objects may be deleted.
    pub retired: bool,
}

impl ReleaseDecision<'_> {
    /// Where the version is in its life, as its status says.
    pub fn state(&self) -> VersionState {
        match (&self.progress.retirement, self.role) {
            (Some(retirement), _) => retirement.state,
            (None, Role::Retiring) => VersionState::Retired,
            (None, Role::Draining) => VersionState::Draining,
            (None, _) => VersionState::Live,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConditionKind {
    Progressing,
    StepAchieved,
    WaitingForCommand,
    /// A RolloutBlock keeps the contender at its achieved step.
    Blocked,
    Complete,
    Aborted,
    /// True while the version is live; once it retires, its state is the reason.
    Live,
}

/// Where one cluster is on its way to the current step's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ClusterPhase {
    /// Versions going up are being scaled up or are not ready yet.
    CapacityUp,
    /// Capacity is in place; weights and routes are moving.
    Traffic,
    /// Traffic is in place; versions going down are being scaled down.
    CapacityDown,
    Achieved,
    /// In the step's scope and at the previous step's state, which it keeps until its wave
    /// starts.
    Queued,
    /// Not observed: no writes, and it holds any step whose scope includes it.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterDecision<'a> {
    pub cluster: &'a str,
    pub phase: ClusterPhase,
    /// Every release with something to run or to take down here, in input order.
    pub versions: Vec<VersionDecision<'a>>,
    /// The default route's weights and the routes to write; None leaves traffic as it is (no
    /// traffic provider, no version with ready capacity, or the cluster is unreachable).
    pub traffic: Option<Traffic<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionDecision<'a> {
    pub release: &'a str,
    /// What to run now: a safe move from the observed capacity towards `target`.
    pub capacity: Capacity,
    /// What the current step wants.
    pub target: Capacity,
    /// The current step's weight for this release, before any safety redistribution.
    pub target_weight: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Traffic<'a> {
    /// One per version of the cluster, in input order; the percents sum to 100.
    pub weights: Vec<Weight<'a>>,
    pub routes: Vec<ResolvedRoute>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weight<'a> {
    pub release: &'a str,
    pub percent: u32,
}

/// One write for the controller.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<'a> {
    /// Create or scale the release's objects in the cluster.
    Capacity {
        cluster: &'a str,
        release: &'a str,
        capacity: Capacity,
    },
    /// Rewrite the application's traffic objects in the cluster.
    Traffic {
        cluster: &'a str,
        traffic: Traffic<'a>,
    },
    /// Delete the release's objects in the cluster: the release is retired.
    Remove { cluster: &'a str, release: &'a str },
    /// Scale the release to zero in the cluster, keeping its objects: it is Drained.
    Idle { cluster: &'a str, release: &'a str },
}

impl<'a> Change<'a> {
    /// The cluster the change is made in.
    pub fn cluster(&self) -> &'a str {
        match self {
            Change::Capacity { cluster, .. }
            | Change::Traffic { cluster, .. }
            | Change::Remove { cluster, .. }
            | Change::Idle { cluster, .. } => cluster,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub release: &'a str,
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}
