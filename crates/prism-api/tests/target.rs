//! An Application that targets a Service (`spec.target.service`): the CRD's CEL rules and
//! `prism_api::validate` refuse the same specs with the same words.

mod common;

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use prism_api::validate;
use prism_api::{Application, ApplicationSpec};
use serde_json::{Value, json};

fn cel_messages(object: &Value) -> BTreeSet<String> {
    let crd = Application::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    let schema = serde_json::to_value(schema).unwrap();
    match kube_cel::Validator::new().validate(&schema, object, None) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn rust_messages(object: &Value) -> BTreeSet<String> {
    let spec: ApplicationSpec = serde_json::from_value(object["spec"].clone()).unwrap();
    match validate::application(&spec) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.0.into_iter().map(|e| e.message).collect(),
    }
}

/// A valid Application of the Service `podinfo`: traffic steps only, through an HTTPRoute.
fn targeting() -> Value {
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "podinfo", "namespace": "shop"},
        "spec": {
            "target": {"service": {"name": "podinfo"}},
            "strategy": {"steps": [
                {"name": "canary", "traffic": {"contender": 20}},
                {"name": "full", "traffic": {"contender": 100}}
            ]},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["podinfo"]}
        }
    })
}

fn rejects(change: impl FnOnce(&mut Value), message: &str) {
    let mut app = targeting();
    change(&mut app);
    let expected = BTreeSet::from([message.to_string()]);
    assert_eq!(cel_messages(&app), expected, "CEL, for {app:#}");
    assert_eq!(rust_messages(&app), expected, "validate, for {app:#}");
}

#[test]
fn a_service_target_passes_both() {
    let app = targeting();
    assert_eq!(cel_messages(&app), BTreeSet::new());
    assert_eq!(rust_messages(&app), BTreeSet::new());
}

#[test]
fn a_template_and_a_target_together() {
    rejects(
        |app| {
            let template = common::spec(json!([common::full()]))["template"].clone();
            app["spec"]["template"] = template;
        },
        "give exactly one of spec.template (the objects Prism installs in each cluster) and spec.target.service (an existing Service whose traffic Prism shifts)",
    );
}

#[test]
fn neither_a_template_nor_a_target() {
    rejects(
        |app| {
            app["spec"].as_object_mut().unwrap().remove("target");
        },
        "give exactly one of spec.template (the objects Prism installs in each cluster) and spec.target.service (an existing Service whose traffic Prism shifts)",
    );
}

#[test]
fn a_target_with_another_provider() {
    rejects(
        |app| app["spec"]["traffic"] = json!({"provider": "podLabels"}),
        "spec.target.service shifts traffic between <service>-primary and <service>-canary through HTTPRoutes: set spec.traffic.provider: gatewayAPI",
    );
}

#[test]
fn a_target_with_more_than_two_versions() {
    rejects(
        |app| app["spec"]["versions"] = json!({"max": 4}),
        "spec.target.service keeps two versions, primary and canary: remove versions.max, or set it to 2",
    );
}

#[test]
fn a_target_with_a_capacity_step() {
    rejects(
        |app| app["spec"]["strategy"]["steps"][0]["capacity"] = json!({"contender": "50%"}),
        "with spec.target.service Prism scales nothing (the Service's owner runs its pods): remove the step's capacity sub-step, and shift traffic only",
    );
}

#[test]
fn the_engine_gets_every_version_at_full_capacity_from_the_first_step() {
    let spec: ApplicationSpec = serde_json::from_value(targeting()["spec"].clone()).unwrap();
    let pipeline = prism_api::application::Target::pipeline(&spec.strategy.inline().unwrap());
    let first = pipeline.steps[0].capacity.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(first).unwrap(),
        json!({"contender": "100%", "incumbent": "100%"})
    );
    assert!(pipeline.steps[1].capacity.is_none());
    assert_eq!(
        pipeline.steps[1].traffic,
        spec.strategy.steps.unwrap()[1].traffic
    );
}
