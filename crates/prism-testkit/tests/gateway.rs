//! The sandbox's data plane: Ready pods answer through every cluster's Gateway API gateway
//! (Traefik), unready ones do not, weights are measured, and a rolling update under load loses
//! no request.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prism_testkit::gateway::{
    Gateway, LoadLoop, Request, Served, http_route_resource, wait_route_accepted, wait_until_served,
};
use prism_testkit::{DEFAULT_TIMEOUT, TestCluster, TestEnv, wait_until};
use serde_json::json;

#[tokio::test]
async fn ready_pods_answer_through_every_clusters_gateway() {
    let env = TestEnv::new("gateway-answers").await;
    let host = format!("{}.example.test", env.namespace());
    for cluster in env.clusters() {
        let client = cluster.client();
        create_deployment(
            &client,
            env.namespace(),
            "web",
            "web-v1",
            "example.test/web:v1",
            2,
        )
        .await;
        create_service(&client, env.namespace(), "web").await;
        let gateway = Gateway::of(cluster).unwrap();
        create_route(&client, env.namespace(), &gateway, &host, &[("web", 1)]).await;
    }
    for cluster in env.clusters() {
        let client = cluster.client();
        let pods = wait_rolled_out(&client, env.namespace(), "web").await;
        wait_route_accepted(&client, env.namespace(), "web")
            .await
            .unwrap();
        let gateway = Gateway::of(cluster).unwrap();
        let request = Request::new(&host).path("/hello?x=1");
        let served = wait_until_served(&gateway, &request, "web-v1", |s| s.release == "web-v1")
            .await
            .unwrap();
        assert_eq!(served.cluster, cluster.name());
        assert_eq!(served.namespace, env.namespace());
        assert_eq!(served.images, ["example.test/web:v1"]);
        assert_eq!(
            (served.host.as_str(), served.path.as_str()),
            (host.as_str(), "/hello?x=1")
        );

        let pods: BTreeSet<String> = pods
            .iter()
            .map(|pod| format!("{}/{}", env.namespace(), pod.name_any()))
            .collect();
        // The first ready endpoint can be served alone for a moment: Traefik applies the next
        // configuration (the second endpoint) up to 2 s after the one before.
        wait_until(
            format!("{} routes to both pods", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let tally = gateway.send(&request, 20).await;
                let served_by: BTreeSet<String> = tally.per_pod.keys().cloned().collect();
                Ok((served_by == pods).then_some(()))
            },
        )
        .await
        .unwrap();

        let tally = gateway.send(&request, 200).await;
        assert!(tally.failures.is_empty(), "{}: {tally}", cluster.name());
        assert_eq!(
            tally.clusters,
            BTreeMap::from([(cluster.name().to_owned(), 200)])
        );
        assert_eq!(
            tally.per_release,
            BTreeMap::from([("web-v1".to_owned(), 200)])
        );
        let served_by: BTreeSet<String> = tally.per_pod.keys().cloned().collect();
        assert_eq!(
            served_by,
            pods,
            "{}: both pods serve: {tally}",
            cluster.name()
        );
    }
}

#[tokio::test]
async fn a_pod_that_is_not_ready_does_not_answer() {
    let env = TestEnv::new("gateway-unready").await;
    let cluster = env.cluster("c1");
    let client = cluster.client();
    let host = format!("{}.example.test", env.namespace());
    let gateway = Gateway::of(cluster).unwrap();
    create_deployment(
        &client,
        env.namespace(),
        "web",
        "web-v1",
        "example.test/web:v1",
        2,
    )
    .await;
    create_service(&client, env.namespace(), "web").await;
    create_route(&client, env.namespace(), &gateway, &host, &[("web", 1)]).await;
    let pods = wait_rolled_out(&client, env.namespace(), "web").await;
    wait_route_accepted(&client, env.namespace(), "web")
        .await
        .unwrap();
    let request = Request::new(&host);
    wait_until_served(&gateway, &request, "web-v1", |s| s.release == "web-v1")
        .await
        .unwrap();
    let (unready, ready) = (&pods[0], &pods[1]);
    assert_eq!(
        probe(&env, cluster, unready).await.unwrap(),
        Probe::Answered(200)
    );

    // What a failing readiness probe does: the kubelet (here KWOK) reports the pod not Ready.
    Api::<Pod>::namespaced(client.clone(), env.namespace())
        .patch_status(
            &unready.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        )
        .await
        .unwrap();

    wait_until(
        format!("{} refuses connections", unready.name_any()),
        DEFAULT_TIMEOUT,
        || async { Ok((probe(&env, cluster, unready).await? == Probe::Refused).then_some(())) },
    )
    .await
    .unwrap();
    assert_eq!(
        probe(&env, cluster, ready).await.unwrap(),
        Probe::Answered(200)
    );
    let tally = gateway.send(&request, 100).await;
    assert!(tally.failures.is_empty(), "{tally}");
    assert_eq!(
        tally.per_pod,
        BTreeMap::from([(format!("{}/{}", env.namespace(), ready.name_any()), 100)])
    );
}

