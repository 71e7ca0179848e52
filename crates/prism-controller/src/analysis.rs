//! The analysis stage of a reconcile: the current step's metric checks, measured against
//! Prometheus once the step is achieved, every `interval`, in each cluster that runs the step.
//! The counts of passed, failed and inconclusive measurements live in the Release's status, so
//! the verdict the engine gets survives a restart of the controller.
//!
//! A measurement fails when a metric fails in any cluster, and is inconclusive when one has no
//! data or its source does not answer; then it never passes. Inconclusive counts in a row: a
//! conclusive measurement starts the count again, so a rollout paused because Prometheus went
//! away goes on when it returns.
//!
//! A measurement runs in the background ([`crate::calls`]); its end reconciles the application
//! again, and that reconcile counts it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use prism_analysis::judge::{self, Comparison, MetricOutcome, Outcome};
use prism_analysis::prometheus::QueryError;
use prism_analysis::query::{Subject, render};
use prism_api::release::{
    AnalysisResult, AnalysisStatus, MAX_ANALYSIS_RESULTS, ReleasePhase, Verdict as Measured,
};
use prism_api::strategy::{AnalysisStep, Judge, Metric, MetricCheck};
use prism_api::{ClusterMetricTemplate, MetricTemplate, Release};
use prism_engine::Verdict;

use crate::Context;
use crate::calls::purpose;
use crate::status::{judged_step, not_judged};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Samples per interval the Mann-Whitney judge asks Prometheus for, per version.
const SAMPLES_PER_INTERVAL: u32 = 20;

/// The current step's analysis: its verdict, its status, and when to measure next.
pub struct Analysis {
    pub verdict: Verdict,
    pub status: Option<AnalysisStatus>,
    pub next: Option<Duration>,
}

/// Measures `release`'s current step when a measurement is due, and counts the measurement once
/// it has ended. `incumbent` is the Release the Mann-Whitney judge compares with.
pub fn analyse(
    release: &Release,
    incumbent: Option<&Release>,
    ctx: &Arc<Context>,
    now: Timestamp,
) -> Analysis {
    let previous = release.status.as_ref().and_then(|s| s.analysis.clone());
    let judged = judged_step(release);
    let step = judged.index;
    // Counts kept for another step (one an edit of the strategy put at this index) start again;
    // the results stay, as the history of every step.
    let previous = previous.map(|status| {
        if judged.records_hold {
            status
        } else {
            AnalysisStatus {
                step,
                results: status.results,
                ..AnalysisStatus::default()
            }
        }
    });
    let spec = judged.step.and_then(|step| step.analysis.as_ref());
    let (Some(spec), Some(achieved_at)) = (spec, judged.achieved_at) else {
        return Analysis {
            verdict: not_judged(spec),
            status: previous,
            next: None,
        };
    };
    let mut status = match previous {
        Some(status) if status.step == step => status,
        previous => AnalysisStatus {
            step,
            results: previous.map(|p| p.results).unwrap_or_default(),
            ..AnalysisStatus::default()
        },
    };
    let interval = spec
        .interval
        .map_or(DEFAULT_INTERVAL, |i| i.0.unsigned_abs());
    let counted = verdict(spec, &status);
    if matches!(counted, Verdict::Passed | Verdict::Failed { .. }) {
        return Analysis {
            verdict: counted,
            status: Some(status),
            next: None,
        };
    }
    // The first measurement covers an interval of the step's own traffic.
    let since = status
        .last_measured_at
        .as_ref()
        .map_or(achieved_at, |t| t.0);
    let due = since.saturating_add(interval).unwrap_or(Timestamp::MAX);
    if now < due {
        return Analysis {
            verdict: counted,
            status: Some(status),
            next: Some(now.duration_until(due).unsigned_abs()),
        };
    }

    let clusters: Vec<String> = release
        .status
        .iter()
        .flat_map(|s| &s.clusters)
        .filter(|cluster| cluster.achieved_step == Some(step))
        .map(|cluster| cluster.name.clone())
        .collect();
    // The step's name tells apart two steps an edit of the strategy put at one index.
    let name = judged.step.map_or("", |step| step.name.as_str());
    let attempt = format!("step {step} ({name}), due {due}");
    let Some(results) = ctx
        .measurements
        .answer(purpose(release, "analysis"), attempt, || {
            let measurement = Measurement {
                release: release.clone(),
                incumbent: incumbent.cloned(),
                spec: spec.clone(),
                step,
                interval,
                now,
                ctx: ctx.clone(),
            };
            measurement.take(clusters)
        })
    else {
        // Its end reconciles again; the interval is only a safety net.
        return Analysis {
            verdict: counted,
            status: Some(status),
            next: Some(interval),
        };
    };
    let worst = results
        .iter()
        .map(|result| result.verdict)
        .max_by_key(|verdict| match verdict {
            Measured::Pass => 0,
            Measured::Inconclusive => 1,
            Measured::Fail => 2,
        })
        .unwrap_or(Measured::Inconclusive);
    ctx.metrics.measured(worst);
    match worst {
        Measured::Pass => {
            status.passed += 1;
            status.inconclusive = 0;
        }
        Measured::Fail => {
            status.failed += 1;
            status.inconclusive = 0;
        }
        Measured::Inconclusive => status.inconclusive += 1,
    }
    if results.is_empty() {
        status.results.push(AnalysisResult {
            step,
            metric: "*".to_owned(),
            cluster: "*".to_owned(),
            value: None,
            incumbent: None,
            verdict: Measured::Inconclusive,
            message: "no cluster has achieved the step: nothing to measure".to_owned(),
            time: Time(now),
        });
    }
    status.results.extend(results);
    let excess = status.results.len().saturating_sub(MAX_ANALYSIS_RESULTS);
    status.results.drain(..excess);
    status.last_measured_at = Some(Time(now));
    Analysis {
        verdict: verdict(spec, &status),
        status: Some(status),
        next: Some(interval),
    }
}

