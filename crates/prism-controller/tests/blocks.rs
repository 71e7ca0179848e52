//! End-to-end: RolloutBlocks stop new Releases and step advances; an override lets a named
//! rollout through and is recorded on the block.

mod common;

use common::{
    application, apply, global_namespace, patch_release_spec, setup, wait_for_phase,
    wait_for_status, wait_for_step,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use prism_api::RolloutBlock;
use prism_api::application::ApplicationStatus;
use prism_api::conditions;
use prism_api::release::ReleasePhase;
use prism_api::rollout_block::OVERRIDE_ROLLOUT_BLOCK_ANNOTATION;
use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

async fn block(client: &Client, namespace: &str, name: &str, message: &str) -> anyhow::Result<()> {
    let block: RolloutBlock = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "RolloutBlock",
        "metadata": {"name": name},
        "spec": {"message": message, "author": "sre-on-call"},
    }))?;
    Api::<RolloutBlock>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(common::TEST_MANAGER),
            &Patch::Apply(&block),
        )
        .await?;
    Ok(())
}

fn spec(image: &str) -> Value {
    json!({
        "template": web_template(image, 2),
        "strategy": {"steps": [
            {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
             "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
             "traffic": {"contender": 100}}
        ]},
    })
}

fn blocked_message(status: &ApplicationStatus) -> Option<String> {
    conditions::find(&status.conditions, conditions::application::BLOCKED)
        .filter(|c| c.status == "True")
        .map(|c| c.message.clone())
}

#[tokio::test]
async fn a_block_stops_a_new_release_and_an_override_lets_it_through() -> anyhow::Result<()> {
    let env = TestEnv::new("block-release").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let namespace = env.namespace();
    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;

    block(&client, namespace, "freeze", "release freeze until Monday").await?;
    // The controller has seen the block before it sees revision 2: the block and the Application
    // come through different watches, whose events may arrive in either order.
    wait_for_status(&apps, "web", "Blocked=True before revision 2", |status| {
        blocked_message(status).is_some()
    })
    .await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    let status = wait_for_status(&apps, "web", "Blocked=True", |status| {
        blocked_message(status).is_some()
    })
    .await?;
    let message = blocked_message(&status).unwrap_or_default();
    assert!(
        message.contains("release freeze until Monday") && message.contains("freeze"),
        "{message}"
    );
    assert!(
        releases.get_opt("web-2").await?.is_none(),
        "no Release while blocked"
    );

    // The override names the block: this rollout goes through.
    let mut overridden = application("web", spec("web:2"))?;
    overridden
        .annotations_mut()
        .insert(OVERRIDE_ROLLOUT_BLOCK_ANNOTATION.into(), "freeze".into());
    apply(&apps, &overridden).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    patch_release_spec(&releases, "web-2", json!({"targetStep": 2})).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let blocks = Api::<RolloutBlock>::namespaced(client.clone(), namespace);
    let recorded = wait_until("the override is recorded", DEFAULT_TIMEOUT, || async {
        let block = blocks.get("freeze").await?;
        Ok(block.status.filter(|s| !s.overrides.is_empty()))
    })
    .await?;
    assert_eq!(recorded.overrides.len(), 1, "{:?}", recorded.overrides);
    assert_eq!(
        (
            recorded.overrides[0].application.as_str(),
            recorded.overrides[0].release.as_str()
        ),
        (format!("{namespace}/web").as_str(), "web-2")
    );
    Ok(())
}

#[tokio::test]
async fn a_global_block_holds_a_rollout_at_its_step_until_it_is_lifted() -> anyhow::Result<()> {
    let env = TestEnv::new("block-step").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let global = global_namespace(&env);
    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": global}}))?;
    namespaces
        .patch(
            &global,
            &PatchParams::apply(common::TEST_MANAGER),
            &Patch::Apply(&namespace),
        )
        .await?;

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;

    block(&client, &global, "incident", "incident 42: hands off").await?;
    // The controller has seen the block before it sees the promotion: they come through
    // different watches, whose events may arrive in either order. (web-2, held by its manual
    // gate, does not report the block until it is promoted; the Application does at once.)
    wait_for_status(&apps, "web", "Blocked=True", |status| {
        blocked_message(status).is_some_and(|m| m.contains("incident 42"))
    })
    .await?;
    patch_release_spec(&releases, "web-2", json!({"targetStep": 2})).await?;
    let held = wait_until("web-2 reports the block", DEFAULT_TIMEOUT, || async {
        let release = releases.get("web-2").await?;
        let blocked = release.status.as_ref().is_some_and(|s| {
            conditions::find(&s.conditions, conditions::release::BLOCKED)
                .is_some_and(|c| c.status == "True" && c.message.contains("incident 42"))
        });
        Ok(blocked.then_some(release))
    })
    .await?;
    let status = held.status.unwrap_or_default();
    assert_eq!(
        status.step,
        Some(0),
        "the step does not advance while blocked"
    );
    assert_ne!(status.phase, Some(ReleasePhase::Complete));

    Api::<RolloutBlock>::namespaced(client.clone(), &global)
        .delete("incident", &Default::default())
        .await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let _ = namespaces.delete(&global, &Default::default()).await;
    Ok(())
}
