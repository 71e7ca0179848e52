//! An Application that targets an existing Service (`spec.target.service`) instead of a template.
//!
//! The Service's owner runs whatever backs it (two Deployments, blue and green, say) and
//! releases by changing its spec (its selector to the green pods). Each change makes a Release
//! that snapshots the spec ([`snapshot`]). In each scheduled cluster Prism keeps two copies,
//! `<svc>-primary` (the newest complete Release's spec) and `<svc>-canary` (the newest
//! Release's), and the `gatewayAPI` provider splits the HTTPRoutes' backendRefs to `<svc>`
//! between them. Prism never writes the Service itself, nor its pods' Deployments.
//!
//! To the engine, a version's "capacity" in a cluster is the copy that holds it: a version is
//! installed there when a copy carries its Release in [`SOURCE_ANNOTATION`], at a capacity of
//! one, ready once that copy lists a ready endpoint. Installing writes the copy of its role
//! ([`install`]); removing it ([`remove`]) deletes the canary, or, for the primary, writes the
//! newest complete spec into it: the promotion.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use prism_api::application::{Manifest, Target};
use prism_api::labels::{APP_LABEL, EXTERNAL_NAME_ANNOTATION, SOURCE_ANNOTATION};
use prism_api::release::ReleasePhase;
use prism_api::{Pipeline, Release};
use prism_engine::{Capacity, VersionObservation};
use serde_json::{Map, Value, json};

use crate::application::Invalid;
use crate::cached::EndpointSlice;
use crate::write::{Kind, Write};

/// The `Valid` condition's reason when the target Service does not exist.
pub const REASON_TARGET_NOT_FOUND: &str = "TargetNotFound";
/// The `Valid` condition's reason when an ExternalName target has no port to route to.
pub const REASON_TARGET_WITHOUT_PORTS: &str = "TargetWithoutPorts";

/// The spec fields a Release snapshots, and the copies carry: what says where requests go. The
/// rest is the cluster's own (a clusterIP, node ports) or defaults.
const SNAPSHOT_FIELDS: [&str; 6] = [
    "type",
    "selector",
    "ports",
    "externalName",
    "sessionAffinity",
    "publishNotReadyAddresses",
];

/// The target Service `name` of `namespace` as a Release snapshots it, or why there is none.
pub fn snapshot_of(
    services: &Store<Service>,
    namespace: &str,
    name: &str,
) -> Result<Manifest, Invalid> {
    services
        .get(&ObjectRef::new(name).within(namespace))
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| Invalid {
            reason: REASON_TARGET_NOT_FOUND,
            message: format!(
                "spec.target.service.name: no Service named {name:?} in the Application's namespace: create it (Prism copies its spec, it never writes it), or name an existing one"
            ),
        })
        .and_then(|service| {
            let snapshot = snapshot(&service);
            let spec = snapshot.object().remove("spec").unwrap_or_default();
            let portless = spec["ports"].as_array().is_none_or(Vec::is_empty);
            if external::name_of_spec(&spec).is_some() && portless {
                return Err(Invalid {
                    reason: REASON_TARGET_WITHOUT_PORTS,
                    message: format!(
                        "spec.target.service.name: Service {name:?} is of type ExternalName without ports: give it the port your HTTPRoute's backendRef names (its targetPort is the port dialled at the externalName)"
                    ),
                });
            }
            Ok(snapshot)
        })
}

/// A Service as a Release holds it: its name and the spec fields that route requests, node
/// ports left out (each copy is given its own).
pub fn snapshot(service: &Service) -> Manifest {
    let spec = serde_json::to_value(&service.spec).unwrap_or_default();
    let mut kept = Map::new();
    for field in SNAPSHOT_FIELDS {
        if let Some(value) = spec.get(field).filter(|value| !value.is_null()) {
            kept.insert(field.to_owned(), value.clone());
        }
    }
    if let Some(Value::Array(ports)) = kept.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service.name_any()},
        "spec": kept,
    });
    match object {
        Value::Object(object) => Manifest::from(object),
        _ => Manifest::default(),
    }
}

