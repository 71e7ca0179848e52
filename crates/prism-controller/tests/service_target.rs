//! An Application that targets an existing Service (`spec.target.service`) end to end: the test
//! owns the Service `podinfo` (in the management cluster) and the Deployments `podinfo-blue` and
//! `podinfo-green` (in every cluster) and releases by changing the Service's selector; Prism
//! keeps `podinfo-primary` and `podinfo-canary` in each cluster and splits the user's HTTPRoute
//! between them. Requests go through each cluster's real gateway, counted per color (the pods'
//! `prism.dev/release` label, which the pod servers answer with).

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use prism_api::labels::{EXTERNAL_NAME_ANNOTATION, FIELD_MANAGER};
use prism_api::release::ReleasePhase;
use prism_testkit::gateway::{Gateway, LoadLoop, Request, http_route_resource, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet as World, apply_object, measure};
use common::{
    application, apply, patch_release_spec, setup, valid_condition, wait_for_phase,
    wait_for_status, wait_for_step,
};

/// Requests a second to each cluster's gateway while a rollout runs.
const LOAD: f64 = 40.0;

/// The pods of one color: labelled so that a selector picks them, and so that the pod servers
/// answer with the color.
fn deployment(color: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": format!("podinfo-{color}")},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "podinfo", "color": color}},
            "template": {
                "metadata": {"labels": {
                    "app": "podinfo", "color": color, "track": "stable",
                    "prism.dev/release": color,
                }},
                "spec": {"containers": [{"name": "podinfo", "image": format!("example.test/podinfo:{color}")}]}
            }
        }
    })
}

/// The user's Service `name`, selecting `selector`.
fn target(name: &str, selector: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80}]}
    })
}

fn steps() -> Value {
    json!([
        {"name": "canary", "traffic": {"contender": 20}, "gate": {"manual": true}},
        {"name": "half", "traffic": {"contender": 50}, "gate": {"manual": true}},
        {"name": "full", "traffic": {"contender": 100}},
    ])
}

/// The fleet with the user's Deployments and HTTPRoute in every cluster, the Service `podinfo`
/// selecting the blue pods in the management cluster, and the Application targeting it, its
/// first version complete and served.
async fn world(name: &str) -> World {
    let world = World::new(name).await;
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let client = cluster.client();
        for color in ["blue", "green"] {
            apply_object(&client, world.namespace(), deployment(color)).await;
        }
        let route = gateway.route("podinfo", &world.host, &[("podinfo", 1)]);
        apply_object(&client, world.namespace(), route).await;
    }
    world
        .set_target(json!({"app": "podinfo", "color": "blue"}))
        .await;
    world
        .first_version(json!({
            "target": {"service": {"name": "podinfo"}},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["podinfo"]},
            "strategy": {"steps": steps()},
        }))
        .await;
    let request = Request::new(&world.host);
    for gateway in &world.gateways {
        wait_until_served(gateway, &request, "blue", |served| served.release == "blue")
            .await
            .unwrap();
        measure(gateway, &request, &[("blue", 100.0)]).await;
    }
    world
}

impl World {
    /// The Application `podinfo` with `spec`, once its first version is complete.
    async fn first_version(&self, spec: Value) {
        apply(&self.apps, &application("podinfo", spec).unwrap())
            .await
            .unwrap();
        wait_for_phase(&self.releases, "podinfo-1", ReleasePhase::Complete)
            .await
            .unwrap();
    }

    /// The user changes the Service `podinfo` (in the management cluster, c1).
    async fn set_target(&self, selector: Value) {
        let client = self.env.cluster("c1").client();
        apply_object(&client, self.namespace(), target("podinfo", selector)).await;
    }

    fn load(&self) -> LoadLoop {
        LoadLoop::start(self.gateways.clone(), Request::new(&self.host), LOAD)
    }

    async fn measure_all(&self, shares: &[(&str, f64)]) {
        for gateway in &self.gateways {
            measure(gateway, &Request::new(&self.host), shares).await;
        }
    }

