//! Where a new Release runs: the clusters an Application's schedule chooses from the fleet.
//!
//! Weighted rendezvous hashing (highest random weight): each (application, cluster) pair gets a
//! score from a hash of both names, scaled by the cluster's weight, and an application takes the
//! eligible clusters with the highest scores. A cluster's score for an application does not depend
//! on the other clusters, so adding a cluster moves only the applications that now rank it among
//! their chosen ones, and removing one moves only the applications that had it. Among equal
//! candidates, a cluster comes first with probability weight / total weight.
//!
//! A Release's clusters are immutable: the caller schedules when it makes a new Release, never
//! for an existing one, so a change of the fleet or of the schedule reaches the next Release only.

use std::f64::consts::{LN_2, SQRT_2};
use std::fmt;

use prism_api::application::Schedule;
use prism_api::cluster::ClusterSpec;
use prism_api::release::ScheduledCluster;
use thiserror::Error;

/// A cluster of the fleet the schedule may choose, as its Cluster object describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Unique in the fleet (Cluster objects are cluster-scoped).
    pub name: String,
    pub region: String,
    pub capabilities: Vec<String>,
    /// The cluster's relative chance to be chosen; 0: never chosen by a schedule.
    pub weight: u32,
    /// Cordoned: no new Release is scheduled to it.
    pub unschedulable: bool,
}

impl Candidate {
    /// The candidate a Cluster object named `name` describes.
    pub fn new(name: &str, spec: &ClusterSpec) -> Self {
        Candidate {
            name: name.to_owned(),
            region: spec.region.clone(),
            capabilities: spec.capabilities.clone(),
            weight: spec.weight,
            unschedulable: spec.unschedulable,
        }
    }
}

/// The clusters `schedule` chooses for the application identified by `key` (e.g.
/// `namespace/name`), in schedule order, the order a step's `first: N` scope counts:
/// - `regions`: each region in the order listed, and within it its `clusters` highest-scoring
///   eligible clusters, highest first;
/// - `clusters`: the `clusters` highest-scoring eligible clusters of the whole fleet, highest first;
/// - neither: every eligible cluster, highest first, so the first cluster of each application
///   is stable too and first clusters spread over the fleet.
///
/// A cluster is eligible when it is schedulable, has a weight above 0 and has every capability
/// the schedule requires. Equal scores are ordered by cluster name, so the order of `candidates`
/// does not matter. The schedule is assumed valid (regions listed once; not both regions and
/// clusters, where regions would win).
pub fn schedule(
    key: &str,
    schedule: &Schedule,
    candidates: &[Candidate],
) -> Result<Vec<ScheduledCluster>, ScheduleError> {
    let ranked = rank(
        key,
        candidates
            .iter()
            .filter(|candidate| is_eligible(candidate, &schedule.capabilities)),
    );
    let mut chosen = Vec::new();
    let mut shortfalls = Vec::new();
    let mut take = |requirement: Requirement, region: Option<&str>| {
        let in_scope = |candidate: &Candidate| region.is_none_or(|name| candidate.region == name);
        let eligible: Vec<&Candidate> = ranked.iter().copied().filter(|c| in_scope(c)).collect();
        let required = requirement.clusters().unwrap_or(1);
        if eligible.len() < required as usize {
            shortfalls.push(shortfall(
                requirement,
                eligible,
                candidates.iter().filter(|c| in_scope(c)),
                &schedule.capabilities,
            ));
            return;
        }
        let count = requirement
            .clusters()
            .map_or(eligible.len(), |n| n as usize);
        chosen.extend(eligible[..count].iter().map(|candidate| ScheduledCluster {
            name: candidate.name.clone(),
            region: candidate.region.clone(),
        }));
    };
    match (&schedule.regions, schedule.clusters) {
        (Some(regions), _) => {
            for region in regions {
                let requirement = Requirement::Region {
                    name: region.name.clone(),
                    clusters: region.clusters,
                };
                take(requirement, Some(&region.name));
            }
        }
        (None, Some(clusters)) => take(Requirement::Clusters(clusters), None),
        (None, None) => take(Requirement::AnyCluster, None),
    }
    if shortfalls.is_empty() {
        Ok(chosen)
    } else {
        Err(ScheduleError { shortfalls })
    }
}

/// The schedule cannot be met: one shortfall per requirement short of eligible clusters.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}", join(shortfalls, ". "))]
pub struct ScheduleError {
    pub shortfalls: Vec<Shortfall>,
}

