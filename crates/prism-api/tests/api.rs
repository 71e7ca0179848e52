//! The helpers other crates call on the API types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use prism_api::ApplicationSpec;
use prism_api::application::{FullCapacity, HpaBounds, Template};
use prism_api::conditions;
use prism_api::rollout_block::overridden_blocks;
use serde_json::json;

fn template(manifests: serde_json::Value) -> Template {
    serde_json::from_value(json!({ "manifests": manifests })).unwrap()
}

fn deployment(replicas: Option<u32>) -> serde_json::Value {
    let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    }});
    if let Some(replicas) = replicas {
        deployment["spec"]["replicas"] = json!(replicas);
    }
    deployment
}

#[test]
fn the_template_replica_count_defaults_to_one() {
    assert_eq!(template(json!([deployment(Some(7))])).replicas(), Some(7));
    assert_eq!(template(json!([deployment(None)])).replicas(), Some(1));
    assert_eq!(
        template(json!([deployment(Some(2)), deployment(Some(3))])).replicas(),
        None
    );
    assert_eq!(template(json!([])).replicas(), None);
}

#[test]
fn the_autoscaler_bounds_default_to_a_minimum_of_one() {
    let hpa = |min: Option<u32>| {
        let mut hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 20}});
        if let Some(min) = min {
            hpa["spec"]["minReplicas"] = json!(min);
        }
        hpa
    };
    assert_eq!(
        template(json!([deployment(None), hpa(Some(4))])).hpa_bounds(),
        Some(HpaBounds { min: 4, max: 20 })
    );
    assert_eq!(
        template(json!([deployment(None), hpa(None)])).hpa_bounds(),
        Some(HpaBounds { min: 1, max: 20 })
    );
    assert_eq!(template(json!([deployment(None)])).hpa_bounds(), None);
}

#[test]
fn a_count_that_cannot_be_read_is_never_guessed() {
    let mut negative = deployment(None);
    negative["spec"]["replicas"] = json!(-1);
    let mut unreadable = deployment(None);
    unreadable["spec"]["replicas"] = json!("three");
    let hpa = |max: i64| {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": max}})
    };
    assert_eq!(
        template(json!([deployment(Some(3))])).full_capacity(),
        Some(FullCapacity::Replicas(3))
    );
    assert_eq!(
        template(json!([deployment(Some(3)), hpa(6)])).full_capacity(),
        Some(FullCapacity::Autoscaled(HpaBounds { min: 1, max: 6 }))
    );
    assert_eq!(template(json!([negative])).full_capacity(), None);
    assert_eq!(template(json!([unreadable])).full_capacity(), None);
    // An autoscaler whose bounds cannot be read does not fall back to the replicas.
    assert_eq!(
        template(json!([deployment(Some(3)), hpa(-6)])).full_capacity(),
        None
    );
}

#[test]
fn an_application_has_traffic_unless_its_provider_is_none() {
    let spec = |traffic: serde_json::Value| -> ApplicationSpec {
        serde_json::from_value(
            json!({"template": {"manifests": []}, "strategy": {"name": "s"}, "traffic": traffic}),
        )
        .unwrap()
    };
    assert!(spec(json!({})).has_traffic(), "podLabels by default");
    assert!(spec(json!({"provider": "istio", "virtualService": "web"})).has_traffic());
    assert!(!spec(json!({"provider": "none"})).has_traffic());
}

#[test]
fn the_override_annotation_lists_block_names() {
    assert_eq!(
        overridden_blocks(" freeze, ,incident-42 ").collect::<Vec<_>>(),
        ["freeze", "incident-42"]
    );
    assert_eq!(overridden_blocks("").count(), 0);
}

#[test]
fn conditions_are_found_by_type() {
    let condition = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Test".into(),
        message: String::new(),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    };
    let found = [
        condition(conditions::release::COMPLETE, "True"),
        condition(conditions::release::ABORTED, "False"),
    ];
    assert!(conditions::is_true(&found, conditions::release::COMPLETE));
    assert!(!conditions::is_true(&found, conditions::release::ABORTED));
    assert!(!conditions::is_true(&found, conditions::release::BLOCKED));
    assert_eq!(
        conditions::find(&found, "Aborted").map(|c| c.status.as_str()),
        Some("False")
    );
}