    /// The backendRefs of the HTTPRoute `podinfo` in every cluster: `[name, weight]` each.
    async fn backends(&self) -> Vec<Value> {
        let mut backends = Vec::new();
        for cluster in self.env.clusters() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client(), self.namespace(), &http_route_resource());
            let route = api.get("podinfo").await.unwrap().data;
            let names_and_weights: Vec<Value> = route["spec"]["rules"][0]["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|backend| json!([backend["name"], backend["weight"]]))
                .collect();
            backends.push(Value::from(names_and_weights));
        }
        backends
    }

    /// The selector of `name` in every cluster.
    async fn selectors(&self, name: &str) -> Vec<Value> {
        let mut selectors = Vec::new();
        for cluster in self.env.clusters() {
            let api: Api<Service> = Api::namespaced(cluster.client(), self.namespace());
            let service = api.get(name).await.unwrap();
            selectors.push(serde_json::to_value(service.spec.unwrap().selector).unwrap());
        }
        selectors
    }
}

/// Takes `release` through the canary's steps (20% and 50%, each checked by `check` with the
/// canary's share once achieved, then promoted) to completion.
async fn through_every_step(world: &World, release: &str, check: impl AsyncFn(f64)) {
    for (step, canary) in [20.0, 50.0].into_iter().enumerate() {
        wait_for_step(&world.releases, release, step as u32)
            .await
            .unwrap();
        check(canary).await;
        patch_release_spec(
            &world.releases,
            release,
            json!({"targetStep": step as u32 + 1}),
        )
        .await
        .unwrap();
    }
    wait_for_phase(&world.releases, release, ReleasePhase::Complete)
        .await
        .unwrap();
}

/// Every field manager that wrote `object`.
fn managers(metadata: &kube::api::ObjectMeta) -> Vec<String> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

/// Prism never wrote the user's Deployments (in any cluster) nor the target Service.
async fn assert_never_written_by_prism(world: &World) {
    for cluster in world.env.clusters() {
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), world.namespace());
        for color in ["blue", "green"] {
            let deployment = deployments.get(&format!("podinfo-{color}")).await.unwrap();
            let managers = managers(&deployment.metadata);
            assert!(
                !managers.iter().any(|manager| manager == FIELD_MANAGER),
                "{}: Deployment podinfo-{color} written by {managers:?}",
                cluster.name()
            );
        }
    }
    let services: Api<Service> =
        Api::namespaced(world.env.cluster("c1").client(), world.namespace());
    let service = services.get("podinfo").await.unwrap();
    let managers = managers(&service.metadata);
    assert!(
        !managers.iter().any(|manager| manager == FIELD_MANAGER),
        "Service podinfo written by {managers:?}"
    );
}

