//! `prism versions`, `pin`, `unpin` and `retire` against the sandbox (c1 is the management
//! cluster). No controller runs: the test writes the Releases' status as the controller would, so
//! that every role the commands read is the test's choice; what the commands write is read back.

mod run;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use prism_api::labels::{APP_LABEL, PINNED_ANNOTATION, RELEASE_LABEL, RETIRE_ANNOTATION};
use prism_api::{Application, Release, ReleaseSpec};
use prism_controller::application::{release_name, schedule};
use prism_testkit::TestEnv;
use run::{application, prism, text};
use serde_json::{Value, json};

/// Four versions of `web` (`versions.name: v{revision}`): web-1 retained, web-2 draining, web-3
/// on the default route, web-4 rolling out.
async fn rainbow(test: &str) -> (TestEnv, Api<Release>) {
    let env = TestEnv::new(test).await;
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds())
        .await
        .unwrap();
    let apps: Api<Application> = Api::namespaced(client.clone(), env.namespace());
    let releases: Api<Release> = Api::namespaced(client, env.namespace());
    let mut spec = serde_json::to_value(application("web:4")).unwrap();
    spec["spec"]["versions"] = json!({"max": 4, "name": "v{revision}", "ttl": "1h"});
    let app: Application = apps
        .patch(
            "web",
            &PatchParams::apply("prism-tests"),
            &Patch::Apply(&spec),
        )
        .await
        .unwrap();
    let complete = |state: &str| {
        json!({"phase": "Complete", "step": 1, "state": state,
               "clusters": [{"name": "local", "phase": "Achieved", "replicas": 2, "readyReplicas": 2}]})
    };
    let rolling = json!({"phase": "Progressing", "step": 0, "state": "Live",
                         "clusters": [{"name": "local", "phase": "Progressing", "replicas": 1, "readyReplicas": 0}]});
    for (revision, status) in [
        (1, complete("Live")),
        (2, complete("Draining")),
        (3, complete("Live")),
        (4, rolling),
    ] {
        create(&releases, &app, revision, status).await;
    }
    apps.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"contender": "web-4", "incumbent": "web-3"}})),
    )
    .await
    .unwrap();
    (env, releases)
}

async fn create(releases: &Api<Release>, app: &Application, revision: u32, status: Value) {
    let name = release_name("web", revision);
    let mut release = Release::new(
        &name,
        ReleaseSpec {
            application: "web".into(),
            revision,
            template: application(&format!("web:{revision}")).spec.template,
            target: None,
            strategy: prism_api::Pipeline {
                webhooks: None,
                steps: app.spec.strategy.steps.clone().unwrap(),
                waves: None,
            },
            clusters: schedule(app, &[]).unwrap(),
            target_step: None,
            aborted: false,
            side: None,
        },
    );
    release.metadata = ObjectMeta {
        name: Some(name.clone()),
        labels: Some(BTreeMap::from([
            (APP_LABEL.to_owned(), "web".to_owned()),
            (RELEASE_LABEL.to_owned(), name.clone()),
        ])),
        ..ObjectMeta::default()
    };
    releases
        .create(&PostParams::default(), &release)
        .await
        .unwrap();
    releases
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

async fn run(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["-n", env.namespace()])
        .collect();
    let output = prism(env, &args).await;
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

async fn annotation(releases: &Api<Release>, name: &str, key: &str) -> Option<String> {
    releases
        .get(name)
        .await
        .unwrap()
        .annotations()
        .get(key)
        .cloned()
}

#[tokio::test]
async fn versions_lists_each_role_and_pin_unpin_and_retire_write_the_release() {
    let (env, releases) = rainbow("cli-versions").await;

    let (code, out, err) = run(&env, &["versions", "web", "-o", "json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let roles: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["version"].as_str().unwrap(),
                row["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("v1", "retained"),
            ("v2", "draining"),
            ("v3", "default"),
            ("v4", "contender")
        ]
    );
    assert_eq!(
        rows[0]["clusters"],
        json!([{"name": "local", "ready": 2, "desired": 2}])
    );
    assert!(rows[0]["ttlLeftSeconds"].as_i64().unwrap() > 3000);

    // A pin by the name in routes, and its removal by the Release's name.
    let (code, out, err) = run(&env, &["pin", "web", "v1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("pinned v1 (web-1)"), "{out}");
    assert_eq!(
        annotation(&releases, "web-1", PINNED_ANNOTATION)
            .await
            .as_deref(),
        Some("true")
    );
    let (_, out, _) = run(&env, &["versions", "web"]).await;
    assert!(
        out.lines().nth(1).unwrap().trim_end().ends_with("yes"),
        "{out}"
    );
    let (code, _, err) = run(&env, &["unpin", "web", "web-1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        annotation(&releases, "web-1", PINNED_ANNOTATION).await,
        None
    );

    // What may not retire or be pinned is refused (exit 4), naming why and what to do.
    let (code, _, err) = run(&env, &["retire", "web", "v3"]).await;
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("v3 takes the default route"), "{err}");
    let (code, _, err) = run(&env, &["pin", "web", "v2"]).await;
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("v2 is already retiring (Draining)"), "{err}");
    let (code, _, err) = run(&env, &["retire", "web", "v9"]).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("web has no version v9: its versions are v1, v2, v3, v4"),
        "{err}"
    );

    // A retained version retires at the command.
    let (code, out, err) = run(&env, &["retire", "web", "v1"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("retiring v1 (web-1)"), "{out}");
    assert!(
        annotation(&releases, "web-1", RETIRE_ANNOTATION)
            .await
            .is_some()
    );
}
