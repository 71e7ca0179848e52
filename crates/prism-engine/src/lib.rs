//! Prism's strategy engine: a pure, deterministic function from an application's live releases,
//! their strategies and the observed state of every scheduled cluster to the next move.
//!
//! The model:
//! - Releases have roles. The newest unfinished release is the *contender*; the newest complete one
//!   the *incumbent*; older complete ones are *retained* (rainbow) while `max_versions` and the TTL
//!   allow; every other release (aborted, superseded, too old) is *retiring*.
//! - The contender's pipeline says, per step and per cluster, what each role runs and how traffic
//!   splits: per aspect, the latest step in the cluster's scope that set it. A first release (no
//!   incumbent) goes straight to the last step.
//! - Each cluster moves from what it is observed to run towards the step's state in a safe order,
//!   worked out afresh at every decision (so a restarted controller resumes where the fleet is):
//!   capacity up, then traffic once the capacity is ready, then capacity down once the traffic is
//!   in place. No weight and no route ever go to a version without ready pods, and a version with
//!   traffic never loses all of its capacity.
//! - A step is achieved when every cluster in its scope is; then its analysis and gate decide
//!   whether to advance (possibly through several achieved steps at once), wait, or roll back.
//!   Rolling back is retiring the contender: the same safe order restores the incumbent's capacity
//!   before its traffic and moves traffic away before removing the contender's capacity.
//! - The decision lists only the writes that differ from the observed state, and events only for
//!   transitions; time is an input, and outputs are ordered (input order, schedule order).

mod capacity;
mod converge;
mod decide;
mod effective;
mod model;
mod schedule;
mod simulate;
mod validate;

pub use decide::decide;
pub use model::*;
pub use schedule::{Candidate, Exclusion, Requirement, ScheduleError, Shortfall, schedule};
pub use simulate::{
    ClusterRow, Outcome, Scenario, SimulateError, Timeline, TimelineRow, VersionRow, land, simulate,
};
pub use validate::{Clusters, check_pipeline};
