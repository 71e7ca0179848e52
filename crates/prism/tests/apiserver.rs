//! The CRDs on a real API server (the sandbox's c1): it accepts them (structural schemas, CEL
//! rules within its cost budget), admits every example, and rejects bad values with Prism's
//! messages.

mod common;

use common::{documents, examples};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use prism_testkit::TestEnv;
use serde_json::{Value, json};

fn api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("prism.dev", "v1alpha1", kind));
    match kind {
        "ClusterStrategy" | "Cluster" => Api::all_with(client.clone(), &resource),
        _ => Api::namespaced_with(client.clone(), namespace, &resource),
    }
}

/// The API server's objections, as `field: message` (its message ends with Prism's).
fn causes(result: Result<DynamicObject, kube::Error>) -> Vec<String> {
    match result {
        Ok(_) => vec![],
        Err(kube::Error::Api(status)) => {
            let causes = status.details.map(|d| d.causes).unwrap_or_default();
            causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        }
        Err(other) => panic!("not an objection of the API server: {other}"),
    }
}

fn objects_to(causes: &[String], field: &str, message: &str) -> bool {
    causes
        .iter()
        .any(|c| c.starts_with(&format!("{field}: ")) && c.ends_with(message))
}

/// Creates `document` in the namespace, only as a dry run unless `persist`.
async fn create(
    client: &Client,
    namespace: &str,
    mut document: Value,
    persist: bool,
) -> Vec<String> {
    document["metadata"]["namespace"] = json!(namespace);
    let object: DynamicObject = serde_json::from_value(document.clone()).unwrap();
    let params = PostParams {
        dry_run: !persist,
        ..PostParams::default()
    };
    causes(
        api(client, namespace, document["kind"].as_str().unwrap())
            .create(&params, &object)
            .await,
    )
}

#[tokio::test]
async fn the_api_server_takes_the_crds_and_judges_applications_by_them() {
    let env = TestEnv::new("prism-crds").await;
    let client = env.clusters()[0].client();
    let namespace = env.namespace();
    prism_testkit::install_crds(&client, prism_api::crds())
        .await
        .unwrap();

    for (example, _) in examples() {
        for document in documents(&example) {
            let kind = document["kind"].clone();
            assert_eq!(
                create(&client, namespace, document, false).await,
                Vec::<String>::new(),
                "{example}: {kind}"
            );
        }
    }

    let mut strategy = documents("vanguard").remove(1);
    strategy["spec"]["steps"][3]["name"] = json!("half");
    strategy["spec"]["steps"][1]["traffic"]["contender"] = json!(140);
    let causes = create(&client, namespace, strategy, false).await;
    assert_eq!(causes.len(), 2, "{causes:?}");
    assert!(
        objects_to(
            &causes,
            "spec.steps[1].traffic.contender",
            "should be less than or equal to 100"
        ),
        "{causes:?}"
    );
    assert!(
        objects_to(
            &causes,
            "spec.steps",
            "step names must be unique within a strategy: rename one of the steps that share a name"
        ),
        "{causes:?}"
    );

    let mut worker = documents("worker").remove(0);
    worker["spec"]["strategy"]["steps"][1]["traffic"] = json!({"contender": 25});
    let causes = create(&client, namespace, worker, false).await;
    assert!(
        objects_to(
            &causes,
            "spec.strategy.steps",
            "spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider"
        ),
        "{causes:?}"
    );
}

#[tokio::test]
async fn a_release_is_immutable_but_for_its_commands_and_its_strategy() {
    let env = TestEnv::new("prism-release").await;
    let client = env.clusters()[0].client();
    let namespace = env.namespace();
    prism_testkit::install_crds(&client, prism_api::crds())
        .await
        .unwrap();

    let app = documents("blue-green").remove(0);
    let release = json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "billing-1"},
        "spec": {
            "application": "billing",
            "revision": 1,
            "template": app["spec"]["template"],
            "strategy": {"steps": app["spec"]["strategy"]["steps"]},
            "clusters": [{"name": "c1", "region": "eu"}]
        }
    });
    assert_eq!(
        create(&client, namespace, release, true).await,
        Vec::<String>::new()
    );

    let releases = api(&client, namespace, "Release");
    let patch = async |spec: Value| {
        causes(
            releases
                .patch(
                    "billing-1",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec})),
                )
                .await,
        )
    };
    assert_eq!(
        patch(json!({"targetStep": 2, "aborted": true})).await,
        Vec::<String>::new()
    );
    let immutable =
        "is immutable: a Release is a snapshot; change the Application to make a new Release";
    assert!(objects_to(
        &patch(json!({"revision": 2})).await,
        "spec.revision",
        immutable
    ));
    // The controller updates the strategy of a Release rolling out.
    let strategy = json!({"steps": [
        {"name": "canary", "capacity": {"contender": "50%"}},
        {"name": "all", "capacity": {"contender": "100%"}},
        {"name": "done", "capacity": {"contender": "100%", "incumbent": "0%"}}
    ]});
    assert_eq!(
        patch(json!({"strategy": strategy})).await,
        Vec::<String>::new()
    );
    let mut template = app["spec"]["template"].clone();
    template["manifests"][0]["spec"]["replicas"] = json!(7);
    // The rule sees inside the manifests, though their fields are unknown to the schema.
    assert!(objects_to(
        &patch(json!({"template": template})).await,
        "spec.template",
        immutable
    ));
    let aborted = "an aborted Release stays aborted: change the Application to make a new Release";
    assert!(objects_to(
        &patch(json!({"aborted": false})).await,
        "spec.aborted",
        aborted
    ));
    assert_eq!(
        patch(json!({"targetStep": 3})).await,
        Vec::<String>::new(),
        "past the last gate"
    );
    let past_the_end = "it must not exceed the number of steps";
    assert!(objects_to(
        &patch(json!({"targetStep": 4})).await,
        "spec.targetStep",
        past_the_end
    ));
}
