//! The controller's `/metrics`, scraped by a real Prometheus during rollouts across the
//! sandbox's clusters: each metric reads what the rollouts imply. And `/healthz`, `/readyz`.
//! Prometheus is also the analysis' source (a query that always passes), and a test receiver
//! answers the webhooks.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use common::{application, apply, patch_release_spec, setup_serving_metrics, wait_for_phase};
use kube::Api;
use kube::api::{Patch, PatchParams};
use prism_analysis::prometheus::Prometheus as Client;
use prism_api::Release;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::prometheus::Prometheus;
use prism_testkit::webhook::{Reply, TestWebhook};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::json;

/// A loopback address with a port nobody listens on now.
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// Waits until Prometheus reads `promql` as `expected` (one series, or none for 0).
async fn reads(prometheus: &Prometheus, promql: &str, expected: f64) {
    let client = Client::default();
    wait_until(
        format!("{promql} reads {expected}"),
        DEFAULT_TIMEOUT,
        || async {
            let series = client.instant(&prometheus.url(), promql).await?;
            let value: f64 = series.iter().filter_map(|s| s.values.last()).sum();
            if value == expected {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!("{value}: {series:?}"))
            }
        },
    )
    .await
    .unwrap();
}

/// Waits until Prometheus answers `promql` with at least one series: a comparison that holds.
async fn holds(prometheus: &Prometheus, promql: &str) {
    let client = Client::default();
    wait_until(format!("{promql} holds"), DEFAULT_TIMEOUT, || async {
        let series = client.instant(&prometheus.url(), promql).await?;
        Ok((!series.is_empty()).then_some(()))
    })
    .await
    .unwrap();
}