/// The errors of a named strategy's steps that set capacity: Prism scales nothing for a
/// Service target. (An inline strategy's are refused by the schema, and `validate`.)
pub fn capacity_steps(pipeline: &Pipeline, prefix: &str) -> Vec<String> {
    pipeline
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.capacity.is_some())
        .map(|(i, _)| {
            format!("{prefix}steps[{i}].capacity: with spec.target.service Prism scales nothing (the Service's owner runs its pods): remove the step's capacity sub-step, and shift traffic only")
        })
        .collect()
}

/// The pipeline the engine runs for a Release: the capacity of a Service target's is given.
pub fn engine_pipeline(target: bool, pipeline: &Pipeline) -> std::borrow::Cow<'_, Pipeline> {
    if target {
        std::borrow::Cow::Owned(Target::pipeline(pipeline))
    } else {
        std::borrow::Cow::Borrowed(pipeline)
    }
}

/// A Service target's version runs at this "capacity" wherever a copy holds it.
pub const CAPACITY: Capacity = Capacity::Replicas(1);

/// Which Release each copy should hold, from the Releases' phases as the engine just decided
/// them (a status read from the cache is a decision behind: at the reconcile that completes a
/// Release it would still name the old primary, whose removal then has nothing to promote): the
/// primary the newest complete one (before any completes, the first), the canary the newest,
/// when it is another.
#[derive(Clone, Copy, Debug, Default)]
pub struct Roles<'a> {
    pub primary: Option<&'a Release>,
    pub canary: Option<&'a Release>,
}

/// `releases` by revision, each with its phase.
pub fn roles<'a>(releases: &[(&'a Release, ReleasePhase)]) -> Roles<'a> {
    let primary = releases
        .iter()
        .rev()
        .find(|(_, phase)| *phase == ReleasePhase::Complete)
        .or(releases.first())
        .map(|(release, _)| *release);
    let canary = releases
        .last()
        .map(|(release, _)| *release)
        .filter(|newest| primary.is_none_or(|primary| primary.name_any() != newest.name_any()));
    Roles { primary, canary }
}

/// The Releases the copies hold in one cluster (their `prism.dev/template-of`), and the target's
/// name: what the `gatewayAPI` provider names each version's backendRef by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copies {
    pub service: String,
    pub primary: Option<String>,
    pub canary: Option<String>,
}

impl Copies {
    /// What the copies of target `service` hold among `services` (the application's, in one
    /// cluster).
    pub fn read(services: &[Arc<Service>], service: &str) -> Copies {
        let holds = |name: &str| {
            services
                .iter()
                .filter(|s| s.metadata.deletion_timestamp.is_none())
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .and_then(|s| s.annotations().get(SOURCE_ANNOTATION).cloned())
        };
        Copies {
            service: service.to_owned(),
            primary: holds(&Target::primary(service)),
            canary: holds(&Target::canary(service)),
        }
    }

    /// The name of the copy that serves `release` (the primary when both hold it: the canary's
    /// spec was promoted), or None when neither holds it.
    pub fn backend(&self, release: &str) -> Option<String> {
        if self.primary.as_deref() == Some(release) {
            Some(Target::primary(&self.service))
        } else if self.canary.as_deref() == Some(release) {
            Some(Target::canary(&self.service))
        } else {
            None
        }
    }

    /// The Release that the copy named `backend` holds.
    pub fn release(&self, backend: &str) -> Option<&str> {
        if backend == Target::primary(&self.service) {
            self.primary.as_deref()
        } else if backend == Target::canary(&self.service) {
            self.canary.as_deref()
        } else {
            None
        }
    }

    /// The names of both copies.
    pub fn names(&self) -> [String; 2] {
        [
            Target::primary(&self.service),
            Target::canary(&self.service),
        ]
    }
}

