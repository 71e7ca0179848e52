//! The judges against values computed by SciPy: `scripts/judge-reference.py` prints every
//! number pasted below (the sample sets here are its `SAMPLES`, under the same names).

use prism_analysis::judge::{
    Comparison, Direction, Judgement, MetricOutcome, Outcome, ScoreThresholds, Stats, Verdict,
    compare, mann_whitney_u, score, within,
};
use prism_api::strategy::{self, Threshold};
use proptest::prelude::*;

fn assert_close(actual: f64, expected: f64) {
    let scale = expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        (actual - expected).abs() <= 1e-9 * scale,
        "{actual} is not {expected}"
    );
}

/// U of x and the p-value, both checked against SciPy's.
fn assert_test(x: &[f64], y: &[f64], u1: f64, p_value: f64) {
    let test = mann_whitney_u(x, y);
    assert_close(test.u1, u1);
    assert_close(test.p_value, p_value);
}

// Mann-Whitney U

#[test]
fn mann_whitney_matches_scipy_without_ties() {
    assert_test(
        &[19.0, 22.0, 16.0, 29.0, 24.0],
        &[20.0, 11.0, 17.0, 12.0],
        17.0,
        0.11134688653314041,
    );
}

#[test]
fn mann_whitney_matches_scipy_with_ties() {
    assert_test(
        &[1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0],
        &[2.0, 3.0, 3.0, 5.0, 6.0, 6.0, 7.0],
        15.5,
        0.15959894244264883,
    );
}

#[test]
fn a_constant_against_another_constant_differs() {
    assert_test(&[2.0; 4], &[5.0; 3], 0.0, 0.024744672046398936);
}

#[test]
fn a_constant_against_the_same_constant_does_not_differ() {
    assert_test(&[3.0; 5], &[3.0; 3], 7.5, 1.0);
}

#[test]
fn identical_samples_do_not_differ() {
    let samples = [0.1, 0.4, 0.2, 0.9, 0.3];
    assert_test(&samples, &samples, 12.5, 1.0);
}

#[test]
fn very_different_samples_keep_a_precise_tail() {
    let high: Vec<f64> = (101..121).map(f64::from).collect();
    let low: Vec<f64> = (1..21).map(f64::from).collect();
    assert_test(&high, &low, 400.0, 6.795615128173358e-08);
}

#[test]
fn unequal_sizes() {
    assert_test(
        &[5.1, 4.8, 6.0],
        &[4.0, 4.2, 3.9, 5.0, 4.4, 4.1, 4.6, 3.8, 4.3, 4.9, 4.5, 4.7],
        34.0,
        0.025271161776870603,
    );
}

proptest! {
    #[test]
    fn p_value_is_a_probability_and_the_test_is_symmetric(
        // Small integers tie often; the floats seldom do.
        x in prop_oneof![
            prop::collection::vec((-4i32..4).prop_map(f64::from), 0..15),
            prop::collection::vec(-1e6..1e6f64, 0..15),
        ],
        y in prop::collection::vec((-4i32..4).prop_map(f64::from), 0..15),
    ) {
        let forward = mann_whitney_u(&x, &y);
        let backward = mann_whitney_u(&y, &x);
        prop_assert!((0.0..=1.0).contains(&forward.p_value));
        prop_assert_eq!(backward.u1, (x.len() * y.len()) as f64 - forward.u1);
        prop_assert_eq!(backward.p_value, forward.p_value);
    }
}

// Contender against incumbent

const ERRORS_UP: [f64; 8] = [0.21, 0.19, 0.22, 0.20, 0.23, 0.21, 0.18, 0.24];
const ERRORS_BEFORE: [f64; 8] = [0.010, 0.012, 0.009, 0.011, 0.010, 0.013, 0.011, 0.010];
const P_ERRORS: f64 = 0.000891015907586499;

fn rule(direction: Direction, tolerance: f64) -> Comparison {
    Comparison {
        direction,
        tolerance,
        alpha: 0.05,
    }
}

fn stats(judgement: &Judgement) -> Stats {
    judgement.stats.expect("the samples were compared")
}

