//! A StatefulSet template: what Prism needs of it to roll it out in place, each refusal naming
//! its field.

use prism_api::ApplicationSpec;
use prism_api::validate::{self, ValidationError};
use serde_json::{Value, json};

/// An Application of a StatefulSet `db` of 4 replicas, changed by `change`, rolled out in three
/// steps.
fn spec(change: impl FnOnce(&mut Value)) -> ApplicationSpec {
    let mut spec = json!({
        "template": {"manifests": [{
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 4, "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                             "spec": {"containers": [{"name": "db", "image": "db:2"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }]},
        "traffic": {"provider": "none"},
        "strategy": {"steps": [
            {"name": "quarter", "capacity": {"contender": "25%"}},
            {"name": "half", "capacity": {"contender": "50%"}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}}
        ]}
    });
    change(&mut spec);
    serde_json::from_value(spec).unwrap()
}

/// The errors of `spec`, as `path: message`.
fn errors(spec: &ApplicationSpec) -> Vec<String> {
    validate::application(spec)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
        .iter()
        .map(|ValidationError { path, message, .. }| format!("{path}: {message}"))
        .collect()
}

#[test]
fn a_stateful_set_with_claims_and_capacity_steps_passes() {
    assert_eq!(errors(&spec(|_| {})), Vec::<String>::new());
}

#[test]
fn a_stateful_set_needs_its_service_name() {
    let spec = spec(|spec| {
        let manifest = &mut spec["template"]["manifests"][0]["spec"];
        manifest.as_object_mut().unwrap().remove("serviceName");
    });
    assert_eq!(
        errors(&spec),
        [
            "spec.template.manifests[0].spec.serviceName: a StatefulSet names the Service that governs its pods' network identity: set spec.serviceName (a headless Service, which the template may hold)"
        ]
    );
}

#[test]
fn a_stateful_set_with_traffic_steps_needs_a_service() {
    let spec = spec(|spec| {
        spec["traffic"] = json!({"provider": "podLabels"});
        spec["strategy"]["steps"][0]["traffic"] = json!({"contender": 25});
    });
    assert_eq!(
        errors(&spec),
        [
            "spec.template.manifests: a traffic provider shifts the traffic of a Service: add the application's Service to spec.template.manifests, or set spec.traffic.provider: none for a workload that serves no requests"
        ]
    );
}

#[test]
fn a_stateful_set_is_not_autoscaled() {
    let spec = spec(|spec| {
        spec["template"]["manifests"].as_array_mut().unwrap().push(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "db"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                     "minReplicas": 2, "maxReplicas": 6}
        }));
    });
    assert_eq!(
        errors(&spec),
        [
            "spec.template.manifests[1]: Prism rolls a StatefulSet out in place, sharing its replicas between versions by its partition, so it cannot be autoscaled: remove the HorizontalPodAutoscaler, or use a Deployment"
        ]
    );
}

#[test]
fn in_place_no_step_gives_the_contender_fewer_pods_than_an_earlier_one() {
    let spec = spec(|spec| {
        spec["strategy"]["steps"] = json!([
            {"name": "half", "capacity": {"contender": "50%"}},
            {"name": "quarter", "capacity": {"contender": 1}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}}
        ]);
    });
    assert_eq!(
        errors(&spec),
        [
            "spec.strategy.steps[1].capacity.contender: Prism rolls a StatefulSet out in place, and its partition cannot move back over the contender's pods: step half gives the contender 2 of 4 pods, so this step cannot give it 1; keep each step's share at least the one before"
        ]
    );
}