/// The verdict the counts give: too many failures roll back, enough passes advance, too many
/// inconclusive measurements in a row pause.
fn verdict(spec: &AnalysisStep, status: &AnalysisStatus) -> Verdict {
    let latest = |verdict: Measured| {
        status
            .results
            .iter()
            .rev()
            .filter(|r| r.step == status.step)
            .find(|r| r.verdict == verdict)
            .map(AnalysisResult::describe)
            .unwrap_or_default()
    };
    if status.failed > spec.failure_limit.unwrap_or(0) {
        Verdict::Failed {
            reason: latest(Measured::Fail),
        }
    } else if status.passed >= spec.count.unwrap_or(1) {
        Verdict::Passed
    } else if status.inconclusive > spec.inconclusive_limit.unwrap_or(0) {
        Verdict::Inconclusive {
            reason: format!(
                "{} inconclusive measurement(s) in a row; the latest: {}",
                status.inconclusive,
                latest(Measured::Inconclusive)
            ),
        }
    } else {
        Verdict::Pending
    }
}

/// One measurement of one step: every metric in every cluster that runs the step. It owns what
/// it reads, for it runs in the background.
struct Measurement {
    release: Release,
    incumbent: Option<Release>,
    spec: AnalysisStep,
    step: u32,
    interval: Duration,
    now: Timestamp,
    ctx: Arc<Context>,
}

impl Measurement {
    async fn take(self, clusters: Vec<String>) -> Vec<AnalysisResult> {
        let mut results = Vec::new();
        for cluster in &clusters {
            match self.spec.judge.unwrap_or_default() {
                Judge::Threshold => {
                    for check in &self.spec.metrics {
                        results.push(self.threshold(check, cluster).await);
                    }
                }
                Judge::MannWhitney => results.extend(self.compare(cluster).await),
            }
        }
        results
    }

    fn result(&self, check: &MetricCheck, cluster: &str) -> AnalysisResult {
        AnalysisResult {
            step: self.step,
            metric: check.name.clone(),
            cluster: cluster.to_owned(),
            value: None,
            incumbent: None,
            verdict: Measured::Inconclusive,
            message: String::new(),
            time: Time(self.now),
        }
    }

