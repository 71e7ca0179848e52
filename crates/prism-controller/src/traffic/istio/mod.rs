//! The `istio` traffic provider: Prism splits the destinations that point at the application's
//! Service in the user's VirtualService (`spec.traffic.virtualService`, in the application's
//! namespace) into one weighted destination per version, and puts a step's routes (header, path
//! prefix, query parameter, subdomain as an authority match) in http entries of their own before
//! the user's. Each version gets a Service of its own, named like its Release.
//!
//! The pure part works on VirtualService objects as the API server returns them
//! (`serde_json::Value`), so that whatever Prism does not manage round-trips exactly:
//! - [`http`]: the `spec.http` Prism writes, and the weights a VirtualService is set to;
//! - [`hosts`]: which Service a destination names, and a subdomain's authorities;
//! - [`status`]: whether istiod reports on the current generation, when it reports at all.
//!
//! `spec.http` is an atomic list, so server-side apply cannot own a part of it: Prism applies the
//! whole of `spec.http` (with the resourceVersion it read, so that a concurrent edit is never
//! overwritten) and the `prism.dev/routes` annotation (the routes it wrote, read back as the
//! routes the cluster is set to serve), and owns those fields.
//!
//! Nothing acknowledges a VirtualService the way a Gateway accepts an HTTPRoute: no istiod runs
//! in the sandbox, and istiod reports a status only with its status feature on. So the split is
//! in place once written, unless a status says that istiod has not processed the current
//! generation yet; no Envoy checks it here either, so what is asserted is the object.

pub mod hosts;
pub mod http;
pub mod status;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use prism_api::labels::ROUTES_ANNOTATION;
use prism_engine::ResolvedRoute;
use serde_json::{Value, json};

use super::{
    AppView, Pending, TrafficProvider, Weights, remove_services, remove_version_service, services,
    unserved,
};
use crate::cached::VirtualService;
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Refusal, Write};

pub struct Istio;

impl TrafficProvider for Istio {
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
                why: "istio: the application's Service, and one Service per version (named like its Release) for the VirtualService's weighted destinations; deleted with the version, or by label when its Release was deleted",
            },
            Touch {
                kind: Kind::EndpointSlice,
                verbs: &[Verb::WatchLabelled],
                why: "istio: the EndpointSlices of those Services, so that a version gets its first requests only once its Service lists a ready endpoint (a gateway answers a destination to a Service without one with an error)",
            },
            Touch {
                kind: Kind::VirtualService,
                verbs: &[Verb::WatchAll, Verb::Apply],
                why: "istio: every VirtualService is watched (the one an Application names carries no label of Prism's); Prism applies the spec.http and the prism.dev/routes annotation of the one named, and never creates or deletes one",
            },
        ]
    }

    fn observe(&self, view: &AppView) -> Weights {
        let Ok(virtual_service) = user_virtual_service(view) else {
            return Weights::new();
        };
        http::observe(&virtual_service, service_name(view), &view.versions()).unwrap_or_default()
    }

    fn routes(&self, view: &AppView) -> Vec<ResolvedRoute> {
        user_virtual_service(view)
            .ok()
            .map(|virtual_service| routes_of(&virtual_service))
            .unwrap_or_default()
    }

    fn pending(&self, view: &AppView) -> Option<Pending> {
        let message = (|| {
            let virtual_service = user_virtual_service(view)?;
            let versions = view.versions();
            let weights = http::observe(&virtual_service, service_name(view), &versions)
                .map_err(|error| error.to_string())?;
            // What the VirtualService is set to must still be writable: an edit of the user's
            // can make it inexpressible (a route's header now matched by the entry it copies).
            let routes = routes_of(&virtual_service);
            http::http(
                &virtual_service,
                &desired(view, &versions, &weights, &routes),
            )
            .map_err(|error| error.to_string())?;
            status::pending(&virtual_service).map_or(Ok(()), Err)
        })()
        .err()?;
        Some(Pending {
            message,
            promotable: false,
        })
    }

    fn refuses(
        &self,
        view: &AppView,
        weights: &Weights,
        routes: &[ResolvedRoute],
    ) -> Option<Refusal> {
        let user = user_virtual_service(view).ok()?;
        let versions = view.versions();
        let error = http::http(&user, &desired(view, &versions, weights, routes)).err()?;
        let name = user["metadata"]["name"].as_str().unwrap_or_default();
        Some(Refusal::by_provider(
            Kind::VirtualService,
            name,
            error.to_string(),
        ))
    }

    fn writes(&self, view: &AppView, weights: &Weights, routes: &[ResolvedRoute]) -> Vec<Write> {
        let mut writes = services(view, weights, routes);
        // Without a VirtualService to rewrite, `pending` says why.
        let Ok(user) = user_virtual_service(view) else {
            return writes;
        };
        if unserved(self, view, weights, routes).is_some() {
            return writes;
        }
        let versions = view.versions();
        let Ok(http) = http::http(&user, &desired(view, &versions, weights, routes)) else {
            return writes;
        };
        let routes_text = serde_json::to_string(routes).unwrap_or_default();
        if user["spec"]["http"] != Value::Array(http.clone())
            || user["metadata"]["annotations"][ROUTES_ANNOTATION].as_str() != Some(&routes_text)
        {
            writes.push(Write::Apply {
                kind: Kind::VirtualService,
                body: json!({
                    "metadata": {
                        "name": user["metadata"]["name"],
                        "resourceVersion": user["metadata"]["resourceVersion"],
                        "annotations": {ROUTES_ANNOTATION: routes_text},
                    },
                    "spec": {"http": http},
                }),
            });
        }
        writes
    }

    /// The user's VirtualService back as it was written (one destination to the application's
    /// Service, no managed entry; the annotation goes with Prism's ownership of it), then the
    /// Services.
    fn remove(&self, view: &AppView) -> Vec<Write> {
        let mut writes = Vec::new();
        let versions = view.versions();
        if let Ok(user) = user_virtual_service(view)
            && let Ok(http) = http::http(&user, &desired(view, &versions, &Weights::new(), &[]))
            && (user["spec"]["http"] != Value::Array(http.clone())
                || !user["metadata"]["annotations"][ROUTES_ANNOTATION].is_null())
        {
            writes.push(Write::Apply {
                kind: Kind::VirtualService,
                body: json!({
                    "metadata": {
                        "name": user["metadata"]["name"],
                        "resourceVersion": user["metadata"]["resourceVersion"],
                    },
                    "spec": {"http": http},
                }),
            });
        }
        writes.extend(remove_services(view));
        writes
    }

    fn remove_version(&self, view: &AppView, release: &str) -> Vec<Write> {
        remove_version_service(view, release)
    }
}

