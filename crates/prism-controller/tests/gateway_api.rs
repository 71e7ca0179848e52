//! The `gatewayAPI` provider end to end: requests sent through each sandbox cluster's real
//! gateway (Traefik) while Prism rolls a version out, measured per release, with a load loop
//! that counts every failed request across the whole rollout.

mod common;

use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use prism_api::Release;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::gateway::{Gateway, LoadLoop, Request, http_route_resource, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet as World, apply_object, grpc_route_resource, measure};
use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};

const REPLICAS: u32 = 4;
/// Requests a second to each cluster's gateway while a rollout runs.
const LOAD: f64 = 40.0;

/// A test's fleet with the user's HTTPRoutes `web` (and what it routes to besides the
/// application) and `web-other` in every cluster.
async fn world(name: &str) -> World {
    let world = World::new(name).await;
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let client = cluster.client();
        install_legacy(&client, world.namespace()).await;
        apply_object(&client, world.namespace(), user_route(gateway, &world.host)).await;
        // A second route of the application, for another host: Prism sets them alike.
        let other = gateway.route("web-other", &format!("other.{}", world.host), &[("web", 1)]);
        apply_object(&client, world.namespace(), other).await;
    }
    world
}

impl World {
    /// The Application `web` at `image`, routed through the HTTPRoute `web` with `steps`.
    async fn apply(&self, image: &str, steps: Value) {
        let spec = json!({
            "template": web_template(image, REPLICAS),
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web", "web-other"]},
            "strategy": {"steps": steps},
        });
        apply(&self.apps, &application("web", spec).unwrap())
            .await
            .unwrap();
    }

    /// Version 1 installed and served by every gateway.
    async fn first_version(&self, steps: Value) {
        self.apply("example.test/web:1", steps).await;
        wait_for_phase(&self.releases, "web-1", ReleasePhase::Complete)
            .await
            .unwrap();
        // Until then the route sent requests to a Service that did not exist yet.
        let request = Request::new(&self.host);
        for gateway in &self.gateways {
            wait_until_served(gateway, &request, "web-1", |served| {
                served.release == "web-1"
            })
            .await
            .unwrap();
            measure(gateway, &request, &[("web-1", 100.0)]).await;
        }
    }

    fn load(&self) -> LoadLoop {
        LoadLoop::start(self.gateways.clone(), Request::new(&self.host), LOAD)
    }

    /// The HTTPRoute `web` of every cluster.
    async fn routes(&self) -> Vec<Value> {
        let mut routes = Vec::new();
        for cluster in self.env.clusters() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client(), self.namespace(), &http_route_resource());
            routes.push(api.get("web").await.unwrap().data);
        }
        routes
    }
}

/// The user's HTTPRoute: the application's Service in the default rule, next to a backend
/// (weight 0) and a response filter Prism does not manage, and a rule of its own for `/legacy`.
fn user_route(gateway: &Gateway, host: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [gateway.parent_ref()],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/legacy"}}],
                    "backendRefs": [{"name": "legacy", "port": 80}],
                },
                {
                    "filters": [{
                        "type": "ResponseHeaderModifier",
                        "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "gateway"}]},
                    }],
                    "backendRefs": [
                        {"name": "web", "port": 80},
                        {"name": "legacy", "port": 80, "weight": 0},
                    ],
                },
            ],
        },
    })
}

/// A Deployment and Service `legacy` that the user's route sends `/legacy` to: a backend that
/// must resolve for the route to be accepted at all.
async fn install_legacy(client: &Client, namespace: &str) {
    let template = web_template("example.test/legacy:1", 1);
    for manifest in template["manifests"].as_array().unwrap() {
        let mut object = manifest.clone();
        let text = serde_json::to_string(&object)
            .unwrap()
            .replace("\"web\"", "\"legacy\"");
        object = serde_json::from_str(&text).unwrap();
        apply_object(client, namespace, object).await;
    }
}

