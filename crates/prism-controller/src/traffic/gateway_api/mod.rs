//! The `gatewayAPI` traffic provider: Prism splits the backendRefs that point at the
//! application's Service in the user's HTTPRoute into one weighted backendRef per version, puts
//! a step's routes in front of the user's rules, and gives each subdomain route an HTTPRoute of
//! its own. Each version gets a Service of its own, named like its Release.
//!
//! The pure part works on HTTPRoute objects as the API server returns them (`serde_json::Value`,
//! server defaults filled in), so that whatever Prism does not manage round-trips exactly:
//! - [`route`]: the `spec.rules` Prism writes, and the weights a route is set to;
//! - [`hostnames`]: the HTTPRoutes Prism owns for subdomain routes;
//! - [`status`]: whether every parent Gateway accepted the route's current generation.
//!
//! HTTPRoute `spec.rules` is an atomic list, so server-side apply cannot own a part of it: Prism
//! applies the whole of `spec.rules` (with the resourceVersion it read, so that a concurrent edit
//! is never overwritten) and the `prism.dev/routes` annotation (the routes it wrote, read back as
//! the routes the cluster is set to serve), and owns those fields.
//!
//! A split is in place only once every parent Gateway has accepted the route's current
//! generation with its references resolved; until then [`TrafficProvider::pending`] says why,
//! and the engine holds the step and every version's pods.

pub mod hostnames;
pub mod route;
pub mod status;

#[cfg(test)]
mod fixtures;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use prism_api::labels::{APP_LABEL, ROUTES_ANNOTATION};
use prism_engine::ResolvedRoute;
use serde_json::{Value, json};

use super::{
    AppView, Pending, TrafficProvider, Weights, remove_services, remove_version_service, services,
    unserved,
};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Refusal, Write};
use status::{Acceptance, Waiting};

pub struct GatewayApi;

