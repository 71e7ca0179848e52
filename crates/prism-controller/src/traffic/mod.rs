//! Traffic providers: how a cluster splits an application's requests between its versions.
//! One module per provider behind [`TrafficProvider`]; a provider reads the cluster from the
//! controller's caches and builds writes (pure), which the controller executes.
//!
//! A provider reports the weights the cluster is *set* to serve, not a measured split: the
//! engine compares them with the step's weights, and a provider whose precision is coarser than
//! a percent (pod counts) still reaches a fixed point. Keeping the cluster serving the weights
//! it is set to (labelling a new ready pod, say) is the provider's job: [`TrafficProvider::writes`]
//! repairs drift whenever it is asked.

pub mod gateway_api;
mod pod_labels;
mod service_selector;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use prism_api::application::{Manifest, TrafficProvider as ProviderName};
use prism_api::labels::{APP_LABEL, SOURCE_ANNOTATION};
use serde_json::{Map, Value};

use crate::cached::Pod;
use crate::workload::object;
use crate::write::{Kind, Write};

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
    /// The pods of every version of the application.
    pub pods: &'a [Arc<Pod>],
    /// The Application's reference, when the cluster is the management cluster.
    pub owner: Option<&'a OwnerReference>,
}

pub trait TrafficProvider: Sync {
    /// The weights the cluster is set to serve; a release not listed gets none.
    fn observe(&self, view: &AppView) -> Weights;

    /// The writes that make the cluster serve `weights`: what the engine asked for, or, when it
    /// asked nothing, the observed weights again (so that drift is repaired). None when the
    /// cluster serves them already.
    fn writes(&self, view: &AppView, weights: &Weights) -> Vec<Write>;

    /// The deletes of every object the provider wrote for the application in the cluster, as
    /// the caches have them (none when they are gone). Asked once the application leaves the
    /// cluster: no version of it runs there any more, so nothing there may route to it.
    fn remove(&self, view: &AppView) -> Vec<Write>;
    /// Labels every pod of a new version carries from its start, so that the provider has to
    /// write only where the weights differ from what the pods give by themselves.
    fn pod_template_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// The provider an Application names; None for a workload without traffic or a provider that
/// Prism does not implement yet (the Application controller rejects those).
pub fn provider(name: ProviderName) -> Option<&'static dyn TrafficProvider> {
    match name {
        ProviderName::PodLabels => Some(&PodLabels),
        ProviderName::ServiceSelector => Some(&ServiceSelector),
        ProviderName::None | ProviderName::GatewayApi | ProviderName::Istio => None,
    }
}

/// Whether Prism can shift traffic with `name` today.
pub fn is_implemented(name: ProviderName) -> bool {
    name == ProviderName::None || provider(name).is_some()
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
