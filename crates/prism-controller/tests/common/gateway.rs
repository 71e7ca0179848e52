//! Requests through the sandbox's gateways, for the tests of the traffic providers.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use prism_testkit::gateway::{Gateway, Request, Tally, http_route_resource};
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use serde_json::Value;

use prism_api::{Application, Release};
use prism_testkit::TestEnv;
use prism_testkit::fleet::TestFleet;

use super::{RunningController, TEST_MANAGER, setup};

/// Requests per cluster for each measured split, and how far a share may be from its weight.
pub const MEASURED: usize = 2000;
pub const TOLERANCE: f64 = 3.0;

/// The GRPCRoute kind, for dynamic reads and writes.
pub fn grpc_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GRPCRoute"),
        "grpcroutes",
    )
}

/// Applies a Deployment, a Service, an HTTPRoute or a GRPCRoute as the user.
pub async fn apply_object(client: &Client, namespace: &str, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let resource = match object["kind"].as_str().unwrap() {
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        "GRPCRoute" => grpc_route_resource(),
        _ => http_route_resource(),
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .patch(
            &name,
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|error| panic!("applying {name}: {error}"));
}

/// Waits until [`MEASURED`] requests through the gateway come out at `shares` (percent per
/// release), each within [`TOLERANCE`] points; a failed request fails at once. Traefik serves a
/// new configuration a moment after it reports the route accepted, and a provider may still
/// mend a split once its step is achieved (podLabels labels a new ready pod), so a measurement
/// that catches the change is taken again.
pub async fn measure(gateway: &Gateway, request: &Request, shares: &[(&str, f64)]) -> Tally {
    let within = |tally: &Tally| {
        tally.served() > 0
            && shares.iter().all(|(release, percent)| {
                (tally.share(release) * 100.0 - percent).abs() <= TOLERANCE
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
            let tally = gateway.send(request, MEASURED).await;
            assert!(
                tally.failures.is_empty(),
                "{} failed requests: {tally}",
                gateway.cluster()
            );
            if within(&tally) {
                Ok(Some(tally))
            } else {
                Err(anyhow::anyhow!("{tally}"))
            }
        },
    )
    .await
    .unwrap()
}

/// A test's fleet of 3 clusters with its controller, and each cluster's gateway; the tests add
/// their routes.
pub struct GatewayFleet {
    pub env: TestEnv,
    pub apps: Api<Application>,
    pub releases: Api<Release>,
    pub controller: Option<RunningController>,
    _fleet: TestFleet,
    pub gateways: Vec<Gateway>,
    /// The application's host, `<namespace>.example.test`.
    pub host: String,
}

impl GatewayFleet {
    pub async fn new(name: &str) -> GatewayFleet {
        let env = TestEnv::new(name).await;
        let (client, apps, releases, controller) = setup(&env).await.unwrap();
        let fleet = TestFleet::join(&env, &client).await.unwrap();
        let host = format!("{}.example.test", env.namespace());
        let gateways = env
            .clusters()
            .iter()
            .map(|cluster| Gateway::of(cluster).unwrap())
            .collect();
        GatewayFleet {
            env,
            apps,
            releases,
            controller: Some(controller),
            _fleet: fleet,
            gateways,
            host,
        }
    }

    pub fn namespace(&self) -> &str {
        self.env.namespace()
    }
}
