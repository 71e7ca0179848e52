//! Prism's strategy engine: a pure, deterministic function from an application's live releases,
//! their strategies and the observed state of every scheduled cluster to the next move.
//!
//! The model:
//! - Each release has its own schedule, and runs nowhere else: outside it, a release goes as a
//!   retiring one does. The one exception keeps a drain safe: an incumbent keeps all of its
//!   capacity and traffic in the clusters its contender is not scheduled to until the contender
//!   completes. In a cluster where the contender runs without its incumbent, it takes all of the
//!   traffic. A decision covers every release's clusters, the newest release's first.
//! - Releases have roles. The newest unfinished release is the *contender*; the newest complete one
//!   the *incumbent*; older complete ones are *retained* (rainbow) while `max_versions` and the TTL
//!   allow, or while pinned; every other release (aborted, superseded, too old, retired by a
//!   person) is *retiring*. With a drain (`AppPolicy::drain`), a complete release that stops being
//!   live is *draining* first: its routes leave, its capacity stays for the drain period, then it is
//!   scaled to zero and its objects deleted later (`retire.rs`).
//! - The contender's pipeline says, per step and per cluster, what each role runs and how traffic
//!   splits: per aspect, the latest step in the cluster's scope that set it. A first release (no
//!   incumbent) goes straight to the last step.
//! - Each cluster moves from what it is observed to run towards the step's state in a safe order,
//!   worked out afresh at every decision (so a restarted controller resumes where the fleet is):
//!   capacity up, then traffic once the capacity is ready, then capacity down once the traffic is
//!   in place. No weight and no route ever go to a version without ready pods, and a version with
//!   traffic never loses all of its capacity, except in a cluster the application leaves (no live
//!   release is scheduled there any more, while one is elsewhere), whose traffic goes elsewhere.
//! - Within a step, the clusters in its scope move in waves (`waves` of the pipeline): in the
//!   contender's schedule order, at most `maxConcurrency` at once, each wave once the clusters
//!   before it have soaked; a cluster waiting for its wave keeps the previous step's state. Each
//!   cluster's record of the step (when it started, when it reached the step, whether it missed
//!   its progress deadline) is part of the release's progress. More failed clusters than the
//!   failure budget roll the release back.
//! - A step is achieved when every cluster in its scope is (a failed one aside); then its analysis,
//!   gate and soak decide whether to advance (possibly through several achieved steps at once),
//!   wait, or roll back. A RolloutBlock keeps an achieved step from advancing.
//!   Rolling back is retiring the contender: the same safe order restores the incumbent's capacity
//!   before its traffic and moves traffic away before removing the contender's capacity.
//! - The decision lists only the writes that differ from the observed state, and events only for
//!   transitions; time is an input, and outputs are ordered (input order, schedule order).

mod capacity;
mod converge;
mod decide;
mod effective;
mod follow;
mod model;
mod retire;
mod schedule;
mod schedules;
mod simulate;
mod validate;
mod waves;

pub use decide::decide;
pub use follow::Followed;
pub use model::*;
pub use schedule::{
    Candidate, Exclusion, Requirement, ScheduleError, Shortfall, schedule, stable_hash,
};
pub use schedules::scheduled_clusters;
pub use simulate::{
    ClusterRow, Outcome, Scenario, SimulateError, Timeline, TimelineRow, VersionRow, land, simulate,
};
pub use validate::{Clusters, check_pipeline};