/// Waits until `name`'s analysis of its current step has passed `count` measurements.
async fn wait_for_measurements(releases: &Api<Release>, name: &str, count: u32) {
    wait_until(
        format!("{name}'s analysis passed {count} measurements"),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get(name).await?;
            let passed = release.status.and_then(|s| s.analysis).map(|a| a.passed);
            Ok((passed == Some(count)).then_some(()))
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn metrics_scraped_during_rollouts_read_what_the_rollouts_did() {
    let env = TestEnv::new("metrics").await;
    let address = free_address();
    let (client, apps, releases, _controller) =
        setup_serving_metrics(&env, Some(address)).await.unwrap();
    let prometheus = Prometheus::start(&[address]).await.unwrap();
    let fleet = TestFleet::join(&env, &client).await.unwrap();
    let http = reqwest::Client::new();
    for (path, answer) in [("healthz", "ok"), ("readyz", "ok")] {
        let response = http
            .get(format!("http://{address}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/{path}");
        assert_eq!(response.text().await.unwrap(), answer);
    }

    // Version 1, then version 2 through a manual gate to completion, then version 3 aborted.
    // The canary step is analysed: two measurements of a query that always passes.
    let always_passes = json!({
        "name": "always-passes",
        "query": "vector(0)",
        "prometheus": {"address": prometheus.url()},
        "threshold": {"max": 1},
    });
    let steps = json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "analysis": {"interval": "2s", "count": 2, "metrics": [always_passes]},
         "gate": {"manual": true}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}},
    ]);
    let receiver = TestWebhook::start(Reply::Accept).await.unwrap();
    let hook = json!([{"url": receiver.url()}]);
    let webhooks = json!({"preRollout": hook, "postRollout": hook, "event": hook});
    let deploy = |image: &str| {
        application(
            "web",
            json!({"template": web_template(image, 2),
                   "strategy": {"steps": steps, "webhooks": webhooks}}),
        )
        .unwrap()
    };
    apply(&apps, &deploy("web:1")).await.unwrap();
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    apply(&apps, &deploy("web:2")).await.unwrap();
    wait_for_phase(&releases, "web-2", ReleasePhase::WaitingForCommand)
        .await
        .unwrap();
    wait_for_measurements(&releases, "web-2", 2).await;
    patch_release_spec(&releases, "web-2", json!({"targetStep": 1}))
        .await
        .unwrap();
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    apply(&apps, &deploy("web:3")).await.unwrap();
    wait_for_phase(&releases, "web-3", ReleasePhase::WaitingForCommand)
        .await
        .unwrap();
    wait_for_measurements(&releases, "web-3", 2).await;
    patch_release_spec(&releases, "web-3", json!({"aborted": true}))
        .await
        .unwrap();
    wait_for_phase(&releases, "web-3", ReleasePhase::Aborted)
        .await
        .unwrap();

    let namespace = env.namespace();
    reads(
        &prometheus,
        &format!(r#"prism_releases{{namespace="{namespace}",phase="Complete"}}"#),
        2.0,
    )
    .await;
    reads(
        &prometheus,
        &format!(r#"prism_releases{{namespace="{namespace}",phase="Aborted"}}"#),
        1.0,
    )
    .await;
    reads(
        &prometheus,
        r#"prism_rollout_duration_seconds_count{outcome="completed"}"#,
        2.0,
    )
    .await;
    reads(
        &prometheus,
        r#"prism_rollout_duration_seconds_count{outcome="aborted"}"#,
        1.0,
    )
    .await;
    reads(
        &prometheus,
        r#"prism_release_transitions_total{reason="Complete"}"#,
        2.0,
    )
    .await;
    reads(
        &prometheus,
        r#"prism_release_transitions_total{reason="Promoted"}"#,
        1.0,
    )
    .await;
    reads(
        &prometheus,
        "sum(prism_cluster_reachable)",
        fleet.names().len() as f64,
    )
    .await;
    reads(
        &prometheus,
        "count(prism_cluster_reachable)",
        fleet.names().len() as f64,
    )
    .await;
    // Without leader election the one replica leads the one shard.
    reads(&prometheus, r#"prism_leader{shard="0"}"#, 1.0).await;
    let queries = Client::default();
    for promql in [
        r#"prism_reconciles_total{result="ok"}"#,
        "prism_reconcile_duration_seconds_count",
    ] {
        let series = queries.instant(&prometheus.url(), promql).await.unwrap();
        let value = series.first().and_then(|s| s.values.last()).copied();
        assert!(
            value.is_some_and(|value| value >= 3.0),
            "{promql}: {series:?}"
        );
    }

    // Each step ended once: web-1 went straight to its last step and completed; web-2's canary
    // was promoted (advanced) and its last step completed; web-3's canary was aborted, after
    // its two measurements 2 s apart.
    for (outcome, steps) in [("completed", 2.0), ("advanced", 1.0), ("aborted", 1.0)] {
        reads(
            &prometheus,
            &format!(r#"prism_step_duration_seconds_count{{outcome="{outcome}"}}"#),
            steps,
        )
        .await;
    }
    for outcome in ["advanced", "aborted"] {
        holds(
            &prometheus,
            &format!(r#"prism_step_duration_seconds_sum{{outcome="{outcome}"}} >= 2"#),
        )
        .await;
    }
    reads(
        &prometheus,
        r#"prism_analysis_measurements_total{result="passed"}"#,
        4.0,
    )
    .await;
    reads(
        &prometheus,
        r#"sum(prism_analysis_measurements_total{result!="passed"})"#,
        0.0,
    )
    .await;

    // Webhooks: one pre-rollout call per Release, one post-rollout call per completed one, an
    // event call per transition; the receiver heard each.
    let told = |kind: &str| {
        receiver
            .calls()
            .iter()
            .filter(|call| call.json()["kind"] == kind)
            .count()
    };
    reads(
        &prometheus,
        r#"prism_webhook_calls_total{kind="pre-rollout",outcome="accepted"}"#,
        3.0,
    )
    .await;
    reads(
        &prometheus,
        r#"prism_webhook_calls_total{kind="post-rollout",outcome="accepted"}"#,
        2.0,
    )
    .await;
    holds(
        &prometheus,
        r#"sum(prism_webhook_calls_total{kind="event",outcome="accepted"}) == sum(prism_release_transitions_total) > 0"#,
    )
    .await;
    assert_eq!((told("pre-rollout"), told("post-rollout")), (3, 2));
    reads(
        &prometheus,
        r#"sum(prism_webhook_calls_total{outcome!="accepted"})"#,
        0.0,
    )
    .await;

    // API requests, counted at the client: the management cluster's ("local") Release statuses
    // patched, Events created, Applications listed and watched; each application cluster's
    // Deployments written and watched.
    for promql in [
        r#"prism_api_requests_total{cluster="local",verb="patch",resource="releases/status",code="200"} > 0"#,
        // Releases are made by server-side apply: a patch that creates answers 201.
        r#"prism_api_requests_total{cluster="local",verb="patch",resource="releases",code="201"} == 3"#,
        r#"prism_api_requests_total{cluster="local",verb="create",resource="events",code="201"} > 0"#,
        r#"prism_api_requests_total{cluster="local",verb="list",resource="applications",code="200"} > 0"#,
        r#"prism_api_requests_total{cluster="local",verb="watch",resource="applications",code="200"} > 0"#,
    ] {
        holds(&prometheus, promql).await;
    }
    for cluster in fleet.names() {
        for promql in [
            format!(
                r#"sum(prism_api_requests_total{{cluster="{cluster}",verb="patch",resource="deployments",code=~"20."}}) > 0"#
            ),
            format!(
                r#"prism_api_requests_total{{cluster="{cluster}",verb="watch",resource="deployments",code="200"}} > 0"#
            ),
        ] {
            holds(&prometheus, &promql).await;
        }
        // Each cached kind's watch, counted from its start.
        reads(
            &prometheus,
            &format!(r#"count(prism_watch_restarts_total{{cluster="{cluster}"}})"#),
            prism_controller::fleet::CACHED.len() as f64,
        )
        .await;
    }

    // A Cluster whose API server refuses connections: its requests fail without an answer, and
    // its watches restart after their backoff, again and again.
    let unreachable = UnreachableCluster::add(&env, &client).await;
    let name = unreachable.name.as_str();
    for promql in [
        format!(r#"prism_cluster_reachable{{cluster="{name}"}} == 0"#),
        format!(r#"prism_watch_restarts_total{{cluster="{name}",resource="deployments"}} >= 2"#),
        format!(
            r#"sum(prism_api_requests_total{{cluster="{name}",verb="list",code="<error>"}}) >= 2"#
        ),
    ] {
        holds(&prometheus, &promql).await;
    }
}

/// A Cluster object of the test's fleet whose kubeconfig names a port nobody listens on;
/// deleted when dropped, also when the test panicked (Clusters outlive the namespace).
struct UnreachableCluster {
    name: String,
    script: std::path::PathBuf,
}

impl UnreachableCluster {
    async fn add(env: &TestEnv, client: &kube::Client) -> UnreachableCluster {
        let address = free_address();
        let unreachable = UnreachableCluster {
            name: env.cluster_object_name("unreachable"),
            script: env.sandbox().script().to_owned(),
        };
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "nowhere", "cluster": {"server": format!("http://{address}")}}],
            "users": [{"name": "nobody", "user": {}}],
            "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
            "current-context": "nowhere",
        });
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "unreachable"},
            "stringData": {"kubeconfig": kubeconfig.to_string()},
        });
        let apply = PatchParams::apply("prism-tests").force();
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), env.namespace())
            .patch("unreachable", &apply, &Patch::Apply(&secret))
            .await
            .unwrap();
        let cluster = json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": unreachable.name, "labels": env.cluster_labels()},
            "spec": {
                "region": "nowhere",
                "credentials": {"secretRef": {"name": "unreachable", "namespace": env.namespace()}},
            },
        });
        Api::<prism_api::Cluster>::all(client.clone())
            .patch(&unreachable.name, &apply, &Patch::Apply(&cluster))
            .await
            .unwrap();
        unreachable
    }
}

impl Drop for UnreachableCluster {
    fn drop(&mut self) {
        prism_testkit::fleet::delete_cluster_objects(
            &self.script,
            std::slice::from_ref(&self.name),
        );
    }
}
