//! End-to-end: a write that one application cluster refuses (here its ValidatingAdmissionPolicy
//! refuses the new version's Deployment) is seen in the Release's status, in a Warning Event and
//! in `prism status`, while the other clusters go on; past the progress deadline the refusing
//! cluster fails its step like any other, and the release rolls back. A cluster that accepts the
//! writes again clears its refusal by itself.

mod run;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use prism_api::conditions::{self, Condition};
use prism_api::release::{AbortCause, ClusterPhase, ClusterProgress, ReleasePhase};
use prism_api::{Application, Release};
use prism_testkit::admission::RefusingPolicy;
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use run::{prism, text, with_controller};
use serde_json::{Value, json};

/// What the cluster's policy says when it refuses.
const POLICY_MESSAGE: &str = "this cluster does not run web-2";

/// `web` running `image` with 2 replicas on all three clusters, under `strategy`.
async fn deploy(apps: &Api<Application>, image: &str, strategy: Value) {
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "template": web_template(image, 2),
            "strategy": strategy,
            "schedule": {"clusters": 3},
        },
    }))
    .unwrap();
    apps.patch(
        "web",
        &PatchParams::apply("prism-tests").force(),
        &Patch::Apply(&app),
    )
    .await
    .unwrap();
}

/// Waits until Release `name` passes `check`.
async fn wait_for_release(
    releases: &Api<Release>,
    name: &str,
    what: &str,
    check: impl Fn(&Release) -> bool,
) -> Release {
    wait_until(
        format!("Release {name}: {what}"),
        DEFAULT_TIMEOUT,
        || async { Ok(releases.get_opt(name).await?.filter(|r| check(r))) },
    )
    .await
    .unwrap()
}

fn cluster<'a>(release: &'a Release, name: &str) -> Option<&'a ClusterProgress> {
    release
        .status
        .as_ref()?
        .clusters
        .iter()
        .find(|c| c.name == name)
}

fn writes_refused(release: &Release) -> Option<&Condition> {
    conditions::find(
        &release.status.as_ref()?.conditions,
        conditions::release::WRITES_REFUSED,
    )
}

fn message_of(release: &Release, cluster_name: &str) -> String {
    cluster(release, cluster_name)
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

/// The Warning Events `WriteRefused` about Release `release`.
async fn refusal_events(env: &TestEnv, release: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(env.cluster("c1").client(), env.namespace());
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("WriteRefused")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(release)
        })
        .collect()
}

