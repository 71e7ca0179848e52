//! How a release that is no longer live goes. A complete version retires in order when the
//! application has a drain (`AppPolicy::drain`): Draining (its routes and traffic leave first,
//! its capacity stays), Drained once no cluster's routes have named it for the drain period
//! (scaled to zero, its objects kept), Retired once its objects have waited `delete_after` (they
//! are deleted). A gateway applies a route change some time after the route object changes:
//! during the drain its pods still answer whatever it sends them, and afterwards it answers 404
//! (no route), never 503 (a route to nothing). Every other release that is not live (aborted,
//! superseded, or without a drain) goes at once: its objects are deleted as soon as it has
//! neither capacity nor traffic anywhere.

use jiff::Timestamp;
use prism_api::strategy::Duration;

use crate::decide::{Roles, vacated};
use crate::follow::recorded;
use crate::model::{
    Change, ClusterInfo, Condition, ConditionKind, Drain, Event, EventKind, Input, Progress,
    ReleaseDecision, Retirement, Role, VersionState,
};
use crate::schedules::Schedules;

/// A drain without waits: a retirement that started under a drain the application no longer has
/// goes on without waiting.
const NO_WAIT: Drain = Drain {
    period: Duration(jiff::SignedDuration::ZERO),
    delete_after: Duration(jiff::SignedDuration::ZERO),
    quiet_window: None,
};

/// The roles of the releases that drain: those Draining already, and the complete ones that stop
/// being live now, when the application has a drain and they may still run somewhere.
pub(crate) fn draining_roles(input: &Input, progress: &[Progress], roles: &mut Roles) {
    for (index, progress) in progress.iter().enumerate() {
        let starts = drain_of(input, index).is_some()
            && roles.of[index] == Role::Retiring
            && roles.causes[index].is_some()
            && may_run(input, index);
        let draining = progress
            .retirement
            .as_ref()
            .is_some_and(|retirement| retirement.state == VersionState::Draining);
        if starts || draining {
            roles.of[index] = Role::Draining;
        }
    }
}

/// How release `index` retires: a side version always drains, by its own waits.
fn drain_of(input: &Input, index: usize) -> Option<Drain> {
    match input.releases[index].side {
        Some(side) => Some(side.drain),
        None => input.app.drain,
    }
}

/// Whether a cluster may run `index` or route to it: one observed to, or one not observed.
fn may_run(input: &Input, index: usize) -> bool {
    let release = &input.releases[index];
    let in_schedule = release.clusters.iter().any(|cluster| {
        input
            .observed
            .get(&cluster.name)
            .is_none_or(|observed| !observed.reachable)
    });
    in_schedule
        || input.observed.values().any(|observed| {
            observed.versions.contains_key(release.name)
                || observed
                    .routes
                    .iter()
                    .any(|route| route.version == release.name)
        })
}

