//! End-to-end: one cluster's API server stops mid-rollout. Its own test binary, since it stops a
//! cluster that the other tests of a binary would be using at the same time.

mod common;

use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};
use prism_api::Release;
use prism_api::release::{ClusterPhase, ReleasePhase};
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::json;

fn cluster_phase(release: &Release, cluster: &str) -> Option<ClusterPhase> {
    let status = release.status.as_ref()?;
    status
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.phase)
}

#[tokio::test]
async fn a_stopped_api_server_pauses_only_the_steps_that_need_its_cluster() -> anyhow::Result<()> {
    let env = TestEnv::new("fleet-outage").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let fleet = TestFleet::join(&env, &client).await?;
    let manual = json!({"manual": true});
    let spec = |image: &str| {
        json!({
            "template": web_template(image, 2),
            "strategy": {"steps": [
                {"name": "vanguard", "clusters": {"first": 1}, "capacity": {"contender": "50%"},
                 "traffic": {"contender": 50}, "gate": manual},
                {"name": "europe", "clusters": {"region": "eu-west"},
                 "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": manual},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
                 "traffic": {"contender": 100}}
            ]},
            "schedule": {"regions": [
                {"name": "eu-west", "clusters": 2},
                {"name": "us-east", "clusters": 1},
            ]},
        })
    };
    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;

    let us = env.cluster_object_name("c2");
    env.sandbox().stop_apiserver("c2").await?;
    let outcome = async {
        fleet.wait_for_reachable(&us, false).await?;
        // Europe does not need us-east: its step is achieved without it.
        patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
        let europe = wait_for_step(&releases, "web-2", 1).await?;
        assert_eq!(
            europe.status.as_ref().and_then(|s| s.phase),
            Some(ReleasePhase::WaitingForCommand)
        );
        // The last step needs every cluster: it waits, and says why.
        patch_release_spec(&releases, "web-2", json!({"targetStep": 3})).await?;
        let held = wait_until(
            "web-2 reports us-east unreachable",
            DEFAULT_TIMEOUT,
            || async {
                let release = releases.get("web-2").await?;
                let unreachable = cluster_phase(&release, &us) == Some(ClusterPhase::Unreachable)
                    && release.status.as_ref().and_then(|s| s.step) == Some(2);
                Ok(unreachable.then_some(release))
            },
        )
        .await?;
        assert_eq!(
            held.status.as_ref().and_then(|s| s.phase),
            Some(ReleasePhase::Progressing)
        );
        for cluster in fleet.names() {
            if cluster != &us {
                assert_ne!(
                    cluster_phase(&held, cluster),
                    Some(ClusterPhase::Unreachable),
                    "{cluster} is not affected"
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    env.sandbox().start_apiserver("c2").await?;
    outcome?;

    fleet.wait_for_reachable(&us, true).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    Ok(())
}