#[tokio::test]
async fn a_refused_write_is_reported_and_fails_its_cluster_at_the_progress_deadline() {
    let env = TestEnv::new("refused-writes").await;
    let client = env.cluster("c1").client();
    let (apps, releases, _controller) = with_controller(&env).await;
    let _fleet = TestFleet::join(&env, &client).await.unwrap();
    let strategy = json!({
        "steps": [
            {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
             "traffic": {"contender": 100}}
        ],
        // The deadline holds for web-1 too: it leaves a slow machine time to make pods ready.
        "waves": {"progressDeadline": "30s", "failureBudget": 0},
    });
    deploy(&apps, "web:1", strategy.clone()).await;
    wait_for_release(&releases, "web-1", "Complete", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete)
    })
    .await;

    let _policy = RefusingPolicy::refuse_deployment(&env, "c3", "web-2", POLICY_MESSAGE)
        .await
        .unwrap();
    deploy(&apps, "web:2", strategy).await;
    let (c1, c2, c3) = (
        env.cluster_object_name("c1"),
        env.cluster_object_name("c2"),
        env.cluster_object_name("c3"),
    );

    // The refusal is on c3's entry, with the API server's words, and in the WritesRefused
    // condition, while c1 and c2 reach the canary.
    let refused = wait_for_release(
        &releases,
        "web-2",
        "c3 refuses its writes while c1 and c2 reach the canary",
        |r| {
            let achieved =
                |name: &str| cluster(r, name).is_some_and(|c| c.phase == ClusterPhase::Achieved);
            message_of(r, &c3).contains(POLICY_MESSAGE) && achieved(&c1) && achieved(&c2)
        },
    )
    .await;
    let c3_entry = cluster(&refused, &c3).unwrap();
    assert_eq!(c3_entry.phase, ClusterPhase::Progressing);
    assert!(
        c3_entry
            .message
            .as_deref()
            .unwrap()
            .starts_with("writes refused: apply of Deployment web-2 refused"),
        "{c3_entry:?}"
    );
    let condition = writes_refused(&refused).expect("a WritesRefused condition");
    assert_eq!(condition.status, "True");
    assert!(
        condition.message.contains(&c3) && condition.message.contains(POLICY_MESSAGE),
        "{condition:?}"
    );
    for name in [&c1, &c2] {
        assert!(
            !message_of(&refused, name).contains("refused"),
            "{name} accepts the writes"
        );
    }

    // `prism status` says it on c3's row, and in its JSON.
    let table = text(
        &prism(&env, &["status", "web", "-n", env.namespace()])
            .await
            .stdout,
    );
    let row = table
        .lines()
        .find(|line| line.starts_with(&c3) && line.contains("web-2"))
        .unwrap_or_else(|| panic!("no row of web-2 in {c3}:\n{table}"));
    assert!(row.contains(POLICY_MESSAGE), "{table}");
    assert!(table.contains("Writes refused:"), "{table}");
    let json = prism(
        &env,
        &["status", "web", "-n", env.namespace(), "-o", "json"],
    )
    .await;
    let status: Value = serde_json::from_slice(&json.stdout).unwrap();
    let row = status["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["cluster"] == c3.as_str() && row["release"] == "web-2")
        .unwrap_or_else(|| panic!("no row of web-2 in {c3}: {status:#}"));
    assert!(
        row["message"].as_str().unwrap().contains(POLICY_MESSAGE),
        "{row:#}"
    );

    // Past the deadline, c3 fails the canary, saying why, and web-2 rolls back everywhere.
    let aborted = wait_for_release(&releases, "web-2", "Aborted", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Aborted)
    })
    .await;
    let abort = aborted.status.as_ref().unwrap().abort.clone().unwrap();
    assert_eq!(abort.cause, AbortCause::ProgressDeadlineExceeded);
    assert!(abort.message.contains(&c3), "{}", abort.message);
    let failed = cluster(&aborted, &c3).unwrap();
    assert_eq!(failed.phase, ClusterPhase::Failed);
    let reason = failed.message.as_deref().unwrap();
    assert!(
        reason.contains("its writes are refused") && reason.contains(POLICY_MESSAGE),
        "{reason}"
    );
    for cluster in env.clusters() {
        let deployments = Api::<Deployment>::namespaced(cluster.client(), env.namespace());
        wait_until(
            format!("web-2 is gone and web-1 whole in {}", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let web_1 = deployments.get_opt("web-1").await?;
                let whole = web_1.and_then(|d| d.status).and_then(|s| s.ready_replicas) == Some(2);
                Ok((whole && deployments.get_opt("web-2").await?.is_none()).then_some(()))
            },
        )
        .await
        .unwrap();
    }

    // One Warning Event for the refusal, however often the write was tried again.
    let events = refusal_events(&env, "web-2").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let note = events[0].note.clone().unwrap_or_default();
    assert!(
        note.contains(&c3) && note.contains(POLICY_MESSAGE),
        "{note}"
    );
}

#[tokio::test]
async fn a_cluster_that_accepts_the_writes_again_clears_its_refusal() {
    let env = TestEnv::new("refused-writes-clear").await;
    let client = env.cluster("c1").client();
    let (apps, releases, _controller) = with_controller(&env).await;
    let _fleet = TestFleet::join(&env, &client).await.unwrap();
    let c2 = env.cluster_object_name("c2");

    let policy = RefusingPolicy::refuse_deployment(&env, "c2", "web-1", POLICY_MESSAGE)
        .await
        .unwrap();
    let strategy = json!({"steps": [{"name": "full", "capacity": {"contender": "100%"},
                                     "traffic": {"contender": 100}}]});
    deploy(&apps, "web:1", strategy).await;
    let refused = wait_for_release(&releases, "web-1", "c2 refuses its writes", |r| {
        message_of(r, &c2).contains(POLICY_MESSAGE)
            && writes_refused(r).is_some_and(|c| c.status == "True")
    })
    .await;
    assert_ne!(
        refused.status.as_ref().and_then(|s| s.phase),
        Some(ReleasePhase::Complete)
    );

    policy.lift().await.unwrap();
    let complete = wait_for_release(&releases, "web-1", "Complete", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete)
    })
    .await;
    let condition = writes_refused(&complete).unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "WritesAccepted")
    );
    assert_eq!(cluster(&complete, &c2).unwrap().message, None);
    let deployments = Api::<Deployment>::namespaced(env.cluster("c2").client(), env.namespace());
    let web_1 = deployments.get("web-1").await.unwrap();
    assert_eq!(web_1.name_any(), "web-1");
}
