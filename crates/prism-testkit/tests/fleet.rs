//! The sandbox fleet behaves like real Kubernetes: workloads become Ready on
//! KWOK nodes, Services get endpoints, CRDs, watches and server-side apply
//! work, in each of the clusters at once.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Instant;

use anyhow::bail;
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, CustomResource, CustomResourceExt, ResourceExt};
use prism_testkit::{DEFAULT_TIMEOUT, TestCluster, TestEnv, wait_until};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[tokio::test]
async fn nodes_are_ready_and_spread_over_two_regions() {
    let env = TestEnv::new("nodes").await;
    let mut regions = BTreeSet::new();
    for cluster in env.clusters() {
        let nodes = Api::<Node>::all(cluster.client())
            .list(&ListParams::default())
            .await
            .unwrap();
        assert_eq!(nodes.items.len(), 3, "nodes of {}", cluster.name());
        let mut zones = BTreeSet::new();
        for node in &nodes {
            let labels = node.labels();
            assert_eq!(
                labels
                    .get("topology.kubernetes.io/region")
                    .map(String::as_str),
                Some(cluster.region()),
                "region of {} in {}",
                node.name_any(),
                cluster.name()
            );
            zones.insert(labels["topology.kubernetes.io/zone"].clone());
            assert!(is_ready(node), "{} is not Ready", node.name_any());
        }
        assert_eq!(zones.len(), 3, "zones in {}: {zones:?}", cluster.name());
        regions.insert(cluster.region().to_owned());
    }
    assert_eq!(regions.len(), 2, "regions: {regions:?}");
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|conditions| {
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test]
async fn deployment_becomes_ready_and_its_service_gets_endpoints_in_every_cluster() {
    let env = TestEnv::new("deployment").await;
    let started = Instant::now();
    for cluster in env.clusters() {
        create_web_app(cluster, env.namespace()).await.unwrap();
    }
    futures::future::try_join_all(
        env.clusters()
            .iter()
            .map(|cluster| wait_for_ready_replicas(cluster, env.namespace(), 3)),
    )
    .await
    .unwrap();
    eprintln!(
        "3-replica Deployment Ready in all {} clusters after {:.1?}",
        env.clusters().len(),
        started.elapsed()
    );

    for cluster in env.clusters() {
        let slices: Api<EndpointSlice> = Api::namespaced(cluster.client(), env.namespace());
        let selector = ListParams::default().labels("kubernetes.io/service-name=web");
        wait_until(
            format!("Service web in {} has 3 ready endpoints", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let ready: usize = slices
                    .list(&selector)
                    .await?
                    .iter()
                    .flat_map(|slice| slice.endpoints.iter().flatten())
                    .filter(|endpoint| {
                        let conditions = endpoint.conditions.as_ref();
                        conditions.and_then(|c| c.ready) == Some(true)
                            && !endpoint.addresses.is_empty()
                    })
                    .count();
                if ready == 3 {
                    Ok(Some(()))
                } else {
                    bail!("{ready} ready endpoints")
                }
            },
        )
        .await
        .unwrap();
    }
}

async fn create_web_app(cluster: &TestCluster, namespace: &str) -> anyhow::Result<()> {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "example.com/web:1" }] }
            }
        }
    }))?;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "app": "web" },
            "ports": [{ "port": 80, "targetPort": 8080 }]
        }
    }))?;
    Api::<Deployment>::namespaced(cluster.client(), namespace)
        .create(&PostParams::default(), &deployment)
        .await?;
    Api::<Service>::namespaced(cluster.client(), namespace)
        .create(&PostParams::default(), &service)
        .await?;
    Ok(())
}

async fn wait_for_ready_replicas(
    cluster: &TestCluster,
    namespace: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), namespace);
    wait_until(
        format!(
            "Deployment web in {} has {replicas} ready replicas",
            cluster.name()
        ),
        DEFAULT_TIMEOUT,
        || async {
            let status = deployments.get("web").await?.status.unwrap_or_default();
            if status.ready_replicas == Some(replicas) {
                Ok(Some(()))
            } else {
                bail!("status: {status:?}")
            }
        },
    )
    .await
}

/// A custom resource for the CRD test.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "testkit.prism.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
struct WidgetStatus {
    phase: String,
}