/// Everything of the user's route that Prism does not manage: its parents and hostnames, the
/// `/legacy` rule, and of the default rule its filter and the `legacy` backendRef.
fn unmanaged(route: &Value) -> Value {
    let rules = route["spec"]["rules"].as_array().unwrap();
    let legacy_rule = rules
        .iter()
        .find(|rule| rule["matches"][0]["path"]["value"] == "/legacy")
        .cloned();
    let default_rule = rules
        .iter()
        .find(|rule| rule["filters"].is_array() && rule.get("name").is_none());
    json!({
        "parentRefs": route["spec"]["parentRefs"],
        "hostnames": route["spec"]["hostnames"],
        "legacy": legacy_rule,
        "filters": default_rule.map(|rule| rule["filters"].clone()),
        "otherBackends": default_rule.map(|rule| {
            rule["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|backend| backend["name"] == "legacy")
                .cloned()
                .collect::<Vec<_>>()
        }),
    })
}

fn canary_steps() -> Value {
    let manual = |name: &str, contender: &str, weight: u32| {
        json!({
            "name": name,
            "capacity": {"contender": contender},
            "traffic": {"contender": weight},
            "gate": {"manual": true},
        })
    };
    json!([
        manual("canary-5", "25%", 5),
        manual("canary-25", "25%", 25),
        manual("half", "50%", 50),
        manual("canary-75", "75%", 75),
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
    ])
}

#[tokio::test]
async fn a_canary_splits_the_requests_as_each_step_says_and_loses_none() {
    let world = world("gw-canary").await;
    world.first_version(canary_steps()).await;
    let before: Vec<Value> = world.routes().await.iter().map(unmanaged).collect();
    let load = world.load();

    world.apply("example.test/web:2", canary_steps()).await;
    for (step, weight) in [5.0, 25.0, 50.0, 75.0].into_iter().enumerate() {
        wait_for_step(&world.releases, "web-2", step as u32)
            .await
            .unwrap();
        for gateway in &world.gateways {
            measure(
                gateway,
                &Request::new(&world.host),
                &[("web-2", weight), ("web-1", 100.0 - weight)],
            )
            .await;
        }
        patch_release_spec(
            &world.releases,
            "web-2",
            json!({"targetStep": step as u32 + 1}),
        )
        .await
        .unwrap();
    }
    wait_for_phase(&world.releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    for gateway in &world.gateways {
        measure(gateway, &Request::new(&world.host), &[("web-2", 100.0)]).await;
    }
    let report = load.stop().await;
    assert!(report.total() > 0);
    assert!(report.failures().is_empty(), "{report}");
    let after: Vec<Value> = world.routes().await.iter().map(unmanaged).collect();
    assert_eq!(
        after, before,
        "what Prism does not manage is left as it was"
    );
    for cluster in world.env.clusters() {
        let services: Api<Service> = Api::namespaced(cluster.client(), world.namespace());
        wait_until(
            format!(
                "{}: the Service of web-1 goes with its pods",
                cluster.name()
            ),
            DEFAULT_TIMEOUT,
            || async { Ok(services.get_opt("web-1").await?.is_none().then_some(())) },
        )
        .await
        .unwrap();
        assert!(services.get_opt("web-2").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_abort_at_half_sends_every_request_back_to_the_incumbent_and_loses_none() {
    let world = world("gw-abort").await;
    world.first_version(canary_steps()).await;
    let before: Vec<Value> = world.routes().await.iter().map(unmanaged).collect();
    let load = world.load();

    world.apply("example.test/web:2", canary_steps()).await;
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
    patch_release_spec(&world.releases, "web-2", json!({"targetStep": 2}))
        .await
        .unwrap();
    wait_for_step(&world.releases, "web-2", 2).await.unwrap();
    for gateway in &world.gateways {
        measure(
            gateway,
            &Request::new(&world.host),
            &[("web-2", 50.0), ("web-1", 50.0)],
        )
        .await;
    }
    patch_release_spec(&world.releases, "web-2", json!({"aborted": true}))
        .await
        .unwrap();
    wait_for_phase(&world.releases, "web-2", ReleasePhase::Aborted)
        .await
        .unwrap();
    for gateway in &world.gateways {
        measure(gateway, &Request::new(&world.host), &[("web-1", 100.0)]).await;
    }
    let report = load.stop().await;
    assert!(report.failures().is_empty(), "{report}");
    let after: Vec<Value> = world.routes().await.iter().map(unmanaged).collect();
    assert_eq!(
        after, before,
        "what Prism does not manage is left as it was"
    );
}

#[tokio::test]
async fn a_header_route_reaches_the_contender_at_weight_0_and_after_a_controller_restart() {
    let mut world = world("gw-header").await;
    let steps = json!([
        {
            "name": "preview",
            "capacity": {"contender": "25%"},
            "traffic": {"contender": 0, "routes": [
                {"name": "canary", "to": "contender", "match": {"header": {"name": "x-canary", "value": "always"}}},
            ]},
            "gate": {"manual": true},
        },
        {"name": "canary", "traffic": {"contender": 25}, "gate": {"manual": true}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100, "routes": []}},
    ]);
    world.first_version(steps.clone()).await;
    world.apply("example.test/web:2", steps).await;
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
    let canary = Request::new(&world.host).header("x-canary", "always");
    let plain = Request::new(&world.host);
    for gateway in &world.gateways {
        measure(gateway, &canary, &[("web-2", 100.0)]).await;
        measure(gateway, &plain, &[("web-1", 100.0)]).await;
    }

    // The controller is killed and started again: the route keeps working, untouched.
    let routes = world.routes().await;
    drop(world.controller.take());
    let (_, _, _, controller) = setup(&world.env).await.unwrap();
    world.controller = Some(controller);
    wait_until(
        "the restarted controller has reconciled web-2",
        DEFAULT_TIMEOUT,
        || async {
            let release = world.releases.get("web-2").await?;
            let status = release.status.unwrap_or_default();
            Ok((status.observed_generation == release.metadata.generation
                && status.step == Some(0))
            .then_some(()))
        },
    )
    .await
    .unwrap();
    for gateway in &world.gateways {
        measure(gateway, &canary, &[("web-2", 100.0)]).await;
    }
    let resource_versions = |routes: &[Value]| -> Vec<Value> {
        routes
            .iter()
            .map(|route| route["metadata"]["resourceVersion"].clone())
            .collect()
    };
    assert_eq!(
        resource_versions(&world.routes().await),
        resource_versions(&routes),
        "a restarted controller has nothing to rewrite"
    );

    patch_release_spec(&world.releases, "web-2", json!({"targetStep": 1}))
        .await
        .unwrap();
    wait_for_step(&world.releases, "web-2", 1).await.unwrap();
    let other = Request::new(format!("other.{}", world.host));
    for gateway in &world.gateways {
        measure(gateway, &canary, &[("web-2", 100.0)]).await;
        measure(gateway, &plain, &[("web-2", 25.0), ("web-1", 75.0)]).await;
        measure(gateway, &other, &[("web-2", 25.0), ("web-1", 75.0)]).await;
    }
}

#[tokio::test]
async fn a_hostname_route_per_version_reaches_each_live_version() {
    let world = world("gw-hostnames").await;
    let steps = json!([
        {
            "name": "preview",
            "capacity": {"contender": "25%"},
            "traffic": {"contender": 0, "routes": [
                {"name": "by-version", "to": "each", "match": {"subdomain": "{version}"}},
            ]},
            "gate": {"manual": true},
        },
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100, "routes": []}},
    ]);
    world.first_version(steps.clone()).await;
    world.apply("example.test/web:2", steps).await;
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
    for gateway in &world.gateways {
        for release in ["web-1", "web-2"] {
            // A new hostname is unknown to the gateway (404) until it serves the new route.
            let request = Request::new(format!("{release}.{}", world.host));
            wait_until_served(gateway, &request, release, |served| {
                served.release == release
            })
            .await
            .unwrap();
            measure(gateway, &request, &[(release, 100.0)]).await;
        }
        measure(gateway, &Request::new(&world.host), &[("web-1", 100.0)]).await;
    }

    // Past the preview, the routes go, and with them the HTTPRoutes Prism made for them.
    patch_release_spec(&world.releases, "web-2", json!({"targetStep": 1}))
        .await
        .unwrap();
    wait_for_phase(&world.releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    for cluster in world.env.clusters() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client(), world.namespace(), &http_route_resource());
        wait_until(
            format!("{}: Prism's HTTPRoutes are gone", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let owned = api
                    .list(&ListParams::default().labels("prism.dev/app=web"))
                    .await?;
                Ok(owned.items.is_empty().then_some(()))
            },
        )
        .await
        .unwrap();
    }
}

/// The template of `web_template`, its Deployment and Service named `name`.
fn template_named(name: &str, image: &str) -> Value {
    let text = serde_json::to_string(&web_template(image, 2))
        .unwrap()
        .replace("\"web\"", &format!("\"{name}\""));
    serde_json::from_str(&text).unwrap()
}

/// Waits until a condition of the Release names `words`, and returns its message.
async fn condition_naming(releases: &Api<Release>, release: &str, words: &str) -> String {
    wait_until(
        format!("Release {release} says {words:?}"),
        DEFAULT_TIMEOUT,
        || async {
            let Some(release) = releases.get_opt(release).await? else {
                return Ok(None);
            };
            Ok(release
                .status
                .unwrap_or_default()
                .conditions
                .iter()
                .map(|condition| condition.message.clone())
                .find(|message| message.contains(words)))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn routes_prism_cannot_use_are_named_in_the_releases_conditions_and_nothing_shifts() {
    let env = TestEnv::new("gw-bad-routes").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let namespace = env.namespace();
    let gateway = Gateway::of(env.cluster("c1")).unwrap();
    let route = |name: &str, parents: Value, rule: Value| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"parentRefs": parents, "hostnames": [format!("{name}.{namespace}.example.test")], "rules": [rule]},
        })
    };
    let to = |service: &str| json!({"backendRefs": [{"name": service, "port": 80}]});
    let nowhere = json!([{"name": "nowhere", "namespace": namespace}]);
    apply_object(
        &client,
        namespace,
        route("other", json!([gateway.parent_ref()]), to("other")),
    )
    .await;
    apply_object(
        &client,
        namespace,
        route("parentless", json!([]), to("parentless")),
    )
    .await;
    apply_object(
        &client,
        namespace,
        route("unserved", nowhere, to("unserved")),
    )
    .await;
    let exact = json!({"matches": [{"path": {"type": "Exact", "value": "/exact"}}], "backendRefs": [{"name": "exact", "port": 80}]});
    apply_object(
        &client,
        namespace,
        route("exact", json!([gateway.parent_ref()]), exact),
    )
    .await;
    let steps = json!([
        {
            "name": "beta",
            "capacity": {"contender": "50%"},
            "traffic": {"contender": 0, "routes": [{"name": "beta", "to": "contender", "match": {"pathPrefix": "/beta"}}]},
            "gate": {"manual": true},
        },
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100, "routes": []}},
    ]);
    let app = |name: &str, route: &str, image: &str| {
        application(
            name,
            json!({
                "template": template_named(name, image),
                "traffic": {"provider": "gatewayAPI", "httpRoutes": [route]},
                "strategy": {"steps": steps},
            }),
        )
        .unwrap()
    };
    for (name, route) in [
        ("missing", "missing"),
        ("unrouted", "other"),
        ("parentless", "parentless"),
        ("unserved", "unserved"),
        ("exact", "exact"),
    ] {
        apply(&apps, &app(name, route, "example.test/web:1"))
            .await
            .unwrap();
    }

    let message =
        condition_naming(&releases, "missing-1", "HTTPRoute missing does not exist").await;
    assert!(
        message.contains("create it, with a backendRef to the application's Service"),
        "{message}"
    );
    let message = condition_naming(&releases, "unrouted-1", "has no rule with a backendRef").await;
    assert!(
        message.contains(&format!("HTTPRoute {namespace}/other has no rule with a backendRef to the application's Service unrouted: add backendRef {{name: unrouted, port: <its port>}}")),
        "{message}"
    );
    let message = condition_naming(&releases, "parentless-1", "has no spec.parentRefs").await;
    assert!(message.contains("attach it to a Gateway"), "{message}");
    let message = condition_naming(&releases, "unserved-1", "to report on it").await;
    assert!(message.contains("nowhere"), "{message}");
    for release in ["missing-1", "unrouted-1", "parentless-1", "unserved-1"] {
        let phase = releases
            .get(release)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
            .phase;
        assert_ne!(phase, Some(ReleasePhase::Complete), "{release}");
    }

    // A path route under a rule whose path is exact: the route cannot be expressed, and the
    // HTTPRoute keeps the split it had.
    wait_for_phase(&releases, "exact-1", ReleasePhase::Complete)
        .await
        .unwrap();
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &http_route_resource());
    let before = routes.get("exact").await.unwrap().data["spec"].clone();
    apply(&apps, &app("exact", "exact", "example.test/web:2"))
        .await
        .unwrap();
    let message = condition_naming(&releases, "exact-2", "matches no request of the rules").await;
    assert!(message.contains("path prefix /beta"), "{message}");
    assert_eq!(
        routes.get("exact").await.unwrap().data["spec"],
        before,
        "nothing shifted"
    );
}

