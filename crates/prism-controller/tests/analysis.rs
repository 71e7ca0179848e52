//! End-to-end: analysis against a real Prometheus server (Debian's `prometheus`, one per test)
//! scraping a test exporter whose per-version, per-cluster error ratio the test sets, and webhook
//! gates against a test receiver. Three clusters, each a Cluster of the test's fleet.

mod common;

use std::time::Duration;

use common::{
    application, apply, patch_release_spec, setup, wait_for_phase, wait_for_status, wait_for_step,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use prism_api::Release;
use prism_api::conditions;
use prism_api::release::{AbortCause, ReleasePhase, Verdict};
use prism_testkit::exporter::{Behaviour, Series, TestExporter};
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::prometheus::Prometheus;
use prism_testkit::webhook::{Reply, TestWebhook};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

const HEALTHY: f64 = 0.0;
const FAILING: f64 = 0.2;
const NORMAL_LATENCY: Duration = Duration::from_millis(50);

/// The exporter, and a Prometheus scraping it, with every version of `web` in every cluster of
/// the test's fleet set to `error_ratio`.
struct Metrics {
    exporter: TestExporter,
    prometheus: Prometheus,
}

impl Metrics {
    async fn start(env: &TestEnv, versions: &[&str]) -> anyhow::Result<Metrics> {
        let exporter = TestExporter::start().await?;
        let metrics = Metrics {
            prometheus: Prometheus::start(&[exporter.addr()]).await?,
            exporter,
        };
        for version in versions {
            for cluster in env.clusters() {
                metrics.set(env, version, cluster.name(), HEALTHY);
            }
        }
        let any = Series::new("web", env.namespace(), versions[0], cluster_of(env, "c1"));
        metrics
            .prometheus
            .wait_for_sample(&any.error_ratio_query("10s"))
            .await?;
        Ok(metrics)
    }

    fn set(&self, env: &TestEnv, version: &str, sandbox_cluster: &str, error_ratio: f64) {
        self.behave(env, version, sandbox_cluster, error_ratio, NORMAL_LATENCY);
    }

    fn behave(
        &self,
        env: &TestEnv,
        version: &str,
        sandbox_cluster: &str,
        error_ratio: f64,
        latency: Duration,
    ) {
        let series = Series::new(
            "web",
            env.namespace(),
            version,
            cluster_of(env, sandbox_cluster),
        );
        self.exporter
            .set(series, Behaviour::new(error_ratio, latency));
    }

    /// The error-ratio check: at most 5% of requests fail.
    fn error_rate_check(&self) -> Value {
        let query = Series::new("{{app}}", "{{namespace}}", "{{version}}", "{{cluster}}")
            .error_ratio_query("10s");
        json!({
            "name": "error-rate",
            "query": query,
            "prometheus": {"address": self.prometheus.url()},
            "threshold": {"max": 0.05},
        })
    }
}

/// The name of the test's Cluster object for a sandbox cluster: what `{{cluster}}` is.
fn cluster_of(env: &TestEnv, sandbox_cluster: &str) -> String {
    env.cluster_object_name(sandbox_cluster)
}

fn spec(image: &str, strategy: &Value) -> Value {
    json!({
        "template": web_template(image, 2),
        "strategy": strategy,
        "schedule": {"clusters": 3},
    })
}

fn analysis(metrics: &Metrics, count: u32) -> Value {
    json!({"interval": "2s", "count": count, "metrics": [metrics.error_rate_check()]})
}

/// The analysed canary: 50% with two measurements, then a manual gate; 50% with five more; full.
fn analysed_canary(metrics: &Metrics) -> Value {
    steps(json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "analysis": analysis(metrics, 2), "gate": {"manual": true}},
        {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "analysis": analysis(metrics, 5)},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}}
    ]))
}

fn steps(steps: Value) -> Value {
    json!({"steps": steps})
}

/// `web-1` installed everywhere and complete, then `web-2` applied.
async fn roll_out_web_2(
    apps: &Api<prism_api::Application>,
    releases: &Api<Release>,
    strategy: Value,
) -> anyhow::Result<()> {
    apply(apps, &application("web", spec("web:1", &strategy))?).await?;
    wait_for_phase(releases, "web-1", ReleasePhase::Complete).await?;
    apply(apps, &application("web", spec("web:2", &strategy))?).await?;
    Ok(())
}

fn condition<'a>(release: &'a Release, type_: &str) -> Option<&'a conditions::Condition> {
    conditions::find(&release.status.as_ref()?.conditions, type_)
}

