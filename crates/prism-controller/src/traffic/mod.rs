//! Traffic providers: how a cluster splits an application's requests between its versions.
//! One module per provider behind [`TrafficProvider`]; a provider reads the cluster from the
//! controller's caches and builds writes (pure), which the controller executes.
//!
//! A provider reports the weights the cluster is *set* to serve, not a measured split: the
//! engine compares them with the step's weights, and a provider whose precision is coarser than
//! a percent (pod counts) still reaches a fixed point. Keeping the cluster serving the weights
//! it is set to (labelling a new ready pod, say) is the provider's job: [`TrafficProvider::writes`]
//! repairs drift whenever it is asked.

mod gateway_api;
mod istio;
mod pod_labels;
mod service_selector;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use prism_api::application::{Manifest, TrafficPolicy, TrafficProvider as ProviderName};
use prism_api::labels::{APP_LABEL, RELEASE_LABEL, SOURCE_ANNOTATION};
use prism_engine::ResolvedRoute;
use serde_json::{Map, Value};

use crate::cached::{EndpointSlice, GrpcRoute, HttpRoute, Pod, VirtualService};
use crate::touches::Touch;
use crate::workload::object;
use crate::write::{Kind, Refusal, Write};

pub use gateway_api::GatewayApi;
pub use istio::Istio;
pub use pod_labels::{PodLabels, labelled_pods};
pub use service_selector::ServiceSelector;

/// Weights in percent, by release name.
pub type Weights = BTreeMap<String, u32>;

/// What a provider sees of one application in one cluster.
pub struct AppView<'a> {
    pub app: &'a str,
    /// The Service of the newest Release's template that carries the application's traffic,
    /// and that Release's name.
    pub service: Option<(&'a Manifest, &'a str)>,
    /// The application's Service as the cluster has it.
    pub observed_service: Option<&'a Service>,
    /// Every Service of the application in the cluster (labelled with it), the one that
    /// carries its traffic and any a template before named otherwise.
    pub services: &'a [Arc<Service>],
    /// The EndpointSlices of those Services.
    pub endpoint_slices: &'a [Arc<EndpointSlice>],
    /// The pods of every version of the application.
    pub pods: &'a [Arc<Pod>],
    /// The Application's reference, when the cluster is the management cluster.
    pub owner: Option<&'a OwnerReference>,
    /// The Application's traffic policy (the route it names).
    pub policy: &'a TrafficPolicy,
    /// The names of the application's Releases.
    pub releases: &'a [&'a str],
    /// Every HTTPRoute of the namespace, or why the cluster's are not known.
    pub http_routes: Result<&'a [Arc<HttpRoute>], &'a str>,
    /// Every GRPCRoute of the namespace, likewise.
    pub grpc_routes: Result<&'a [Arc<GrpcRoute>], &'a str>,
    /// Every VirtualService of the namespace, or why the cluster's are not known.
    pub virtual_services: Result<&'a [Arc<VirtualService>], &'a str>,
}

/// Why a cluster may not serve what it is set to yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub message: String,
    /// Whether `prism promote` passes it: what holds the step is a gateway that accepted the
    /// route but never says for which generation, which no wait resolves.
    pub promotable: bool,
}

impl AppView<'_> {
    /// Every version of the application Prism may have routed to here: its Releases, and those
    /// whose Services remain.
    pub fn versions(&self) -> BTreeSet<String> {
        self.releases
            .iter()
            .map(|release| (*release).to_owned())
            .chain(self.services.iter().filter_map(|service| {
                service
                    .metadata
                    .labels
                    .as_ref()?
                    .get(RELEASE_LABEL)
                    .cloned()
            }))
            .collect()
    }
}

pub trait TrafficProvider: Sync {
    /// What the provider watches and writes in a cluster (see [`crate::touches`]).
    fn touches(&self) -> &'static [Touch];

    /// The weights the cluster is set to serve; a release not listed gets none.
    fn observe(&self, view: &AppView) -> Weights;