/// The versions one cluster runs: each Release a copy holds, at [`CAPACITY`], ready when the
/// copy lists a ready endpoint (for a copy of an ExternalName, the one Prism keeps, ready as
/// its probe says).
pub fn observe(
    copies: &Copies,
    endpoint_slices: &[Arc<EndpointSlice>],
) -> BTreeMap<String, VersionObservation> {
    let serves = |name: &str| {
        endpoint_slices
            .iter()
            .filter(|slice| slice.service() == Some(name))
            .any(|slice| slice.has_ready_endpoint())
    };
    let mut versions = BTreeMap::new();
    for name in copies.names() {
        let Some(release) = copies.release(&name) else {
            continue;
        };
        let version = versions
            .entry(release.to_owned())
            .or_insert(VersionObservation {
                capacity: CAPACITY,
                ready: 0,
                weight: 0,
            });
        if serves(&name) {
            version.ready = 1;
        }
    }
    versions
}

/// The write that brings `release` to a cluster: the copy of its role holding its spec.
pub fn install(
    app: &str,
    release: &Release,
    roles: &Roles,
    owner: Option<&OwnerReference>,
) -> Vec<Write> {
    let Some(snapshot) = &release.spec.target else {
        return Vec::new();
    };
    let Some(service) = snapshot.name() else {
        return Vec::new();
    };
    let primary = roles
        .primary
        .is_some_and(|primary| primary.name_any() == release.name_any());
    let name = if primary {
        Target::primary(service)
    } else {
        Target::canary(service)
    };
    vec![copy(app, &name, snapshot, &release.name_any(), owner)]
}

/// The writes that take `release` out of a cluster: the canary that holds it deleted; the
/// primary that holds it given the spec of the primary's Release (the promotion). The primary
/// is never deleted here: it goes only with the application (the provider's `remove`).
pub fn remove(
    app: &str,
    release: &str,
    copies: &Copies,
    roles: &Roles,
    owner: Option<&OwnerReference>,
) -> Vec<Write> {
    let mut writes = Vec::new();
    if copies.primary.as_deref() == Some(release) {
        let [primary, _] = copies.names();
        let promoted = roles
            .primary
            .filter(|primary| primary.name_any() != release)
            .and_then(|primary| Some((primary.spec.target.as_ref()?, primary.name_any())));
        if let Some((snapshot, source)) = promoted {
            writes.push(copy(app, &primary, snapshot, &source, owner));
        }
    }
    if copies.canary.as_deref() == Some(release) && copies.primary.as_deref() != Some(release) {
        let [_, canary] = copies.names();
        writes.push(Write::Delete {
            kind: Kind::Service,
            name: canary,
        });
    }
    writes
}

/// The copy `name` of `snapshot`, labelled with the application (so that its EndpointSlices are
/// watched) and annotated with the Release it holds. No clusterIP: each copy keeps its own.
/// A copy of an ExternalName spec is a Service without a selector, annotated with the name,
/// whose EndpointSlice Prism keeps ([`external`]): gateways refuse ExternalName backends
/// (Traefik answers them with a 500), while an EndpointSlice is what every implementation reads.
fn copy(
    app: &str,
    name: &str,
    snapshot: &Manifest,
    source: &str,
    owner: Option<&OwnerReference>,
) -> Write {
    let mut spec = snapshot.object().remove("spec").unwrap_or(json!({}));
    let mut annotations = json!({SOURCE_ANNOTATION: source});
    if let Some(external_name) = external::name_of_spec(&spec) {
        annotations[EXTERNAL_NAME_ANNOTATION] = json!(external_name);
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("type");
            spec.remove("externalName");
        }
    }
    let mut metadata = json!({
        "name": name,
        "labels": {APP_LABEL: app},
        "annotations": annotations,
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    Write::Apply {
        kind: Kind::Service,
        body: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": spec,
        }),
    }
}

pub mod external;
#[cfg(test)]
mod tests;
