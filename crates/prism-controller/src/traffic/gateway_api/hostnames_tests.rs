use prism_engine::ResolvedRoute;
use serde_json::{Value, json};

use super::*;
use crate::traffic::Weights;
use crate::traffic::gateway_api::fixtures::{SERVICE, header, http_route, subdomain, versions};

fn routes_for(route: &Value, routes: &[ResolvedRoute]) -> Result<Vec<Value>, RouteError> {
    let versions = versions();
    let weights = Weights::from([("docs-2".to_owned(), 100)]);
    hostname_routes(
        route,
        &Desired {
            service: SERVICE,
            versions: &versions,
            weights: &weights,
            routes,
        },
        "docs",
    )
}

#[test]
fn each_version_gets_an_httproute_on_its_subdomain() {
    let mut user = http_route();
    user["spec"]["hostnames"] = json!(["docs.example.test", "*.example.test"]);
    let routes = [
        subdomain("by-version", "docs-2", "docs-2"),
        header("canary", "docs-3", "x-canary", "always"),
        subdomain("by-version", "docs-3", "docs-3"),
    ];
    let owned = routes_for(&user, &routes).unwrap();
    assert_eq!(owned.len(), 2, "one per subdomain route");
    let mut rule = http_route()["spec"]["rules"][1].clone();
    rule["backendRefs"] =
        json!([{"group": "", "kind": "Service", "name": "docs-3", "port": 8080, "weight": 1}]);
    assert_eq!(
        owned[1],
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": "docs-by-version-docs-3",
                "labels": {"prism.dev/app": "docs", "prism.dev/release": "docs-3"}
            },
            "spec": {
                "parentRefs": user["spec"]["parentRefs"],
                "hostnames": ["docs-3.docs.example.test", "docs-3.example.test"],
                "rules": [rule]
            }
        })
    );
    assert_eq!(owned[0]["metadata"]["name"], "docs-by-version-docs-2");
}

#[test]
fn no_subdomain_route_no_httproute() {
    assert_eq!(
        routes_for(
            &http_route(),
            &[header("canary", "docs-3", "x-canary", "1")]
        ),
        Ok(vec![])
    );
}

#[test]
fn a_route_without_hostnames() {
    let mut user = http_route();
    user["spec"].as_object_mut().unwrap().remove("hostnames");
    let error = routes_for(&user, &[subdomain("beta", "docs-3", "beta")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "route beta matches a subdomain, but HTTPRoute shop/docs has no spec.hostnames to put it in front of: give the HTTPRoute the application's hostnames, e.g. hostnames: [example.com]"
    );
}

#[test]
fn a_subdomain_that_gives_no_hostname() {
    let error = routes_for(&http_route(), &[subdomain("beta", "docs-3", "Beta_1")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "route beta: subdomain Beta_1 of docs.example.test (HTTPRoute shop/docs) gives Beta_1.docs.example.test, which is not a hostname: a subdomain is lowercase letters, digits, '-' and '.', each label at most 63 characters, 253 in all"
    );
}

#[test]
fn two_routes_on_one_hostname() {
    let error = routes_for(
        &http_route(),
        &[
            subdomain("beta", "docs-3", "beta"),
            subdomain("preview", "docs-2", "beta"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "routes preview (to docs-2) and beta (to docs-3) both claim hostname beta.docs.example.test: give each version its own subdomain"
    );
}

#[test]
fn a_route_without_the_applications_service_gets_no_hostname_route() {
    let mut user = http_route();
    user["spec"]["rules"][1]["backendRefs"][0]["name"] = json!("other");
    assert!(matches!(
        routes_for(&user, &[subdomain("beta", "docs-3", "beta")]),
        Err(RouteError::NoSplitRule { .. })
    ));
}
