use std::collections::BTreeSet;

use prism_engine::ResolvedRoute;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::traffic::gateway_api::fixtures::{
    SERVICE, defaulted, header, http_route, path, query, versions, with_rules,
};

fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect()
}

fn rules_of(
    route: &Value,
    weights: &Weights,
    routes: &[ResolvedRoute],
) -> Result<Vec<Value>, RouteError> {
    let versions = versions();
    rules(
        route,
        &Desired {
            service: SERVICE,
            versions: &versions,
            weights,
            routes,
        },
    )
}

fn original_rules() -> Vec<Value> {
    http_route()["spec"]["rules"].as_array().unwrap().clone()
}

/// The user's route with the application's rule on `/` and another on `/docs`.
fn two_split_rules() -> Value {
    let mut route = http_route();
    let mut docs = route["spec"]["rules"][1].clone();
    docs["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/docs"}}]);
    docs["name"] = json!("docs");
    route["spec"]["rules"]
        .as_array_mut()
        .unwrap()
        .insert(1, docs);
    route
}

#[test]
fn a_split_rule_gets_one_backend_per_weighted_version_and_keeps_the_rest() {
    let rules = rules_of(
        &http_route(),
        &weights(&[("docs-2", 75), ("docs-3", 25)]),
        &[],
    )
    .unwrap();
    let original = original_rules();
    assert_eq!(rules[0], original[0], "the admin rule is not Prism's");
    let mut expected = original[1].clone();
    expected["backendRefs"] = json!([
        {"group": "", "kind": "Service", "name": "docs-2", "port": 8080, "weight": 75},
        {"group": "", "kind": "Service", "name": "docs-3", "port": 8080, "weight": 25},
        {"group": "", "kind": "Service", "name": "docs-static", "port": 8080, "weight": 1}
    ]);
    assert_eq!(rules[1], expected);
    assert_eq!(rules.len(), 2);
}

#[test]
fn a_version_at_weight_0_gets_no_backend() {
    let rules = rules_of(
        &http_route(),
        &weights(&[("docs-2", 100), ("docs-3", 0)]),
        &[],
    )
    .unwrap();
    let names: Vec<&str> = rules[1]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docs-2", "docs-static"]);
}

#[test]
fn empty_weights_give_back_the_route_as_the_user_wrote_it() {
    let split = with_rules(
        &http_route(),
        rules_of(
            &http_route(),
            &weights(&[("docs-2", 50), ("docs-3", 50)]),
            &[header("beta", "docs-3", "x-canary", "always")],
        )
        .unwrap(),
    );
    let back = rules_of(&split, &Weights::new(), &[]).unwrap();
    assert_eq!(
        back,
        original_rules(),
        "as the server returned it, weight 1 included"
    );
    assert_eq!(
        rules_of(&http_route(), &Weights::new(), &[]).unwrap(),
        original_rules(),
        "unsplit stays as it is"
    );
}

#[test]
fn a_header_route_copies_the_split_rule_to_its_version_even_at_weight_0() {
    let route = header("canary", "docs-3", "x-canary", "always");
    let rules = rules_of(&http_route(), &weights(&[("docs-2", 100)]), &[route]).unwrap();
    let mut expected = original_rules()[1].clone();
    expected["name"] = json!("prism-canary");
    expected["matches"] = json!([{
        "path": {"type": "PathPrefix", "value": "/"},
        "headers": [{"name": "x-canary", "type": "Exact", "value": "always"}]
    }]);
    expected["backendRefs"] =
        json!([{"group": "", "kind": "Service", "name": "docs-3", "port": 8080, "weight": 1}]);
    assert_eq!(
        rules[0], expected,
        "first, with the rule's filter and timeout"
    );
    assert_eq!(rules[1], original_rules()[0]);
    assert_eq!(rules[2]["backendRefs"][0]["name"], "docs-2");
    assert_eq!(rules.len(), 3);
}

#[test]
fn a_query_param_route_adds_its_parameter() {
    let rules = rules_of(
        &http_route(),
        &weights(&[("docs-2", 100)]),
        &[query("by-query", "docs-2", "v", "^2$")],
    )
    .unwrap();
    assert_eq!(
        rules[0]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"}, "queryParams": [{"name": "v", "type": "RegularExpression", "value": "^2$"}]}])
    );
}

