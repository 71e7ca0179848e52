//! The Mann-Whitney judge across metrics: a weighted score, and what it means for the step.

use prism_api::strategy::ScoreThresholds;

use super::{Judgement, Verdict, readable};

/// One metric's judgement, with what the analysis step says of the metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricOutcome {
    pub name: String,
    /// At least 1 (the API's rule); a metric of weight 0 would count for nothing.
    pub weight: u32,
    /// A failed critical metric fails the analysis whatever the score.
    pub critical: bool,
    pub judgement: Judgement,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// 0 to 100: the weight of the passing metrics over the weight of the conclusive ones.
    /// `None` when no metric is conclusive.
    pub value: Option<f64>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    /// At least the marginal score but below the pass score.
    Marginal {
        reason: String,
    },
    Fail {
        reason: String,
    },
    Inconclusive {
        reason: String,
    },
}

/// Scores `metrics`. An inconclusive metric leaves the score's denominator: missing data is no
/// evidence either way, and counting it as failed would roll back for a scrape gap. What a
/// score cannot cover decides first, in this order:
/// 1. a failed critical metric fails the analysis (even when another critical one is
///    inconclusive: what is known to be bad outweighs what is unknown);
/// 2. an inconclusive critical metric makes the analysis inconclusive, since a pass would vouch
///    for a metric no one measured;
/// 3. no conclusive metric at all makes it inconclusive.
///
/// Then score ≥ `thresholds.pass` passes, ≥ `thresholds.marginal` is marginal, and below fails.
pub fn score(metrics: &[MetricOutcome], thresholds: ScoreThresholds) -> Score {
    let weight = |counts: fn(&Verdict) -> bool| -> u64 {
        metrics
            .iter()
            .filter(|m| counts(&m.judgement.verdict))
            .map(|m| u64::from(m.weight))
            .sum()
    };
    let passing = weight(|v| matches!(v, Verdict::Pass));
    let conclusive = weight(|v| !matches!(v, Verdict::Inconclusive { .. }));
    let value = (conclusive > 0).then(|| 100.0 * passing as f64 / conclusive as f64);
    Score {
        value,
        outcome: outcome(metrics, value, &thresholds),
    }
}

fn outcome(metrics: &[MetricOutcome], value: Option<f64>, thresholds: &ScoreThresholds) -> Outcome {
    if let Some(reason) = critical(metrics, "failed", |v| match v {
        Verdict::Fail { reason } => Some(reason),
        _ => None,
    }) {
        return Outcome::Fail { reason };
    }
    if let Some(reason) = critical(metrics, "is inconclusive", |v| match v {
        Verdict::Inconclusive { reason } => Some(reason),
        _ => None,
    }) {
        return Outcome::Inconclusive { reason };
    }
    let inconclusive = names(metrics, |v| matches!(v, Verdict::Inconclusive { .. }));
    let Some(value) = value else {
        let reason = if inconclusive.is_empty() {
            "no metric to score".to_owned()
        } else {
            format!("no metric is conclusive: {inconclusive}")
        };
        return Outcome::Inconclusive { reason };
    };
    if value >= thresholds.pass {
        return Outcome::Pass;
    }
    let marginal = value >= thresholds.marginal;
    let (name, bound) = if marginal {
        ("pass", thresholds.pass)
    } else {
        ("marginal", thresholds.marginal)
    };
    let mut reason = format!(
        "score {} is below the {name} score {}; failed: {}",
        readable(value),
        readable(bound),
        names(metrics, |v| matches!(v, Verdict::Fail { .. }))
    );
    if !inconclusive.is_empty() {
        reason += &format!("; not scored (inconclusive): {inconclusive}");
    }
    if marginal {
        Outcome::Marginal { reason }
    } else {
        Outcome::Fail { reason }
    }
}

/// "critical metric NAME {state}: REASON" for each critical metric whose verdict has a reason
/// `reason_of` picks, or `None` when there is none.
fn critical(
    metrics: &[MetricOutcome],
    state: &str,
    reason_of: fn(&Verdict) -> Option<&String>,
) -> Option<String> {
    let reasons: Vec<String> = metrics
        .iter()
        .filter(|m| m.critical)
        .filter_map(|m| {
            reason_of(&m.judgement.verdict)
                .map(|reason| format!("critical metric {} {state}: {reason}", m.name))
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The names of the metrics whose verdict is `which`, e.g. "errors, latency".
fn names(metrics: &[MetricOutcome], which: fn(&Verdict) -> bool) -> String {
    metrics
        .iter()
        .filter(|m| which(&m.judgement.verdict))
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