#[tokio::test]
async fn custom_resource_can_be_created_watched_and_status_patched() {
    let env = TestEnv::new("crd").await;
    for cluster in env.clusters() {
        // The CRD is cluster-wide and stays installed; applying it again is a no-op.
        let crds = Api::<CustomResourceDefinition>::all(cluster.client());
        let crd_name = Widget::crd_name();
        crds.patch(
            crd_name,
            &PatchParams::apply("prism-testkit").force(),
            &Patch::Apply(Widget::crd()),
        )
        .await
        .unwrap();
        wait_until(
            format!("CRD {crd_name} is established in {}", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let crd = crds.get(crd_name).await?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                let established = conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established.then_some(()))
            },
        )
        .await
        .unwrap();

        let widgets: Api<Widget> = Api::namespaced(cluster.client(), env.namespace());
        widgets
            .create(
                &PostParams::default(),
                &Widget::new("gadget", WidgetSpec { size: 3 }),
            )
            .await
            .unwrap();

        let events = watcher(
            widgets.clone(),
            watcher::Config::default().fields("metadata.name=gadget"),
        );
        let mut events = std::pin::pin!(events);
        // The initial listing must show the widget, still without a status.
        let mut listed = Vec::new();
        loop {
            match next_event(&mut events).await {
                watcher::Event::InitApply(widget) => listed.push(widget),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert_eq!(listed.len(), 1, "listed: {listed:?}");
        assert!(listed[0].status.is_none());

        widgets
            .patch_status(
                "gadget",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "phase": "Ready" } })),
            )
            .await
            .unwrap();
        let patched = loop {
            if let watcher::Event::Apply(widget) = next_event(&mut events).await
                && widget.status.as_ref().is_some_and(|s| s.phase == "Ready")
            {
                break widget;
            }
        };
        assert_eq!(patched.spec.size, 3, "in {}", cluster.name());
    }
}

async fn next_event(
    events: &mut Pin<&mut impl Stream<Item = watcher::Result<watcher::Event<Widget>>>>,
) -> watcher::Event<Widget> {
    tokio::time::timeout(DEFAULT_TIMEOUT, events.try_next())
        .await
        .expect("no watch event in time")
        .expect("watch failed")
        .expect("the watch ended")
}

#[tokio::test]
async fn server_side_apply_tracks_field_managers_and_reports_conflicts() {
    let env = TestEnv::new("server-side-apply").await;
    for cluster in env.clusters() {
        let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), env.namespace());
        let settings = |color: &str| {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "settings" },
                "data": { "color": color }
            })
        };

        let applied = config_maps
            .patch(
                "settings",
                &PatchParams::apply("prism-a"),
                &Patch::Apply(settings("blue")),
            )
            .await
            .unwrap();
        let managers: Vec<_> = applied
            .managed_fields()
            .iter()
            .map(|entry| (entry.manager.clone(), entry.operation.clone()))
            .collect();
        assert!(
            managers.contains(&(Some("prism-a".into()), Some("Apply".into()))),
            "managed fields: {managers:?}"
        );

        let conflict = config_maps
            .patch(
                "settings",
                &PatchParams::apply("prism-b"),
                &Patch::Apply(settings("red")),
            )
            .await
            .expect_err("a conflicting apply by another manager must fail");
        match &conflict {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 409, "{status:?}");
                assert_eq!(status.reason, "Conflict", "{status:?}");
                assert!(status.message.contains("prism-a"), "{status:?}");
            }
            other => panic!("expected a 409 Conflict, got {other:?}"),
        }

        let forced = config_maps
            .patch(
                "settings",
                &PatchParams::apply("prism-b").force(),
                &Patch::Apply(settings("red")),
            )
            .await
            .unwrap();
        assert_eq!(forced.data.as_ref().unwrap()["color"], "red");
        let owners: Vec<_> = forced
            .managed_fields()
            .iter()
            .filter(|entry| {
                let fields = entry.fields_v1.as_ref().map(|f| f.0.to_string());
                fields.is_some_and(|f| f.contains("f:color"))
            })
            .map(|entry| entry.manager.clone().unwrap_or_default())
            .collect();
        assert_eq!(owners, ["prism-b"], "owners of data.color");
    }
}
