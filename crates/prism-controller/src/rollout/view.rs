//! What the caches hold of one application in one cluster, and the traffic provider's view of
//! it: the dereference stage of a Release reconcile.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::runtime::reflector::Store;
use prism_api::{Application, Release};

use super::service_manifest;
use crate::cached;
use crate::fleet::{Member, of_app};
use crate::service_target::Copies;
use crate::touches::{self, Touch};
use crate::traffic::{self, AppView};
use crate::workload::Workloads;
use crate::write::Kind;

/// What the caches hold of one application in one cluster.
pub(super) struct ClusterView {
    pub(super) deployments: Vec<Arc<cached::Deployment>>,
    pub(super) stateful_sets: Vec<Arc<cached::StatefulSet>>,
    pub(super) daemon_sets: Vec<Arc<cached::DaemonSet>>,
    pub(super) pods: Vec<Arc<cached::Pod>>,
    pub(super) nodes: Vec<Arc<cached::Node>>,
    pub(super) services: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Service>>,
    pub(super) endpoint_slices: Vec<Arc<cached::EndpointSlice>>,
    /// The namespace's HTTPRoutes, read only for an application that routes through one.
    pub(super) http_routes: Result<Vec<Arc<cached::HttpRoute>>, String>,
    /// The namespace's GRPCRoutes, likewise.
    pub(super) grpc_routes: Result<Vec<Arc<cached::GrpcRoute>>, String>,
    /// The namespace's VirtualServices, likewise.
    pub(super) virtual_services: Result<Vec<Arc<cached::VirtualService>>, String>,
    pub(super) is_management: bool,
}

impl ClusterView {
    /// What the workload providers read.
    pub(super) fn workloads(&self) -> Workloads<'_> {
        Workloads {
            deployments: &self.deployments,
            stateful_sets: &self.stateful_sets,
            daemon_sets: &self.daemon_sets,
            pods: &self.pods,
            nodes: &self.nodes,
        }
    }

    pub(super) fn read(
        member: &Member,
        namespace: &str,
        name: &str,
        app: &Application,
    ) -> ClusterView {
        let touches = traffic::provider(app.spec.traffic.provider).map_or(&[][..], |p| p.touches());
        let daemon_sets = of_app(&member.daemon_sets, namespace, name);
        let nodes = nodes_for_daemon_sets(member, &daemon_sets);
        ClusterView {
            deployments: of_app(&member.deployments, namespace, name),
            stateful_sets: of_app(&member.stateful_sets, namespace, name),
            daemon_sets,
            pods: of_app(&member.pods, namespace, name),
            nodes,
            services: of_app(&member.services, namespace, name),
            endpoint_slices: of_app(&member.endpoint_slices, namespace, name),
            http_routes: optional_in(
                member,
                touches,
                Kind::HttpRoute,
                &member.http_routes,
                namespace,
            ),
            grpc_routes: optional_in(
                member,
                touches,
                Kind::GrpcRoute,
                &member.grpc_routes,
                namespace,
            ),
            virtual_services: optional_in(
                member,
                touches,
                Kind::VirtualService,
                &member.virtual_services,
                namespace,
            ),
            is_management: member.is_management,
        }
    }

    /// The traffic provider's view: the Service of the newest Release's template.
    pub(super) fn app_view<'a>(
        &'a self,
        app: &'a Application,
        newest: &'a Release,
        releases: &'a [&'a str],
        owner: Option<&'a OwnerReference>,
    ) -> AppView<'a> {
        let service = service_manifest(app, newest);
        let service_name = service.and_then(|manifest| manifest.name());
        AppView {
            target: app
                .spec
                .target_service()
                .map(|target| Copies::read(&self.services, target)),
            app: app.metadata.name.as_deref().unwrap_or_default(),
            service: service.zip(newest.metadata.name.as_deref()),
            observed_service: self
                .services
                .iter()
                .find(|s| s.metadata.name.as_deref() == service_name)
                .map(|s| s.as_ref()),
            services: &self.services,
            endpoint_slices: &self.endpoint_slices,
            pods: &self.pods,
            owner: owner.filter(|_| self.is_management),
            policy: &app.spec.traffic,
            releases,
            http_routes: self
                .http_routes
                .as_ref()
                .map(Vec::as_slice)
                .map_err(String::as_str),
            grpc_routes: self
                .grpc_routes
                .as_ref()
                .map(Vec::as_slice)
                .map_err(String::as_str),
            virtual_services: self
                .virtual_services
                .as_ref()
                .map(Vec::as_slice)
                .map_err(String::as_str),
        }
    }
}

/// The `namespace`'s objects of an optional cache (of a kind whose CRDs a cluster may lack),
/// read only for an application whose provider watches every object of the kind (the user's
/// route it edits); else none. An error says why the cache cannot be read.
fn optional_in<K>(
    member: &Member,
    touches: &[Touch],
    kind: Kind,
    store: &Store<K>,
    namespace: &str,
) -> Result<Vec<Arc<K>>, String>
where
    K: Clone + Resource<DynamicType = ()>,
{
    if !touches::watches_all(touches, kind) {
        return Ok(Vec::new());
    }
    member.optional_listed(kind).map(|()| {
        store.state_filter(|object| object.meta().namespace.as_deref() == Some(namespace))
    })
}

/// Every node of the cluster, which only a DaemonSet's provider reads (for the zones its
/// versions move by), so only where the application has one.
fn nodes_for_daemon_sets(
    member: &Member,
    daemon_sets: &[Arc<cached::DaemonSet>],
) -> Vec<Arc<cached::Node>> {
    if daemon_sets.is_empty() {
        Vec::new()
    } else {
        member.nodes.state()
    }
}