    fn subject<'s>(&'s self, release: &'s Release, cluster: &'s str) -> Subject<'s> {
        Subject {
            app: &release.spec.application,
            namespace: release.metadata.namespace.as_deref().unwrap_or_default(),
            version: release.metadata.name.as_deref().unwrap_or_default(),
            cluster,
        }
    }

    /// The threshold judge: the query's value now, within the threshold or not.
    async fn threshold(&self, check: &MetricCheck, cluster: &str) -> AnalysisResult {
        let mut result = self.result(check, cluster);
        let query = match self.resolve(check) {
            Ok(query) => query,
            Err(message) => {
                result.message = message;
                return result;
            }
        };
        let Some(threshold) = &query.metric.threshold else {
            result.message =
                "no threshold: give the metric (or its template) threshold.min or threshold.max"
                    .to_owned();
            return result;
        };
        let promql = render(&query.promql, self.subject(&self.release, cluster));
        match self.ctx.prometheus.instant(&query.address, &promql).await {
            Err(error) => result.message = inconclusive(&error),
            Ok(series) => match one_value(&series) {
                Err(message) => result.message = message,
                Ok(value) => {
                    result.value = Some(value);
                    match judge::within(value, threshold) {
                        Ok(()) => {
                            result.verdict = Measured::Pass;
                            result.message = format!("{value} is within the threshold");
                        }
                        Err(message) => {
                            result.verdict = Measured::Fail;
                            result.message = message;
                        }
                    }
                }
            },
        }
        result
    }

    /// The Mann-Whitney judge in one cluster: each metric's samples of the last interval,
    /// contender against incumbent, then the weighted score across the metrics decides.
    async fn compare(&self, cluster: &str) -> Vec<AnalysisResult> {
        let mut results = Vec::new();
        let mut outcomes = Vec::new();
        for check in &self.spec.metrics {
            let mut result = self.result(check, cluster);
            let judgement = match self.samples(check, cluster).await {
                Err(message) => judge::Judgement {
                    verdict: judge::Verdict::Inconclusive { reason: message },
                    stats: None,
                },
                Ok((query, contender, incumbent)) => {
                    let rule = query
                        .metric
                        .comparison
                        .as_ref()
                        .map(Comparison::from)
                        .unwrap_or_default();
                    judge::compare(&contender, &incumbent, &rule)
                }
            };
            if let Some(stats) = judgement.stats {
                result.value = Some(stats.contender_median);
                result.incumbent = Some(stats.incumbent_median);
            }
            (result.verdict, result.message) = match &judgement.verdict {
                judge::Verdict::Pass => (Measured::Pass, "no significant change".to_owned()),
                judge::Verdict::Fail { reason } => (Measured::Fail, reason.clone()),
                judge::Verdict::Inconclusive { reason } => (Measured::Inconclusive, reason.clone()),
            };
            outcomes.push(MetricOutcome {
                name: check.name.clone(),
                weight: check.weight.unwrap_or(1),
                critical: check.critical,
                judgement,
            });
            results.push(result);
        }
        // The score is the measurement's verdict in this cluster: a metric that failed alone,
        // outweighed by the others, does not fail it.
        let score = judge::score(&outcomes, self.spec.score.clone().unwrap_or_default());
        let (verdict, message) = match score.outcome {
            Outcome::Pass => (Measured::Pass, "the score passes".to_owned()),
            Outcome::Marginal { reason } => (Measured::Inconclusive, reason),
            Outcome::Fail { reason } => (Measured::Fail, reason),
            Outcome::Inconclusive { reason } => (Measured::Inconclusive, reason),
        };
        let value = score
            .value
            .map_or_else(|| "none".to_owned(), |v| format!("{v:.0}"));
        results.push(AnalysisResult {
            step: self.step,
            metric: "score".to_owned(),
            cluster: cluster.to_owned(),
            value: score.value,
            incumbent: None,
            verdict,
            message: format!("score {value}: {message}"),
            time: Time(self.now),
        });
        results
    }

    /// The last interval's samples of the contender and of the incumbent.
    async fn samples(
        &self,
        check: &MetricCheck,
        cluster: &str,
    ) -> Result<(Query, Vec<f64>, Vec<f64>), String> {
        let query = self.resolve(check)?;
        let incumbent = self
            .incumbent
            .as_ref()
            .ok_or("no complete Release to compare with: the first rollout of an application cannot use the Mann-Whitney judge")?;
        let start = self
            .now
            .checked_sub(jiff::SignedDuration::try_from(self.interval).unwrap_or_default())
            .unwrap_or(self.now);
        let step = (self.interval / SAMPLES_PER_INTERVAL).max(Duration::from_secs(1));
        let mut samples = Vec::new();
        for release in [&self.release, incumbent] {
            let promql = render(&query.promql, self.subject(release, cluster));
            let series = self
                .ctx
                .prometheus
                .range(&query.address, &promql, start, self.now, step)
                .await
                .map_err(|error| inconclusive(&error))?;
            samples.push(one_series(&series, release)?);
        }
        let incumbent = samples.pop().unwrap_or_default();
        let contender = samples.pop().unwrap_or_default();
        Ok((query, contender, incumbent))
    }

    /// The check with its template's fields as defaults, and where to send it.
    fn resolve(&self, check: &MetricCheck) -> Result<Query, String> {
        let metric = match &check.template_ref {
            None => check.metric.clone(),
            Some(name) => {
                let namespace = self
                    .release
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or_default();
                let template = self
                    .ctx
                    .metric_templates
                    .get(&ObjectRef::<MetricTemplate>::new(name).within(namespace))
                    .map(|t| t.spec.0.clone())
                    .or_else(|| {
                        self.ctx
                            .cluster_metric_templates
                            .get(&ObjectRef::<ClusterMetricTemplate>::new(name))
                            .map(|t| t.spec.0.clone())
                    })
                    .ok_or_else(|| {
                        format!("no MetricTemplate {namespace}/{name} and no ClusterMetricTemplate {name}: create one, or fix templateRef")
                    })?;
                check.metric.or(&template)
            }
        };
        let promql = metric
            .query
            .clone()
            .ok_or("no query: give the metric (or its template) a query")?;
        let address = metric
            .prometheus
            .as_ref()
            .map(|p| p.address.clone())
            .or_else(|| self.ctx.prometheus_url.clone())
            .ok_or("no Prometheus to ask: give the metric (or its template) prometheus.address, or start the controller with --prometheus-url")?;
        Ok(Query {
            metric,
            promql,
            address,
        })
    }
}

