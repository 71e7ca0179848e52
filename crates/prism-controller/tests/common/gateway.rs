//! Requests through the sandbox's gateways, for the tests of the traffic providers.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use prism_testkit::gateway::{Gateway, Request, Tally, http_route_resource};
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use serde_json::Value;

use super::TEST_MANAGER;

/// Requests per cluster for each measured split, and how far a share may be from its weight.
pub const MEASURED: usize = 2000;
pub const TOLERANCE: f64 = 3.0;

/// Applies a Deployment, a Service or an HTTPRoute as the user.
pub async fn apply_object(client: &Client, namespace: &str, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let result = match object["kind"].as_str().unwrap() {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch(
                &name,
                &PatchParams::apply(TEST_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .map(|_| ()),
        "Service" => Api::<Service>::namespaced(client.clone(), namespace)
            .patch(
                &name,
                &PatchParams::apply(TEST_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .map(|_| ()),
        _ => {
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &http_route_resource())
                .patch(
                    &name,
                    &PatchParams::apply(TEST_MANAGER),
                    &Patch::Apply(&object),
                )
                .await
                .map(|_| ())
        }
    };
    result.unwrap_or_else(|error| panic!("applying {name}: {error}"));
}

/// Waits until the gateway serves `shares` (percent per release), then measures
/// [`MEASURED`] requests and asserts each share within [`TOLERANCE`] points and no failure.
/// Traefik serves a route's new configuration a moment after it reports the route accepted,
/// so the wait is on a smaller sample first.
pub async fn measure(gateway: &Gateway, request: &Request, shares: &[(&str, f64)]) -> Tally {
    let within = |tally: &Tally, tolerance: f64| {
        tally.failures.is_empty()
            && tally.served() > 0
            && shares.iter().all(|(release, percent)| {
                (tally.share(release) * 100.0 - percent).abs() <= tolerance
            })
            && tally
                .per_release
                .keys()
                .all(|release| shares.iter().any(|(wanted, _)| wanted == release))
    };
    wait_until(
        format!("{} serves {shares:?}", gateway.cluster()),
        DEFAULT_TIMEOUT,
        || async {
            let tally = gateway.send(request, 200).await;
            Ok(within(&tally, 8.0).then_some(()))
        },
    )
    .await
    .unwrap();
    let tally = gateway.send(request, MEASURED).await;
    assert!(
        within(&tally, TOLERANCE),
        "{} should serve {shares:?}: {tally}",
        gateway.cluster()
    );
    tally
}