/// The VirtualService the Application names, as JSON, or why there is none to route with.
fn user_virtual_service(view: &AppView) -> Result<Value, String> {
    let name = view.policy.virtual_service.as_deref().ok_or(
        "spec.traffic.virtualService is not set: name the VirtualService whose routes Prism splits",
    )?;
    let virtual_services = view.virtual_services.map_err(|why| {
        format!(
            "the VirtualServices of the cluster cannot be read ({why}): are Istio's CRDs installed (virtualservices.networking.istio.io)?"
        )
    })?;
    virtual_services
        .iter()
        .find(|virtual_service| virtual_service.metadata.name.as_deref() == Some(name))
        .map(|virtual_service| as_json(virtual_service))
        .ok_or_else(|| {
            format!(
                "VirtualService {name} does not exist in the application's namespace: create it, with an http entry whose route has a destination to the application's Service {}",
                service_name(view)
            )
        })
}

/// The routes Prism wrote into the VirtualService, from its annotation.
fn routes_of(virtual_service: &Value) -> Vec<ResolvedRoute> {
    virtual_service["metadata"]["annotations"][ROUTES_ANNOTATION]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

fn as_json(virtual_service: &VirtualService) -> Value {
    json!({
        "metadata": virtual_service.metadata,
        "spec": virtual_service.spec,
        "status": virtual_service.status,
    })
}

/// What the VirtualService should serve, for [`http`].
fn desired<'a>(
    view: &'a AppView,
    versions: &'a BTreeSet<String>,
    weights: &'a Weights,
    routes: &'a [ResolvedRoute],
) -> http::Desired<'a> {
    http::Desired {
        service: service_name(view),
        versions,
        weights,
        routes,
    }
}

/// The application's Service: the destination Prism splits.
fn service_name<'a>(view: &AppView<'a>) -> &'a str {
    view.service
        .and_then(|(manifest, _)| manifest.name())
        .unwrap_or_default()
}
