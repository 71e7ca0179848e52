//! One cluster's safe move from what it runs towards what the step wants, decided afresh from the
//! observed state every time, so that a restart anywhere resumes where the fleet really is:
//! capacity up, then (once ready) traffic, then (once traffic is in place) capacity down.

use crate::capacity::Capacity;
use crate::model::{
    Change, ClusterDecision, ClusterObservation, ClusterPhase, ResolvedRoute, Traffic,
    VersionDecision, VersionObservation, Weight,
};

/// What the step wants of one version in one cluster, and what the cluster runs of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VersionTarget<'a> {
    pub release: &'a str,
    pub capacity: Capacity,
    pub weight: u32,
    /// Zero when nothing is installed.
    pub seen: VersionObservation,
}

impl<'a> VersionTarget<'a> {
    /// Running what the step wants, as a decision: the start of a safe move, or all there is to
    /// say of a cluster that cannot be reached.
    pub fn as_wanted(&self) -> VersionDecision<'a> {
        VersionDecision {
            release: self.release,
            capacity: self.capacity,
            target: self.capacity,
            target_weight: self.weight,
        }
    }
}

/// What the step wants of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct ClusterTarget<'a> {
    /// In input order, oldest first.
    pub versions: Vec<VersionTarget<'a>>,
    pub routes: Vec<ResolvedRoute>,
    /// Side versions, in input order: outside the mainline's move (they neither hold nor join
    /// it), at their capacity at once, never given weight.
    pub sides: Vec<VersionTarget<'a>>,
    /// The side versions' own routes, each given once its version has a ready pod.
    pub side_routes: Vec<ResolvedRoute>,
    pub max_surge: Option<u32>,
    /// The application leaves the cluster: every version goes, and its traffic goes to the
    /// application's other clusters rather than to a version here.
    pub vacate: bool,
}

pub(crate) const NOTHING: VersionObservation = VersionObservation {
    capacity: Capacity::ZERO,
    ready: 0,
    weight: 0,
};

/// The next safe move of one reachable cluster, and the writes it takes.
pub(crate) fn converge<'a>(
    cluster: &'a str,
    target: ClusterTarget<'a>,
    observed: &ClusterObservation,
    has_traffic: bool,
    changes: &mut Vec<Change<'a>>,
) -> ClusterDecision<'a> {
    let is_side = |release: &str| target.sides.iter().any(|side| side.release == release);
    // The mainline moves on what it serves itself: the side versions' routes are set apart (a
    // copy of the observation only when a side version has a route here).
    let all_routes = &observed.routes;
    let mainline_observed;
    let observed = if all_routes.iter().any(|route| is_side(&route.version)) {
        mainline_observed = ClusterObservation {
            routes: all_routes
                .iter()
                .filter(|route| !is_side(&route.version))
                .cloned()
                .collect(),
            ..observed.clone()
        };
        &mainline_observed
    } else {
        observed
    };
    let versions = &target.versions;
    // Nothing is left to move a vacated cluster's traffic to.
    let has_traffic = has_traffic && !target.vacate;
    let ready_for_traffic = versions.iter().all(|version| {
        version.seen.ready >= version.capacity.floor()
            && !version.capacity.exceeds(version.seen.capacity)
    });
    let traffic_in_place = !has_traffic
        || (versions
            .iter()
            .all(|version| version.weight == version.seen.weight)
            && same_routes(&target.routes, &observed.routes)
            && observed.traffic_pending.is_none());

    let traffic = if has_traffic {
        desired_traffic(&target, observed, ready_for_traffic)
    } else {
        None
    };
    let mut decided: Vec<VersionDecision<'a>> =
        versions.iter().map(VersionTarget::as_wanted).collect();
    desired_capacities(
        &target,
        &mut decided,
        traffic.as_ref(),
        ready_for_traffic && traffic_in_place,
        observed.traffic_pending.is_some(),
    );

    let achieved = traffic_in_place
        && versions.iter().all(|version| {
            same_capacity(version.capacity, version.seen.capacity)
                && version.seen.ready >= version.capacity.floor()
        });
    let phase = if achieved {
        ClusterPhase::Achieved
    } else if !ready_for_traffic {
        ClusterPhase::CapacityUp
    } else if !traffic_in_place {
        ClusterPhase::Traffic
    } else {
        ClusterPhase::CapacityDown
    };

    let mut traffic = traffic;
    add_sides(&target, &mut decided, traffic.as_mut());
    let versions: Vec<&VersionTarget> = versions.iter().chain(&target.sides).collect();
    for (version, decided) in versions.iter().zip(&decided) {
        if !same_capacity(decided.capacity, version.seen.capacity) {
            changes.push(Change::Capacity {
                cluster,
                release: version.release,
                capacity: decided.capacity,
            });
        }
    }
    if let Some(traffic) = &traffic {
        let unchanged = traffic
            .weights
            .iter()
            .zip(&versions)
            .all(|(weight, version)| weight.percent == version.seen.weight)
            && same_routes(&traffic.routes, all_routes);
        if !unchanged {
            changes.push(Change::Traffic {
                cluster,
                traffic: traffic.clone(),
            });
        }
    }
    ClusterDecision {
        cluster,
        phase,
        versions: decided,
        traffic,
    }
}

