//! What the fleet's caches keep of the pods, Deployments and EndpointSlices of what Prism
//! installed in application clusters (the fields Prism reads, and nothing else), and of the
//! route objects it edits
//! (HTTPRoutes, GRPCRoutes, VirtualServices). The k8s-openapi types hold every field of their kind inline (a Pod or a Deployment
//! is 2.4 KB before any of its strings), so that, even stripped, they were a quarter of the
//! controller's heap at 1,000 applications; these types deserialize only what is read, and the
//! rest of each watch event is skipped.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::Deserialize;

/// A pod: its metadata, its node and its conditions.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodSpec>,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node a DaemonSet's pod runs on.
    #[serde(default)]
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodStatus {
    #[serde(default)]
    pub conditions: Vec<PodCondition>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

impl Pod {
    /// Whether the pod is ready: its Ready condition is True and it is not being deleted.
    pub fn is_ready(&self) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self.status.as_ref().is_some_and(|status| {
                status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    }
}

/// A Deployment: its metadata, replicas, the labels of its pods, and how many of them are
/// updated and ready.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Deployment {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<DeploymentSpec>,
    #[serde(default)]
    pub status: Option<DeploymentStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub template: PodTemplate,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: Option<PodTemplateMetadata>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodTemplateMetadata {
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
    #[serde(default)]
    pub updated_replicas: Option<i32>,
}

/// A StatefulSet: its metadata, replicas, the partition of its rolling update, the labels of its
/// pods, and its revisions.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StatefulSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<StatefulSetSpec>,
    #[serde(default)]
    pub status: Option<StatefulSetStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpec {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub template: PodTemplate,
    #[serde(default)]
    pub update_strategy: Option<UpdateStrategy>,
}

/// A StatefulSet's or DaemonSet's update strategy.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RollingUpdate {
    #[serde(default)]
    pub partition: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetStatus {
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
    #[serde(default)]
    pub updated_replicas: Option<i32>,
    #[serde(default)]
    pub current_revision: Option<String>,
    #[serde(default)]
    pub update_revision: Option<String>,
}

/// A DaemonSet: its metadata, update strategy, the labels of its pods, and how many nodes run
/// it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DaemonSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<DaemonSetSpec>,
    #[serde(default)]
    pub status: Option<DaemonSetStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    #[serde(default)]
    pub template: PodTemplate,
    #[serde(default)]
    pub update_strategy: Option<UpdateStrategy>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetStatus {
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub desired_number_scheduled: Option<i32>,
    #[serde(default)]
    pub number_ready: Option<i32>,
    #[serde(default)]
    pub updated_number_scheduled: Option<i32>,
}

/// A node: its name and labels (its zone).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// An EndpointSlice of one of the application's Services (the EndpointSlice controller copies
/// the Service's labels onto it): how many of its endpoints are ready.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Null, not empty, when the Service selects no pod (the API's Go type has no omitempty).
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Endpoint {
    #[serde(default)]
    pub conditions: EndpointConditions,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
}

impl EndpointSlice {
    /// The Service the slice belongs to (`kubernetes.io/service-name`).
    pub fn service(&self) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()?
            .get("kubernetes.io/service-name")
            .map(String::as_str)
    }

    /// Whether an endpoint of the slice is ready. An unknown condition counts as ready, as
    /// the EndpointSlice API says consumers should read it.
    pub fn has_ready_endpoint(&self) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self
                .endpoints
                .iter()
                .flatten()
                .any(|endpoint| endpoint.conditions.ready != Some(false))
    }
}

#[cfg(test)]
impl EndpointSlice {
    /// A slice of `service` with one endpoint, ready or not.
    pub fn of(service: &str, ready: bool) -> Self {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{service}-x7"), "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": ready}}],
        }))
        .expect("an EndpointSlice")
    }
}

