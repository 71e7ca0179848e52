//! The HTTPRoutes (GRPCRoutes for a user's GRPCRoute) Prism owns for subdomain routes. The
//! Gateway API has no per-rule hostnames, and a header match on `Host` does not select a
//! hostname (Traefik reads it from the request's headers, where Go's server no longer keeps
//! it), so a version's own hostname needs an HTTPRoute of its own: the user's parentRefs, hostnames `<subdomain>.<each of the user's>`,
//! and the user's split rules sending everything to that version.
//!
//! A wildcard hostname of the user's, `*.example.com`, gives `v3.example.com`: the subdomain
//! takes the wildcard's place, a host the user's route already serves; gateways prefer the
//! exact hostname over the wildcard, so the version's route wins there.

use std::collections::BTreeMap;

use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use serde_json::{Map, Value, json};

use super::route::{
    Context, Desired, MAX_HOSTNAMES, RouteError, backend_to, check_limits, known_versions,
    object_name, str_of,
};
use crate::traffic::is_hostname;

/// The HTTPRoutes of the step's subdomain routes, one per route and version, in the order of
/// `desired.routes`; none when the step has none. `app` labels them, with the version.
pub fn hostname_routes(
    route: &Value,
    desired: &Desired,
    app: &str,
) -> Result<Vec<Value>, RouteError> {
    let known = known_versions(desired);
    let context = Context::new(route, desired.service, &known);
    let spec = &route["spec"];
    let user_hostnames: Vec<&str> = spec["hostnames"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut claimed: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut routes = Vec::new();
    for wanted in desired.routes {
        let Some(subdomain) = &wanted.matches.subdomain else {
            continue;
        };
        if user_hostnames.is_empty() {
            return Err(RouteError::NoHostnames {
                route: context.route.clone(),
                name: wanted.name.clone(),
            });
        }
        let mut hostnames: Vec<String> = Vec::new();
        for user in &user_hostnames {
            let hostname = with_subdomain(subdomain, user);
            if !is_hostname(&hostname) {
                return Err(RouteError::InvalidHostname {
                    route: context.route.clone(),
                    name: wanted.name.clone(),
                    subdomain: subdomain.clone(),
                    hostname: (*user).to_owned(),
                    result: hostname,
                });
            }
            if let Some((other, other_version)) = claimed.get(&hostname)
                && (*other, *other_version) != (wanted.name.as_str(), wanted.version.as_str())
            {
                return Err(RouteError::HostnameTaken {
                    name: wanted.name.clone(),
                    version: wanted.version.clone(),
                    other: (*other).to_owned(),
                    other_version: (*other_version).to_owned(),
                    hostname,
                });
            }
            claimed.insert(hostname.clone(), (&wanted.name, &wanted.version));
            if !hostnames.contains(&hostname) {
                hostnames.push(hostname);
            }
        }
        if hostnames.len() > MAX_HOSTNAMES {
            return Err(RouteError::TooManyHostnames {
                route: context.route.clone(),
                name: wanted.name.clone(),
                version: wanted.version.clone(),
                count: hostnames.len(),
            });
        }
        let split = context.split_rules(&context.plain_rules());
        if split.is_empty() {
            return Err(context.no_split_rule());
        }
        let rules: Vec<Value> = split
            .iter()
            .map(|(_, source)| {
                let template = context.template(source);
                let mut rule = (*source).clone();
                rule.insert(
                    "backendRefs".into(),
                    Value::Array(vec![backend_to(&template, &wanted.version, 1)]),
                );
                Value::Object(rule)
            })
            .collect();
        check_limits(&context.route, &rules)?;
        let name = object_name(
            str_of(&route["metadata"], "name"),
            &wanted.name,
            &wanted.version,
        );
        let mut spec = Map::new();
        if let Some(parents) = route["spec"].get("parentRefs") {
            spec.insert("parentRefs".into(), parents.clone());
        }
        spec.insert("hostnames".into(), json!(hostnames));
        spec.insert("rules".into(), Value::Array(rules));
        routes.push(json!({
            "apiVersion": route.get("apiVersion").unwrap_or(&json!("gateway.networking.k8s.io/v1")),
            "kind": route.get("kind").unwrap_or(&json!("HTTPRoute")),
            "metadata": {
                "name": name,
                "labels": {APP_LABEL: app, RELEASE_LABEL: wanted.version},
            },
            "spec": spec,
        }));
    }
    Ok(routes)
}

/// `v3.example.com` for subdomain `v3` of `example.com` or of `*.example.com`.
fn with_subdomain(subdomain: &str, hostname: &str) -> String {
    let parent = hostname.strip_prefix("*.").unwrap_or(hostname);
    format!("{subdomain}.{parent}")
}

#[cfg(test)]
#[path = "hostnames_tests.rs"]
mod tests;