/// One requirement of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `clusters: N` over the whole fleet.
    Clusters(u32),
    /// One entry of `regions`.
    Region { name: String, clusters: u32 },
    /// Neither regions nor clusters: every eligible cluster, of which there must be one.
    AnyCluster,
}

impl Requirement {
    fn clusters(&self) -> Option<u32> {
        match self {
            Requirement::Clusters(clusters) | Requirement::Region { clusters, .. } => {
                Some(*clusters)
            }
            Requirement::AnyCluster => None,
        }
    }
}

/// A requirement with fewer eligible clusters than it asks for, and why the others in its scope
/// (its region, or the fleet) are not eligible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub requirement: Requirement,
    /// By name.
    pub eligible: Vec<String>,
    /// By cluster name.
    pub excluded: Vec<Exclusion>,
}

/// Why a cluster is not eligible: at least one of these holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion {
    pub cluster: String,
    pub unschedulable: bool,
    pub zero_weight: bool,
    /// Required capabilities the cluster lacks, in the schedule's order.
    pub missing_capabilities: Vec<String>,
}

/// Names listed in a message before the rest are only counted: a fleet may have thousands.
const NAMES_SHOWN: usize = 10;

impl fmt::Display for Shortfall {
    /// E.g. `region us-east: 2 clusters required, 1 eligible (c2); c4 is unschedulable, c6 lacks
    /// capability gpu`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.requirement {
            Requirement::Clusters(clusters) => write!(f, "{}", plural(*clusters, "cluster"))?,
            Requirement::Region { name, clusters } => {
                write!(f, "region {name}: {}", plural(*clusters, "cluster"))?
            }
            Requirement::AnyCluster => write!(f, "at least 1 cluster")?,
        }
        write!(f, " required, {} eligible", self.eligible.len())?;
        if !self.eligible.is_empty() {
            write!(f, " ({})", shown(&self.eligible))?;
        }
        if !self.excluded.is_empty() {
            write!(f, "; {}", shown(&self.excluded))?;
        } else if self.eligible.is_empty() {
            match &self.requirement {
                Requirement::Region { name, .. } => write!(f, "; no cluster is in region {name}")?,
                _ => write!(f, "; the fleet has no clusters")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Exclusion {
    /// E.g. `c4 is unschedulable and lacks capabilities gpu, ssd`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut reasons = Vec::new();
        if self.unschedulable {
            reasons.push("is unschedulable".to_owned());
        }
        if self.zero_weight {
            reasons.push("has weight 0".to_owned());
        }
        match self.missing_capabilities.as_slice() {
            [] => {}
            [only] => reasons.push(format!("lacks capability {only}")),
            many => reasons.push(format!("lacks capabilities {}", many.join(", "))),
        }
        write!(f, "{} {}", self.cluster, reasons.join(" and "))
    }
}

fn plural(count: u32, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// The first `NAMES_SHOWN` items, then how many more.
fn shown<T: fmt::Display>(items: &[T]) -> String {
    let listed = join(&items[..items.len().min(NAMES_SHOWN)], ", ");
    match items.len().checked_sub(NAMES_SHOWN) {
        Some(more) if more > 0 => format!("{listed} and {more} more"),
        _ => listed,
    }
}

fn join<T: fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

fn is_eligible(candidate: &Candidate, capabilities: &[String]) -> bool {
    !candidate.unschedulable
        && candidate.weight > 0
        && capabilities
            .iter()
            .all(|required| candidate.capabilities.contains(required))
}

fn exclusion(candidate: &Candidate, capabilities: &[String]) -> Option<Exclusion> {
    let missing_capabilities: Vec<String> = capabilities
        .iter()
        .filter(|required| !candidate.capabilities.contains(required))
        .cloned()
        .collect();
    let zero_weight = candidate.weight == 0;
    (candidate.unschedulable || zero_weight || !missing_capabilities.is_empty()).then(|| {
        Exclusion {
            cluster: candidate.name.clone(),
            unschedulable: candidate.unschedulable,
            zero_weight,
            missing_capabilities,
        }
    })
}

fn shortfall<'a>(
    requirement: Requirement,
    eligible: Vec<&Candidate>,
    in_scope: impl Iterator<Item = &'a Candidate>,
    capabilities: &[String],
) -> Shortfall {
    let mut eligible: Vec<String> = eligible.iter().map(|c| c.name.clone()).collect();
    eligible.sort();
    let mut excluded: Vec<Exclusion> = in_scope
        .filter_map(|candidate| exclusion(candidate, capabilities))
        .collect();
    excluded.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Shortfall {
        requirement,
        eligible,
        excluded,
    }
}

/// The candidates by descending score for `key`, equal scores by name.
fn rank<'a>(key: &str, candidates: impl Iterator<Item = &'a Candidate>) -> Vec<&'a Candidate> {
    // The key's hash state is shared by every cluster; the separator, a byte no UTF-8 string
    // holds, keeps ("a", "bc") and ("ab", "c") apart.
    let keyed = fnv1a(fnv1a(FNV_OFFSET, key.as_bytes()), &[0xff]);
    let mut scored: Vec<(f64, &Candidate)> = candidates
        .map(|candidate| (score(keyed, candidate), candidate))
        .collect();
    scored.sort_by(|(a_score, a), (b_score, b)| {
        b_score.total_cmp(a_score).then_with(|| a.name.cmp(&b.name))
    });
    scored.into_iter().map(|(_, candidate)| candidate).collect()
}