#[tokio::test]
async fn a_gateway_that_never_says_which_generation_it_took_holds_the_step_until_promoted() {
    let env = TestEnv::new("gw-no-generation").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let namespace = env.namespace();
    let parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": namespace, "name": "silent"});
    apply_object(
        &client,
        namespace,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web"},
            "spec": {"parentRefs": [parent], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
        }),
    )
    .await;
    // The test plays a Gateway implementation that accepts routes but never sets
    // observedGeneration (no real one here behaves so: Traefik sets it).
    let condition = |kind: &str| json!({"type": kind, "status": "True", "reason": kind, "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let status = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "status": {"parents": [{
            "parentRef": parent,
            "controllerName": "example.test/silent",
            "conditions": [condition("Accepted"), condition("ResolvedRefs")],
        }]},
    });
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &http_route_resource())
        .patch_status(
            "web",
            &kube::api::PatchParams::apply("silent-gateway").force(),
            &kube::api::Patch::Apply(&status),
        )
        .await
        .unwrap();
    let spec = json!({
        "template": web_template("example.test/web:1", 2),
        "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
        "strategy": {"steps": canary_steps()},
    });
    apply(&apps, &application("web", spec).unwrap())
        .await
        .unwrap();
    wait_until(
        "Release web-1 says the Gateway does not say which generation it took",
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get("web-1").await?;
            let status = release.status.unwrap_or_default();
            assert_ne!(status.phase, Some(ReleasePhase::Complete));
            Ok(status
                .conditions
                .iter()
                .any(|c| c.message.contains("without observedGeneration"))
                .then_some(()))
        },
    )
    .await
    .unwrap();
    patch_release_spec(&releases, "web-1", json!({"targetStep": 5}))
        .await
        .unwrap();
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_grpc_route_is_split_like_an_http_route_with_its_header_route_first() {
    let env = TestEnv::new("gw-grpc").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let namespace = env.namespace();
    let gateway = Gateway::of(env.cluster("c1")).unwrap();
    apply_object(
        &client,
        namespace,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "web-grpc"},
            "spec": {
                "parentRefs": [gateway.parent_ref()],
                "hostnames": [format!("grpc.{namespace}.example.test")],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        }),
    )
    .await;
    let steps = json!([
        {
            "name": "canary",
            "capacity": {"contender": "50%"},
            "traffic": {"contender": 25, "routes": [
                {"name": "canary", "to": "contender", "match": {"header": {"name": "x-canary", "value": "always"}}},
            ]},
            "gate": {"manual": true},
        },
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100, "routes": []}},
    ]);
    let spec = |image: &str| {
        json!({
            "template": web_template(image, 2),
            "traffic": {"provider": "gatewayAPI", "grpcRoutes": ["web-grpc"]},
            "strategy": {"steps": steps},
        })
    };
    // Each step is achieved only once the gateway (Traefik) accepts the GRPCRoute's generation.
    apply(
        &apps,
        &application("web", spec("example.test/web:1")).unwrap(),
    )
    .await
    .unwrap();
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    apply(
        &apps,
        &application("web", spec("example.test/web:2")).unwrap(),
    )
    .await
    .unwrap();
    wait_for_step(&releases, "web-2", 0).await.unwrap();
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &grpc_route_resource());
    let rules = routes.get("web-grpc").await.unwrap().data["spec"]["rules"].clone();
    let backends = |rule: &Value| -> Vec<(String, i64)> {
        rule["backendRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|backend| {
                (
                    backend["name"].as_str().unwrap().to_owned(),
                    backend["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect()
    };
    assert_eq!(rules[0]["name"], "prism-canary", "{rules}");
    assert_eq!(
        rules[0]["matches"][0]["headers"],
        json!([{"type": "Exact", "name": "x-canary", "value": "always"}]),
        "{rules}"
    );
    assert_eq!(backends(&rules[0]), [("web-2".to_owned(), 1)]);
    let mut split = backends(&rules[1]);
    split.sort();
    assert_eq!(split, [("web-1".to_owned(), 75), ("web-2".to_owned(), 25)]);

    patch_release_spec(&releases, "web-2", json!({"targetStep": 1}))
        .await
        .unwrap();
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    let rules = routes.get("web-grpc").await.unwrap().data["spec"]["rules"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(backends(&rules[0]), [("web-2".to_owned(), 100)]);
}