/// A user's route object that a traffic provider rewrites (an HTTPRoute, a GRPCRoute, a
/// VirtualService): kept whole but for its managed fields, since the provider must keep what it
/// does not manage as it is. Few of them exist, next to pods.
macro_rules! route_object {
    ($(#[$doc:meta])* $ty:ident, $group:literal, $api_version:literal, $kind:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Deserialize, PartialEq)]
        pub struct $ty {
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: serde_json::Value,
            #[serde(default)]
            pub status: serde_json::Value,
        }

        resource!($ty, $group, "v1", $api_version, $kind, $plural);
    };
}

/// Implements the traits that make `$ty` a watchable kind, as
/// k8s-openapi does for its own types.
macro_rules! resource {
    ($ty:ty, $group:literal, $version:literal, $api_version:literal, $kind:literal, $plural:literal) => {
        impl Resource for $ty {
            const API_VERSION: &'static str = $api_version;
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = NamespaceResourceScope;
        }

        impl Metadata for $ty {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(Pod, "", "v1", "v1", "Pod", "pods");

impl Resource for Node {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Node";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "nodes";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl Metadata for Node {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
resource!(
    EndpointSlice,
    "discovery.k8s.io",
    "v1",
    "discovery.k8s.io/v1",
    "EndpointSlice",
    "endpointslices"
);
route_object!(
    /// A Gateway API HTTPRoute (the `gatewayAPI` provider rewrites its rules).
    HttpRoute,
    "gateway.networking.k8s.io",
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    "httproutes"
);
route_object!(
    /// A Gateway API GRPCRoute (the `gatewayAPI` provider rewrites its rules).
    GrpcRoute,
    "gateway.networking.k8s.io",
    "gateway.networking.k8s.io/v1",
    "GRPCRoute",
    "grpcroutes"
);
route_object!(
    /// An Istio VirtualService (the `istio` provider rewrites its `spec.http`).
    VirtualService,
    "networking.istio.io",
    "networking.istio.io/v1",
    "VirtualService",
    "virtualservices"
);
resource!(
    Deployment,
    "apps",
    "v1",
    "apps/v1",
    "Deployment",
    "deployments"
);
resource!(
    StatefulSet,
    "apps",
    "v1",
    "apps/v1",
    "StatefulSet",
    "statefulsets"
);
resource!(
    DaemonSet,
    "apps",
    "v1",
    "apps/v1",
    "DaemonSet",
    "daemonsets"
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_watch_event_s_pod_keeps_what_prism_reads() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-2-abc", "labels": {"prism.dev/release": "web-2"}},
            "spec": {"containers": [{"name": "web", "image": "web:2"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True"}
            ]}
        }))
        .unwrap();
        assert!(pod.is_ready());
        assert_eq!(pod.metadata.labels.unwrap()["prism.dev/release"], "web-2");
    }

    #[test]
    fn an_endpoint_slice_names_its_service_and_whether_an_endpoint_is_ready() {
        let slice = |endpoints| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": "web-2-x7", "labels": {"kubernetes.io/service-name": "web-2"}},
                "addressType": "IPv4",
                "endpoints": endpoints,
            }))
            .unwrap()
        };
        let ready = slice(json!([
            {"addresses": ["10.244.0.7"], "conditions": {"ready": false}},
            {"addresses": ["10.244.0.8"], "conditions": {"ready": true, "serving": true}},
        ]));
        assert_eq!(ready.service(), Some("web-2"));
        assert!(ready.has_ready_endpoint());
        assert!(
            !slice(json!([{"addresses": ["10.244.0.7"], "conditions": {"ready": false}}]))
                .has_ready_endpoint()
        );
        assert!(!slice(json!([])).has_ready_endpoint());
        assert!(
            !slice(json!(null)).has_ready_endpoint(),
            "a watch event of a Service that selects nothing"
        );
    }

    #[test]
    fn a_pod_being_deleted_is_not_ready() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-2-abc", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert!(!pod.is_ready());
    }

    #[test]
    fn the_cached_kinds_are_watched_at_their_own_paths() {
        use kube::Resource as _;
        assert_eq!(Pod::url_path(&(), Some("ns")), "/api/v1/namespaces/ns/pods");
        assert_eq!(
            Deployment::url_path(&(), Some("ns")),
            "/apis/apps/v1/namespaces/ns/deployments"
        );
    }
}
