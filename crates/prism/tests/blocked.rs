//! End-to-end: under a RolloutBlock, `prism promote` and `prism rollback` refuse (exit 4),
//! naming the block and the ways past it, and change nothing, so nothing moves by itself when
//! the block is lifted; `promote --when-unblocked` records the promotion and says it waits.

mod run;

use std::process::Output;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release, RolloutBlock, conditions};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use run::{application, prism, text, with_controller};
use serde_json::json;

async fn in_namespace(env: &TestEnv, args: &[&str]) -> Output {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["-n", env.namespace()])
        .collect();
    prism(env, &args).await
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

async fn deploy(apps: &Api<Application>, image: &str) {
    apps.patch(
        "web",
        &PatchParams::apply("prism-tests").force(),
        &Patch::Apply(&application(image)),
    )
    .await
    .unwrap();
}

/// Waits until the Release `name` is in `phase`, at the step index `step` if given.
async fn wait_for(releases: &Api<Release>, name: &str, step: Option<u32>, phase: ReleasePhase) {
    wait_until(
        format!("{name} is {phase:?} at step {step:?}"),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            Ok(release
                .and_then(|r| r.status)
                .filter(|s| s.phase == Some(phase) && step.is_none_or(|step| s.step == Some(step))))
        },
    )
    .await
    .unwrap();
}

async fn set_block(blocks: &Api<RolloutBlock>) {
    let block: RolloutBlock = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "RolloutBlock",
        "metadata": {"name": "freeze"},
        "spec": {"message": "release freeze until Monday"},
    }))
    .unwrap();
    blocks
        .patch(
            "freeze",
            &PatchParams::apply("prism-tests"),
            &Patch::Apply(&block),
        )
        .await
        .unwrap();
}

/// Lifts the block, and waits until the controller has seen it go.
async fn lift_block(blocks: &Api<RolloutBlock>, apps: &Api<Application>) {
    blocks
        .delete("freeze", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("web is no longer Blocked", DEFAULT_TIMEOUT, || async {
        let app = apps.get("web").await?;
        let blocked = app.status.is_some_and(|status| {
            conditions::is_true(&status.conditions, conditions::application::BLOCKED)
        });
        Ok((!blocked).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn promote_under_a_block_is_refused_unless_it_is_asked_to_wait() {
    let env = TestEnv::new("promote-blocked").await;
    let (apps, releases, _controller) = with_controller(&env).await;
    let blocks: Api<RolloutBlock> = Api::namespaced(env.cluster("c1").client(), env.namespace());
    let namespace = env.namespace();

    // The first Release has no incumbent to wait for; the second waits for a command at its
    // first step.
    deploy(&apps, "web:1").await;
    wait_for(&releases, "web-1", None, ReleasePhase::Complete).await;
    deploy(&apps, "web:2").await;
    wait_for(&releases, "web-2", Some(0), ReleasePhase::WaitingForCommand).await;

    set_block(&blocks).await;
    let refused = in_namespace(&env, &["promote", "web"]).await;
    assert_exit(&refused, 4);
    let said = text(&refused.stderr);
    for part in [
        "nothing was changed: web-2 stays at step 1/2 \"canary\"",
        &format!("RolloutBlock {namespace}/freeze: release freeze until Monday"),
        "prism.dev/override-rollout-block: freeze",
        &format!("prism promote web -n {namespace} --when-unblocked"),
    ] {
        assert!(said.contains(part), "{part:?} not in: {said}");
    }
    assert_eq!(releases.get("web-2").await.unwrap().spec.target_step, None);

    // A rollback would make a new revision, which the block stops: refused too.
    let template = apps.get("web").await.unwrap().spec.template;
    let rollback = in_namespace(&env, &["rollback", "web", "--to", "1"]).await;
    assert_exit(&rollback, 4);
    assert!(
        text(&rollback.stderr).contains("no new revision of web (the rollback) is made"),
        "{}",
        text(&rollback.stderr)
    );
    assert_eq!(apps.get("web").await.unwrap().spec.template, template);

    // Lifted, the block leaves the rollout where it was: nothing was promoted.
    lift_block(&blocks, &apps).await;
    let web_2 = releases.get("web-2").await.unwrap();
    assert_eq!(web_2.spec.target_step, None);
    let status = web_2.status.unwrap();
    assert_eq!(
        (status.step, status.phase),
        (Some(0), Some(ReleasePhase::WaitingForCommand))
    );

    // Asked to wait, the promotion is recorded and says so; it takes effect with the lift.
    set_block(&blocks).await;
    let waiting = in_namespace(&env, &["promote", "web", "--when-unblocked"]).await;
    assert_exit(&waiting, 0);
    let said = text(&waiting.stdout);
    assert!(
        said.starts_with(
            "promoted web-2 to step 2/2 \"full\", but it waits: web-2 stays at step 1/2 \
             \"canary\" until the block is lifted or passed:\n"
        ) && said.contains(&format!("RolloutBlock {namespace}/freeze")),
        "{said}"
    );
    assert_eq!(
        releases.get("web-2").await.unwrap().spec.target_step,
        Some(1)
    );
    lift_block(&blocks, &apps).await;
    wait_for(&releases, "web-2", None, ReleasePhase::Complete).await;
}