#[tokio::test]
async fn a_weighted_route_splits_requests_by_weight() {
    let env = TestEnv::new("gateway-weights").await;
    let host = format!("{}.example.test", env.namespace());
    for cluster in env.clusters() {
        let client = cluster.client();
        for release in ["blue", "green"] {
            let image = format!("example.test/web:{release}");
            create_deployment(&client, env.namespace(), release, release, &image, 2).await;
            create_service(&client, env.namespace(), release).await;
        }
        let gateway = Gateway::of(cluster).unwrap();
        create_route(
            &client,
            env.namespace(),
            &gateway,
            &host,
            &[("blue", 75), ("green", 25)],
        )
        .await;
    }
    for cluster in env.clusters() {
        let client = cluster.client();
        for release in ["blue", "green"] {
            wait_rolled_out(&client, env.namespace(), release).await;
        }
        wait_route_accepted(&client, env.namespace(), "web")
            .await
            .unwrap();
        let gateway = Gateway::of(cluster).unwrap();
        let request = Request::new(&host);
        // Until Traefik has both Services' endpoints, a backend without any answers 503.
        wait_until(
            format!("{} serves both releases", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let tally = gateway.send(&request, 40).await;
                Ok((tally.failures.is_empty() && tally.per_release.len() == 2).then_some(()))
            },
        )
        .await
        .unwrap();

        let tally = gateway.send(&request, 2000).await;
        assert!(tally.failures.is_empty(), "{}: {tally}", cluster.name());
        for (release, weight) in [("blue", 0.75), ("green", 0.25)] {
            let share = tally.share(release);
            assert!(
                (share - weight).abs() <= 0.03,
                "{}: {release} served {share:.3} of the requests, its weight is {weight}: {tally}",
                cluster.name()
            );
        }
    }
}

#[tokio::test]
async fn a_rolling_update_under_load_fails_no_request() {
    let env = TestEnv::new("gateway-rollout").await;
    let host = format!("{}.example.test", env.namespace());
    let gateways = Gateway::of_each(&env).unwrap();
    for (cluster, gateway) in env.clusters().iter().zip(&gateways) {
        let client = cluster.client();
        create_deployment(
            &client,
            env.namespace(),
            "web",
            "web-v1",
            "example.test/web:v1",
            2,
        )
        .await;
        create_service(&client, env.namespace(), "web").await;
        create_route(&client, env.namespace(), gateway, &host, &[("web", 1)]).await;
    }
    let request = Request::new(&host);
    for (cluster, gateway) in env.clusters().iter().zip(&gateways) {
        wait_rolled_out(&cluster.client(), env.namespace(), "web").await;
        wait_route_accepted(&cluster.client(), env.namespace(), "web")
            .await
            .unwrap();
        wait_until_served(gateway, &request, "web-v1", |s| s.release == "web-v1")
            .await
            .unwrap();
    }

    // 100 requests a second through each of the three gateways.
    let load = LoadLoop::start(gateways.clone(), request.clone(), 100.0);
    wait_until("the load loop runs", DEFAULT_TIMEOUT, || async {
        Ok((load.snapshot().total() >= 300).then_some(()))
    })
    .await
    .unwrap();
    for cluster in env.clusters() {
        let patch = json!({"spec": {"template": {
            "metadata": {"labels": {"prism.dev/release": "web-v2"}},
            "spec": {"containers": [{"name": "web", "image": "example.test/web:v2"}]}
        }}});
        Api::<Deployment>::namespaced(cluster.client(), env.namespace())
            .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }
    for (cluster, gateway) in env.clusters().iter().zip(&gateways) {
        let pods = wait_rolled_out(&cluster.client(), env.namespace(), "web").await;
        assert!(
            pods.iter()
                .all(|pod| pod.labels()["prism.dev/release"] == "web-v2")
        );
        let only_v2 = |s: &Served| s.release == "web-v2";
        wait_until_served(gateway, &request, "web-v2", only_v2)
            .await
            .unwrap();
    }
    // Past the old pods' drain, with the load still on.
    let served_before = load.snapshot().total();
    wait_until(
        "the load loop sends on after the rollout",
        DEFAULT_TIMEOUT,
        || async { Ok((load.snapshot().total() >= served_before + 3 * 800).then_some(())) },
    )
    .await
    .unwrap();
    let report = load.stop().await;

    assert!(report.failures().is_empty(), "failed requests:\n{report}");
    for (cluster, tally) in &report.per_cluster {
        for release in ["web-v1", "web-v2"] {
            assert!(
                tally.per_release.get(release).is_some_and(|&n| n > 0),
                "{cluster}: {tally}"
            );
        }
    }
}