struct Query {
    metric: Metric,
    promql: String,
    address: String,
}

fn inconclusive(error: &QueryError) -> String {
    format!("no data: {error}")
}

/// The value of a query that must give one: NaN (say, a ratio of no requests) is no data.
fn one_value(series: &[prism_analysis::prometheus::Series]) -> Result<f64, String> {
    match series {
        [] => Err("no data: the query returned no series".to_owned()),
        [one] => match one.values.last() {
            Some(value) if value.is_finite() => Ok(*value),
            _ => Err("no data: the query's value is not a number".to_owned()),
        },
        many => Err(format!(
            "the query returned {} series; aggregate it to one (sum, avg, max)",
            many.len()
        )),
    }
}

/// The samples of a range query that must give one series; NaN samples (no requests at that
/// moment) are left out.
fn one_series(
    series: &[prism_analysis::prometheus::Series],
    release: &Release,
) -> Result<Vec<f64>, String> {
    let name = release.name_any();
    match series {
        [] => Err(format!("no data for {name}: the query returned no series")),
        [one] => Ok(one
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect()),
        many => Err(format!(
            "the query returned {} series for {name}; aggregate it to one (sum, avg, max)",
            many.len()
        )),
    }
}

/// The Release a contender is compared with: the newest complete one before it.
pub fn incumbent_of<'a>(release: &Release, releases: &'a [Release]) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| r.spec.revision < release.spec.revision && r.spec.side.is_none())
        .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete))
        .max_by_key(|r| r.spec.revision)
}