/// Weighted rendezvous score: -weight / ln(u), u uniform in (0, 1) from the hash of the key and
/// the cluster's name. For independent uniform u, the candidate with the highest score is each
/// one with probability weight / total weight.
fn score(keyed: u64, candidate: &Candidate) -> f64 {
    let hash = mix(fnv1a(keyed, candidate.name.as_bytes()));
    -f64::from(candidate.weight) / ln(unit(hash))
}

/// The hash's top 52 bits, centred in their interval: exactly representable, never 0 nor 1.
fn unit(hash: u64) -> f64 {
    ((hash >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}

// The hash is written out rather than taken from std or a crate: a change of hash function, or
// of its keys or output between versions, would move every application to other clusters at its
// next Release. FNV-1a is a few lines with published test vectors; it mixes its last bytes
// poorly into the high bits that `score` reads, hence the murmur3 finalizer after it.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A hash of `bytes` that no Rust or crate version changes: FNV-1a, then mixed. Also what puts an
/// Application in a shard of the controller (replicas must agree, whatever their version).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(FNV_OFFSET, bytes))
}

/// Murmur3's 64-bit finalizer: every input bit flips each output bit with probability about 1/2.
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The natural logarithm of a positive normal `x`, from IEEE-754 +, -, *, / only: `f64::ln`'s
/// precision may vary by platform and Rust version, and one ulp can reorder two close scores.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // m in [sqrt(1/2), sqrt(2)) keeps s below 0.172, so 12 terms reach full precision.
    let (m, exponent) = if mantissa > SQRT_2 {
        (mantissa / 2.0, exponent + 1)
    } else {
        (mantissa, exponent)
    };
    // ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1).
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = (0..12)
        .rev()
        .fold(0.0, |sum, k| sum * s2 + 1.0 / f64::from(2 * k + 1));
    2.0 * s * series + f64::from(exponent) * LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ln_agrees_with_std_to_full_precision() {
        let mut x = 1.0 / (1u64 << 53) as f64;
        while x < 1.0 {
            let expected = x.ln();
            let error = (ln(x) - expected).abs() / expected.abs().max(f64::MIN_POSITIVE);
            assert!(
                error < 4.0 * f64::EPSILON,
                "ln({x}) = {}, std {expected}",
                ln(x)
            );
            x *= 1.000_173;
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.5), -LN_2);
    }

    #[test]
    fn every_hash_gives_a_finite_positive_score() {
        for hash in [0, 1, 1 << 12, u64::MAX >> 1, u64::MAX] {
            let unit = unit(hash);
            assert!(unit > 0.0 && unit < 1.0, "{hash}: {unit}");
            let score = -1.0 / ln(unit);
            assert!(score.is_finite() && score > 0.0, "{hash}: {score}");
        }
    }

    #[test]
    fn exclusions_name_every_reason() {
        let exclusion = Exclusion {
            cluster: "c4".into(),
            unschedulable: true,
            zero_weight: true,
            missing_capabilities: vec!["gpu".into(), "ssd".into()],
        };
        assert_eq!(
            exclusion.to_string(),
            "c4 is unschedulable and has weight 0 and lacks capabilities gpu, ssd"
        );
    }

    #[test]
    fn long_lists_are_counted_past_ten_names() {
        let names: Vec<String> = (1..=13).map(|i| format!("c{i}")).collect();
        assert_eq!(
            shown(&names),
            "c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 and 3 more"
        );
        assert_eq!(shown(&names[..10]), join(&names[..10], ", "));
    }
}