    /// The routes the cluster is set to serve (a provider that cannot route has none).
    fn routes(&self, _view: &AppView) -> Vec<ResolvedRoute> {
        Vec::new()
    }

    /// Why the cluster may not serve what it is set to yet (a route its gateway has not
    /// accepted, a route missing): while Some, the engine holds the step and every version's
    /// capacity.
    fn pending(&self, _view: &AppView) -> Option<Pending> {
        None
    }

    /// The writes that make the cluster serve `weights` and `routes`: what the engine asked for,
    /// or, when it asked nothing, what the cluster is set to serve again (so that drift is
    /// repaired). None when the cluster serves them already.
    fn writes(&self, view: &AppView, weights: &Weights, routes: &[ResolvedRoute]) -> Vec<Write>;

    /// Why the writes of `weights` and `routes` cannot be built from what the cluster has (a
    /// route the user's object cannot express): reported as a refused write, and nothing of the
    /// step's traffic is written.
    fn refuses(
        &self,
        _view: &AppView,
        _weights: &Weights,
        _routes: &[ResolvedRoute],
    ) -> Option<Refusal> {
        None
    }

    /// The deletes of every object the provider wrote for the application in the cluster, as
    /// the caches have them (none when they are gone). Asked once the application leaves the
    /// cluster: no version of it runs there any more, so nothing there may route to it.
    fn remove(&self, view: &AppView) -> Vec<Write>;

    /// The deletes of what the provider wrote for one version alone, asked when the version
    /// leaves the cluster (the engine has taken its traffic and routes away before).
    fn remove_version(&self, _view: &AppView, _release: &str) -> Vec<Write> {
        Vec::new()
    }

    /// Labels every pod of a new version carries from its start, so that the provider has to
    /// write only where the weights differ from what the pods give by themselves.
    fn pod_template_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// Every provider Prism implements.
pub const PROVIDERS: &[&dyn TrafficProvider] = &[&PodLabels, &ServiceSelector, &GatewayApi, &Istio];

/// The provider an Application names; None for a workload without traffic.
pub fn provider(name: ProviderName) -> Option<&'static dyn TrafficProvider> {
    match name {
        ProviderName::PodLabels => Some(&PodLabels),
        ProviderName::ServiceSelector => Some(&ServiceSelector),
        ProviderName::GatewayApi => Some(&GatewayApi),
        ProviderName::Istio => Some(&Istio),
        ProviderName::None => None,
    }
}

/// The application's Service, built from the template's: labelled with the application, with
/// `selector` and `annotations`, and owned by the Application in the management cluster.
fn service(
    view: &AppView,
    selector: Map<String, Value>,
    annotations: Map<String, Value>,
) -> Option<Write> {
    let (manifest, source) = view.service?;
    let mut body = manifest.object();
    let metadata = object(&mut body, "metadata");
    metadata.remove("namespace");
    object(metadata, "labels").insert(APP_LABEL.into(), view.app.into());
    let annotations_of = object(metadata, "annotations");
    annotations_of.extend(annotations);
    annotations_of.insert(SOURCE_ANNOTATION.into(), source.into());
    if let Some(owner) = view.owner {
        metadata.insert(
            "ownerReferences".into(),
            Value::Array(vec![serde_json::to_value(owner).unwrap_or_default()]),
        );
    }
    object(&mut body, "spec").insert("selector".into(), Value::Object(selector));
    Some(Write::Apply {
        kind: Kind::Service,
        body: Value::Object(body),
    })
}

/// The deletes of the application's Services in the cluster: what both providers write.
fn remove_services(view: &AppView) -> Vec<Write> {
    view.services
        .iter()
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .filter_map(|service| service.metadata.name.clone())
        .map(|name| Write::Delete {
            kind: Kind::Service,
            name,
        })
        .collect()
}

