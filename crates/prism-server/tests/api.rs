//! End to end: the HTTP API of `prism serve` on the sandbox, each resource and action for a
//! caller allowed (200), one who is not (403) and one without a token (401); what a caller
//! allowed in one namespace sees of another; live updates; failing pods.

mod common;

use std::time::{Duration, Instant};

use common::{
    Http, application, apply, caller, operator_rules, serve, viewer_rules, wait_for,
    web_waiting_at_its_first_step,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use prism_api::Application;
use prism_api::release::ReleasePhase;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

fn names(summaries: &Value) -> Vec<String> {
    summaries
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    format!(
                        "{}/{}",
                        item["namespace"].as_str().unwrap_or(""),
                        item["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn each_resource_and_action_is_allowed_refused_or_unauthenticated_as_kubectl_would_be()
-> anyhow::Result<()> {
    let env = TestEnv::new("api-access").await;
    let served = serve(&env).await?;
    let ns = env.namespace();
    let operator = caller(&env, ns, "operator", operator_rules()).await?;
    let viewer = caller(&env, ns, "viewer", viewer_rules()).await?;
    let outsider = caller(&env, ns, "outsider", json!([])).await?;

    // Another team's namespace, with an Application the operator may not see.
    let other = format!("{ns}-other");
    let namespaces = Api::<Namespace>::all(served.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}}))?,
        )
        .await?;
    let hidden = application("hidden", "web:1", 1, json!({}))?;
    apply(
        &Api::<Application>::namespaced(served.client.clone(), &other),
        &hidden,
    )
    .await?;

    web_waiting_at_its_first_step(&served).await?;

    let as_operator = Http::new(&served, Some(&operator));
    let as_viewer = Http::new(&served, Some(&viewer));
    let as_outsider = Http::new(&served, Some(&outsider));
    let anonymous = Http::new(&served, None);
    let app = format!("/api/v1/namespaces/{ns}/applications/web");

    for path in [
        "/api/v1/fleet".to_owned(),
        "/api/v1/applications".to_owned(),
        app.clone(),
        format!("{app}/releases"),
        format!("{app}/versions"),
        format!("{app}/pods"),
    ] {
        let (status, body) = as_operator.get(&path).await?;
        assert_eq!(status, 200, "{path}: {body}");
        let (status, body) = as_outsider.get(&path).await?;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("may"),
            "{path}: {body}"
        );
        let (status, _) = anonymous.get(&path).await?;
        assert_eq!(status, 401, "{path}");
    }

    // The operator sees their namespace's application, never the other's, in every list.
    let (_, fleet) = as_operator.get("/api/v1/fleet").await?;
    assert_eq!(names(&fleet["applications"]), [format!("{ns}/web")]);
    let (_, list) = as_operator.get("/api/v1/applications").await?;
    assert_eq!(names(&list["items"]), [format!("{ns}/web")]);
    let (status, _) = as_operator
        .get(&format!("/api/v1/namespaces/{other}/applications/hidden"))
        .await?;
    assert_eq!(status, 403);
    let (status, _) = as_operator
        .get(&format!("/api/v1/applications?namespace={other}"))
        .await?;
    assert_eq!(status, 403);
    // Clusters are the cluster admin's to list: the operator's fleet has none.
    assert_eq!(fleet["clusters"], Value::Null);

    // One application across every cluster: where the rollout is and what it waits for.
    let (_, detail) = as_operator.get(&app).await?;
    assert_eq!(detail["rollout"]["release"], "web-2");
    assert_eq!(detail["timeline"][0]["state"], "current");
    assert_eq!(detail["timeline"][0]["gate"], "approval");
    assert!(
        detail["rollout"]["waitingFor"]
            .as_str()
            .unwrap_or("")
            .contains("prism promote"),
        "{detail}"
    );
    assert_eq!(detail["grid"].as_array().map(Vec::len), Some(6), "{detail}");
    assert_eq!(
        detail["allowed"],
        json!({"promote": true, "abort": true, "rollback": true})
    );
    let (_, seen_by_viewer) = as_viewer.get(&app).await?;
    assert_eq!(
        seen_by_viewer["allowed"],
        json!({"promote": false, "abort": false, "rollback": false})
    );

    // Actions: refused for the viewer and the outsider, unauthenticated without a token.
    for (who, expected) in [(&as_viewer, 403), (&as_outsider, 403), (&anonymous, 401)] {
        for action in ["promote", "abort", "rollback"] {
            let (status, body) = who.post(&format!("{app}/{action}"), json!({})).await?;
            assert_eq!(status, expected, "{action}: {body}");
        }
    }
    let (status, body) = as_operator
        .post(&format!("{app}/promote"), json!({}))
        .await?;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("promoted web-2 to step 2/3 \"half\""))
    );
    wait_for(
        &served.releases,
        "web-2",
        ReleasePhase::WaitingForCommand,
        Some(1),
    )
    .await?;
    let (status, _) = as_operator
        .post(&format!("{app}/promote"), json!({"full": true}))
        .await?;
    assert_eq!(status, 200);
    wait_for(&served.releases, "web-2", ReleasePhase::Complete, None).await?;
    // The CLI's refusals are 409s with its words.
    let (status, body) = as_operator.post(&format!("{app}/abort"), json!({})).await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("nothing to abort"),
        "{body}"
    );
    let (status, _) = as_operator
        .post(&format!("{app}/rollback"), json!({"to": 99}))
        .await?;
    assert_eq!(status, 404);
    let (status, body) = as_operator
        .post(&format!("{app}/rollback"), json!({"to": 1}))
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_until("the rollback's Release web-3", DEFAULT_TIMEOUT, || async {
        Ok(served.releases.get_opt("web-3").await?)
    })
    .await?;
    // A POST that is not JSON is refused: a form on another site cannot act for a signed-in user.
    let form = reqwest::Client::new()
        .post(format!("{}{app}/abort", served.url))
        .bearer_auth(&operator)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await?;
    assert_eq!(form.status().as_u16(), 415);

    namespaces.delete(&other, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn a_step_change_reaches_a_subscribed_client_within_a_second() -> anyhow::Result<()> {
    let env = TestEnv::new("api-stream").await;
    let served = serve(&env).await?;
    let operator = caller(&env, env.namespace(), "operator", operator_rules()).await?;
    web_waiting_at_its_first_step(&served).await?;

    let http = Http::new(&served, Some(&operator));
    let app = format!("/api/v1/namespaces/{}/applications/web", env.namespace());
    let mut app_stream = http.stream(&format!("{app}/stream")).await?;
    let mut fleet_stream = http.stream("/api/v1/fleet/stream").await?;
    let (event, first) = app_stream.next().await?;
    assert_eq!(
        (event.as_str(), &first["rollout"]["step"]),
        ("update", &json!(0))
    );
    fleet_stream.next().await?;

    // When the management cluster's watch shows the step moved, the stream must follow within
    // a second.
    let mut watch = std::pin::pin!(
        watcher(
            served.releases.clone(),
            watcher::Config::default().fields("metadata.name=web-2")
        )
        .applied_objects()
    );
    served
        .releases
        .patch(
            "web-2",
            &PatchParams::apply("api-test"),
            &Patch::Merge(json!({"spec": {"targetStep": 1}})),
        )
        .await?;
    let moved = tokio::time::timeout(DEFAULT_TIMEOUT, async {
        while let Some(release) = watch.next().await {
            if release?.status.and_then(|s| s.step) == Some(1) {
                return anyhow::Ok(Instant::now());
            }
        }
        anyhow::bail!("the watch ended")
    })
    .await??;
    let app_at = tokio::time::timeout(DEFAULT_TIMEOUT, delivered(&mut app_stream)).await??;
    let fleet_at = tokio::time::timeout(DEFAULT_TIMEOUT, delivered(&mut fleet_stream)).await??;
    let late = |at: Instant| at.saturating_duration_since(moved);
    eprintln!(
        "step change delivered {:?} (application) and {:?} (fleet) after the watch saw it",
        late(app_at),
        late(fleet_at)
    );
    assert!(late(app_at) < Duration::from_secs(1), "{:?}", late(app_at));
    assert!(
        late(fleet_at) < Duration::from_secs(1),
        "{:?}",
        late(fleet_at)
    );
    Ok(())
}

/// When `stream` delivers web at step 1: an application's update, or the fleet's.
async fn delivered(stream: &mut common::Events) -> anyhow::Result<Instant> {
    loop {
        let (_, update) = stream.next().await?;
        let step = update["rollout"]["step"].clone();
        let in_fleet = update["applications"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == "web"))
            .map(|a| a["step"].clone());
        if step == json!(1) || in_fleet == Some(json!(1)) {
            return Ok(Instant::now());
        }
    }
}

