//! HTTPRoutes as the API server returns them (server defaults filled in), for the tests.

use std::collections::BTreeSet;

use prism_api::strategy::{HeaderMatch, MatchType, QueryParamMatch, RouteMatch};
use prism_engine::ResolvedRoute;
use serde_json::{Value, json};

/// The application's Service.
pub const SERVICE: &str = "docs";

/// Every version Service of the tests.
pub fn versions() -> BTreeSet<String> {
    ["docs-1", "docs-2", "docs-3", "docs-4"]
        .map(String::from)
        .into()
}

/// The user's route: a rule of its own (admin), and the application's rule with a filter, a
/// timeout and a second backend Prism does not manage.
pub fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "docs",
            "namespace": "shop",
            "generation": 3,
            "resourceVersion": "48213",
            "uid": "5b1d0f5e-8f0a-4c55-9d43-0d2a4e7f6a11",
            "creationTimestamp": "2026-12-07T01:00:00Z",
            "annotations": {"team": "docs"}
        },
        "spec": {
            "parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway", "namespace": "gateways"}
            ],
            "hostnames": ["docs.example.test"],
            "rules": [
                {
                    "name": "admin",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": "admin", "port": 80, "weight": 1}
                    ]
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [{
                        "type": "ResponseHeaderModifier",
                        "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "gateway"}]}
                    }],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": "docs", "port": 8080, "weight": 1},
                        {"group": "", "kind": "Service", "name": "docs-static", "port": 8080, "weight": 1}
                    ],
                    "timeouts": {"request": "10s"}
                }
            ]
        },
        "status": {
            "parents": [{
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway", "namespace": "gateways"},
                "controllerName": "traefik.io/gateway-controller",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 3, "lastTransitionTime": "2026-12-07T01:00:01Z"},
                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "", "observedGeneration": 3, "lastTransitionTime": "2026-12-07T01:00:01Z"}
                ]
            }]
        }
    })
}

/// The route with these rules, as a write would leave it.
pub fn with_rules(route: &Value, rules: Vec<Value>) -> Value {
    let mut route = route.clone();
    route["spec"]["rules"] = Value::Array(rules);
    route
}

/// What the API server fills in: a backendRef's group, kind and weight, a rule's match, a
/// header's or query parameter's match type.
pub fn defaulted(rules: &[Value]) -> Vec<Value> {
    let mut rules = rules.to_vec();
    for rule in &mut rules {
        let rule = rule.as_object_mut().unwrap();
        let matches = rule
            .entry("matches")
            .or_insert_with(|| json!([{"path": {"type": "PathPrefix", "value": "/"}}]));
        for entry in matches.as_array_mut().into_iter().flatten().flat_map(|m| {
            let m = m.as_object_mut().unwrap();
            m.iter_mut()
                .filter(|(key, _)| *key == "headers" || *key == "queryParams")
                .flat_map(|(_, list)| list.as_array_mut().unwrap())
        }) {
            entry
                .as_object_mut()
                .unwrap()
                .entry("type")
                .or_insert_with(|| json!("Exact"));
        }
        for backend in rule
            .get_mut("backendRefs")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let backend = backend.as_object_mut().unwrap();
            backend.entry("group").or_insert_with(|| json!(""));
            backend.entry("kind").or_insert_with(|| json!("Service"));
            backend.entry("weight").or_insert_with(|| json!(1));
        }
    }
    rules
}

pub fn header(name: &str, version: &str, header: &str, value: &str) -> ResolvedRoute {
    ResolvedRoute {
        name: name.into(),
        version: version.into(),
        matches: RouteMatch {
            header: Some(HeaderMatch {
                name: header.into(),
                value: value.into(),
                match_type: MatchType::Exact,
            }),
            ..Default::default()
        },
    }
}

pub fn query(name: &str, version: &str, param: &str, value: &str) -> ResolvedRoute {
    ResolvedRoute {
        name: name.into(),
        version: version.into(),
        matches: RouteMatch {
            query_param: Some(QueryParamMatch {
                name: param.into(),
                value: value.into(),
                match_type: MatchType::RegularExpression,
            }),
            ..Default::default()
        },
    }
}

pub fn path(name: &str, version: &str, prefix: &str) -> ResolvedRoute {
    ResolvedRoute {
        name: name.into(),
        version: version.into(),
        matches: RouteMatch {
            path_prefix: Some(prefix.into()),
            ..Default::default()
        },
    }
}

pub fn subdomain(name: &str, version: &str, subdomain: &str) -> ResolvedRoute {
    ResolvedRoute {
        name: name.into(),
        version: version.into(),
        matches: RouteMatch {
            subdomain: Some(subdomain.into()),
            ..Default::default()
        },
    }
}