/// Whether the observed Service was built from the same template with this selector and these
/// annotations.
fn service_is(
    view: &AppView,
    selector: &Map<String, Value>,
    annotations: &Map<String, Value>,
) -> bool {
    let (Some(observed), Some((_, source))) = (view.observed_service, view.service) else {
        return false;
    };
    let observed_annotations = observed.metadata.annotations.clone().unwrap_or_default();
    let observed_selector = observed
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.clone())
        .unwrap_or_default();
    observed_annotations
        .get(SOURCE_ANNOTATION)
        .map(String::as_str)
        == Some(source)
        && annotations
            .iter()
            .all(|(key, value)| observed_annotations.get(key).map(String::as_str) == value.as_str())
        && observed_selector.len() == selector.len()
        && selector
            .iter()
            .all(|(key, value)| observed_selector.get(key).map(String::as_str) == value.as_str())
}

/// The Service of one version (for providers that route to each version by its own Service): the
/// template's, named like the Release, selecting its pods; None when it is so already.
fn version_service(view: &AppView, release: &str) -> Option<Write> {
    let (manifest, source) = view.service?;
    let selector = Map::from_iter([
        (APP_LABEL.to_owned(), Value::from(view.app)),
        (RELEASE_LABEL.to_owned(), Value::from(release)),
    ]);
    let current = view
        .services
        .iter()
        .find(|service| service.metadata.name.as_deref() == Some(release));
    let selects = current.is_some_and(|service| {
        service.metadata.deletion_timestamp.is_none()
            && service
                .spec
                .as_ref()
                .and_then(|spec| spec.selector.as_ref())
                .is_some_and(|current| {
                    current.len() == selector.len()
                        && selector.iter().all(|(key, value)| {
                            current.get(key).map(String::as_str) == value.as_str()
                        })
                })
    });
    if selects {
        return None;
    }
    let mut body = manifest.object();
    let metadata = object(&mut body, "metadata");
    metadata.remove("namespace");
    metadata.insert("name".into(), release.into());
    let labels = object(metadata, "labels");
    labels.insert(APP_LABEL.into(), view.app.into());
    labels.insert(RELEASE_LABEL.into(), release.into());
    object(metadata, "annotations").insert(SOURCE_ANNOTATION.into(), source.into());
    if let Some(owner) = view.owner {
        metadata.insert(
            "ownerReferences".into(),
            Value::Array(vec![serde_json::to_value(owner).unwrap_or_default()]),
        );
    }
    let spec = object(&mut body, "spec");
    spec.insert("selector".into(), Value::Object(selector));
    // A ClusterIP of the template's is the application's Service's, not this one's.
    spec.remove("clusterIP");
    spec.remove("clusterIPs");
    Some(Write::Apply {
        kind: Kind::Service,
        body: Value::Object(body),
    })
}

/// The delete of the Service of one version, if the cluster has it.
fn remove_version_service(view: &AppView, release: &str) -> Vec<Write> {
    view.services
        .iter()
        .filter(|service| service.metadata.name.as_deref() == Some(release))
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .map(|_| Write::Delete {
            kind: Kind::Service,
            name: release.to_owned(),
        })
        .collect()
}

/// Shares of 100 of raw weights (relative ones, as a route's destinations carry them) by the
/// largest remainder: each name gets the floor of its share, and the points left go one each
/// to the largest remainders (ties to the name first in order), so that the result sums to 100
/// exactly; all 0 when the raw weights are. (The same rule as the `gatewayAPI` provider's
/// `route::percent`, which can use this one.)
pub(super) fn percent(raw: &Weights) -> Weights {
    let total: u64 = raw.values().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return raw.keys().map(|name| (name.clone(), 0)).collect();
    }
    let mut shares: Weights = raw
        .iter()
        .map(|(name, w)| (name.clone(), (u64::from(*w) * 100 / total) as u32))
        .collect();
    let mut left = 100 - shares.values().sum::<u32>();
    let mut by_remainder: Vec<(&String, u64)> = raw
        .iter()
        .map(|(name, w)| (name, u64::from(*w) * 100 % total))
        .collect();
    by_remainder.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (name, _) in by_remainder {
        if left == 0 {
            break;
        }
        if let Some(share) = shares.get_mut(name) {
            *share += 1;
        }
        left -= 1;
    }
    shares
}