#[tokio::test]
async fn a_healthy_version_passes_its_analyses_and_is_promoted() -> anyhow::Result<()> {
    let env = TestEnv::new("analysis-healthy").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let metrics = Metrics::start(&env, &["web-1", "web-2"]).await?;

    roll_out_web_2(&apps, &releases, analysed_canary(&metrics)).await?;
    let waiting = wait_for_phase(&releases, "web-2", ReleasePhase::WaitingForCommand).await?;
    let status = waiting.status.clone().unwrap_or_default();
    assert_eq!(status.step, Some(0));
    let analysis = status.analysis.expect("the canary step's analysis");
    assert_eq!((analysis.step, analysis.passed, analysis.failed), (0, 2, 0));
    let measured: std::collections::BTreeSet<_> = analysis
        .results
        .iter()
        .map(|r| r.cluster.as_str())
        .collect();
    assert_eq!(measured.len(), 3, "measured in every cluster: {measured:?}");
    assert!(
        analysis
            .results
            .iter()
            .all(|r| r.verdict == Verdict::Pass && r.value == Some(0.0)),
        "{:?}",
        analysis.results
    );

    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
    let complete = wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let analysis = complete.status.and_then(|s| s.analysis).unwrap();
    assert_eq!((analysis.step, analysis.passed), (1, 5));
    Ok(())
}

#[tokio::test]
async fn an_error_rate_rising_at_step_two_rolls_back_in_every_cluster() -> anyhow::Result<()> {
    let env = TestEnv::new("analysis-rollback").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let metrics = Metrics::start(&env, &["web-1", "web-2"]).await?;
    let told = TestWebhook::start(Reply::Accept).await?;
    let mut strategy = analysed_canary(&metrics);
    strategy["webhooks"] = json!({"rollback": [{"url": told.url()}]});

    roll_out_web_2(&apps, &releases, strategy).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::WaitingForCommand).await?;
    // The new version turns bad in one cluster only, once its first step has passed.
    metrics.set(&env, "web-2", "c2", FAILING);
    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;

    let aborted = wait_for_phase(&releases, "web-2", ReleasePhase::Aborted).await?;
    let status = aborted.status.clone().unwrap_or_default();
    let abort = status.abort.expect("the reason of the rollback");
    assert_eq!(abort.cause, AbortCause::AnalysisFailed);
    let c2 = cluster_of(&env, "c2");
    for expected in [
        "step 2",
        "error-rate",
        c2.as_str(),
        "above the maximum 0.05",
    ] {
        assert!(
            abort.message.contains(expected),
            "{expected:?} in {:?}",
            abort.message
        );
    }
    let aborted_condition = condition(&aborted, conditions::release::ABORTED).unwrap();
    assert!(aborted_condition.message.contains("error-rate"));
    let failed = status.analysis.unwrap();
    assert_eq!(failed.step, 1);
    assert!(
        failed
            .results
            .iter()
            .any(|r| r.verdict == Verdict::Fail && r.cluster == c2 && r.value > Some(0.05)),
        "{:?}",
        failed.results
    );

    let rollback = wait_until("the rollback webhook is told", DEFAULT_TIMEOUT, || async {
        Ok(told.calls().first().map(|call| call.json()))
    })
    .await?;
    assert_eq!(rollback["kind"], "rollback");
    assert_eq!(rollback["release"], "web-2");
    assert!(
        rollback["message"]
            .as_str()
            .is_some_and(|m| m.contains("error-rate")),
        "{rollback}"
    );

    // Rolled back everywhere: web-2 gone, web-1 at full capacity, in every cluster.
    for cluster in env.clusters() {
        let deployments = Api::<Deployment>::namespaced(cluster.client(), env.namespace());
        wait_until(
            format!("{} runs web-1 alone again", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let web_2 = deployments.get_opt("web-2").await?;
                let web_1 = deployments.get_opt("web-1").await?;
                let replicas = web_1.and_then(|d| d.spec?.replicas);
                Ok((web_2.is_none() && replicas == Some(2)).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn prometheus_going_away_pauses_the_analysis_and_its_return_resumes_it() -> anyhow::Result<()>
{
    let env = TestEnv::new("analysis-outage").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let mut metrics = Metrics::start(&env, &["web-1", "web-2"]).await?;
    let steps = steps(json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "analysis": analysis(&metrics, 4)},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}}
    ]));
    roll_out_web_2(&apps, &releases, steps).await?;
    wait_until(
        "web-2's first measurement passes",
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get("web-2").await?;
            let passed = release.status.and_then(|s| s.analysis).map(|a| a.passed);
            Ok(passed.filter(|passed| *passed >= 1))
        },
    )
    .await?;
    metrics.prometheus.stop().await?;

    let paused = wait_for_phase(&releases, "web-2", ReleasePhase::Paused).await?;
    let progressing = condition(&paused, conditions::release::PROGRESSING).unwrap();
    assert_eq!(progressing.reason, "AnalysisInconclusive");
    assert!(
        progressing.message.contains("does not answer"),
        "{}",
        progressing.message
    );
    let status = paused.status.clone().unwrap();
    assert_eq!(status.step, Some(0), "no promotion");
    assert!(status.abort.is_none(), "no rollback");
    assert!(status.analysis.unwrap().passed < 4);

    metrics.prometheus.restart().await?;
    let complete = wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let analysis = complete.status.and_then(|s| s.analysis).unwrap();
    assert_eq!((analysis.passed, analysis.failed), (4, 0));
    assert!(
        analysis
            .results
            .iter()
            .any(|r| r.verdict == Verdict::Inconclusive),
        "the outage is in the results: {:?}",
        analysis.results
    );
    Ok(())
}