#[test]
fn a_significant_large_change_in_the_bad_direction_fails() {
    let judgement = compare(&ERRORS_UP, &ERRORS_BEFORE, &rule(Direction::Increase, 0.1));
    assert_eq!(
        judgement.verdict,
        Verdict::Fail {
            reason: "median 0.21 vs incumbent 0.0105 (+1900%, tolerance 10%), p=0.000891".into()
        }
    );
    let stats = stats(&judgement);
    assert_close(stats.p_value, P_ERRORS);
    assert_close(stats.contender_median, 0.21);
    assert_close(stats.incumbent_median, 0.010499999999999999);
    assert_close(stats.effect, 19.0);
}

#[test]
fn the_same_change_in_the_good_direction_passes() {
    let judgement = compare(&ERRORS_UP, &ERRORS_BEFORE, &rule(Direction::Decrease, 0.1));
    assert_eq!(judgement.verdict, Verdict::Pass);
}

#[test]
fn a_decrease_fails_when_decrease_is_bad() {
    // throughput_down: the contender serves a twentieth of the incumbent's rate.
    let judgement = compare(&ERRORS_BEFORE, &ERRORS_UP, &rule(Direction::Decrease, 0.1));
    assert_eq!(
        judgement.verdict,
        Verdict::Fail {
            reason: "median 0.0105 vs incumbent 0.21 (-95%, tolerance 10%), p=0.000891".into()
        }
    );
    assert_close(stats(&judgement).p_value, P_ERRORS);
    assert_eq!(
        compare(&ERRORS_BEFORE, &ERRORS_UP, &rule(Direction::Increase, 0.1)).verdict,
        Verdict::Pass
    );
}

#[test]
fn either_direction_fails_both_ways() {
    let either = rule(Direction::Either, 0.1);
    assert!(matches!(
        compare(&ERRORS_UP, &ERRORS_BEFORE, &either).verdict,
        Verdict::Fail { .. }
    ));
    assert!(matches!(
        compare(&ERRORS_BEFORE, &ERRORS_UP, &either).verdict,
        Verdict::Fail { .. }
    ));
}

#[test]
fn a_significant_change_within_the_tolerance_passes() {
    let contender = [101.0, 101.2, 101.1, 101.3, 101.0, 101.2, 101.1, 101.4];
    let incumbent = [100.0, 100.2, 100.1, 100.3, 100.0, 100.2, 100.1, 100.4];
    let judgement = compare(&contender, &incumbent, &rule(Direction::Increase, 0.1));
    assert_eq!(judgement.verdict, Verdict::Pass);
    let stats = stats(&judgement);
    assert_close(stats.p_value, 0.000891015907586499);
    assert_close(stats.effect, (101.15 - 100.15) / 100.15);
    assert!(matches!(
        compare(&contender, &incumbent, &rule(Direction::Increase, 0.005)).verdict,
        Verdict::Fail { .. }
    ));
}

#[test]
fn a_large_change_of_overlapping_noisy_samples_passes() {
    let judgement = compare(
        &[2.0, 11.0, 4.0, 12.0, 1.0],
        &[1.0, 10.0, 2.0, 9.0, 3.0],
        &rule(Direction::Increase, 0.1),
    );
    assert_eq!(judgement.verdict, Verdict::Pass);
    let stats = stats(&judgement);
    assert_close(stats.p_value, 0.6742358755985722);
    assert_close(stats.effect, 1.0 / 3.0);
}

#[test]
fn from_a_zero_median_the_change_is_absolute() {
    let contender = [0.2, 0.3, 0.1, 0.25, 0.2];
    let incumbent = [0.0; 5];
    let judgement = compare(&contender, &incumbent, &rule(Direction::Increase, 0.1));
    assert_eq!(
        judgement.verdict,
        Verdict::Fail {
            reason: "median 0.2 vs incumbent 0 (+0.2, tolerance 0.1), p=0.00729".into()
        }
    );
    let stats = stats(&judgement);
    assert_close(stats.effect, 0.2);
    assert_close(stats.p_value, 0.007290358091535638);
    assert_eq!(
        compare(&contender, &incumbent, &rule(Direction::Increase, 0.25)).verdict,
        Verdict::Pass
    );
}

#[test]
fn two_identical_constant_series_pass() {
    let judgement = compare(&[3.0; 5], &[3.0; 3], &rule(Direction::Either, 0.0));
    assert_eq!(judgement.verdict, Verdict::Pass);
    assert_eq!(stats(&judgement).p_value, 1.0);
    assert_eq!(stats(&judgement).effect, 0.0);
}

