use serde_json::{Value, json};

use super::*;
use crate::traffic::gateway_api::fixtures::http_route;

fn condition(kind: &str, status: &str, reason: &str, generation: Option<i64>) -> Value {
    let mut condition = json!({"type": kind, "status": status, "reason": reason, "message": format!("{kind} says {reason}"), "lastTransitionTime": "2026-12-07T01:00:01Z"});
    if let Some(generation) = generation {
        condition["observedGeneration"] = json!(generation);
    }
    condition
}

fn with_conditions(conditions: Vec<Value>) -> Value {
    let mut route = http_route();
    route["status"]["parents"][0]["conditions"] = Value::Array(conditions);
    route
}

#[test]
fn accepted_at_the_current_generation() {
    assert_eq!(acceptance(&http_route()), Acceptance::Accepted);
}

#[test]
fn a_parent_ref_with_defaults_left_out_matches_its_status() {
    let mut route = http_route();
    route["spec"]["parentRefs"] = json!([{"name": "gateway", "namespace": "gateways"}]);
    assert_eq!(acceptance(&route), Acceptance::Accepted);
    route["metadata"]["namespace"] = json!("gateways");
    route["spec"]["parentRefs"] = json!([{"name": "gateway"}]);
    route["status"]["parents"][0]["parentRef"] = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway", "namespace": "gateways"});
    assert_eq!(
        acceptance(&route),
        Acceptance::Accepted,
        "namespace defaults to the route's"
    );
}

#[test]
fn a_stale_generation_is_pending() {
    let route = with_conditions(vec![
        condition("Accepted", "False", "NoMatchingParent", Some(2)),
        condition("ResolvedRefs", "True", "ResolvedRefs", Some(2)),
    ]);
    let pending = acceptance(&route);
    assert_eq!(
        pending,
        Acceptance::Pending {
            route: "HTTPRoute shop/docs".into(),
            gateway: "gateways/gateway".into(),
            waiting: Waiting::Generation {
                observed: Some(2),
                current: 3
            },
        }
    );
    assert_eq!(
        pending.to_string(),
        "HTTPRoute shop/docs waits for Gateway gateways/gateway to accept generation 3: it reports on generation 2"
    );
}

#[test]
fn conditions_without_observed_generation_are_pending_and_said_so() {
    let route = with_conditions(vec![
        condition("Accepted", "True", "Accepted", None),
        condition("ResolvedRefs", "True", "ResolvedRefs", None),
    ]);
    assert_eq!(
        acceptance(&route).to_string(),
        "HTTPRoute shop/docs: Gateway gateways/gateway reports its conditions without observedGeneration, so Prism cannot tell that it serves generation 3"
    );
}

#[test]
fn a_refused_route_names_the_gateway_the_condition_and_the_reason() {
    let route = with_conditions(vec![
        condition("Accepted", "True", "Accepted", Some(3)),
        condition("ResolvedRefs", "False", "BackendNotFound", Some(3)),
    ]);
    assert_eq!(
        acceptance(&route).to_string(),
        "HTTPRoute shop/docs is refused by Gateway gateways/gateway: ResolvedRefs is False, reason BackendNotFound: ResolvedRefs says BackendNotFound"
    );
}

#[test]
fn a_parent_without_status_is_pending() {
    let mut route = http_route();
    route["spec"]["parentRefs"].as_array_mut().unwrap().push(json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway", "namespace": "gateways", "sectionName": "https"}));
    assert_eq!(
        acceptance(&route).to_string(),
        "HTTPRoute shop/docs waits for Gateway gateways/gateway (listener https) to report on it: status.parents has no entry for it yet (a Gateway no controller serves never reports; check its GatewayClass)"
    );
    route["status"] = json!({});
    assert!(matches!(
        acceptance(&route),
        Acceptance::Pending {
            waiting: Waiting::NoStatus,
            ..
        }
    ));
}

#[test]
fn a_refusal_wins_over_a_parent_still_pending() {
    let mut route = with_conditions(vec![
        condition("Accepted", "False", "NotAllowedByListeners", Some(3)),
        condition("ResolvedRefs", "True", "ResolvedRefs", Some(3)),
    ]);
    route["spec"]["parentRefs"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "other", "namespace": "gateways"}));
    assert!(
        matches!(acceptance(&route), Acceptance::Refused { ref reason, .. } if reason == "NotAllowedByListeners")
    );
}

#[test]
fn a_missing_or_unknown_condition_is_pending() {
    let route = with_conditions(vec![condition("Accepted", "True", "Accepted", Some(3))]);
    assert_eq!(
        acceptance(&route).to_string(),
        "HTTPRoute shop/docs waits for Gateway gateways/gateway to report ResolvedRefs: the condition is missing or Unknown"
    );
    let route = with_conditions(vec![
        condition("Accepted", "Unknown", "Pending", Some(3)),
        condition("ResolvedRefs", "True", "ResolvedRefs", Some(3)),
    ]);
    assert!(matches!(
        acceptance(&route),
        Acceptance::Pending {
            waiting: Waiting::Condition { .. },
            ..
        }
    ));
}

#[test]
fn a_route_without_parents() {
    let mut route = http_route();
    route["spec"]["parentRefs"] = json!([]);
    assert_eq!(
        acceptance(&route).to_string(),
        "HTTPRoute shop/docs has no spec.parentRefs, so no Gateway serves it: attach it to a Gateway, e.g. parentRefs: [{name: <gateway>}]"
    );
}