impl TrafficProvider for GatewayApi {
    fn touches(&self) -> &'static [Touch] {
        &[
            Touch {
                kind: Kind::Service,
                verbs: &[
                    Verb::WatchLabelled,
                    Verb::Apply,
                    Verb::Delete,
                    Verb::DeleteByRelease,
                ],
                why: "gatewayAPI: the application's Service, and one Service per version (named like its Release) for the HTTPRoute's weighted backendRefs; deleted with the version, or by label when its Release was deleted",
            },
            Touch {
                kind: Kind::EndpointSlice,
                verbs: &[Verb::WatchLabelled],
                why: "gatewayAPI: the EndpointSlices of those Services, so that a version gets its first requests only once its Service lists a ready endpoint (a gateway answers a backendRef to a Service without one with an error)",
            },
            Touch {
                kind: Kind::EndpointSlice,
                verbs: &[Verb::Apply, Verb::Delete],
                why: "gatewayAPI with a Service target of type ExternalName: the EndpointSlice of each copy (a Service without a selector), one endpoint at the externalName, ready as the probe says",
            },
            Touch {
                kind: Kind::HttpRoute,
                verbs: &[
                    Verb::WatchAll,
                    Verb::Apply,
                    Verb::Delete,
                    Verb::DeleteByRelease,
                ],
                why: "gatewayAPI: every HTTPRoute is watched (the one an Application names carries no label of Prism's); Prism applies the rules and the prism.dev/routes annotation of the one named, and applies and deletes the HTTPRoutes of subdomain routes (labelled prism.dev/release)",
            },
            Touch {
                kind: Kind::GrpcRoute,
                verbs: &[
                    Verb::WatchAll,
                    Verb::Apply,
                    Verb::Delete,
                    Verb::DeleteByRelease,
                ],
                why: "gatewayAPI: likewise for GRPCRoutes",
            },
        ]
    }

    /// The weights every named route is set to; none while they disagree (then `pending` says
    /// so, and the step's traffic change writes them all alike).
    fn observe(&self, view: &AppView) -> Weights {
        view.by_release(&observe_backends(view))
    }

    fn routes(&self, view: &AppView) -> Vec<ResolvedRoute> {
        let Ok(users) = user_routes(view) else {
            return Vec::new();
        };
        let mut set = users
            .iter()
            .map(|route| route["metadata"]["annotations"][ROUTES_ANNOTATION].as_str());
        let first = set.next().flatten();
        if !set.all(|text| text == first) {
            return Vec::new();
        }
        first
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }

    fn pending(&self, view: &AppView) -> Option<Pending> {
        let problem = |message: String| Pending {
            message,
            promotable: false,
        };
        let users = match user_routes(view) {
            Ok(users) => users,
            Err(message) => return Some(problem(message)),
        };
        let versions = view.backends();
        let mut set = Vec::new();
        for user in &users {
            match route::observe(user, service_name(view), &versions) {
                Ok(weights) => set.push((user, weights)),
                Err(error) => return Some(problem(error.to_string())),
            }
        }
        if let Some((user, weights)) = set.iter().find(|(_, weights)| *weights != set[0].1) {
            return Some(problem(format!(
                "HTTPRoute {} is set to {weights:?} and HTTPRoute {} to {:?}: Prism sets every route it is given alike, and writes them again",
                user["metadata"]["name"].as_str().unwrap_or_default(),
                set[0].0["metadata"]["name"].as_str().unwrap_or_default(),
                set[0].1,
            )));
        }
        let owned = owned_routes(view);
        users
            .iter()
            .chain(&owned)
            .map(status::acceptance)
            .find(|acceptance| *acceptance != Acceptance::Accepted)
            .map(|acceptance| Pending {
                message: acceptance.to_string(),
                promotable: matches!(
                    acceptance,
                    Acceptance::Pending {
                        waiting: Waiting::Generation { observed: None, .. },
                        ..
                    }
                ),
            })
    }

    fn writes(&self, view: &AppView, weights: &Weights, routes: &[ResolvedRoute]) -> Vec<Write> {
        // A Service target's copies are its versions' capacity, written as such
        // (`service_target`); a template's versions get a Service each here.
        let mut writes = match view.target {
            Some(_) => Vec::new(),
            None => services(view, weights, routes),
        };
        // Without the routes to rewrite, `pending` says why; with one that cannot take the
        // step, `refuses` does.
        let Ok(users) = user_routes(view) else {
            return writes;
        };
        let routes_text = serde_json::to_string(routes).unwrap_or_default();
        if unserved(self, view, weights, routes).is_some() {
            return writes;
        }
        let (weights, routes) = (&view.by_backend(weights), &view.routes_by_backend(routes));
        let versions = view.backends();
        let desired = desired(view, &versions, weights, routes);
        let Ok(built) = users
            .iter()
            .map(|user| {
                Ok((
                    user,
                    route::rules(user, &desired)?,
                    hostnames::hostname_routes(user, &desired, view.app)?,
                ))
            })
            .collect::<Result<Vec<_>, route::RouteError>>()
        else {
            return writes;
        };
        let owned = owned_routes(view);
        let wanted_owned: Vec<&Value> = built.iter().flat_map(|(_, _, owned)| owned).collect();
        for wanted in &wanted_owned {
            let current = owned.iter().find(|route| same_object(route, wanted));
            let same = current.is_some_and(|current| {
                current["spec"] == wanted["spec"]
                    && current["metadata"]["labels"] == wanted["metadata"]["labels"]
            });
            if !same {
                let mut body = (*wanted).clone();
                if let Some(owner) = view.owner {
                    body["metadata"]["ownerReferences"] = json!([owner]);
                }
                writes.push(Write::Apply {
                    kind: kind_of(wanted),
                    body,
                });
            }
        }
        writes.extend(
            built
                .iter()
                .filter_map(|(user, rules, _)| rewrite(user, rules.clone(), &routes_text)),
        );
        // Subdomain routes that no longer are go last, once nothing routes to them.
        writes.extend(
            owned
                .iter()
                .filter(|route| !wanted_owned.iter().any(|wanted| same_object(route, wanted)))
                .filter_map(delete),
        );
        writes
    }

    fn refuses(
        &self,
        view: &AppView,
        weights: &Weights,
        routes: &[ResolvedRoute],
    ) -> Option<Refusal> {
        let users = user_routes(view).ok()?;
        let versions = view.backends();
        let (weights, routes) = (&view.by_backend(weights), &view.routes_by_backend(routes));
        let desired = desired(view, &versions, weights, routes);
        users.iter().find_map(|user| {
            let error = route::rules(user, &desired)
                .and_then(|_| hostnames::hostname_routes(user, &desired, view.app))
                .err()?;
            let name = user["metadata"]["name"].as_str().unwrap_or_default();
            Some(Refusal::by_provider(kind_of(user), name, error.to_string()))
        })
    }

    /// The user's HTTPRoutes back as they were written (one backendRef to the application's
    /// Service), then Prism's own HTTPRoutes and the Services.
    fn remove(&self, view: &AppView) -> Vec<Write> {
        let versions = view.backends();
        let none = Weights::new();
        let unsplit = desired(view, &versions, &none, &[]);
        let mut writes: Vec<Write> = user_routes(view)
            .unwrap_or_default()
            .iter()
            .filter_map(|user| rewrite(user, route::rules(user, &unsplit).ok()?, "[]"))
            .collect();
        writes.extend(owned_routes(view).iter().filter_map(delete));
        writes.extend(remove_services(view));
        writes
    }

    /// A Service target's copies leave with their versions' capacity (`service_target`).
    fn remove_version(&self, view: &AppView, release: &str) -> Vec<Write> {
        match view.target {
            Some(_) => Vec::new(),
            None => remove_version_service(view, release),
        }
    }
}

/// The weights every named route is set to, by backend Service; none while they disagree (then
/// `pending` says so, and the step's traffic change writes them all alike).
fn observe_backends(view: &AppView) -> Weights {
    let Ok(users) = user_routes(view) else {
        return Weights::new();
    };
    let versions = view.backends();
    let mut set = users
        .iter()
        .map(|route| route::observe(route, service_name(view), &versions).ok());
    let first = set.next().flatten().unwrap_or_default();
    if set.all(|weights| weights.as_ref() == Some(&first)) {
        first
    } else {
        Weights::new()
    }
}