#[tokio::test]
async fn a_service_target_canary_moves_requests_from_blue_to_green_aborts_and_completes() {
    let world = world("svc-target").await;
    let load = world.load();

    // Green, then an abort at half: every request back to the primary (blue).
    world
        .set_target(json!({"app": "podinfo", "color": "green"}))
        .await;
    for (step, green) in [20.0, 50.0].into_iter().enumerate() {
        wait_for_step(&world.releases, "podinfo-2", step as u32)
            .await
            .unwrap();
        world
            .measure_all(&[("green", green), ("blue", 100.0 - green)])
            .await;
        if step == 0 {
            patch_release_spec(&world.releases, "podinfo-2", json!({"targetStep": 1}))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        world.selectors("podinfo-canary").await,
        vec![json!({"app": "podinfo", "color": "green"}); 3]
    );
    patch_release_spec(&world.releases, "podinfo-2", json!({"aborted": true}))
        .await
        .unwrap();
    wait_for_phase(&world.releases, "podinfo-2", ReleasePhase::Aborted)
        .await
        .unwrap();
    world.measure_all(&[("blue", 100.0)]).await;
    let report = load.stop().await;
    assert!(report.total() > 0);
    assert!(report.failures().is_empty(), "{report}");
    for backends in world.backends().await {
        assert_eq!(backends, json!([["podinfo-primary", 100]]));
    }

    // Green again (another spec: a Release of its own), through every step to completion: the
    // primary takes the canary's spec, and every request.
    let load = world.load();
    world
        .set_target(json!({"app": "podinfo", "color": "green", "track": "stable"}))
        .await;
    through_every_step(&world, "podinfo-3", async |green| {
        world
            .measure_all(&[("green", green), ("blue", 100.0 - green)])
            .await;
    })
    .await;
    world.measure_all(&[("green", 100.0)]).await;
    wait_until(
        "every route sends everything to podinfo-primary",
        DEFAULT_TIMEOUT,
        || async {
            let backends = world.backends().await;
            let primary = json!([["podinfo-primary", 100]]);
            Ok(backends.iter().all(|b| *b == primary).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        world.selectors("podinfo-primary").await,
        vec![json!({"app": "podinfo", "color": "green", "track": "stable"}); 3]
    );
    world.measure_all(&[("green", 100.0)]).await;
    let report = load.stop().await;
    assert!(report.failures().is_empty(), "{report}");
    assert_never_written_by_prism(&world).await;
}

#[tokio::test]
async fn a_target_service_that_does_not_exist_is_reported_by_a_condition_naming_it() {
    let env = TestEnv::new("svc-target-missing").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let spec = json!({
        "target": {"service": {"name": "nowhere"}},
        "traffic": {"provider": "gatewayAPI", "httpRoutes": ["nowhere"]},
        "strategy": {"steps": steps()},
    });
    apply(&apps, &application("podinfo", spec).unwrap())
        .await
        .unwrap();
    let status = wait_for_status(&apps, "podinfo", "the target is missing", |status| {
        valid_condition(status).is_some_and(|c| c.status == "False")
    })
    .await
    .unwrap();
    let valid = valid_condition(&status).unwrap();
    assert_eq!(valid.reason, "TargetNotFound");
    assert!(
        valid.message.contains("spec.target.service.name") && valid.message.contains("nowhere"),
        "{}",
        valid.message
    );
    assert!(
        releases
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_no_copies(&client, env.namespace()).await;

    // Once the Service exists, its first Release is made.
    let service = target("nowhere", json!({"app": "nowhere"}));
    apply_object(&client, env.namespace(), service).await;
    wait_until("Release podinfo-1 exists", DEFAULT_TIMEOUT, || async {
        match releases.get_opt("podinfo-1").await? {
            Some(release) => Ok(Some(release)),
            None => {
                let status = apps.get("podinfo").await?.status;
                Err(anyhow::anyhow!(
                    "no Release; the Application's status: {status:?}"
                ))
            }
        }
    })
    .await
    .unwrap();
}

async fn assert_no_copies(client: &Client, namespace: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for name in ["nowhere-primary", "nowhere-canary"] {
        assert!(services.get_opt(name).await.unwrap().is_none(), "{name}");
    }
}

/// The application as another cluster serves it by itself, behind its own gateway: pods that
/// answer as `in-<cluster>`, a Service, and (when `routed`) an HTTPRoute for `host`.
async fn served_by_itself(gateway: &Gateway, client: &Client, namespace: &str, host: &str) {
    let release = format!("in-{}", gateway.cluster());
    let mut pods = deployment("blue");
    pods["metadata"]["name"] = json!("podinfo");
    pods["spec"]["template"]["metadata"]["labels"]["prism.dev/release"] = json!(release);
    apply_object(client, namespace, pods).await;
    let service = target("podinfo", json!({"app": "podinfo", "color": "blue"}));
    apply_object(client, namespace, service).await;
    let route = gateway.route("podinfo", host, &[("podinfo", 1)]);
    apply_object(client, namespace, route).await;
}

/// The user's Service of type ExternalName, naming cluster `cluster`'s gateway.
fn external_target(cluster: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "podinfo"},
        "spec": {
            "type": "ExternalName",
            "externalName": format!("gateway.{cluster}.sandbox.test"),
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        }
    })
}

/// The readiness of the one endpoint of `podinfo-canary`'s EndpointSlice in c1, once written.
async fn canary_endpoint_ready(client: &Client, namespace: &str) -> Option<bool> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let slice = slices.get_opt("podinfo-canary-external").await.unwrap()?;
    assert_eq!(slice.address_type, "FQDN");
    slice.endpoints?.first()?.conditions.as_ref()?.ready
}