fn webhook_gated(webhook: Value) -> Value {
    steps(json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "gate": {"webhook": webhook}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}}
    ]))
}

#[tokio::test]
async fn a_webhook_that_refuses_holds_the_step_until_it_accepts() -> anyhow::Result<()> {
    let env = TestEnv::new("webhook-refuses").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), env.namespace());
    secrets
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "hooks"},
                "stringData": {"secret": "s3cret"},
            }))?,
        )
        .await?;
    let receiver = TestWebhook::start(Reply::Refuse(403, "change freeze".into())).await?;
    let steps = webhook_gated(json!({"url": receiver.url(), "secretRef": {"name": "hooks"}}));

    roll_out_web_2(&apps, &releases, steps).await?;
    let paused = wait_for_phase(&releases, "web-2", ReleasePhase::Paused).await?;
    let progressing = condition(&paused, conditions::release::PROGRESSING).unwrap();
    assert_eq!(progressing.reason, "WebhookHeld");
    assert!(
        progressing.message.contains("403") && progressing.message.contains("change freeze"),
        "{}",
        progressing.message
    );
    assert_eq!(paused.status.as_ref().unwrap().step, Some(0));

    let call = receiver.calls().first().cloned().expect("the gate asked");
    assert_eq!(call.json()["kind"], "confirm-step");
    assert_eq!(call.json()["release"], "web-2");
    assert_eq!(call.json()["step"], 1);
    assert_eq!(
        call.signature.as_deref(),
        Some(prism_analysis::webhook::signature(b"s3cret", &call.body).as_str()),
        "signed with the Secret's key"
    );

    receiver.set(Reply::Accept);
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    Ok(())
}

#[tokio::test]
async fn a_webhook_that_times_out_is_retried_then_holds_the_step() -> anyhow::Result<()> {
    let env = TestEnv::new("webhook-timeout").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let receiver = TestWebhook::start(Reply::Hang).await?;
    let steps = webhook_gated(json!({"url": receiver.url(), "timeout": "1s", "retries": 2}));

    roll_out_web_2(&apps, &releases, steps).await?;
    let paused = wait_for_phase(&releases, "web-2", ReleasePhase::Paused).await?;
    let progressing = condition(&paused, conditions::release::PROGRESSING).unwrap();
    assert_eq!(progressing.reason, "WebhookHeld");
    assert!(
        progressing.message.contains("did not answer in 3 attempts"),
        "{}",
        progressing.message
    );
    assert_eq!(receiver.calls().len(), 3, "the first attempt and 2 retries");
    let status = paused.status.unwrap();
    assert_eq!(status.step, Some(0));
    assert!(status.abort.is_none(), "held, not rolled back");
    wait_for_step(&releases, "web-2", 0).await?;
    Ok(())
}

#[tokio::test]
async fn an_abort_is_carried_out_while_the_steps_webhook_has_not_answered() -> anyhow::Result<()> {
    let env = TestEnv::new("webhook-abort").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let receiver = TestWebhook::start(Reply::Hang).await?;
    // One attempt that outlasts the test's deadlines: a call made inside the reconcile would
    // hold the abort back that long.
    let steps = webhook_gated(json!({"url": receiver.url(), "timeout": "10m", "retries": 0}));

    roll_out_web_2(&apps, &releases, steps).await?;
    let waiting = wait_until("web-2 waits for its webhook", DEFAULT_TIMEOUT, || async {
        let release = releases.get("web-2").await?;
        let waiting = condition(&release, conditions::release::PROGRESSING)
            .is_some_and(|c| c.reason == "WaitingForWebhook");
        Ok((waiting && !receiver.calls().is_empty()).then_some(release))
    })
    .await?;
    assert_eq!(waiting.status.unwrap().step, Some(0));

    patch_release_spec(&releases, "web-2", json!({"aborted": true})).await?;
    let aborted = wait_for_phase(&releases, "web-2", ReleasePhase::Aborted).await?;
    assert_eq!(
        aborted.status.unwrap().abort.map(|a| a.cause),
        Some(AbortCause::Command)
    );
    assert_eq!(receiver.calls().len(), 1, "asked once, never answered");
    Ok(())
}

