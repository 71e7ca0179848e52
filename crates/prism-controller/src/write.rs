//! Writes to an application cluster, as providers build them (pure), and their execution:
//! server-side apply with the one field manager, or a delete; each awaited in the caches.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prism_api::Application;
use prism_api::labels::{FIELD_MANAGER, MANAGED_BY};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, info};

use crate::Context;
use crate::error::{Error, WriteError};
use crate::expectations::{Expectations, ObjectKey};
use crate::fleet::{MANAGEMENT_CLUSTER, Member};

/// Applies `status` as the status of the `K` `namespace/name` on the management cluster, with
/// the controller's field manager, as a write of `app`'s that its next reconcile waits to see.
pub async fn apply_status<K>(
    ctx: &Context,
    app: &ObjectRef<Application>,
    namespace: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let api = Api::<K>::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ctx.expectations
        .track(
            app,
            ObjectKey::new::<K>(MANAGEMENT_CLUSTER, namespace, name),
            api.patch_status(name, &params, &Patch::Apply(&patch)),
            ResourceExt::resource_version,
        )
        .await
        .map_err(|source| WriteError::Status {
            object: format!("{} {namespace}/{name}", K::kind(&())),
            source,
        })?;
    Ok(())
}

/// The kinds Prism touches in application clusters (see [`crate::touches`] for who touches
/// which, and how).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ConfigMap,
    HorizontalPodAutoscaler,
    Service,
    Pod,
    /// Watched: whether a version's Service has a ready endpoint. Written for the copies of an
    /// ExternalName target (`service_target::external`).
    EndpointSlice,
    /// A Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`).
    HttpRoute,
    /// A Gateway API GRPCRoute (`gateway.networking.k8s.io/v1`).
    GrpcRoute,
    /// An Istio VirtualService (`networking.istio.io/v1`).
    VirtualService,
    /// Cluster-scoped: only ever created, by [`execute`] when a write finds its namespace
    /// missing.
    Namespace,
    /// Cluster-scoped: only read, for its zone (the DaemonSet's order of nodes).
    Node,
    // What templates and charts carry beside their workload (`workload::objects`): written only
    // in clusters whose join granted them (`prism cluster join --allow-kind`).
    ServiceAccount,
    Role,
    RoleBinding,
    PodDisruptionBudget,
    Ingress,
    NetworkPolicy,
}

impl Kind {
    pub const ALL: &[Kind] = &[
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ConfigMap,
        Kind::HorizontalPodAutoscaler,
        Kind::Service,
        Kind::Pod,
        Kind::EndpointSlice,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::VirtualService,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::PodDisruptionBudget,
        Kind::Ingress,
        Kind::NetworkPolicy,
        Kind::Node,
    ];

    pub fn resource(self) -> ApiResource {
        match self {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::HorizontalPodAutoscaler => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Pod => ApiResource::erase::<Pod>(&()),
            Kind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Kind::HttpRoute => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
                "httproutes",
            ),
            Kind::GrpcRoute => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GRPCRoute"),
                "grpcroutes",
            ),
            Kind::VirtualService => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
                "virtualservices",
            ),
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::Role => ApiResource::erase::<Role>(&()),
            Kind::RoleBinding => ApiResource::erase::<RoleBinding>(&()),
            Kind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            Kind::Ingress => ApiResource::erase::<Ingress>(&()),
            Kind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            Kind::Node => ApiResource::erase::<Node>(&()),
        }
    }
}

/// One write in one namespace of an application cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Server-side apply of `body`, whose metadata.name names the object; apiVersion and kind
    /// are set from `kind`.
    Apply { kind: Kind, body: Value },
    /// Delete, if it exists.
    Delete { kind: Kind, name: String },
    /// Set (Some) or remove (None) labels of an existing object, if it still exists. A merge
    /// patch rather than an apply: an apply of an object deleted meanwhile would create it.
    Label {
        kind: Kind,
        name: String,
        labels: BTreeMap<String, Option<String>>,
    },
}

impl Write {
    /// What the write does, as people read it.
    fn verb(&self) -> &'static str {
        match self {
            Write::Apply { .. } => "apply",
            Write::Delete { .. } => "delete",
            Write::Label { .. } => "label patch",
        }
    }

    /// The kind and name of the object written.
    pub fn object(&self) -> (Kind, &str) {
        match self {
            Write::Apply { kind, body } => {
                (*kind, body["metadata"]["name"].as_str().unwrap_or_default())
            }
            Write::Delete { kind, name } | Write::Label { kind, name, .. } => (*kind, name),
        }
    }
}

/// A write the API server refused for what it is (an admission webhook or policy, a quota,
/// permissions, an invalid object): the same write is refused again until a person changes the
/// template, the cluster's policies or Prism's permissions, so it is reported, not hidden in
/// retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    pub name: String,
    /// `apply`, `delete` or `label patch`.
    pub verb: &'static str,
    /// The API server's HTTP status code and reason (`422`, `Invalid`); 0 for a write its
    /// provider could not build ([`Refusal::by_provider`]).
    pub code: u16,
    pub reason: String,
    /// The API server's message, word for word.
    pub message: String,
}

