//! Fault injection: one cluster's API server goes away. This test lives in a
//! test binary of its own so that no other test runs while c2 is down.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::PostParams;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::json;

const VICTIM: &str = "c2";

#[tokio::test]
async fn stopping_one_apiserver_fails_that_cluster_only() {
    let env = TestEnv::new("apiserver-outage").await;
    env.sandbox()
        .stop_apiserver(VICTIM)
        .await
        .expect("stopping the API server");
    // Restart before asserting, so that a failed check does not leave the
    // cluster down for the tests that follow.
    let during_outage = check_during_outage(&env).await;
    env.sandbox()
        .start_apiserver(VICTIM)
        .await
        .expect("restarting the API server");
    during_outage.unwrap();

    // The client made before the outage works again.
    let namespaces = Api::<Namespace>::all(env.cluster(VICTIM).client());
    wait_until(
        format!("{VICTIM} answers again"),
        DEFAULT_TIMEOUT,
        || async { Ok(Some(namespaces.get(env.namespace()).await?)) },
    )
    .await
    .unwrap();
}

async fn check_during_outage(env: &TestEnv) -> anyhow::Result<()> {
    for cluster in env.clusters() {
        let namespaces = Api::<Namespace>::all(cluster.client());
        let answer = tokio::time::timeout(Duration::from_secs(20), namespaces.get(env.namespace()))
            .await
            .with_context(|| format!("a request to {} hung", cluster.name()))?;
        if cluster.name() == VICTIM {
            ensure!(
                answer.is_err(),
                "{VICTIM} still answers with its API server stopped"
            );
            eprintln!("{VICTIM} fails as expected: {}", answer.unwrap_err());
        } else {
            answer.with_context(|| format!("{} fails while {VICTIM} is down", cluster.name()))?;
            let config_map = serde_json::from_value::<ConfigMap>(json!({
                "metadata": { "name": "still-working" },
                "data": { "down": VICTIM }
            }))?;
            Api::<ConfigMap>::namespaced(cluster.client(), env.namespace())
                .create(&PostParams::default(), &config_map)
                .await
                .with_context(|| format!("writing to {}", cluster.name()))?;
        }
    }
    Ok(())
}