/// Side versions run their capacity at once (a Drained one keeps what it has, below), weight 0
/// always, and their routes once they have a ready pod; without a traffic decision of the
/// mainline's (no mainline version serves yet), their routes wait with it.
fn add_sides<'a>(
    target: &ClusterTarget<'a>,
    decided: &mut Vec<VersionDecision<'a>>,
    traffic: Option<&mut Traffic<'a>>,
) {
    decided.extend(target.sides.iter().map(VersionTarget::as_wanted));
    let Some(traffic) = traffic else {
        return;
    };
    traffic
        .weights
        .extend(target.sides.iter().map(|side| Weight {
            release: side.release,
            percent: 0,
        }));
    let serves = |release: &str| {
        target
            .sides
            .iter()
            .any(|side| side.release == release && side.seen.ready > 0)
    };
    traffic.routes.extend(
        target
            .side_routes
            .iter()
            .filter(|route| serves(&route.version))
            .cloned(),
    );
}

/// The step's weights and routes once every version's capacity is ready, the observed ones until
/// then; either way with no weight and no route to a version without a ready pod.
fn desired_traffic<'a>(
    target: &ClusterTarget<'a>,
    observed: &ClusterObservation,
    move_traffic: bool,
) -> Option<Traffic<'a>> {
    let versions = &target.versions;
    let wanted = |version: &VersionTarget| {
        if move_traffic {
            version.weight
        } else {
            version.seen.weight
        }
    };
    let mut weights: Vec<Weight<'a>> = versions
        .iter()
        .map(|version| Weight {
            release: version.release,
            percent: wanted(version),
        })
        .collect();
    if !distribute(&mut weights, |i| versions[i].seen.ready) {
        return None;
    }
    let serves = |release: &str| {
        versions
            .iter()
            .any(|version| version.release == release && version.seen.ready > 0)
    };
    let routes = if move_traffic {
        &target.routes
    } else {
        &observed.routes
    };
    Some(Traffic {
        weights,
        routes: routes
            .iter()
            .filter(|route| serves(&route.version))
            .cloned()
            .collect(),
    })
}

/// Makes the weights sum to 100 among the versions that have ready pods, in proportion to the
/// weights given, or to the ready pods when none of them is given weight. Rounding goes to the
/// largest remainders, the older version first on a tie. False when no version has a ready pod.
fn distribute(weights: &mut [Weight], ready: impl Fn(usize) -> u32) -> bool {
    let serving = |i: usize| ready(i) > 0;
    let given: u64 = (0..weights.len())
        .filter(|&i| serving(i))
        .map(|i| u64::from(weights[i].percent))
        .sum();
    if given == 100 && (0..weights.len()).all(|i| serving(i) || weights[i].percent == 0) {
        return true;
    }
    let basis: Vec<u64> = (0..weights.len())
        .map(|i| match (serving(i), given) {
            (false, _) => 0,
            (true, 0) => u64::from(ready(i)),
            (true, _) => u64::from(weights[i].percent),
        })
        .collect();
    let total: u64 = basis.iter().sum();
    if total == 0 {
        return false;
    }
    for (weight, basis) in weights.iter_mut().zip(&basis) {
        weight.percent = (basis * 100 / total) as u32;
    }
    let mut remainders: Vec<(u64, usize)> = basis
        .iter()
        .enumerate()
        .map(|(i, b)| (b * 100 % total, i))
        .collect();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let short = 100 - weights.iter().map(|weight| weight.percent).sum::<u32>();
    for &(_, i) in remainders.iter().take(short as usize) {
        weights[i].percent += 1;
    }
    true
}