/// The writes of the Services of a provider that routes to each version by its own Service: the
/// application's (selecting every version's pods, for in-cluster clients) and one per version
/// with a weight or a route. They go before the route object's write: a backendRef or
/// destination to a Service that does not exist has its share of requests answered with an
/// error.
fn services(view: &AppView, weights: &Weights, routes: &[ResolvedRoute]) -> Vec<Write> {
    let mut writes = Vec::new();
    let selector = Map::from_iter([(APP_LABEL.to_owned(), Value::from(view.app))]);
    if !service_is(view, &selector, &Map::new()) {
        writes.extend(service(view, selector, Map::new()));
    }
    let versions: BTreeSet<&str> = weights
        .keys()
        .map(String::as_str)
        .chain(routes.iter().map(|route| route.version.as_str()))
        .collect();
    writes.extend(
        versions
            .into_iter()
            .filter_map(|release| version_service(view, release)),
    );
    writes
}

/// The first version that `weights` and `routes` start sending requests to (the route object,
/// as the cluster has it, gives it no weight and no route, by the `provider`'s reading) while
/// its Service lists no ready endpoint in the cluster. A gateway answers a backend whose Service
/// has no EndpointSlice yet with 500 (the Gateway API's rule for a backend it cannot resolve)
/// and one without ready endpoints with 503, so the route object waits for them: the Service is
/// written meanwhile, and its EndpointSlice's watch event brings the next reconcile.
fn unserved<'a>(
    provider: &dyn TrafficProvider,
    view: &AppView,
    weights: &'a Weights,
    routes: &'a [ResolvedRoute],
) -> Option<&'a str> {
    let (current, current_routes) = (provider.observe(view), provider.routes(view));
    let sent_to = |version: &str| {
        current.get(version).is_some_and(|weight| *weight > 0)
            || current_routes.iter().any(|route| route.version == version)
    };
    let served = |version: &str| {
        view.endpoint_slices
            .iter()
            .filter(|slice| slice.service() == Some(version))
            .any(|slice| slice.has_ready_endpoint())
    };
    weights
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .map(|(version, _)| version.as_str())
        .chain(routes.iter().map(|route| route.version.as_str()))
        .find(|version| !sent_to(version) && !served(version))
}

/// Where two parts of one route object (rules of an HTTPRoute, http entries of a
/// VirtualService) are set to different weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub field: String,
    pub first_weights: String,
    pub other_field: String,
    pub other_weights: String,
}

/// The weights in percent that the split parts of a route object are set to, from each part's
/// field and raw weights by Service name: Empty when the parts send everything to the
/// application's `service` alone (as the user wrote them), None without any split part, and a
/// disagreement when two parts differ. Versions at 0 are not listed.
pub(super) fn agreed(
    service: &str,
    parts: impl IntoIterator<Item = (String, Weights)>,
) -> Result<Option<Weights>, Disagreement> {
    let mut observed: Option<(String, Weights)> = None;
    for (field, raw) in parts {
        let weights: Weights = if raw.len() == 1 && raw.contains_key(service) {
            Weights::new()
        } else {
            percent(&raw).into_iter().filter(|(_, w)| *w > 0).collect()
        };
        match &observed {
            None => observed = Some((field, weights)),
            Some((first, first_weights)) if *first_weights != weights => {
                return Err(Disagreement {
                    field: first.clone(),
                    first_weights: describe_weights(first_weights),
                    other_field: field,
                    other_weights: describe_weights(&weights),
                });
            }
            Some(_) => {}
        }
    }
    Ok(observed.map(|(_, weights)| weights))
}