/// Moves a release that is not live on its way out; returns whether it is retired (its objects
/// may be deleted, and are, by the changes this adds). `requeue` is lowered to when its next
/// wait ends.
#[allow(clippy::too_many_arguments)]
pub(crate) fn advance<'a>(
    input: &Input<'a>,
    schedules: &Schedules<'a>,
    roles: &Roles,
    index: usize,
    progress: &mut Progress,
    changes: &mut Vec<Change<'a>>,
    events: &mut Vec<Event<'a>>,
    requeue: &mut Option<Duration>,
) -> bool {
    let role = roles.of[index];
    if !matches!(role, Role::Retiring | Role::Draining) {
        return false;
    }
    let name = input.releases[index].name;
    let now = input.now;
    let drain = drain_of(input, index).unwrap_or(NO_WAIT);
    let mut event = |reason, message| {
        events.push(Event {
            release: name,
            kind: EventKind::Normal,
            reason,
            message,
        })
    };
    let mut wait_until = |until: Timestamp| {
        let after = Duration(now.duration_until(until));
        *requeue = Some(requeue.map_or(after, |requeue| requeue.min(after)));
    };
    if progress.retirement.is_none() {
        let cause = roles.causes[index].clone();
        let Some((cause, message)) = cause.clone().filter(|_| role == Role::Draining) else {
            let retired = retire(input, schedules, roles, index, changes, Some(&mut event));
            // A complete version with nothing left to drain (retired before, or never installed)
            // is recorded Retired, so that a cluster out of sight later never starts a drain of it.
            if let Some((cause, message)) =
                cause.filter(|_| retired && drain_of(input, index).is_some())
            {
                progress.retirement = Some(Retirement {
                    state: VersionState::Retired,
                    cause,
                    message,
                    started_at: recorded(now),
                    routes_left_at: None,
                    quiet_since: None,
                    drain_held: false,
                    drained_at: None,
                    retired_at: Some(recorded(now)),
                });
            }
            return retired;
        };
        event(
            "Draining",
            format!(
                "{message}: its routes leave first; it keeps its capacity until {} after no cluster routes to it",
                drain.period
            ),
        );
        progress.retirement = Some(Retirement {
            state: VersionState::Draining,
            cause,
            message,
            started_at: recorded(now),
            routes_left_at: None,
            quiet_since: None,
            drain_held: false,
            drained_at: None,
            retired_at: None,
        });
    }
    let Some(retirement) = progress.retirement.as_mut() else {
        return false;
    };
    match retirement.state {
        VersionState::Live => false,
        VersionState::Draining => {
            if retirement.routes_left_at.is_none() && routes_left(input, schedules, index) {
                retirement.routes_left_at = Some(recorded(now));
            }
            let Some(left) = retirement.routes_left_at else {
                return false;
            };
            let until = left
                .saturating_add(drain.period.0)
                .unwrap_or(Timestamp::MAX);
            if let Some(reading) = input.releases[index].drain_reading
                && reading.at >= left
            {
                retirement.quiet_since = match retirement.quiet_since {
                    _ if reading.rate > 0.0 => None,
                    Some(since) => Some(since),
                    None => Some(recorded(reading.at)),
                };
            }
            if now < until {
                wait_until(until);
                return false;
            }
            let quiet = match drain.quiet_window {
                None => None,
                Some(window) => {
                    let quiet_until = retirement
                        .quiet_since
                        .and_then(|since| since.saturating_add(window.0).ok());
                    // Without a quiet reading yet, the controller's next reading reconciles again.
                    if quiet_until.is_none_or(|quiet_until| now < quiet_until) {
                        retirement.drain_held = true;
                        if let Some(quiet_until) = quiet_until {
                            wait_until(quiet_until);
                        }
                        return false;
                    }
                    Some(window)
                }
            };
            retirement.state = VersionState::Drained;
            let drained_at = recorded(now);
            retirement.drained_at = Some(drained_at);
            let delete_at = drained_at
                .saturating_add(drain.delete_after.0)
                .unwrap_or(Timestamp::MAX);
            let quiet = quiet
                .map(|window| format!(" and its request rate read 0 for {window}"))
                .unwrap_or_default();
            event(
                "Drained",
                format!(
                    "no route named it for {}{quiet}: scaling it to 0; its objects are deleted at {delete_at}",
                    drain.period
                ),
            );
            wait_until(delete_at);
            false
        }
        VersionState::Drained => {
            let drained_at = retirement.drained_at.unwrap_or(retirement.started_at);
            let until = drained_at
                .saturating_add(drain.delete_after.0)
                .unwrap_or(Timestamp::MAX);
            if now < until {
                wait_until(until);
                return false;
            }
            let retired = retire(input, schedules, roles, index, changes, Some(&mut event));
            if retired {
                retirement.state = VersionState::Retired;
                retirement.retired_at = Some(recorded(now));
            }
            retired
        }
        VersionState::Retired => retire(input, schedules, roles, index, changes, None),
    }
}

/// Scaling a Drained version to zero keeps its objects: its capacity changes to zero become
/// `Change::Idle`.
pub(crate) fn keep_drained_objects<'a>(
    input: &Input<'a>,
    progress: &[Progress],
    changes: &mut [Change<'a>],
) {
    let drained = |release: &str| {
        input
            .releases
            .iter()
            .zip(progress)
            .any(|(input, progress)| {
                input.name == release
                    && progress
                        .retirement
                        .as_ref()
                        .is_some_and(|retirement| retirement.state == VersionState::Drained)
            })
    };
    for change in changes {
        if let Change::Capacity {
            cluster,
            release,
            capacity,
        } = *change
            && capacity.is_zero()
            && drained(release)
        {
            *change = Change::Idle { cluster, release };
        }
    }
}