impl Refusal {
    /// A write the traffic provider cannot build from the user's object and the step (a route
    /// match the user's HTTPRoute cannot express): it would be refused however often asked.
    pub fn by_provider(kind: Kind, name: &str, message: String) -> Refusal {
        Refusal {
            kind,
            name: name.to_owned(),
            verb: "apply",
            code: 0,
            reason: String::new(),
            message,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 0 {
            return write!(
                f,
                "{} of {:?} {} not made: {}",
                self.verb, self.kind, self.name, self.message
            );
        }
        write!(
            f,
            "{} of {:?} {} refused ({} {}): {}",
            self.verb, self.kind, self.name, self.code, self.reason, self.message
        )
    }
}

/// Whether the API server refused a request for what it asks, rather than failed to answer it:
/// a 4xx but for a missing object or namespace (404), a timeout (408), a conflict (409) and
/// throttling (429), which are retried as they are. A 5xx or no answer is not a refusal either.
pub fn is_refusal(status: &kube::core::Status) -> bool {
    (400..500).contains(&status.code) && !matches!(status.code, 404 | 408 | 409 | 429)
}

/// Whether an apply failed because its namespace does not exist in that cluster.
fn is_missing_namespace(status: &kube::core::Status) -> bool {
    status.code == 404
        && status
            .details
            .as_ref()
            .is_some_and(|details| details.kind == "namespaces")
}

/// An application's namespace exists in the management cluster (the Application is in it), but
/// not necessarily in the application clusters it is scheduled on: Prism makes it there, the
/// first time a write needs it, so that joining a cluster is all it takes to deploy there.
async fn create_namespace(member: &Member, namespace: &str) -> kube::Result<()> {
    let namespaces: Api<Namespace> = Api::all(member.client.clone());
    let mut labels = BTreeMap::new();
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        created => {
            info!(cluster = %member.name, namespace, "created the application's namespace");
            created.map(|_| ())
        }
    }
}

/// Makes `writes`, in order, in `namespace` of `member`, and records each in `expectations`
/// for `app`. Stops at the first that fails: [`Error::Refused`] when the API server refused it.
pub async fn execute(
    member: &Member,
    namespace: &str,
    app: &ObjectRef<Application>,
    writes: Vec<Write>,
    expectations: &Expectations,
) -> Result<(), Error> {
    for write in writes {
        let (kind, name) = write.object();
        let (name, verb) = (name.to_owned(), write.verb());
        let resource = kind.resource();
        let api: Api<DynamicObject> =
            Api::namespaced_with(member.client.clone(), namespace, &resource);
        let key = ObjectKey {
            cluster: member.name.clone(),
            kind: resource.kind.clone(),
            namespace: namespace.to_owned(),
            name: name.clone(),
        };
        let what = format!(
            "{} {namespace}/{name} in cluster {}",
            resource.kind, member.name
        );
        // What the write leaves: Some(resourceVersion), or None when the object is gone.
        let request = async {
            match write {
                Write::Apply { mut body, .. } => {
                    body["apiVersion"] = resource.api_version.clone().into();
                    body["kind"] = resource.kind.clone().into();
                    let params = PatchParams::apply(FIELD_MANAGER).force();
                    let patch = Patch::Apply(&body);
                    let apply = || api.patch(&name, &params, &patch);
                    match apply().await {
                        Err(kube::Error::Api(status)) if is_missing_namespace(&status) => {
                            create_namespace(member, namespace).await?;
                            apply().await
                        }
                        applied => applied,
                    }
                    .map(|applied| applied.resource_version())
                }
                Write::Delete { .. } => {
                    match api.delete(&name, &DeleteParams::background()).await {
                        Ok(_) => Ok(None),
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
                        Err(error) => Err(error),
                    }
                }
                Write::Label { labels, .. } => {
                    let patch = serde_json::json!({"metadata": {"labels": labels}});
                    let params = PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PatchParams::default()
                    };
                    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
                        Ok(patched) => Ok(patched.resource_version()),
                        // The pod went away: nothing left to label.
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
                        Err(error) => Err(error),
                    }
                }
            }
        };
        let outcome = if crate::touches::is_watched(kind) {
            expectations.track(app, key, request, Clone::clone).await
        } else {
            request.await
        };
        let version = match outcome {
            Err(kube::Error::Api(status)) if is_refusal(&status) => {
                return Err(WriteError::Refused {
                    cluster: member.name.clone(),
                    refusal: Refusal {
                        kind,
                        name,
                        verb,
                        code: status.code,
                        reason: status.reason,
                        message: status.message,
                    },
                }
                .into());
            }
            outcome => outcome.map_err(|source| WriteError::Object {
                object: what.to_string(),
                source,
            })?,
        };
        debug!(object = %what, ?version, "written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16) -> kube::core::Status {
        kube::core::Status {
            code,
            ..kube::core::Status::default()
        }
    }

    #[test]
    fn a_refusal_is_a_4xx_that_asking_again_does_not_change() {
        for code in [400, 401, 403, 405, 413, 415, 422] {
            assert!(is_refusal(&answer(code)), "{code}");
        }
        for code in [404, 408, 409, 429, 500, 503, 504, 0] {
            assert!(!is_refusal(&answer(code)), "{code}");
        }
    }

    #[test]
    fn a_refusal_names_the_write_the_object_and_the_api_servers_words() {
        let refusal = Refusal {
            kind: Kind::Deployment,
            name: "web-2".into(),
            verb: Write::Delete {
                kind: Kind::Deployment,
                name: "web-2".into(),
            }
            .verb(),
            code: 403,
            reason: "Forbidden".into(),
            message: "deployments.apps \"web-2\" is forbidden: no".into(),
        };
        assert_eq!(
            refusal.to_string(),
            "delete of Deployment web-2 refused (403 Forbidden): \
             deployments.apps \"web-2\" is forbidden: no"
        );
    }
}
