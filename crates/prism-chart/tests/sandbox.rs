//! The test chart `web` rendered and applied as is to a cluster of the sandbox: its pods become
//! Ready on the KWOK nodes and the data plane serves them through the cluster's gateway, so the
//! chart is fit for the tests of charts as templates.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Api, Client};
use prism_api::chart::Chart;
use prism_chart::Helm;
use prism_testkit::gateway::{Gateway, Request, wait_route_accepted, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, charts, wait_until};
use serde_json::json;

const MANAGER: &str = "prism-tests";

async fn apply(client: &Client, namespace: &str, object: &serde_json::Value) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let kind = object["kind"].as_str().unwrap();
    let (resource, _) = pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
        .await
        .unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(object))
        .await
        .unwrap_or_else(|error| panic!("applying {kind} {name}: {error}"));
}

#[tokio::test]
async fn web_s_pods_become_ready_and_are_served_through_the_gateway() {
    let env = TestEnv::new("chart-web").await;
    let cluster = env.cluster("c1");
    let client = cluster.client();
    let chart = Chart {
        repository: charts::repository_url().await.to_owned(),
        name: charts::WEB.into(),
        version: "1.0.0".into(),
        values: Some(json!({"replicaCount": 2})),
        ..Chart::default()
    };
    let rendered = Helm::new(charts::helm_path().await)
        .render(&chart, &[], "web", env.namespace())
        .await
        .unwrap();
    for manifest in &rendered.manifests {
        apply(
            &client,
            env.namespace(),
            &serde_json::Value::Object(manifest.object()),
        )
        .await;
    }
    assert!(rendered.manifests.iter().all(|m| m.name() == Some("web")));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), env.namespace());
    wait_until("web's 2 pods are Ready", DEFAULT_TIMEOUT, || async {
        let status = deployments.get("web").await?.status.unwrap_or_default();
        Ok((status.ready_replicas == Some(2)).then_some(()))
    })
    .await
    .unwrap();

    let gateway = Gateway::of(cluster).unwrap();
    let host = format!("web.{}.chart.test", env.namespace());
    let route = gateway.route("web", &host, &[("web", 1)]);
    apply(&client, env.namespace(), &route).await;
    wait_route_accepted(&client, env.namespace(), "web")
        .await
        .unwrap();
    let served = wait_until_served(&gateway, &Request::new(&host), "a pod of web", |served| {
        served.pod.starts_with("web-")
    })
    .await
    .unwrap();
    assert_eq!(served.images, ["registry.example.com/demo/web:1.0.0"]);
}
