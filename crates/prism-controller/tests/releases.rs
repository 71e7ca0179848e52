//! The Application controller on the sandbox (c1 is the management cluster): each change of an
//! Application's template makes a Release, nothing else does (a change of strategy applies to the
//! Release in flight and restarts nothing), old Releases are pruned, and an invalid Application
//! is reported and gets none.

mod common;

use std::collections::BTreeSet;

use anyhow::Context as _;
use common::{
    application, apply, apply_strategy, canary_steps, patch_release_spec, setup, valid_condition,
    wait_for_event, wait_for_phase, wait_for_status, wait_for_step,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use prism_api::Release;
use prism_api::application::ApplicationPhase;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

fn template(image: &str) -> Value {
    web_template(image, 2)
}

async fn release_names(releases: &Api<Release>, app: &str) -> anyhow::Result<BTreeSet<String>> {
    let list = releases
        .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
        .await?;
    Ok(list.items.iter().map(ResourceExt::name_any).collect())
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn an_application_gets_release_1() -> anyhow::Result<()> {
    let env = TestEnv::new("app-release-1").await;
    let (_client, apps, releases, _controller) = setup(&env).await?;

    let web = apply(
        &apps,
        &application(
            "web",
            json!({"template": template("web:1"), "strategy": {"steps": canary_steps()}}),
        )?,
    )
    .await?;

    let release = wait_until("Release web-1 exists", DEFAULT_TIMEOUT, || async {
        Ok(releases.get_opt("web-1").await?)
    })
    .await?;
    assert_eq!(release.spec.revision, 1);
    assert_eq!(release.spec.application, "web");
    assert_eq!(release.labels()["prism.dev/app"], "web");
    assert_eq!(release.labels()["prism.dev/release"], "web-1");
    let owner = &release.owner_references()[0];
    assert_eq!(owner.kind, "Application");
    assert_eq!(owner.name, "web");
    assert_eq!(Some(&owner.uid), web.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(release.spec.template, web.spec.template);
    assert_eq!(
        Some(&release.spec.strategy.steps),
        web.spec.strategy.steps.as_ref()
    );
    assert_eq!(release.spec.clusters.len(), 1);

    // A first release has no incumbent to shift from: it is rolled out at once.
    let status = wait_for_status(&apps, "web", "web-1 is complete", |s| {
        s.current_revision == Some(1) && s.phase == Some(ApplicationPhase::Complete)
    })
    .await?;
    assert_eq!(status.incumbent.as_deref(), Some("web-1"));
    assert_eq!(status.contender, None);
    assert_eq!(status.strategy.as_deref(), Some("inline"));
    let valid = valid_condition(&status).context("no Valid condition")?;
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "Valid")
    );
    Ok(())
}

#[tokio::test]
async fn a_template_change_makes_a_release_and_nothing_else_does() -> anyhow::Result<()> {
    let env = TestEnv::new("app-release-change").await;
    let (_client, apps, releases, _controller) = setup(&env).await?;
    // The canary waits for a command, so that web-2 is still the contender when it is checked:
    // without a gate, its pods can be ready and the rollout complete before the first look.
    let mut steps = canary_steps();
    steps[0]["gate"] = json!({"manual": true});
    let spec = |image: &str, history: u32| {
        json!({
            "template": template(image),
            "strategy": {"steps": steps},
            "revisionHistoryLimit": history,
        })
    };

    // web-1 must be complete before web-2 is made: a Release that supersedes an unfinished first
    // release has no incumbent either, and goes straight to its last step.
    apply(&apps, &application("web", spec("web:1", 10))?).await?;
    wait_for_status(&apps, "web", "web-1 is complete", |s| {
        s.current_revision == Some(1) && s.phase == Some(ApplicationPhase::Complete)
    })
    .await?;

    apply(&apps, &application("web", spec("web:2", 10))?).await?;
    let status = wait_for_status(&apps, "web", "current revision 2", |s| {
        s.current_revision == Some(2)
    })
    .await?;
    assert_eq!(status.contender.as_deref(), Some("web-2"));
    let web_2 = releases.get("web-2").await?;
    assert_eq!(web_2.spec.revision, 2);
    assert_eq!(
        web_2
            .spec
            .template
            .pod_template()
            .unwrap()
            .spec
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some("web:2")
    );

    // The same spec again, then a label: neither changes the generation, nor makes a Release.
    apply(&apps, &application("web", spec("web:2", 10))?).await?;
    let mut labelled = application("web", spec("web:2", 10))?;
    labelled
        .labels_mut()
        .insert("team".into(), "payments".into());
    apply(&apps, &labelled).await?;
    // A change of spec that is neither template nor strategy: once the status has caught up
    // with it, the controller has seen the changes before it too.
    let mut history = application("web", spec("web:2", 9))?;
    history
        .labels_mut()
        .insert("team".into(), "payments".into());
    let applied = apply(&apps, &history).await?;
    wait_for_status(&apps, "web", "the history limit is observed", |s| {
        s.observed_generation == applied.metadata.generation
    })
    .await?;
    assert_eq!(
        release_names(&releases, "web").await?,
        names(&["web-1", "web-2"])
    );
    // And the newest Release's spec was not written again (its status moves with the rollout).
    let now = releases.get("web-2").await?;
    assert_eq!(now.metadata.generation, web_2.metadata.generation);
    assert_eq!(now.spec, web_2.spec);
    Ok(())
}

/// The uid of every Deployment and pod of the application in the test's namespace, by name.
async fn workload_uids(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<BTreeSet<(String, String)>> {
    let selector = ListParams::default().labels("prism.dev/app=web");
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?;
    let uid = |meta: &kube::api::ObjectMeta| {
        (
            meta.name.clone().unwrap_or_default(),
            meta.uid.clone().unwrap_or_default(),
        )
    };
    Ok(deployments
        .items
        .iter()
        .map(|d| uid(&d.metadata))
        .chain(pods.items.iter().map(|p| uid(&p.metadata)))
        .collect())
}

#[tokio::test]
async fn a_strategy_change_applies_to_the_release_in_flight_and_restarts_nothing()
-> anyhow::Result<()> {
    let env = TestEnv::new("app-release-strategy").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    // Every step runs all of both versions' pods: only the traffic moves, so that no pod has a
    // reason to come or go but a new Release.
    let steps = |weight: u32, pause: &str| {
        json!([
            {"name": "canary", "capacity": {"contender": "100%"}, "traffic": {"contender": weight}, "gate": {"pause": pause}},
            {"name": "half", "capacity": {"contender": "100%"}, "traffic": {"contender": 75}, "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
        ])
    };
    let spec = |image: &str, steps: Value| json!({"template": web_template(image, 4), "strategy": {"steps": steps}});
    apply(&apps, &application("web", spec("web:1", steps(25, "10m")))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2", steps(25, "10m")))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    let before = workload_uids(&client, env.namespace()).await?;
    let generation = releases.get("web-2").await?.metadata.generation;

    // A new weight, in the middle of the pause: the rollout goes on under it, at its step.
    apply(&apps, &application("web", spec("web:2", steps(50, "10m")))?).await?;
    let weighted = wait_until("web-2 serves 50% at step 1", DEFAULT_TIMEOUT, || async {
        let release = releases.get("web-2").await?;
        let status = release.status.clone().unwrap_or_default();
        let serves = status.clusters.iter().all(|c| c.weight == 50) && !status.clusters.is_empty();
        Ok((status.step == Some(0) && status.achieved_at.is_some() && serves).then_some(release))
    })
    .await?;
    assert_ne!(
        weighted.metadata.generation, generation,
        "its strategy was updated"
    );
    assert_eq!(
        weighted.spec.strategy.steps[0]
            .traffic
            .as_ref()
            .and_then(|t| t.contender),
        Some(50)
    );
    wait_for_event(&client, env.namespace(), "web-2", "StrategyUpdated", |_| {
        true
    })
    .await?;

    // A shorter pause: the step it pauses ends sooner, long before the 10 minutes.
    apply(&apps, &application("web", spec("web:2", steps(50, "1s")))?).await?;
    let waiting = wait_for_phase(&releases, "web-2", ReleasePhase::WaitingForCommand).await?;
    assert_eq!(waiting.status.as_ref().and_then(|s| s.step), Some(1));

    assert_eq!(
        release_names(&releases, "web").await?,
        names(&["web-1", "web-2"]),
        "a strategy change makes no Release"
    );
    assert_eq!(
        workload_uids(&client, env.namespace()).await?,
        before,
        "no Deployment and no pod was made or replaced"
    );
    Ok(())
}

#[tokio::test]
async fn an_edit_of_the_named_strategy_applies_to_the_release_in_flight() -> anyhow::Result<()> {
    let env = TestEnv::new("app-release-strategy-named").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let steps = |pause: &str| {
        json!([
            {"name": "canary", "capacity": {"contender": "100%"}, "traffic": {"contender": 25}, "gate": {"pause": pause}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
        ])
    };
    apply_strategy(&client, env.namespace(), "canary", steps("10m")).await?;
    let spec =
        |image: &str| json!({"template": web_template(image, 2), "strategy": {"name": "canary"}});
    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    let before = workload_uids(&client, env.namespace()).await?;

    // The Strategy's pause shortened: web-2, paused for 10 minutes, completes.
    apply_strategy(&client, env.namespace(), "canary", steps("1s")).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    assert_eq!(
        release_names(&releases, "web").await?,
        names(&["web-1", "web-2"]),
        "a strategy change makes no Release"
    );
    // web-1 retired: of what there was, only web-2's Deployment and pods are left, the same.
    let after = workload_uids(&client, env.namespace()).await?;
    let web_2 = |uids: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        uids.iter()
            .filter(|(name, _)| name.starts_with("web-2"))
            .cloned()
            .collect()
    };
    assert_eq!(
        web_2(&after),
        web_2(&before),
        "web-2 was not installed again"
    );
    Ok(())
}

#[tokio::test]
async fn old_releases_beyond_the_history_limit_are_pruned() -> anyhow::Result<()> {
    let env = TestEnv::new("app-release-prune").await;
    let (_client, apps, releases, _controller) = setup(&env).await?;
    // Each new release waits at its first step, so that older ones stay unfinished.
    let roll = |image: String, expected: BTreeSet<String>| {
        let apps = apps.clone();
        let releases = releases.clone();
        async move {
            let spec = json!({
                "template": template(&image),
                "strategy": {"steps": [
                    {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"manual": true}},
                    {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
                ]},
                "revisionHistoryLimit": 1,
            });
            apply(&apps, &application("web", spec)?).await?;
            wait_until(
                format!("the Releases after {image} are {expected:?}"),
                DEFAULT_TIMEOUT,
                || async {
                    let found = release_names(&releases, "web").await?;
                    Ok((found == expected).then_some(()))
                },
            )
            .await
        }
    };

    // web-1, the first, completes at once and is the incumbent.
    roll("web:1".into(), names(&["web-1"])).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    roll("web:2".into(), names(&["web-1", "web-2"])).await?;
    // Newest 3 and incumbent 1; of the others (2) the limit keeps one.
    roll("web:3".into(), names(&["web-1", "web-2", "web-3"])).await?;
    roll("web:4".into(), names(&["web-1", "web-3", "web-4"])).await?;

    // web-4 completes and becomes the incumbent: web-1 is history now, older than web-3.
    patch_release_spec(&releases, "web-4", json!({"targetStep": 2})).await?;
    wait_for_status(&apps, "web", "web-4 is the incumbent", |s| {
        s.incumbent.as_deref() == Some("web-4")
    })
    .await?;
    roll("web:5".into(), names(&["web-3", "web-4", "web-5"])).await?;
    wait_for_status(&apps, "web", "current revision 5", |s| {
        s.current_revision == Some(5)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_application_is_reported_and_gets_no_release() -> anyhow::Result<()> {
    let env = TestEnv::new("app-release-invalid").await;
    let (client, apps, releases, _controller) = setup(&env).await?;

    // A Strategy that does not exist.
    apply(
        &apps,
        &application(
            "missing",
            json!({"template": template("web:1"), "strategy": {"name": "canary"}}),
        )?,
    )
    .await?;
    let status = wait_for_status(&apps, "missing", "StrategyNotFound", |s| {
        valid_condition(s).is_some_and(|c| c.status == "False" && c.reason == "StrategyNotFound")
    })
    .await?;
    assert!(
        valid_condition(&status)
            .unwrap()
            .message
            .contains("spec.strategy.name"),
        "{status:?}"
    );
    assert_eq!(release_names(&releases, "missing").await?, BTreeSet::new());
    wait_for_event(
        &client,
        env.namespace(),
        "missing",
        "StrategyNotFound",
        |e| e.type_.as_deref() == Some("Warning"),
    )
    .await?;

    // A strategy the API server accepts but that sends traffic to a contender without pods.
    apply(
        &apps,
        &application(
            "dark",
            json!({
                "template": template("web:1"),
                "strategy": {"steps": [
                    {"name": "dark", "traffic": {"contender": 10}},
                    {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
                ]},
            }),
        )?,
    )
    .await?;
    let status = wait_for_status(&apps, "dark", "InvalidSpec", |s| {
        valid_condition(s).is_some_and(|c| c.status == "False" && c.reason == "InvalidSpec")
    })
    .await?;
    assert!(
        valid_condition(&status)
            .unwrap()
            .message
            .contains("spec.strategy.steps[0]"),
        "{status:?}"
    );
    assert_eq!(release_names(&releases, "dark").await?, BTreeSet::new());

    // Once the Strategy exists, the Application that names it is valid and gets its Release.
    apply_strategy(&client, env.namespace(), "canary", canary_steps()).await?;
    let status = wait_for_status(&apps, "missing", "current revision 1", |s| {
        s.current_revision == Some(1)
    })
    .await?;
    let valid = valid_condition(&status).unwrap();
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "Valid")
    );
    assert_eq!(status.strategy.as_deref(), Some("canary"));
    Ok(())
}
