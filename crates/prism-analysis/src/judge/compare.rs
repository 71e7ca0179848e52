//! One metric of the Mann-Whitney judge: the contender's samples against the incumbent's.

use prism_api::strategy::{self, Direction};

use super::{mann_whitney_u, readable, signed};

/// Fewer samples than this on either side leave a metric inconclusive: a median of two values
/// says little, and a verdict on it would be a guess.
pub const MIN_SAMPLES: usize = 3;

/// How the contender may differ from the incumbent: [`strategy::Comparison`] with its defaults
/// applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Which change is bad.
    pub direction: Direction,
    /// The largest change of the median tolerated, relative to the incumbent's (0.1 for 10%);
    /// an absolute difference when the incumbent's median is 0 (see [`Stats::effect`]).
    pub tolerance: f64,
    /// The significance level: a p-value below it is a real difference, not noise.
    pub alpha: f64,
}

impl Default for Comparison {
    /// An increase of more than 10% at the 5% level fails, as `strategy::Comparison` documents.
    fn default() -> Self {
        Comparison {
            direction: Direction::Increase,
            tolerance: 0.1,
            alpha: 0.05,
        }
    }
}

impl From<&strategy::Comparison> for Comparison {
    fn from(spec: &strategy::Comparison) -> Self {
        let default = Comparison::default();
        Comparison {
            direction: spec.direction.unwrap_or(default.direction),
            tolerance: spec.tolerance.unwrap_or(default.tolerance),
            alpha: spec.alpha.unwrap_or(default.alpha),
        }
    }
}

/// The verdict on one metric, with the numbers behind it for a status to show.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// `None` when the samples could not be compared at all (too few, or not finite).
    pub stats: Option<Stats>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Fail { reason: String },
    Inconclusive { reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub contender_median: f64,
    pub incumbent_median: f64,
    /// (contender median − incumbent median) / |incumbent median|; when the incumbent's median
    /// is 0 no relative change exists, and this is the plain difference (an error rate going
    /// from 0 to 0.2 changes by 0.2, not by infinity).
    pub effect: f64,
    /// Of the two-sided Mann-Whitney U test of the contender against the incumbent.
    pub p_value: f64,
}

/// Judges `contender` against `incumbent`. The metric fails only when the difference is
/// significant (p < alpha), in the bad direction, and larger than the tolerance: overlapping
/// noisy samples, a tiny but significant shift, or a change for the better all pass.
///
/// Inconclusive: fewer than [`MIN_SAMPLES`] on either side; a NaN or infinite sample (no median
/// or change could be told); and a difference not significant while even two fully separated
/// sample sets of these sizes could not be, e.g. 3 against 3 at alpha 0.05 (smallest p 0.0809),
/// since a pass would then come from the lack of data, not from the data.
pub fn compare(contender: &[f64], incumbent: &[f64], rule: &Comparison) -> Judgement {
    if let Some(reason) =
        unusable("contender", contender).or_else(|| unusable("incumbent", incumbent))
    {
        return Judgement {
            verdict: Verdict::Inconclusive { reason },
            stats: None,
        };
    }
    let contender_median = median(contender);
    let incumbent_median = median(incumbent);
    let stats = Stats {
        contender_median,
        incumbent_median,
        effect: effect(contender_median, incumbent_median),
        p_value: mann_whitney_u(contender, incumbent).p_value,
    };
    let significant = stats.p_value < rule.alpha;
    let bad = match rule.direction {
        Direction::Increase => stats.effect > 0.0,
        Direction::Decrease => stats.effect < 0.0,
        Direction::Either => true,
    };
    let verdict = if significant && bad && stats.effect.abs() > rule.tolerance {
        Verdict::Fail {
            reason: describe(&stats, rule),
        }
    } else if !significant
        && let Some(reason) = too_few_to_tell(contender.len(), incumbent.len(), rule.alpha)
    {
        Verdict::Inconclusive { reason }
    } else {
        Verdict::Pass
    };
    Judgement {
        verdict,
        stats: Some(stats),
    }
}

/// Why `samples` cannot be judged, if they cannot.
fn unusable(side: &str, samples: &[f64]) -> Option<String> {
    if samples.len() < MIN_SAMPLES {
        return Some(format!(
            "the {side} has {} samples; at least {MIN_SAMPLES} are needed",
            samples.len()
        ));
    }
    samples
        .iter()
        .find(|v| !v.is_finite())
        .map(|v| format!("the {side}'s samples include {v}, not a finite number"))
}

/// Of finite, non-empty samples.
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// See [`Stats::effect`].
fn effect(contender_median: f64, incumbent_median: f64) -> f64 {
    let difference = contender_median - incumbent_median;
    if incumbent_median == 0.0 {
        difference
    } else {
        difference / incumbent_median.abs()
    }
}

/// Why samples of these sizes could not have shown a difference at `alpha`, if they could not:
/// their strongest evidence, two sets that do not overlap and have no ties, is not significant.
fn too_few_to_tell(contender: usize, incumbent: usize, alpha: f64) -> Option<String> {
    let ranks: Vec<f64> = (0..contender + incumbent).map(|i| i as f64).collect();
    let (x, y) = ranks.split_at(contender);
    let smallest_p = mann_whitney_u(x, y).p_value;
    (smallest_p >= alpha).then(|| {
        format!(
            "{contender} contender and {incumbent} incumbent samples cannot show a difference at \
             alpha {} (the smallest p-value they allow is {})",
            readable(alpha),
            readable(smallest_p)
        )
    })
}

/// E.g. "median 0.21 vs incumbent 0.0105 (+1900%, tolerance 10%), p=0.000891".
fn describe(stats: &Stats, rule: &Comparison) -> String {
    let (change, tolerance) = if stats.incumbent_median == 0.0 {
        (signed(stats.effect), readable(rule.tolerance))
    } else {
        (
            format!("{}%", signed(stats.effect * 100.0)),
            format!("{}%", readable(rule.tolerance * 100.0)),
        )
    };
    format!(
        "median {} vs incumbent {} ({change}, tolerance {tolerance}), p={}",
        readable(stats.contender_median),
        readable(stats.incumbent_median),
        readable(stats.p_value)
    )
}