/// `docs-2=75, docs-3=25`, or `none`.
pub(super) fn describe_weights(weights: &Weights) -> String {
    if weights.is_empty() {
        return "none".into();
    }
    weights
        .iter()
        .map(|(name, weight)| format!("{name}={weight}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `HTTPRoute shop/docs`, for messages: the object's kind (`kind` when it has none), namespace
/// and name.
pub(super) fn describe_object(object: &Value, kind: &str) -> String {
    let metadata = &object["metadata"];
    let kind = object["kind"].as_str().unwrap_or(kind);
    let name = metadata["name"].as_str().unwrap_or_default();
    match metadata["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// A hostname without a wildcard, as HTTPRoute `spec.hostnames` and VirtualService `hosts`
/// take it: lowercase RFC 1123 labels of at most 63 characters, 253 in all.
pub(super) fn is_hostname(hostname: &str) -> bool {
    hostname.len() <= 253
        && hostname.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u32)]) -> Weights {
        pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect()
    }

    #[test]
    fn a_version_gets_its_first_requests_only_once_its_service_lists_a_ready_endpoint() {
        let policy = TrafficPolicy::default();
        let slices = [
            Arc::new(EndpointSlice::of("web-1", true)),
            Arc::new(EndpointSlice::of("web-2", false)),
        ];
        let view = AppView {
            app: "web",
            service: None,
            observed_service: None,
            services: &[],
            endpoint_slices: &slices,
            pods: &[],
            owner: None,
            policy: &policy,
            releases: &["web-1", "web-2", "web-3"],
            http_routes: Ok(&[]),
            grpc_routes: Ok(&[]),
            virtual_services: Ok(&[]),
        };
        let incumbent = weights(&[("web-1", 100)]);
        let canary = weights(&[("web-1", 95), ("web-2", 5)]);
        let route = ResolvedRoute {
            name: "preview".into(),
            version: "web-3".into(),
            matches: Default::default(),
        };
        let routed = std::slice::from_ref(&route);
        let set_to = |weights: &Weights, routes: &[ResolvedRoute]| Reading {
            weights: weights.clone(),
            routes: routes.to_vec(),
        };
        let unserved = |set: Reading, weights: &Weights, routes: &[ResolvedRoute]| {
            super::unserved(&set, &view, weights, routes).map(str::to_owned)
        };
        assert_eq!(
            unserved(set_to(&incumbent, &[]), &canary, &[]).as_deref(),
            Some("web-2")
        );
        let zero = weights(&[("web-1", 100), ("web-2", 0)]);
        assert_eq!(
            unserved(set_to(&incumbent, &[]), &zero, &[]),
            None,
            "no requests at weight 0"
        );
        let half = weights(&[("web-1", 50), ("web-2", 50)]);
        assert_eq!(
            unserved(set_to(&canary, &[]), &half, &[]),
            None,
            "a version sent requests already keeps them: a shift away from it is never held"
        );
        assert_eq!(
            unserved(set_to(&incumbent, &[]), &incumbent, routed).as_deref(),
            Some("web-3"),
            "a route to a version is a request sent to it"
        );
        assert_eq!(
            unserved(set_to(&incumbent, routed), &incumbent, routed),
            None
        );
    }

    /// A provider that reads the cluster as set to `weights` and `routes`.
    struct Reading {
        weights: Weights,
        routes: Vec<ResolvedRoute>,
    }

    impl TrafficProvider for Reading {
        fn touches(&self) -> &'static [Touch] {
            &[]
        }

        fn observe(&self, _view: &AppView) -> Weights {
            self.weights.clone()
        }

        fn routes(&self, _view: &AppView) -> Vec<ResolvedRoute> {
            self.routes.clone()
        }

        fn writes(&self, _: &AppView, _: &Weights, _: &[ResolvedRoute]) -> Vec<Write> {
            Vec::new()
        }

        fn remove(&self, _view: &AppView) -> Vec<Write> {
            Vec::new()
        }
    }

    #[test]
    fn percent_rounds_by_the_largest_remainder() {
        assert_eq!(
            percent(&weights(&[("a", 1), ("b", 1), ("c", 1)])),
            weights(&[("a", 34), ("b", 33), ("c", 33)])
        );
        assert_eq!(
            percent(&weights(&[("a", 0), ("b", 0)])),
            weights(&[("a", 0), ("b", 0)])
        );
        assert_eq!(
            percent(&weights(&[("a", 3), ("b", 1)])),
            weights(&[("a", 75), ("b", 25)])
        );
    }
}
