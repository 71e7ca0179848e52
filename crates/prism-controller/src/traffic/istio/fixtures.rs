//! VirtualServices as the API server returns them, and routes, for the tests.

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

/// The user's VirtualService: an entry of its own (admin, another host's Service), and the
/// application's entry with header changes, a timeout and a second destination Prism does not
/// manage; the application's Service spelled out fully.
pub fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
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
            "hosts": ["docs.example.test"],
            "gateways": ["mesh"],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin.shop.svc.cluster.local", "port": {"number": 80}}}]
                },
                {
                    "name": "site",
                    "match": [{"uri": {"prefix": "/"}}],
                    "headers": {"response": {"add": {"x-served-by": "mesh"}}},
                    "route": [
                        {"destination": {"host": "docs.shop.svc.cluster.local", "port": {"number": 8080}}, "weight": 90},
                        {"destination": {"host": "docs-static", "port": {"number": 8080}}, "weight": 10}
                    ],
                    "timeout": "10s"
                }
            ],
            "tcp": [{"route": [{"destination": {"host": "docs", "port": {"number": 9000}}}]}]
        }
    })
}

/// The VirtualService with this `spec.http`, as a write would leave it.
pub fn with_http(virtual_service: &Value, http: Vec<Value>) -> Value {
    let mut virtual_service = virtual_service.clone();
    virtual_service["spec"]["http"] = Value::Array(http);
    virtual_service
}

fn route(name: &str, version: &str, matches: RouteMatch) -> ResolvedRoute {
    ResolvedRoute {
        name: name.into(),
        version: version.into(),
        matches,
    }
}

pub fn header(name: &str, version: &str, header: &str, value: &str) -> ResolvedRoute {
    let header = Some(HeaderMatch {
        name: header.into(),
        value: value.into(),
        match_type: MatchType::Exact,
    });
    route(
        name,
        version,
        RouteMatch {
            header,
            ..Default::default()
        },
    )
}

pub fn query(name: &str, version: &str, param: &str, value: &str) -> ResolvedRoute {
    let query_param = Some(QueryParamMatch {
        name: param.into(),
        value: value.into(),
        match_type: MatchType::RegularExpression,
    });
    route(
        name,
        version,
        RouteMatch {
            query_param,
            ..Default::default()
        },
    )
}

pub fn path(name: &str, version: &str, prefix: &str) -> ResolvedRoute {
    let path_prefix = Some(prefix.into());
    route(
        name,
        version,
        RouteMatch {
            path_prefix,
            ..Default::default()
        },
    )
}

pub fn subdomain(name: &str, version: &str, subdomain: &str) -> ResolvedRoute {
    let subdomain = Some(subdomain.into());
    route(
        name,
        version,
        RouteMatch {
            subdomain,
            ..Default::default()
        },
    )
}