#[tokio::test]
async fn a_pre_rollout_webhook_holds_the_release_back_until_it_accepts() -> anyhow::Result<()> {
    let env = TestEnv::new("webhook-pre-rollout").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let asked = TestWebhook::start(Reply::Refuse(409, "integration tests are red".into())).await?;
    let told = TestWebhook::start(Reply::Accept).await?;
    let strategy = json!({
        "steps": [{"name": "full", "capacity": {"contender": "100%"}, "traffic": {"contender": 100}}],
        "webhooks": {"preRollout": [{"url": asked.url()}], "postRollout": [{"url": told.url()}]},
    });
    apply(&apps, &application("web", spec("web:1", &strategy))?).await?;

    let held = wait_for_status(&apps, "web", "a pre-rollout webhook holds it", |status| {
        conditions::find(
            &status.conditions,
            conditions::application::PRE_ROLLOUT_PASSED,
        )
        .is_some_and(|c| c.status == "False")
    })
    .await?;
    let condition = conditions::find(
        &held.conditions,
        conditions::application::PRE_ROLLOUT_PASSED,
    )
    .unwrap();
    assert!(
        condition.message.contains("409")
            && condition.message.contains("integration tests are red"),
        "{}",
        condition.message
    );
    assert!(releases.get_opt("web-1").await?.is_none(), "no Release yet");
    let call = asked
        .calls()
        .first()
        .cloned()
        .expect("the webhook was asked");
    assert_eq!(call.json()["kind"], "pre-rollout");
    assert_eq!(call.json()["revision"], 1);

    asked.set(Reply::Accept);
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    wait_for_status(&apps, "web", "the pre-rollout webhooks passed", |status| {
        conditions::find(
            &status.conditions,
            conditions::application::PRE_ROLLOUT_PASSED,
        )
        .is_some_and(|c| c.status == "True")
    })
    .await?;
    let completed = wait_until(
        "the post-rollout webhook is told",
        DEFAULT_TIMEOUT,
        || async {
            Ok(told
                .calls()
                .into_iter()
                .map(|call| call.json())
                .find(|payload| payload["kind"] == "post-rollout"))
        },
    )
    .await?;
    assert_eq!(completed["release"], "web-1");
    Ok(())
}

#[tokio::test]
async fn the_mann_whitney_judge_passes_an_equal_version_and_rolls_back_a_slower_one()
-> anyhow::Result<()> {
    let env = TestEnv::new("analysis-mann-whitney").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let metrics = Metrics::start(&env, &["web-1", "web-2", "web-3"]).await?;
    // Four times slower in every cluster; the other versions keep the normal latency.
    for cluster in env.clusters() {
        metrics.behave(&env, "web-3", cluster.name(), HEALTHY, 4 * NORMAL_LATENCY);
    }
    let latency = Series::new("{{app}}", "{{namespace}}", "{{version}}", "{{cluster}}")
        .latency_quantile_query(0.99, "5s");
    // Ten seconds of samples, one a second, per version: enough for the test to tell.
    let strategy = steps(json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "analysis": {"judge": "mannWhitney", "interval": "10s", "metrics": [{
            "name": "p99-latency", "query": latency,
            "prometheus": {"address": metrics.prometheus.url()},
            "comparison": {"direction": "increase", "tolerance": 0.2},
         }]}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}}
    ]));
    roll_out_web_2(&apps, &releases, strategy.clone()).await?;
    let passed = wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let analysis = passed.status.and_then(|s| s.analysis).unwrap();
    assert_eq!((analysis.passed, analysis.failed), (1, 0));
    let scores: Vec<_> = analysis
        .results
        .iter()
        .filter(|r| r.metric == "score")
        .collect();
    assert_eq!(scores.len(), 3, "one score per cluster: {scores:?}");
    assert!(
        scores.iter().all(|r| r.verdict == Verdict::Pass),
        "{scores:?}"
    );

    apply(&apps, &application("web", spec("web:3", &strategy))?).await?;
    let aborted = wait_for_phase(&releases, "web-3", ReleasePhase::Aborted).await?;
    let status = aborted.status.unwrap();
    let abort = status.abort.unwrap();
    assert_eq!(abort.cause, AbortCause::AnalysisFailed);
    assert!(abort.message.contains("p99-latency"), "{}", abort.message);
    let slower = status
        .analysis
        .unwrap()
        .results
        .into_iter()
        .find(|r| r.metric == "p99-latency" && r.verdict == Verdict::Fail)
        .expect("a failed latency result");
    let (contender, incumbent) = (slower.value.unwrap(), slower.incumbent.unwrap());
    assert!(
        contender > 2.0 * incumbent,
        "contender median {contender} against the incumbent's {incumbent}"
    );
    Ok(())
}
