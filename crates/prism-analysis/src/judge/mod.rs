//! Pure verdicts on measured values: no I/O, no clock.
//!
//! - [`within`]: one value against a threshold range (the threshold judge).
//! - [`mann_whitney_u`]: the rank test that tells noise from a shift between two sample sets.
//! - [`compare`]: a contender's samples against its incumbent's for one metric.
//! - [`score`]: the weighted share of passing metrics, and the analysis' outcome.

mod compare;
mod mann_whitney;
mod score;
mod threshold;

pub use compare::{Comparison, Judgement, MIN_SAMPLES, Stats, Verdict, compare};
pub use mann_whitney::{MannWhitney, mann_whitney_u};
pub use prism_api::strategy::{Direction, ScoreThresholds};
pub use score::{MetricOutcome, Outcome, Score, score};
pub use threshold::within;

/// A number for a person reading a status: three significant digits are enough to tell a
/// regression from noise, and the full `f64` (0.010499999999999999) only hides the point.
fn readable(x: f64) -> String {
    if x == 0.0 {
        // Not "-0": a status has no use for the sign of nothing.
        return "0".to_owned();
    }
    if !x.is_finite() {
        return x.to_string();
    }
    // Formatting rounds correctly at every magnitude, where scaling by powers of ten would not.
    let rounded: f64 = format!("{x:.2e}")
        .parse()
        .expect("a formatted f64 parses back");
    if (1e-4..1e6).contains(&rounded.abs()) {
        rounded.to_string()
    } else {
        format!("{rounded:e}")
    }
}

/// [`readable`] with the sign always shown, for changes.
fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", readable(x))
    } else {
        readable(x)
    }
}

#[cfg(test)]
mod tests {
    use super::{readable, signed};

    #[test]
    fn readable_keeps_three_significant_digits() {
        assert_eq!(readable(0.010499999999999999), "0.0105");
        assert_eq!(readable(0.21), "0.21");
        assert_eq!(readable(2000.0), "2000");
        assert_eq!(readable(0.000891015907586499), "0.000891");
        assert_eq!(readable(6.795615128173358e-8), "6.8e-8");
        assert_eq!(readable(123456789.0), "1.23e8");
        assert_eq!(readable(-0.0), "0");
        assert_eq!(readable(f64::NAN), "NaN");
    }

    #[test]
    fn signed_shows_the_direction() {
        assert_eq!(signed(19.0), "+19");
        assert_eq!(signed(-0.5), "-0.5");
        assert_eq!(signed(0.0), "0");
    }
}