#[tokio::test]
async fn a_pod_that_fails_in_one_cluster_is_listed_there_with_its_reason() -> anyhow::Result<()> {
    let env = TestEnv::new("api-pods").await;
    let served = serve(&env).await?;
    let operator = caller(&env, env.namespace(), "operator", operator_rules()).await?;
    let crashing_in_c2 = json!({"sandbox.prism.dev/fail-c2": "CrashLoopBackOff"});
    apply(
        &served.apps,
        &application("web", "web:1", 2, crashing_in_c2)?,
    )
    .await?;

    let http = Http::new(&served, Some(&operator));
    let path = format!(
        "/api/v1/namespaces/{}/applications/web/pods",
        env.namespace()
    );
    let c2 = env.cluster_object_name("c2");
    let pods = wait_until("a failing pod of web in c2", DEFAULT_TIMEOUT, || async {
        let (_, body) = http.get(&path).await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        Ok((!items.is_empty()).then_some(items))
    })
    .await?;
    for pod in &pods {
        assert_eq!(pod["cluster"], json!(c2), "{pod}");
        assert_eq!(pod["reason"], "CrashLoopBackOff", "{pod}");
        assert_eq!(pod["application"], "web", "{pod}");
        assert_eq!(pod["release"], "web-1", "{pod}");
        assert!(pod["since"].is_string(), "{pod}");
    }
    let (_, fleet) = http.get("/api/v1/fleet").await?;
    let web = &fleet["applications"][0];
    assert_eq!(
        (web["name"].as_str(), web["failingPods"].as_u64()),
        (Some("web"), Some(pods.len() as u64))
    );
    Ok(())
}