#[tokio::test]
async fn an_external_name_target_moves_requests_from_one_clusters_gateway_to_anothers() {
    // c1's gateway is the front: the user's Service podinfo (ExternalName) names c2's gateway,
    // then c3's, where the application runs by itself; Prism runs the canary in c1 alone.
    let world = World::new("svc-external").await;
    let namespace = world.namespace().to_owned();
    let c1 = world.env.cluster("c1").client();
    let clusters = Api::<DynamicObject>::all_with(
        c1.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("prism.dev", "v1alpha1", "Cluster")),
    );
    clusters
        .patch(
            &world.env.cluster_object_name("c1"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"capabilities": ["front"]}})),
        )
        .await
        .unwrap();
    let front = &world.gateways[0];
    served_by_itself(
        &world.gateways[1],
        &world.env.cluster("c2").client(),
        &namespace,
        &world.host,
    )
    .await;
    apply_object(&c1, &namespace, external_target("c2")).await;
    apply_object(
        &c1,
        &namespace,
        front.route("podinfo", &world.host, &[("podinfo", 1)]),
    )
    .await;
    world
        .first_version(json!({
            "target": {"service": {"name": "podinfo", "probe": {"host": world.host, "periodSeconds": 1}}},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["podinfo"]},
            "schedule": {"clusters": 1, "capabilities": ["front"]},
            "strategy": {"steps": steps()},
        }))
        .await;
    let request = Request::new(&world.host);
    wait_until_served(front, &request, "in-c2", |served| served.cluster == "c2")
        .await
        .unwrap();
    let load = LoadLoop::start(vec![front.clone()], request.clone(), LOAD);
    measure(front, &request, &[("in-c2", 100.0)]).await;

    // The Service now names c3's gateway, which does not know the host yet (it answers 404):
    // the probe holds the canary unready, and it gets no request.
    apply_object(&c1, &namespace, external_target("c3")).await;
    wait_until(
        "the canary's endpoint is written unready",
        DEFAULT_TIMEOUT,
        || async {
            Ok((canary_endpoint_ready(&c1, &namespace).await == Some(false)).then_some(()))
        },
    )
    .await
    .unwrap();
    let route: Api<DynamicObject> =
        Api::namespaced_with(c1.clone(), &namespace, &http_route_resource());
    let backends =
        route.get("podinfo").await.unwrap().data["spec"]["rules"][0]["backendRefs"].clone();
    assert!(
        backends
            .as_array()
            .unwrap()
            .iter()
            .all(|backend| backend["name"] != "podinfo-canary" || backend["weight"] == 0),
        "an unready canary has no weight: {backends}"
    );
    measure(front, &request, &[("in-c2", 100.0)]).await;

    // Once c3 serves the host, the probe passes and the canary takes its steps.
    served_by_itself(
        &world.gateways[2],
        &world.env.cluster("c3").client(),
        &namespace,
        &world.host,
    )
    .await;
    through_every_step(&world, "podinfo-2", async |c3| {
        measure(front, &request, &[("in-c3", c3), ("in-c2", 100.0 - c3)]).await;
    })
    .await;
    measure(front, &request, &[("in-c3", 100.0)]).await;
    let report = load.stop().await;
    assert!(report.total() > 0);
    assert!(report.failures().is_empty(), "{report}");

    // The primary took the canary's address; it is a Service without a selector, and Prism
    // never wrote the user's Service.
    let services: Api<Service> = Api::namespaced(c1.clone(), &namespace);
    let primary = services.get("podinfo-primary").await.unwrap();
    assert_eq!(
        primary
            .annotations()
            .get(EXTERNAL_NAME_ANNOTATION)
            .map(String::as_str),
        Some("gateway.c3.sandbox.test")
    );
    assert_eq!(primary.spec.unwrap().selector, None);
    let user = services.get("podinfo").await.unwrap();
    assert!(!managers(&user.metadata).iter().any(|m| m == FIELD_MANAGER));
}
