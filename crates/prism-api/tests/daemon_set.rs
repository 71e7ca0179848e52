//! A DaemonSet's Application: no traffic shifted, and shares of its nodes as percentages. The
//! CRD's CEL rules (evaluated by kube-cel as the API server would) and `prism_api::validate`
//! agree word for word, and the Rust side names the step's field.

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use prism_api::chart::WorkloadKind;
use prism_api::strategy::Step;
use prism_api::validate;
use prism_api::{Application, ApplicationSpec};
use serde_json::{Value, json};

const NO_TRAFFIC: &str = "a DaemonSet runs one pod per node and serves no traffic that Prism shifts: set spec.traffic.provider: none, and give its steps capacity alone";
const SHARES_OF_NODES: &str =
    "a DaemonSet runs one pod per node: give its share of the nodes as a percentage, e.g. \"33%\"";
const INCUMBENT_FOLLOWS: &str = "a DaemonSet's incumbent runs on every node the contender does not: give capacity.incumbent only as \"0%\", on the last step, whose contender is \"100%\"";

fn daemon_set_app() -> Value {
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "agent", "namespace": "ops"},
        "spec": {
            "template": {"manifests": [{
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "agent"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": {
                        "metadata": {"labels": {"app": "agent"}},
                        "spec": {"containers": [{"name": "agent", "image": "agent:2"}]}
                    }
                }
            }]},
            "traffic": {"provider": "none"},
            "strategy": {"steps": [
                {"name": "zone-a", "capacity": {"contender": "33%"}, "gate": {"pause": "1m"}},
                {"name": "zone-b", "capacity": {"contender": "67%"}, "gate": {"pause": "1m"}},
                {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}
            ]}
        }
    })
}

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

/// `validate::application`'s errors, as `path: message`.
fn rust_errors(object: &Value) -> BTreeSet<(String, String)> {
    let spec: ApplicationSpec = serde_json::from_value(object["spec"].clone()).unwrap();
    match validate::application(&spec) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

/// `change` made to the valid DaemonSet Application is refused by CEL and by Rust with
/// `message` alone, which Rust reports at `path`.
fn rejects(change: impl FnOnce(&mut Value), path: &str, message: &str) {
    let mut app = daemon_set_app();
    change(&mut app);
    assert_eq!(
        cel_messages(&app),
        BTreeSet::from([message.to_owned()]),
        "CEL, for {app:#}"
    );
    assert_eq!(
        rust_errors(&app),
        BTreeSet::from([(path.to_owned(), message.to_owned())]),
        "validate, for {app:#}"
    );
}

#[test]
fn a_daemon_set_rolled_out_zone_by_zone_passes_both() {
    let app = daemon_set_app();
    assert_eq!(cel_messages(&app), BTreeSet::new());
    assert_eq!(rust_errors(&app), BTreeSet::new());
}

#[test]
fn a_daemon_set_with_a_traffic_provider() {
    rejects(
        |app| {
            app["spec"]["traffic"] = json!({"provider": "podLabels"});
            let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "agent"}, "spec": {"ports": [{"port": 80}]}});
            app["spec"]["template"]["manifests"]
                .as_array_mut()
                .unwrap()
                .push(service);
        },
        "spec.traffic.provider",
        NO_TRAFFIC,
    );
}

#[test]
fn a_daemon_set_step_asking_for_a_replica_count() {
    rejects(
        |app| app["spec"]["strategy"]["steps"][0]["capacity"]["contender"] = json!(2),
        "spec.strategy.steps[0].capacity.contender",
        SHARES_OF_NODES,
    );
}

#[test]
fn a_daemon_set_step_giving_the_incumbent_a_share() {
    rejects(
        |app| app["spec"]["strategy"]["steps"][1]["capacity"]["incumbent"] = json!("33%"),
        "spec.strategy.steps[1].capacity.incumbent",
        INCUMBENT_FOLLOWS,
    );
}

#[test]
fn a_daemon_set_s_last_step_that_keeps_the_incumbent() {
    rejects(
        |app| {
            app["spec"]["strategy"]["steps"][2]["capacity"]
                .as_object_mut()
                .unwrap()
                .remove("incumbent");
        },
        "spec.strategy.steps[2].capacity.incumbent",
        INCUMBENT_FOLLOWS,
    );
}

#[test]
fn a_deployment_may_ask_for_replica_counts() {
    let steps: Vec<Step> = serde_json::from_value(json!([
        {"name": "one", "capacity": {"contender": 1, "incumbent": 3}}
    ]))
    .unwrap();
    assert!(validate::workload_steps(&steps, "spec.steps", WorkloadKind::Deployment).is_ok());
    let errors = validate::workload_steps(&steps, "spec.steps", WorkloadKind::DaemonSet)
        .unwrap_err()
        .0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.steps[0].capacity.contender",
            "spec.steps[0].capacity.incumbent"
        ],
        "a named strategy's steps are checked for the application's workload"
    );
}