#[tokio::test]
async fn the_dashboard_shows_and_does_what_the_kubeconfigs_user_may_on_loopback_only()
-> anyhow::Result<()> {
    let env = TestEnv::new("api-dashboard").await;
    let served = serve(&env).await?;
    let ns = env.namespace();
    caller(&env, ns, "operator", operator_rules()).await?;
    caller(&env, ns, "viewer", viewer_rules()).await?;
    apply(&served.apps, &application("web", "web:1", 1, json!({}))?).await?;
    wait_for(&served.releases, "web-1", ReleasePhase::Complete, None).await?;

    let any_address = prism_server::bind("0.0.0.0:0".parse()?, prism_server::Mode::Dashboard).await;
    assert!(any_address.is_err(), "the dashboard bound to every address");

    // One dashboard per person, each with their own kubeconfig's rights.
    let mut dashboards = Vec::new();
    for person in ["operator", "viewer"] {
        let client =
            prism_testkit::identity::service_account_client(env.cluster("c1"), ns, person).await?;
        let listener =
            prism_server::bind("127.0.0.1:0".parse()?, prism_server::Mode::Dashboard).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let options = prism_server::Options {
            mode: prism_server::Mode::Dashboard,
            namespace: Some(ns.to_owned()),
            cluster_selector: Some(env.cluster_selector()),
        };
        let task = prism_testkit::spawn_for_test(prism_server::serve(
            client,
            options,
            listener,
            std::future::pending(),
        ));
        dashboards.push((person, Http::at(&url, None), task));
    }
    let app = format!("/api/v1/namespaces/{ns}/applications/web");
    for (person, http, _) in &dashboards {
        let (status, whoami) = http.get("/api/v1/whoami").await?;
        assert_eq!(status, 200);
        assert_eq!(
            whoami["user"],
            json!(format!("system:serviceaccount:{ns}:{person}"))
        );
        assert_eq!(whoami["mode"], "dashboard");
        let detail = wait_until(
            "the dashboard's caches list web",
            DEFAULT_TIMEOUT,
            || async {
                let (status, body) = http.get(&app).await?;
                Ok((status == 200).then_some(body))
            },
        )
        .await?;
        let may_act = *person == "operator";
        assert_eq!(detail["allowed"]["promote"], json!(may_act), "{person}");
        let (status, _) = http.post(&format!("{app}/abort"), json!({})).await?;
        assert_eq!(status, if may_act { 409 } else { 403 }, "{person}");
    }
    Ok(())
}