#[test]
fn too_few_samples_are_inconclusive() {
    let judgement = compare(&[0.2, 0.3], &ERRORS_BEFORE, &Comparison::default());
    assert_eq!(
        judgement,
        Judgement {
            verdict: Verdict::Inconclusive {
                reason: "the contender has 2 samples; at least 3 are needed".into()
            },
            stats: None,
        }
    );
}

#[test]
fn samples_that_could_never_be_significant_are_inconclusive() {
    // three_each: fully separated, yet p = 0.0809 is the least that 3 against 3 can give.
    let (contender, incumbent) = ([10.0, 11.0, 12.0], [1.0, 2.0, 3.0]);
    let judgement = compare(&contender, &incumbent, &Comparison::default());
    assert_eq!(
        judgement.verdict,
        Verdict::Inconclusive {
            reason: "3 contender and 3 incumbent samples cannot show a difference at alpha 0.05 \
                     (the smallest p-value they allow is 0.0809)"
                .into()
        }
    );
    assert_close(stats(&judgement).p_value, 0.08085559837005224);
    let lenient = Comparison {
        alpha: 0.1,
        ..Comparison::default()
    };
    assert!(matches!(
        compare(&contender, &incumbent, &lenient).verdict,
        Verdict::Fail { .. }
    ));
}

#[test]
fn samples_that_are_not_finite_are_inconclusive() {
    let judgement = compare(&ERRORS_UP, &[0.01, f64::NAN, 0.02], &Comparison::default());
    assert_eq!(
        judgement.verdict,
        Verdict::Inconclusive {
            reason: "the incumbent's samples include NaN, not a finite number".into()
        }
    );
    assert!(matches!(
        compare(
            &[1.0, f64::INFINITY, 2.0],
            &ERRORS_BEFORE,
            &Comparison::default()
        )
        .verdict,
        Verdict::Inconclusive { .. }
    ));
}

#[test]
fn a_comparison_takes_the_strategy_defaults() {
    assert_eq!(
        Comparison::from(&strategy::Comparison::default()),
        Comparison {
            direction: Direction::Increase,
            tolerance: 0.1,
            alpha: 0.05,
        }
    );
    let spec = strategy::Comparison {
        direction: Some(Direction::Decrease),
        tolerance: Some(0.2),
        alpha: None,
    };
    assert_eq!(
        Comparison::from(&spec),
        Comparison {
            direction: Direction::Decrease,
            tolerance: 0.2,
            alpha: 0.05,
        }
    );
}

// Threshold

fn range(min: Option<f64>, max: Option<f64>) -> Threshold {
    Threshold { min, max }
}

#[test]
fn bounds_are_inclusive() {
    let threshold = range(Some(0.5), Some(0.9));
    assert_eq!(within(0.5, &threshold), Ok(()));
    assert_eq!(within(0.7, &threshold), Ok(()));
    assert_eq!(within(0.9, &threshold), Ok(()));
}

#[test]
fn a_value_outside_names_the_bound() {
    assert_eq!(
        within(0.12, &range(None, Some(0.05))),
        Err("0.12 is above the maximum 0.05".into())
    );
    assert_eq!(
        within(0.01, &range(Some(0.5), None)),
        Err("0.01 is below the minimum 0.5".into())
    );
    assert_eq!(
        within(f64::INFINITY, &range(None, Some(1.0))),
        Err("inf is above the maximum 1".into())
    );
}

#[test]
fn one_bound_leaves_the_other_side_open() {
    assert_eq!(within(-1e9, &range(None, Some(0.05))), Ok(()));
    assert_eq!(within(1e9, &range(Some(0.5), None)), Ok(()));
}

#[test]
fn nan_is_never_within() {
    assert_eq!(
        within(f64::NAN, &range(None, None)),
        Err("the value is NaN (not a number), which is never within a threshold".into())
    );
}

// Score

fn judged(verdict: Verdict) -> Judgement {
    Judgement {
        verdict,
        stats: None,
    }
}

fn pass(name: &str, weight: u32) -> MetricOutcome {
    MetricOutcome {
        name: name.into(),
        weight,
        critical: false,
        judgement: judged(Verdict::Pass),
    }
}

fn fail(name: &str, weight: u32) -> MetricOutcome {
    MetricOutcome {
        judgement: judged(Verdict::Fail {
            reason: "worse".into(),
        }),
        ..pass(name, weight)
    }
}

