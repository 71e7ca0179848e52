//! A Service target of type ExternalName: a canary of a whole cluster, when the Service names one
//! cluster's gateway and then another's. Gateways refuse an ExternalName Service as a backend
//! (Traefik answers it with a 500), so each copy is a Service without a selector, annotated with
//! the name ([`crate::service_target`]), and Prism keeps its EndpointSlice: one endpoint whose
//! address is the name (`addressType: FQDN`, resolved by the gateway as it would resolve the
//! ExternalName), at each port's `targetPort`, ready as the Application's probe says. The slice is
//! owned by its copy, so it goes with it in any cluster.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use prism_api::labels::{
    APP_LABEL, ENDPOINT_ANNOTATION, ENDPOINT_SLICE_MANAGER, EXTERNAL_NAME_ANNOTATION,
};
use serde_json::{Value, json};

use crate::cached::EndpointSlice;
use crate::write::{Kind, Write};

/// The label of an EndpointSlice naming its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The externalName of a Service spec (as JSON) of type ExternalName.
pub fn name_of_spec(spec: &Value) -> Option<&str> {
    (spec["type"].as_str() == Some("ExternalName"))
        .then(|| spec["externalName"].as_str())
        .flatten()
}

/// The address a copy's EndpointSlice points at, when the copy is of an ExternalName.
pub fn name_of_copy(service: &Service) -> Option<&str> {
    service
        .annotations()
        .get(EXTERNAL_NAME_ANNOTATION)
        .map(String::as_str)
}

/// The port dialled at the address for the copy's first port.
pub fn first_port(service: &Service) -> Option<u16> {
    let port = service.spec.as_ref()?.ports.as_ref()?.first()?;
    u16::try_from(dialled(port)).ok()
}

/// The port dialled at the address for a Service port: its `targetPort` when a number, else its
/// `port` (a named targetPort names a container port, which an address has none of).
fn dialled(port: &ServicePort) -> i32 {
    match &port.target_port {
        Some(IntOrString::Int(target)) => *target,
        _ => port.port,
    }
}

/// The EndpointSlice of `copy` (a copy of an ExternalName), its one endpoint ready or not.
fn endpoint_slice(app: &str, copy: &Service, address: &str, ready: bool) -> Value {
    let name = copy.name_any();
    let ports: Vec<Value> = copy
        .spec
        .iter()
        .flat_map(|spec| spec.ports.iter().flatten())
        .map(|port| {
            json!({
                // Named as the Service's port, "" included: gateways pair them by name.
                "name": port.name.clone().unwrap_or_default(),
                "port": dialled(port),
                "protocol": port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            })
        })
        .collect();
    let written = json!({"address": address, "ports": ports, "ready": ready, "owner": copy.uid()});
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(&name),
            "labels": {
                SERVICE_NAME_LABEL: name,
                ENDPOINT_SLICE_MANAGER.0: ENDPOINT_SLICE_MANAGER.1,
                APP_LABEL: app,
            },
            "annotations": {ENDPOINT_ANNOTATION: written.to_string()},
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Service",
                "name": name,
                "uid": copy.uid(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "addressType": "FQDN",
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
        "ports": ports,
    })
}

fn slice_name(copy: &str) -> String {
    format!("{copy}-external")
}

/// The writes that keep the EndpointSlice of each copy of an ExternalName among `services` (the
/// application's, in one cluster) as it should be, `ready` judging each address at its first
/// port; and that delete the slice of a copy that no longer is of one. A copy without a uid yet
/// (just applied, not back from its watch) waits for the next reconcile.
pub fn keep(
    app: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    mut ready: impl FnMut(&str, u16) -> bool,
) -> Vec<Write> {
    let mut writes = Vec::new();
    for copy in services
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
    {
        let name = copy.name_any();
        let current = slices
            .iter()
            .find(|slice| slice.metadata.name.as_deref() == Some(slice_name(&name).as_str()));
        let Some(address) = name_of_copy(copy) else {
            if current.is_some_and(|slice| is_prisms(slice)) {
                writes.push(Write::Delete {
                    kind: Kind::EndpointSlice,
                    name: slice_name(&name),
                });
            }
            continue;
        };
        let (Some(_), Some(port)) = (copy.uid(), first_port(copy)) else {
            continue;
        };
        let wanted = endpoint_slice(app, copy, address, ready(address, port));
        let written = current
            .and_then(|slice| {
                slice
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(ENDPOINT_ANNOTATION)
            })
            .map(String::as_str);
        if written != wanted["metadata"]["annotations"][ENDPOINT_ANNOTATION].as_str() {
            writes.push(Write::Apply {
                kind: Kind::EndpointSlice,
                body: wanted,
            });
        }
    }
    writes
}

fn is_prisms(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(ENDPOINT_SLICE_MANAGER.0))
        .is_some_and(|manager| manager == ENDPOINT_SLICE_MANAGER.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(name: &str, external: Option<&str>, uid: Option<&str>) -> Arc<Service> {
        let mut annotations = json!({});
        if let Some(external) = external {
            annotations[EXTERNAL_NAME_ANNOTATION] = json!(external);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": uid, "annotations": annotations},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
    }

    fn cached(body: &Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(body.clone()).unwrap())
    }

    fn applied(writes: &[Write]) -> Vec<&Value> {
        writes
            .iter()
            .filter_map(|write| match write {
                Write::Apply { body, .. } => Some(body),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_copy_of_an_external_name_gets_an_fqdn_endpoint_at_its_target_port_ready_as_judged() {
        let services = [copy("shop-canary", Some("gateway.c3.example"), Some("u1"))];
        let writes = keep("shop", &services, &[], |address, port| {
            assert_eq!((address, port), ("gateway.c3.example", 8080));
            false
        });
        let [slice] = applied(&writes)[..] else {
            panic!("one slice: {writes:?}")
        };
        assert_eq!(slice["metadata"]["name"], "shop-canary-external");
        assert_eq!(
            slice["metadata"]["labels"][SERVICE_NAME_LABEL],
            "shop-canary"
        );
        assert_eq!(slice["addressType"], "FQDN");
        assert_eq!(
            slice["endpoints"],
            json!([{"addresses": ["gateway.c3.example"], "conditions": {"ready": false}}])
        );
        assert_eq!(
            slice["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "u1");
    }

    #[test]
    fn an_unchanged_slice_is_not_written_again_and_a_changed_verdict_is() {
        let services = [copy("shop-primary", Some("gateway.c2.example"), Some("u1"))];
        let first = keep("shop", &services, &[], |_, _| true);
        let slices = [cached(applied(&first)[0])];
        assert_eq!(keep("shop", &services, &slices, |_, _| true), Vec::new());
        assert_eq!(
            applied(&keep("shop", &services, &slices, |_, _| false)).len(),
            1
        );
    }

    #[test]
    fn a_copy_without_a_uid_waits_and_one_no_longer_external_loses_its_slice() {
        let services = [copy("shop-canary", Some("gateway.c3.example"), None)];
        assert_eq!(keep("shop", &services, &[], |_, _| true), Vec::new());
        let external = [copy("shop-canary", Some("gateway.c3.example"), Some("u1"))];
        let slices = [cached(
            applied(&keep("shop", &external, &[], |_, _| true))[0],
        )];
        let selector = [copy("shop-canary", None, Some("u1"))];
        assert_eq!(
            keep("shop", &selector, &slices, |_, _| true),
            vec![Write::Delete {
                kind: Kind::EndpointSlice,
                name: "shop-canary-external".into()
            }]
        );
    }
}