// --- helpers -----------------------------------------------------------------------------

async fn create_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    release: &str,
    image: &str,
    replicas: i32,
) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name, "prism.dev/release": release}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
}

/// A Service on port 80 (unnamed, as Prism's templates write it) for the Deployment's pods.
async fn create_service(client: &Client, namespace: &str, name: &str) {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
}

/// The HTTPRoute `web`: requests for `host` go to the weighted Services.
async fn create_route(
    client: &Client,
    namespace: &str,
    gateway: &Gateway,
    host: &str,
    backends: &[(&str, u32)],
) {
    let resource = http_route_resource();
    let route: DynamicObject =
        serde_json::from_value(gateway.route("web", host, backends)).unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .create(&PostParams::default(), &route)
        .await
        .unwrap();
}

/// Waits until the Deployment's current template runs on all its replicas, Ready, and no
/// other pod is left; returns its pods.
async fn wait_rolled_out(client: &Client, namespace: &str, name: &str) -> Vec<Pod> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    wait_until(
        format!("Deployment {name} has rolled out"),
        DEFAULT_TIMEOUT,
        || async {
            let deployment = deployments.get(name).await?;
            let want = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let status = deployment.status.clone().unwrap_or_default();
            let current = status.observed_generation == deployment.metadata.generation
                && status.replicas == Some(want)
                && status.updated_replicas == Some(want)
                && status.ready_replicas == Some(want);
            if !current {
                bail!("status {status:?}");
            }
            let list = pods
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await?;
            if list.items.len() != want as usize || !list.items.iter().all(pod_ready) {
                bail!("{} pods, not all Ready", list.items.len());
            }
            Ok(Some(list.items))
        },
    )
    .await
    .unwrap()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

#[derive(Debug, PartialEq)]
enum Probe {
    Answered(u16),
    Refused,
}

/// Connects to the pod's own address on port 80 from inside the cluster's network namespace
/// (the only place where pod IPs may be dialled), as Traefik does.
async fn probe(env: &TestEnv, cluster: &TestCluster, pod: &Pod) -> anyhow::Result<Probe> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("the pod has no IP")?;
    let output = tokio::process::Command::new(env.sandbox().script())
        .args(["in-netns", cluster.name(), "curl", "-s", "-o", "/dev/null"])
        .args([
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &format!("http://{ip}:80/"),
        ])
        .output()
        .await?;
    match output.status.code() {
        Some(0) => Ok(Probe::Answered(
            String::from_utf8_lossy(&output.stdout).parse()?,
        )),
        // curl: "Failed to connect to host".
        Some(7) => Ok(Probe::Refused),
        _ => bail!(
            "curl to {ip} in {}'s network namespace: {} {}",
            cluster.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