fn inconclusive(name: &str, weight: u32) -> MetricOutcome {
    MetricOutcome {
        judgement: judged(Verdict::Inconclusive {
            reason: "no data".into(),
        }),
        ..pass(name, weight)
    }
}

fn critical(metric: MetricOutcome) -> MetricOutcome {
    MetricOutcome {
        critical: true,
        ..metric
    }
}

#[test]
fn the_score_is_the_passing_share_of_the_weight() {
    let result = score(
        &[pass("latency", 3), fail("errors", 1), pass("saturation", 1)],
        ScoreThresholds::default(),
    );
    assert_eq!(result.value, Some(80.0));
    assert_eq!(result.outcome, Outcome::Pass);
}

#[test]
fn between_marginal_and_pass_is_marginal() {
    let result = score(
        &[pass("errors", 2), fail("latency", 1)],
        ScoreThresholds::default(),
    );
    assert_close(result.value.unwrap(), 200.0 / 3.0);
    assert_eq!(
        result.outcome,
        Outcome::Marginal {
            reason: "score 66.7 is below the pass score 80; failed: latency".into()
        }
    );
}

#[test]
fn below_marginal_fails_and_lists_the_failed_metrics() {
    let result = score(
        &[fail("errors", 1), pass("saturation", 1), fail("latency", 1)],
        ScoreThresholds::default(),
    );
    assert_eq!(
        result.outcome,
        Outcome::Fail {
            reason: "score 33.3 is below the marginal score 50; failed: errors, latency".into()
        }
    );
}

#[test]
fn the_thresholds_are_the_strategys() {
    let strict = ScoreThresholds {
        pass: 90.0,
        marginal: 85.0,
    };
    let result = score(&[pass("errors", 4), fail("latency", 1)], strict);
    assert!(matches!(result.outcome, Outcome::Fail { .. }));
}

#[test]
fn a_failed_critical_metric_fails_whatever_the_score() {
    let result = score(
        &[pass("latency", 9), critical(fail("errors", 1))],
        ScoreThresholds::default(),
    );
    assert_eq!(result.value, Some(90.0));
    assert_eq!(
        result.outcome,
        Outcome::Fail {
            reason: "critical metric errors failed: worse".into()
        }
    );
}

#[test]
fn inconclusive_metrics_leave_the_denominator() {
    let result = score(
        &[
            pass("latency", 4),
            inconclusive("errors", 4),
            fail("saturation", 1),
        ],
        ScoreThresholds::default(),
    );
    assert_eq!(result.value, Some(80.0));
    assert_eq!(result.outcome, Outcome::Pass);
    let result = score(
        &[
            pass("latency", 1),
            inconclusive("errors", 4),
            fail("saturation", 1),
        ],
        ScoreThresholds::default(),
    );
    assert_eq!(
        result.outcome,
        Outcome::Marginal {
            reason: "score 50 is below the pass score 80; failed: saturation; \
                     not scored (inconclusive): errors"
                .into()
        }
    );
}

#[test]
fn an_inconclusive_critical_metric_makes_the_outcome_inconclusive() {
    let result = score(
        &[pass("latency", 1), critical(inconclusive("errors", 1))],
        ScoreThresholds::default(),
    );
    assert_eq!(result.value, Some(100.0));
    assert_eq!(
        result.outcome,
        Outcome::Inconclusive {
            reason: "critical metric errors is inconclusive: no data".into()
        }
    );
}

#[test]
fn a_failed_critical_metric_outweighs_an_inconclusive_one() {
    let result = score(
        &[
            critical(inconclusive("latency", 1)),
            critical(fail("errors", 1)),
        ],
        ScoreThresholds::default(),
    );
    assert!(matches!(result.outcome, Outcome::Fail { .. }));
}

#[test]
fn all_inconclusive_is_inconclusive() {
    let result = score(
        &[inconclusive("latency", 1), inconclusive("errors", 2)],
        ScoreThresholds::default(),
    );
    assert_eq!(
        result,
        prism_analysis::judge::Score {
            value: None,
            outcome: Outcome::Inconclusive {
                reason: "no metric is conclusive: latency, errors".into()
            },
        }
    );
}

#[test]
fn the_default_thresholds_are_80_and_50() {
    assert_eq!(
        ScoreThresholds::default(),
        ScoreThresholds {
            pass: 80.0,
            marginal: 50.0
        }
    );
}
