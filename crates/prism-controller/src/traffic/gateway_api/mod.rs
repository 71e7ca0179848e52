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

use prism_api::labels::{APP_LABEL, ROUTES_ANNOTATION};
use prism_engine::ResolvedRoute;
use serde_json::{Value, json};

use super::{
    AppView, Pending, TrafficProvider, Weights, remove_services, remove_version_service, services,
};
use crate::cached::HttpRoute;
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
                kind: Kind::HttpRoute,
                verbs: &[
                    Verb::WatchAll,
                    Verb::Apply,
                    Verb::Delete,
                    Verb::DeleteByRelease,
                ],
                why: "gatewayAPI: every HTTPRoute is watched (the one an Application names carries no label of Prism's); Prism applies the rules and the prism.dev/routes annotation of the one named, and applies and deletes the HTTPRoutes of subdomain routes (labelled prism.dev/release)",
            },
        ]
    }

    /// The weights every named route is set to; none while they disagree (then `pending` says
    /// so, and the step's traffic change writes them all alike).
    fn observe(&self, view: &AppView) -> Weights {
        let Ok(users) = user_routes(view) else {
            return Weights::new();
        };
        let versions = view.versions();
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
        let versions = view.versions();
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
        let mut writes = services(view, weights, routes);
        // Without the routes to rewrite, `pending` says why; with one that cannot take the
        // step, `refuses` does.
        let Ok(users) = user_routes(view) else {
            return writes;
        };
        let versions = view.versions();
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
            let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
            let current = owned
                .iter()
                .find(|route| route["metadata"]["name"].as_str() == Some(name));
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
                    kind: Kind::HttpRoute,
                    body,
                });
            }
        }
        let routes_text = serde_json::to_string(routes).unwrap_or_default();
        writes.extend(
            built
                .iter()
                .filter_map(|(user, rules, _)| rewrite(user, rules.clone(), &routes_text)),
        );
        // Subdomain routes that no longer are go last, once nothing routes to them.
        writes.extend(
            owned
                .iter()
                .filter_map(|route| route["metadata"]["name"].as_str())
                .filter(|name| {
                    !wanted_owned
                        .iter()
                        .any(|wanted| wanted["metadata"]["name"].as_str() == Some(name))
                })
                .map(|name| Write::Delete {
                    kind: Kind::HttpRoute,
                    name: name.to_owned(),
                }),
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
        let versions = view.versions();
        let desired = desired(view, &versions, weights, routes);
        users.iter().find_map(|user| {
            let error = route::rules(user, &desired)
                .and_then(|_| hostnames::hostname_routes(user, &desired, view.app))
                .err()?;
            let name = user["metadata"]["name"].as_str().unwrap_or_default();
            Some(Refusal::by_provider(
                Kind::HttpRoute,
                name,
                error.to_string(),
            ))
        })
    }

    /// The user's HTTPRoutes back as they were written (one backendRef to the application's
    /// Service), then Prism's own HTTPRoutes and the Services.
    fn remove(&self, view: &AppView) -> Vec<Write> {
        let versions = view.versions();
        let none = Weights::new();
        let unsplit = desired(view, &versions, &none, &[]);
        let mut writes: Vec<Write> = user_routes(view)
            .unwrap_or_default()
            .iter()
            .filter_map(|user| rewrite(user, route::rules(user, &unsplit).ok()?, "[]"))
            .collect();
        writes.extend(owned_routes(view).iter().filter_map(|route| {
            Some(Write::Delete {
                kind: Kind::HttpRoute,
                name: route["metadata"]["name"].as_str()?.to_owned(),
            })
        }));
        writes.extend(remove_services(view));
        writes
    }

    fn remove_version(&self, view: &AppView, release: &str) -> Vec<Write> {
        remove_version_service(view, release)
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
        kind: Kind::HttpRoute,
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

/// The HTTPRoutes the Application names, as JSON, or why they cannot be routed with.
fn user_routes(view: &AppView) -> Result<Vec<Value>, String> {
    let routes = view.http_routes.map_err(|why| {
        format!(
            "the HTTPRoutes of the cluster cannot be read ({why}): are the Gateway API CRDs installed?"
        )
    })?;
    let mut names: Vec<&String> = view.policy.http_routes.iter().collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(
            "spec.traffic.httpRoutes is empty: name the HTTPRoutes whose backendRefs Prism splits"
                .into(),
        );
    }
    names
        .into_iter()
        .map(|name| {
            routes
                .iter()
                .find(|route| route.metadata.name.as_deref() == Some(name.as_str()))
                .map(|route| as_json(route))
                .ok_or_else(|| {
                    format!(
                        "HTTPRoute {name} does not exist in the application's namespace: create it, with a backendRef to the application's Service"
                    )
                })
        })
        .collect()
}

/// The HTTPRoutes Prism made for the application (its subdomain routes).
fn owned_routes(view: &AppView) -> Vec<Value> {
    view.http_routes
        .unwrap_or_default()
        .iter()
        .filter(|route| {
            route
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(APP_LABEL))
                .map(String::as_str)
                == Some(view.app)
                && route.metadata.deletion_timestamp.is_none()
        })
        .map(|route| as_json(route))
        .collect()
}

fn as_json(route: &HttpRoute) -> Value {
    json!({
        "metadata": route.metadata,
        "spec": route.spec,
        "status": route.status,
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

/// The application's Service: the backendRef Prism splits.
fn service_name<'a>(view: &AppView<'a>) -> &'a str {
    view.service
        .and_then(|(manifest, _)| manifest.name())
        .unwrap_or_default()
}