/// What each version runs next. Without a surge limit, versions going up get their target at
/// once and versions going down wait until `may_scale_down` (every version ready and traffic in
/// place). With one, capacity moves in rounds within the limit. While the provider says the
/// traffic is pending, nothing goes down. Either way, a version that has
/// or is given traffic keeps its capacity rather than drop to none, unless the cluster is vacated.
fn desired_capacities(
    target: &ClusterTarget,
    decided: &mut [VersionDecision],
    traffic: Option<&Traffic>,
    may_scale_down: bool,
    traffic_pending: bool,
) {
    match target.max_surge {
        // While the cluster may still route by an older split, no version loses a pod (but in a
        // cluster the application leaves, where traffic no longer matters).
        _ if traffic_pending && !target.vacate => {
            for (version, decided) in target.versions.iter().zip(decided.iter_mut()) {
                decided.capacity = version.capacity.at_least(version.seen.capacity);
            }
        }
        None if !may_scale_down => {
            for (version, decided) in target.versions.iter().zip(decided.iter_mut()) {
                decided.capacity = version.capacity.at_least(version.seen.capacity);
            }
        }
        None => {}
        Some(surge) => surge_round(target, decided, surge),
    }
    for (i, (version, decided)) in target.versions.iter().zip(decided.iter_mut()).enumerate() {
        let given = traffic.is_some_and(|traffic| {
            traffic.weights[i].percent > 0
                || traffic
                    .routes
                    .iter()
                    .any(|route| route.version == version.release)
        });
        if !target.vacate && (version.seen.weight > 0 || given) && decided.capacity.floor() == 0 {
            decided.capacity = version.seen.capacity;
        }
    }
}

/// One round of a surge-limited move: versions going down (oldest first) drop only as far as
/// keeps the ready pods at the sum of the targets; then versions going up (newest first) grow
/// only as far as keeps the total at the sum of the targets plus `surge`.
fn surge_round(target: &ClusterTarget, decided: &mut [VersionDecision], surge: u32) {
    // A surge of 0 could never start a move (nothing may go down before something is up); the
    // pipeline check rejects it, and the engine still moves one pod at a time.
    let surge = surge.max(1);
    let versions = &target.versions;
    let sum = |counts: &mut dyn Iterator<Item = u32>| counts.fold(0u32, u32::saturating_add);
    let wanted = sum(&mut versions.iter().map(|version| version.capacity.floor()));
    let ready = sum(&mut versions.iter().map(|version| version.seen.ready));
    let mut spare_ready = ready.saturating_sub(wanted);
    for (version, decided) in versions.iter().zip(decided.iter_mut()) {
        let seen = version.seen;
        let (current, goal) = (seen.capacity.floor(), version.capacity.floor());
        decided.capacity = if goal < current {
            let floor = seen.ready.saturating_sub(spare_ready).clamp(goal, current);
            // Pods still ready while they stop may outnumber the capacity: never below zero.
            spare_ready = spare_ready.saturating_sub(seen.ready - seen.ready.min(floor));
            version.capacity.with_floor(floor)
        } else if goal == current {
            version.capacity
        } else {
            seen.capacity
        };
    }
    let total = sum(&mut decided.iter().map(|decided| decided.capacity.floor()));
    let mut room = wanted.saturating_add(surge).saturating_sub(total);
    for (version, decided) in versions.iter().zip(decided.iter_mut()).rev() {
        let (current, goal) = (version.seen.capacity.floor(), version.capacity.floor());
        if goal > current {
            let floor = goal.min(current.saturating_add(room));
            room -= floor - current;
            decided.capacity = version
                .capacity
                .at_least(version.seen.capacity)
                .with_floor(floor);
        }
    }
}

fn same_capacity(a: Capacity, b: Capacity) -> bool {
    a == b || (a.is_zero() && b.is_zero())
}

fn same_routes(a: &[ResolvedRoute], b: &[ResolvedRoute]) -> bool {
    a.len() == b.len() && a.iter().all(|route| b.contains(route))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distributed(given: &[u32], ready: &[u32]) -> Option<Vec<u32>> {
        let names = ["a", "b", "c"];
        let mut weights: Vec<Weight> = given
            .iter()
            .zip(names)
            .map(|(percent, release)| Weight {
                release,
                percent: *percent,
            })
            .collect();
        distribute(&mut weights, |i| ready[i])
            .then(|| weights.iter().map(|weight| weight.percent).collect())
    }

    #[test]
    fn distribute_gives_the_weight_of_a_version_without_ready_pods_to_the_others_in_proportion() {
        assert_eq!(
            distributed(&[50, 30, 20], &[0, 3, 1]),
            Some(vec![0, 60, 40])
        );
    }

    #[test]
    fn distribute_rounds_to_a_sum_of_100() {
        assert_eq!(distributed(&[1, 1, 1], &[1, 1, 1]), Some(vec![34, 33, 33]));
    }

    #[test]
    fn distribute_follows_ready_pods_when_no_ready_version_is_wanted() {
        assert_eq!(distributed(&[100, 0], &[0, 3]), Some(vec![0, 100]));
    }

    #[test]
    fn distribute_holds_when_no_version_has_ready_pods() {
        assert_eq!(distributed(&[100, 0], &[0, 0]), None);
    }
}