/// The apply of `rules` and the routes annotation to the user's HTTPRoute, unless it has them:
/// only those fields, with the resourceVersion read, so that an edit made meanwhile fails the
/// write rather than being overwritten.
fn rewrite(user: &Value, rules: Vec<Value>, routes_text: &str) -> Option<Write> {
    let rules = Value::Array(rules);
    if user["spec"]["rules"] == rules
        && user["metadata"]["annotations"][ROUTES_ANNOTATION].as_str() == Some(routes_text)
    {
        return None;
    }
    Some(Write::Apply {
        kind: kind_of(user),
        body: json!({
            "metadata": {
                "name": user["metadata"]["name"],
                "resourceVersion": user["metadata"]["resourceVersion"],
                "annotations": {ROUTES_ANNOTATION: routes_text},
            },
            "spec": {"rules": rules},
        }),
    })
}

/// The kind of a route object as [`as_json`] gives it.
fn kind_of(route: &Value) -> Kind {
    match route["kind"].as_str() {
        Some("GRPCRoute") => Kind::GrpcRoute,
        _ => Kind::HttpRoute,
    }
}

/// Whether two route objects are the same object: kind and name.
fn same_object(a: &Value, b: &Value) -> bool {
    kind_of(a) == kind_of(b) && a["metadata"]["name"] == b["metadata"]["name"]
}

/// The delete of one of Prism's own route objects.
fn delete(route: &Value) -> Option<Write> {
    Some(Write::Delete {
        kind: kind_of(route),
        name: route["metadata"]["name"].as_str()?.to_owned(),
    })
}

/// The HTTPRoutes and GRPCRoutes the Application names, as JSON, or why they cannot be routed
/// with.
fn user_routes(view: &AppView) -> Result<Vec<Value>, String> {
    let policy = view.policy;
    if policy.http_routes.is_empty() && policy.grpc_routes.is_empty() {
        return Err(
            "spec.traffic.httpRoutes is empty: name the HTTPRoutes whose backendRefs Prism splits"
                .into(),
        );
    }
    let mut routes = named(
        &policy.http_routes,
        "HTTPRoute",
        view.http_routes,
        |route| as_json("HTTPRoute", &route.metadata, &route.spec, &route.status),
    )?;
    routes.extend(named(
        &policy.grpc_routes,
        "GRPCRoute",
        view.grpc_routes,
        |route| as_json("GRPCRoute", &route.metadata, &route.spec, &route.status),
    )?);
    Ok(routes)
}

/// The route objects of `kind` that `names` names, as JSON, from the cache `objects`.
fn named<K: Resource<DynamicType = ()>>(
    names: &[String],
    kind: &str,
    objects: Result<&[Arc<K>], &str>,
    json: impl Fn(&K) -> Value,
) -> Result<Vec<Value>, String> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let objects = objects.map_err(|why| {
        format!(
            "the {kind}s of the cluster cannot be read ({why}): are the Gateway API CRDs installed?"
        )
    })?;
    let mut names: Vec<&String> = names.iter().collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            objects
                .iter()
                .find(|object| object.meta().name.as_deref() == Some(name.as_str()))
                .map(|object| json(object))
                .ok_or_else(|| {
                    format!(
                        "{kind} {name} does not exist in the application's namespace: create it, with a backendRef to the application's Service"
                    )
                })
        })
        .collect()
}

/// The HTTPRoutes and GRPCRoutes Prism made for the application (its subdomain routes).
fn owned_routes(view: &AppView) -> Vec<Value> {
    let ours = |metadata: &ObjectMeta| {
        metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(APP_LABEL))
            .map(String::as_str)
            == Some(view.app)
            && metadata.deletion_timestamp.is_none()
    };
    let http = view
        .http_routes
        .unwrap_or_default()
        .iter()
        .filter(|r| ours(&r.metadata));
    let grpc = view
        .grpc_routes
        .unwrap_or_default()
        .iter()
        .filter(|r| ours(&r.metadata));
    http.map(|r| as_json("HTTPRoute", &r.metadata, &r.spec, &r.status))
        .chain(grpc.map(|r| as_json("GRPCRoute", &r.metadata, &r.spec, &r.status)))
        .collect()
}

/// A route object as the API server returns it, for [`route`].
fn as_json(kind: &str, metadata: &ObjectMeta, spec: &Value, status: &Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

/// What the route should serve, for [`route`].
fn desired<'a>(
    view: &'a AppView,
    versions: &'a BTreeSet<String>,
    weights: &'a Weights,
    routes: &'a [ResolvedRoute],
) -> route::Desired<'a> {
    route::Desired {
        service: service_name(view),
        versions,
        weights,
        routes,
    }
}

/// The application's Service (or the Service it targets): the backendRef Prism splits.
fn service_name<'v>(view: &'v AppView) -> &'v str {
    if let Some(copies) = &view.target {
        return &copies.service;
    }
    view.service
        .and_then(|(manifest, _)| manifest.name())
        .unwrap_or_default()
}
