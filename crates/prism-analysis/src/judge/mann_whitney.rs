//! The Mann-Whitney U test: whether one sample set tends to lie above or below another. It uses
//! ranks only, so it needs no assumption about the distribution (latencies and error rates are
//! rarely normal) and one outlier cannot carry it.

use std::f64::consts::FRAC_1_SQRT_2;

/// A two-sided Mann-Whitney U test of `x` against `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of `x`: the pairs (xᵢ, yⱼ) with xᵢ > yⱼ, a tie counting one half. U of `y` is
    /// n₁·n₂ − u1.
    pub u1: f64,
    /// The probability of a difference at least this large between two samples of one
    /// distribution.
    pub p_value: f64,
}

/// The U statistic of `x` and the two-sided p-value from the normal approximation with the tie
/// and continuity corrections: equal to SciPy's `mannwhitneyu(x, y, alternative='two-sided',
/// method='asymptotic', use_continuity=True)` (`statistic` is `u1`).
///
/// Where SciPy has no answer, this one says "no evidence of a difference" rather than NaN:
/// - an empty side gives u1 = 0 and p = 1 (SciPy: NaN), so the p-value is always a probability;
/// - all values tied (one constant series against the same constant) gives p = 1, as SciPy
///   does: the variance of U is then 0 and nothing tells the two apart.
///
/// A NaN sample has no rank, so it gives NaN for both, as SciPy does.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> MannWhitney {
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return MannWhitney {
            u1: f64::NAN,
            p_value: f64::NAN,
        };
    }
    if x.is_empty() || y.is_empty() {
        return MannWhitney {
            u1: 0.0,
            p_value: 1.0,
        };
    }
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let n = n1 + n2;
    let (rank_sum, ties) = rank_sum_and_ties(x, y);
    let u1 = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return MannWhitney { u1, p_value: 1.0 };
    }
    let u = u1.max(n1 * n2 - u1);
    let z = (u - n1 * n2 / 2.0 - 0.5) / variance.sqrt();
    // 2·P(Z > z) = erfc(z/√2), which keeps its precision far into the tail where 1 − Φ(z) would
    // round to 0. At U's mean the continuity correction pushes it past 1, hence the clamp.
    let p_value = libm::erfc(z * FRAC_1_SQRT_2).min(1.0);
    MannWhitney { u1, p_value }
}

/// The sum of the ranks of `x` in `x` and `y` pooled (tied values share their mean rank) and
/// the tie term Σ(t³ − t) over the groups of t tied values.
fn rank_sum_and_ties(x: &[f64], y: &[f64]) -> (f64, f64) {
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut ties, mut start) = (0.0, 0.0, 0);
    // Grouped by `==`, not by the sort's order, so that -0 and 0 tie.
    for group in pooled.chunk_by(|a, b| a.0 == b.0) {
        let t = group.len() as f64;
        let mean_rank = start as f64 + (t + 1.0) / 2.0;
        rank_sum += mean_rank * group.iter().filter(|(_, in_x)| *in_x).count() as f64;
        ties += t * t * t - t;
        start += group.len();
    }
    (rank_sum, ties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tie_between_the_samples_counts_one_half() {
        // x = 2 beats y = 1 and ties y = 2.
        assert_eq!(mann_whitney_u(&[2.0], &[1.0, 2.0]).u1, 1.5);
    }

    #[test]
    fn minus_zero_ties_zero() {
        assert_eq!(mann_whitney_u(&[-0.0, -0.0], &[0.0, 0.0]).p_value, 1.0);
    }

    #[test]
    fn an_empty_side_is_no_evidence() {
        assert_eq!(
            mann_whitney_u(&[], &[1.0, 2.0]),
            MannWhitney {
                u1: 0.0,
                p_value: 1.0
            }
        );
        assert_eq!(mann_whitney_u(&[1.0], &[]).p_value, 1.0);
    }

    #[test]
    fn nan_has_no_rank() {
        let test = mann_whitney_u(&[f64::NAN, 1.0, 2.0], &[2.0, 3.0, 4.0]);
        assert!(test.u1.is_nan() && test.p_value.is_nan());
    }
}