/// The `Live` condition: true while the version is live, else its state as the reason.
pub(crate) fn live_condition(decision: &ReleaseDecision) -> Condition {
    let state = decision.state();
    let retirement = decision.progress.retirement.as_ref();
    let why = retirement.map_or_else(
        || "it is not live: its objects go as soon as nothing routes to it".to_owned(),
        |retirement| retirement.message.clone(),
    );
    let (status, message) = match state {
        VersionState::Live => (
            true,
            "rolling out, on the default route, or retained".into(),
        ),
        VersionState::Draining => (
            false,
            match retirement.filter(|retirement| retirement.drain_held) {
                None => format!("{why}; its routes left, its capacity stays for the drain period"),
                Some(Retirement {
                    quiet_since: Some(since),
                    ..
                }) => format!(
                    "{why}; the drain period is over, and its request rate (versions.drainMetric) has read 0 since {since}: its capacity stays until that lasts the metric's window"
                ),
                Some(_) => format!(
                    "{why}; the drain period is over, but its request rate (versions.drainMetric) does not read 0 (or cannot be read): its capacity stays until it reads 0 for the metric's window"
                ),
            },
        ),
        VersionState::Drained => (false, format!("{why}; scaled to 0, its objects kept")),
        VersionState::Retired => (false, format!("{why}; its objects are deleted")),
    };
    Condition {
        kind: ConditionKind::Live,
        status,
        reason: state.as_str(),
        message,
    }
}

/// Whether no cluster's routes or weights name `index` any more, as every cluster that may run it
/// has taken: the drain period counts from here.
fn routes_left(input: &Input, schedules: &Schedules, index: usize) -> bool {
    let name = input.releases[index].name;
    schedules
        .clusters
        .iter()
        .enumerate()
        .filter(|&(cluster, info)| {
            schedules.is_scheduled(index, cluster) || runs(input, name, info)
        })
        .all(|(_, info)| {
            input.observed.get(&info.name).is_some_and(|observed| {
                observed.reachable
                    && observed.traffic_pending.is_none()
                    && observed.routes.iter().all(|route| route.version != name)
                    && observed
                        .versions
                        .get(name)
                        .is_none_or(|version| version.weight == 0)
            })
        })
}

fn runs(input: &Input, release: &str, cluster: &ClusterInfo) -> bool {
    input
        .observed
        .get(&cluster.name)
        .is_some_and(|observed| observed.versions.contains_key(release))
}

/// Whether a retiring release is gone from the capacity and traffic of every cluster; if so, the
/// removal of whatever objects it still has.
/// `announce` says so with an Event, when it is the transition.
fn retire<'a>(
    input: &Input<'a>,
    schedules: &Schedules<'a>,
    roles: &Roles,
    index: usize,
    changes: &mut Vec<Change<'a>>,
    announce: Option<&mut dyn FnMut(&'static str, String)>,
) -> bool {
    let name = input.releases[index].name;
    let runs = |cluster: &ClusterInfo| runs(input, name, cluster);
    // A release runs nowhere but in its schedule, unless it is observed elsewhere.
    let drained = schedules
        .clusters
        .iter()
        .enumerate()
        .filter(|&(cluster, info)| schedules.is_scheduled(index, cluster) || runs(info))
        .all(|(cluster, info)| drained(input, name, info, vacated(schedules, roles, cluster)));
    if !drained {
        return false;
    }
    let before = changes.len();
    for &cluster in schedules.clusters.iter().filter(|cluster| runs(cluster)) {
        changes.push(Change::Remove {
            cluster: &cluster.name,
            release: name,
        });
    }
    if let Some(announce) = announce.filter(|_| changes.len() > before) {
        announce(
            "Retired",
            "no traffic and no capacity left in any cluster: deleting its objects".into(),
        );
    }
    true
}

/// Whether `release` is observed to have neither capacity nor traffic in `cluster`; a cluster
/// that is not observed might still run it, and one whose traffic is pending might still route
/// to it. In a cluster the application leaves (`vacated`), what
/// the traffic objects still say does not count: they serve nothing once the capacity is gone.
pub(crate) fn drained(input: &Input, release: &str, cluster: &ClusterInfo, vacated: bool) -> bool {
    input.observed.get(&cluster.name).is_some_and(|observed| {
        observed.reachable
            && (vacated
                || (observed.traffic_pending.is_none()
                    && observed.routes.iter().all(|route| route.version != release)))
            && observed.versions.get(release).is_none_or(|version| {
                version.capacity.is_zero() && (vacated || version.weight == 0)
            })
    })
}
