//! The controller's `/metrics`, scraped by a real Prometheus during rollouts across the
//! sandbox's clusters: each metric reads what the rollouts imply. And `/healthz`, `/readyz`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use common::{application, apply, patch_release_spec, setup_serving_metrics, wait_for_phase};
use prism_analysis::prometheus::Prometheus as Client;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::prometheus::Prometheus;
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
    let steps = json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "gate": {"manual": true}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}},
    ]);
    let deploy = |image: &str| {
        application(
            "web",
            json!({"template": web_template(image, 2), "strategy": {"steps": steps}}),
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
    let client = Client::default();
    for promql in [
        r#"prism_reconciles_total{result="ok"}"#,
        "prism_reconcile_duration_seconds_count",
    ] {
        let series = client.instant(&prometheus.url(), promql).await.unwrap();
        let value = series.first().and_then(|s| s.values.last()).copied();
        assert!(
            value.is_some_and(|value| value >= 3.0),
            "{promql}: {series:?}"
        );
    }
}