#[test]
fn a_path_route_narrows_every_split_rule_it_lies_under() {
    let routes = [
        path("v2", "docs-3", "/docs/v2"),
        path("beta", "docs-3", "/beta"),
    ];
    let rules = rules_of(&two_split_rules(), &weights(&[("docs-2", 100)]), &routes).unwrap();
    let managed: Vec<(&str, &Value)> = rules
        .iter()
        .filter(|r| r["name"].as_str().unwrap_or_default().starts_with("prism-"))
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                &r["matches"][0]["path"]["value"],
            )
        })
        .collect();
    assert_eq!(
        managed,
        [
            ("prism-v2-1", &json!("/docs/v2")),
            ("prism-v2-2", &json!("/docs/v2")),
            ("prism-beta-2", &json!("/beta")),
        ],
        "/beta lies outside /docs"
    );
}

#[test]
fn a_path_route_prism_cannot_express() {
    let error = rules_of(
        &two_split_rules(),
        &weights(&[("docs-2", 100)]),
        &[path("docs", "docs-3", "/docs")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs: route docs cannot be added to spec.rules[1].matches[0]: its path prefix /docs is not wider than the route's /docs, so the route would not win over the rule: use a prefix under /docs"
    );
    let mut regex = http_route();
    regex["spec"]["rules"][1]["matches"] =
        json!([{"path": {"type": "RegularExpression", "value": "/d.*"}}]);
    let error = rules_of(
        &regex,
        &weights(&[("docs-2", 100)]),
        &[path("beta", "docs-3", "/beta")],
    )
    .unwrap_err();
    assert!(
        matches!(error, RouteError::Inexpressible { ref field, .. } if field == "spec.rules[1].matches[0]"),
        "{error}"
    );
    let mut only_api = http_route();
    only_api["spec"]["rules"][1]["matches"] =
        json!([{"path": {"type": "PathPrefix", "value": "/api"}}]);
    let error = rules_of(
        &only_api,
        &weights(&[("docs-2", 100)]),
        &[path("beta", "docs-3", "/beta")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs: route beta matches no request of the rules that send traffic to docs: path prefix /beta lies outside all of their paths (PathPrefix /api): use a prefix under one of them"
    );
}

#[test]
fn a_header_the_rule_already_matches_cannot_be_added() {
    let mut route = http_route();
    route["spec"]["rules"][1]["matches"][0]["headers"] =
        json!([{"name": "X-Canary", "type": "Exact", "value": "no"}]);
    let error = rules_of(
        &route,
        &weights(&[("docs-2", 100)]),
        &[header("canary", "docs-3", "x-canary", "always")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs: route canary cannot be added to spec.rules[1].matches[0]: the rule already matches header x-canary: a route adds its header to the rule's matches, so choose another header"
    );
}

#[test]
fn a_route_to_each_version_names_a_rule_per_version() {
    let routes = [
        header("by-version", "docs-2", "x-version", "docs-2"),
        header("by-version", "docs-3", "x-version", "docs-3"),
    ];
    let rules = rules_of(&http_route(), &weights(&[("docs-2", 100)]), &routes).unwrap();
    assert_eq!(rules[0]["name"], "prism-by-version-docs-2");
    assert_eq!(rules[1]["name"], "prism-by-version-docs-3");
    assert_eq!(rules[1]["backendRefs"][0]["name"], "docs-3");
}

#[test]
fn managed_rules_leave_with_their_route() {
    let with_route = with_rules(
        &http_route(),
        rules_of(
            &http_route(),
            &weights(&[("docs-2", 100)]),
            &[header("canary", "docs-3", "x-canary", "always")],
        )
        .unwrap(),
    );
    let rules = rules_of(&with_route, &weights(&[("docs-2", 100)]), &[]).unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|rule| rule["name"] != "prism-canary"));
}

#[test]
fn a_rule_of_the_users_named_like_a_managed_one_is_refused() {
    let mut route = http_route();
    route["spec"]["rules"][0]["name"] = json!("prism-admin");
    let error = rules_of(&route, &weights(&[("docs-2", 100)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs: spec.rules[0] (prism-admin) is named with the prefix prism-, which Prism keeps for the rules it manages, but it sends traffic elsewhere than to a version of the application: rename the rule"
    );
}

#[test]
fn a_route_without_the_applications_service() {
    let mut route = http_route();
    route["spec"]["rules"][1]["backendRefs"][0]["name"] = json!("other");
    let error = rules_of(&route, &weights(&[("docs-2", 100)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs has no rule with a backendRef to the application's Service docs: add backendRef {name: docs, port: <its port>} to the rule whose traffic Prism should split"
    );
    let mut elsewhere = http_route();
    elsewhere["spec"]["rules"][1]["backendRefs"][0]["namespace"] = json!("other");
    assert!(
        matches!(
            rules_of(&elsewhere, &Weights::new(), &[]),
            Err(RouteError::NoSplitRule { .. })
        ),
        "a Service of another namespace is not the application's"
    );
}

#[test]
fn weights_that_give_nobody_traffic_are_refused() {
    let error = rules_of(&http_route(), &weights(&[("docs-2", 0)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs: the weights docs-2=0 give no version any traffic: Prism needs weights that sum to 100"
    );
}

#[test]
fn more_rules_than_the_gateway_api_allows() {
    let routes: Vec<ResolvedRoute> = (0..15)
        .map(|i| header(&format!("r{i}"), "docs-3", &format!("x-{i}"), "1"))
        .collect();
    let error = rules_of(&http_route(), &weights(&[("docs-2", 100)]), &routes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs would have 17 rules with Prism's, more than the 16 the Gateway API allows: give the step fewer routes, or move some of the user's rules to another HTTPRoute"
    );
}

#[test]
fn more_matches_than_the_gateway_api_allows() {
    let mut route = http_route();
    route["spec"]["rules"][1]["matches"] = Value::Array(
        (0..40)
            .map(|i| json!({"path": {"type": "PathPrefix", "value": format!("/p{i}")}}))
            .collect(),
    );
    let routes: Vec<ResolvedRoute> = (0..3)
        .map(|i| header(&format!("r{i}"), "docs-3", &format!("x-{i}"), "1"))
        .collect();
    let error = rules_of(&route, &weights(&[("docs-2", 100)]), &routes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "HTTPRoute shop/docs would have 161 matches in all, more than the 128 the Gateway API allows: give the step fewer routes, or the rules that send traffic to the application fewer matches"
    );
}

#[test]
fn observe_reads_the_split() {
    let versions = versions();
    let split = with_rules(
        &http_route(),
        rules_of(
            &http_route(),
            &weights(&[("docs-2", 75), ("docs-3", 25)]),
            &[header("c", "docs-3", "x-c", "1")],
        )
        .unwrap(),
    );
    assert_eq!(
        observe(&split, SERVICE, &versions),
        Ok(weights(&[("docs-2", 75), ("docs-3", 25)]))
    );
    assert_eq!(
        observe(&http_route(), SERVICE, &versions),
        Ok(Weights::new()),
        "unsplit"
    );
}

#[test]
fn observe_counts_a_missing_weight_as_1_and_normalises() {
    let versions = versions();
    let mut route = http_route();
    route["spec"]["rules"][1]["backendRefs"] = json!([
        {"name": "docs-1", "port": 8080},
        {"name": "docs-2", "port": 8080},
        {"name": "docs-3", "port": 8080}
    ]);
    assert_eq!(
        observe(&route, SERVICE, &versions),
        Ok(weights(&[("docs-1", 34), ("docs-2", 33), ("docs-3", 33)]))
    );
    route["spec"]["rules"][1]["backendRefs"] = json!([
        {"name": "docs-1", "port": 8080, "weight": 1},
        {"name": "docs-2", "port": 8080, "weight": 2}
    ]);
    assert_eq!(
        observe(&route, SERVICE, &versions),
        Ok(weights(&[("docs-1", 33), ("docs-2", 67)]))
    );
}

#[test]
fn observe_reports_rules_that_disagree() {
    let versions = versions();
    let mut route = two_split_rules();
    route["spec"]["rules"][1]["backendRefs"] =
        json!([{"name": "docs-2", "port": 8080, "weight": 100}]);
    route["spec"]["rules"][2]["backendRefs"] = json!([{"name": "docs-2", "port": 8080, "weight": 50}, {"name": "docs-3", "port": 8080, "weight": 50}]);
    assert_eq!(
        observe(&route, SERVICE, &versions).unwrap_err().to_string(),
        "HTTPRoute shop/docs: spec.rules[1] splits docs-2=100 but spec.rules[2] splits docs-2=50, docs-3=50: Prism sets every rule that sends traffic to the application alike, and writes them again"
    );
}

/// Weights over a subset of the versions summing to 100, or none.
fn any_weights() -> impl Strategy<Value = Weights> {
    (
        proptest::sample::subsequence(vec!["docs-1", "docs-2", "docs-3", "docs-4"], 0..=4),
        proptest::collection::vec(1u32..100, 4),
    )
        .prop_map(|(chosen, cuts)| {
            let mut weights = Weights::new();
            let Some((last, rest)) = chosen.split_last() else {
                return weights;
            };
            let mut left = 100;
            for (version, cut) in rest.iter().zip(cuts) {
                let weight = cut % (left + 1);
                weights.insert(version.to_string(), weight);
                left -= weight;
            }
            weights.insert(last.to_string(), left);
            weights
        })
}

fn any_routes() -> impl Strategy<Value = Vec<ResolvedRoute>> {
    let version = proptest::sample::select(vec!["docs-1", "docs-2", "docs-3", "docs-4"]);
    let route = (0..4usize, version).prop_map(|(kind, version)| match kind {
        0 => header("canary", version, "x-canary", "always"),
        1 => query("by-query", version, "version", version),
        2 => path("beta", version, "/beta"),
        _ => path("docs-v2", version, "/docs/v2"),
    });
    proptest::collection::vec(route, 0..4).prop_map(|routes| {
        // One route per name and version, as the engine resolves them.
        let mut seen = BTreeSet::new();
        routes
            .into_iter()
            .filter(|r| seen.insert((r.name.clone(), r.version.clone())))
            .collect()
    })
}

fn is_managed(rule: &Value) -> bool {
    rule["name"]
        .as_str()
        .unwrap_or_default()
        .starts_with("prism-")
}

proptest! {
    #[test]
    fn prism_touches_only_what_it_manages(
        two_rules in any::<bool>(),
        before in any_weights(),
        weights in any_weights(),
        earlier in any_routes(),
        routes in any_routes(),
    ) {
        let versions = versions();
        let original = if two_rules { two_split_rules() } else { http_route() };
        let desired = Desired { service: SERVICE, versions: &versions, weights: &weights, routes: &routes };
        let earlier = Desired { weights: &before, routes: &earlier, ..desired };
        let fresh = rules(&original, &desired).unwrap();
        // From any earlier state Prism wrote, the same rules.
        let written = with_rules(&original, rules(&original, &earlier).unwrap());
        let again = rules(&written, &desired).unwrap();
        prop_assert_eq!(&again, &fresh);
        // Everything Prism writes is written out as the server would default it.
        prop_assert_eq!(&defaulted(&again), &again);
        // Idempotent.
        let applied = with_rules(&original, again.clone());
        prop_assert_eq!(&rules(&applied, &desired).unwrap(), &again);

        let context = Context::new(&original, SERVICE, &versions);
        let user: Vec<&Value> = original["spec"]["rules"].as_array().unwrap().iter().collect();
        let kept: Vec<&Value> = again.iter().filter(|rule| !is_managed(rule)).collect();
        prop_assert_eq!(kept.len(), user.len());
        for (old, new) in user.iter().zip(&kept) {
            let old_map = old.as_object().unwrap();
            if !context.splits(old_map) {
                prop_assert_eq!(old, new, "an unmanaged rule is byte-identical");
                continue;
            }
            let without_backends = |rule: &Value| {
                let mut rule = rule.clone();
                rule.as_object_mut().unwrap().remove("backendRefs");
                rule
            };
            prop_assert_eq!(without_backends(old), without_backends(new));
            let others = |rule: &Value| -> Vec<Value> {
                rule["backendRefs"].as_array().unwrap().iter().filter(|b| !context.is_prisms(b)).cloned().collect()
            };
            prop_assert_eq!(others(old), others(new), "unmanaged backendRefs are byte-identical");
            let prisms: Vec<&Value> = new["backendRefs"].as_array().unwrap().iter().filter(|b| context.is_prisms(b)).collect();
            if weights.is_empty() {
                prop_assert_eq!(prisms.len(), 1);
                prop_assert_eq!(&prisms[0]["name"], SERVICE);
            } else {
                let sum: u64 = prisms.iter().map(|b| b["weight"].as_u64().unwrap()).sum();
                prop_assert_eq!(sum, 100);
                prop_assert!(prisms.iter().all(|b| b["weight"] != 0), "no backendRef at weight 0");
            }
        }
        for rule in again.iter().filter(|rule| is_managed(rule)) {
            let backends = rule["backendRefs"].as_array().unwrap();
            prop_assert_eq!(backends.len(), 1, "a managed rule points at one version");
            let name = backends[0]["name"].as_str().unwrap();
            let rule_name = rule["name"].as_str().unwrap();
            let of_its_route = routes
                .iter()
                .any(|r| r.version == name && rule_name.starts_with(&format!("prism-{}", r.name)));
            prop_assert!(of_its_route, "{} is no route's rule to {}", rule_name, name);
        }
        let managed = again.iter().filter(|rule| is_managed(rule)).count();
        prop_assert!(again[..managed].iter().all(is_managed), "managed rules come first");
        let positive: Weights = weights.iter().filter(|(_, w)| **w > 0).map(|(v, w)| (v.clone(), *w)).collect();
        prop_assert_eq!(observe(&applied, SERVICE, &versions).unwrap(), positive, "a version at 0 is not listed");
    }
}

#[test]
fn two_routes_that_would_share_a_rule_name_get_distinct_ones() {
    let routes = [
        header("beta", "docs-2", "x-beta", "2"),
        header("beta", "docs-3", "x-beta", "3"),
        header("beta-docs-2", "docs-2", "x-other", "1"),
    ];
    let rules = rules_of(&http_route(), &weights(&[("docs-2", 100)]), &routes).unwrap();
    let names: BTreeSet<&str> = rules
        .iter()
        .filter_map(|rule| rule["name"].as_str())
        .collect();
    assert_eq!(
        (rules.len(), names.len()),
        (5, 4),
        "the split rule has no name: {names:?}"
    );
    assert!(names.contains("prism-beta-docs-3"));
}

#[test]
fn a_rule_prism_wrote_is_its_own_even_for_a_version_the_controller_left_out() {
    let versions = BTreeSet::new();
    let weights = weights(&[("docs-2", 100)]);
    let routes = [header("canary", "docs-9", "x-canary", "always")];
    let desired = Desired {
        service: SERVICE,
        versions: &versions,
        weights: &weights,
        routes: &routes,
    };
    let written = with_rules(&http_route(), rules(&http_route(), &desired).unwrap());
    assert_eq!(
        rules(&written, &desired).unwrap(),
        written["spec"]["rules"].as_array().unwrap().clone()
    );
}

/// A GRPCRoute as the API server returns it: a rule for one gRPC service, one for the rest.
fn grpc_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "docs", "namespace": "shop", "generation": 1},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway", "namespace": "gateways"}],
            "rules": [
                {
                    "matches": [{"method": {"type": "Exact", "service": "docs.Search"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": "docs", "port": 9090, "weight": 1}]
                },
                {"backendRefs": [{"group": "", "kind": "Service", "name": "docs", "port": 9090, "weight": 1}]}
            ]
        }
    })
}

#[test]
fn a_grpc_route_is_split_and_takes_header_routes() {
    let routes = [header("canary", "docs-3", "x-canary", "always")];
    let rules = rules_of(&grpc_route(), &weights(&[("docs-2", 100)]), &routes).unwrap();
    assert_eq!(
        rules[0]["matches"],
        json!([{"method": {"type": "Exact", "service": "docs.Search"}, "headers": [{"name": "x-canary", "type": "Exact", "value": "always"}]}])
    );
    assert_eq!(
        rules[1]["matches"],
        json!([{"headers": [{"name": "x-canary", "type": "Exact", "value": "always"}]}]),
        "no path in a GRPCRoute"
    );
    assert_eq!(
        rules[3]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "docs-2", "port": 9090, "weight": 100}])
    );
    let error = rules_of(
        &grpc_route(),
        &weights(&[("docs-2", 100)]),
        &[path("beta", "docs-3", "/beta")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "GRPCRoute shop/docs: route beta cannot be added to spec.rules[0].matches[0]: a GRPCRoute matches a service, a method and headers, not paths or query parameters: give the route a header match"
    );
}
