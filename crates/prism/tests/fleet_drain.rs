//! End-to-end: `prism cluster drain` moves every application off a cluster of a three-cluster
//! fleet with a no-op rollout, no application ever has less ready capacity than it had, and
//! nothing of them is left on the drained cluster (no Service routing to nothing) while the
//! other clusters still serve them.

mod run;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Cluster, RolloutBlock};
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use run::{prism, text, with_controller};
use serde_json::json;

const APPS: [&str; 2] = ["web", "api"];
const REPLICAS: u32 = 2;
const CLUSTERS_PER_APP: u32 = 2;

/// Each application's ready pods, summed over every version in every cluster; None when a
/// cluster does not answer, since leaving it out would count its pods as lost. The clusters are
/// listed at once: listed one after the other, capacity moving from a cluster listed late to one
/// listed early during a slow pass would be counted in neither.
async fn ready_by_app(clients: &[Client], namespace: &str) -> Option<BTreeMap<String, u32>> {
    let lists = futures::future::join_all(clients.iter().map(|client| async move {
        Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().labels("prism.dev/app"))
            .await
    }))
    .await;
    let mut ready = BTreeMap::new();
    for list in lists {
        for deployment in list.ok()? {
            let app = deployment.metadata.labels.unwrap_or_default()["prism.dev/app"].clone();
            let count = deployment
                .status
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            *ready.entry(app).or_default() += count as u32;
        }
    }
    Some(ready)
}

#[tokio::test]
async fn drain_moves_every_application_off_a_cluster_without_losing_ready_capacity() {
    let env = TestEnv::new("fleet-drain").await;
    let client = env.cluster("c1").client();
    let (apps, releases, _controller) = with_controller(&env).await;
    let _fleet = TestFleet::join(&env, &client).await.unwrap();
    for name in APPS {
        // Each application its own Service: two of one name in a namespace would be one.
        let mut template = web_template(&format!("{name}:1"), REPLICAS);
        template["manifests"][1]["metadata"]["name"] = json!(name);
        let app: Application = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "template": template,
                "strategy": {"steps": [
                    {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
                    {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
                     "traffic": {"contender": 100}}
                ]},
                "schedule": {"clusters": CLUSTERS_PER_APP},
            },
        }))
        .unwrap();
        apps.patch(
            name,
            &PatchParams::apply("prism-tests"),
            &Patch::Apply(&app),
        )
        .await
        .unwrap();
    }
    let mut drained = None;
    let mut schedules = BTreeMap::new();
    for name in APPS {
        let release = format!("{name}-1");
        let first = wait_until(
            format!("{release} is Complete"),
            DEFAULT_TIMEOUT,
            || async {
                let release = releases.get_opt(&release).await?;
                Ok(release.filter(|r| {
                    r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete)
                }))
            },
        )
        .await
        .unwrap();
        drained.get_or_insert_with(|| first.spec.clusters[0].name.clone());
        let clusters: Vec<String> = first.spec.clusters.iter().map(|c| c.name.clone()).collect();
        schedules.insert(name, clusters);
    }
    let drained = drained.unwrap();
    let clients: Vec<Client> = env.clusters().iter().map(|c| c.client()).collect();
    let full = REPLICAS * CLUSTERS_PER_APP;
    let before = wait_until(
        "every cluster lists the ready pods",
        DEFAULT_TIMEOUT,
        || async { Ok(ready_by_app(&clients, env.namespace()).await) },
    )
    .await
    .unwrap();
    for name in APPS {
        assert_eq!(before.get(name), Some(&full), "{before:?}");
    }

    // Sample every application's ready capacity for as long as the drain runs.
    let lowest: Arc<Mutex<BTreeMap<String, u32>>> = Arc::new(Mutex::new(before.clone()));
    let sampler = {
        let lowest = lowest.clone();
        let clients = clients.clone();
        let namespace = env.namespace().to_owned();
        prism_testkit::spawn_for_test(async move {
            loop {
                if let Some(now) = ready_by_app(&clients, &namespace).await {
                    let mut lowest = lowest.lock().unwrap();
                    for name in APPS {
                        let ready = now.get(name).copied().unwrap_or(0);
                        let entry = lowest.entry(name.to_owned()).or_insert(ready);
                        *entry = (*entry).min(ready);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let output = prism(&env, &["cluster", "drain", &drained, "--timeout", "3m"]).await;
    drop(sampler);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );

    let lowest = lowest.lock().unwrap().clone();
    for name in APPS {
        assert!(
            lowest[name] >= full,
            "{name} fell to {} ready pods during the drain (it runs {full})",
            lowest[name]
        );
        let second = releases.get_opt(&format!("{name}-2")).await.unwrap();
        if !schedules[name].contains(&drained) {
            assert!(
                second.is_none(),
                "{name} did not run on {drained}: nothing to move"
            );
            continue;
        }
        let second = second.expect("a Release on a new schedule");
        let clusters: Vec<&str> = second
            .spec
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            !clusters.contains(&drained.as_str()),
            "{name}-2 on {clusters:?}"
        );
        assert_eq!(clusters.len(), CLUSTERS_PER_APP as usize);
        assert_eq!(
            second.spec.template,
            releases
                .get(&format!("{name}-1"))
                .await
                .unwrap()
                .spec
                .template,
            "a no-op rollout: the same version"
        );
    }
    let sandbox_cluster = |cluster: &str| {
        let name = cluster
            .strip_prefix(&format!("{}-", env.namespace()))
            .unwrap();
        env.cluster(name).client()
    };
    let on_drained = sandbox_cluster(&drained);
    let every_app = ListParams::default().labels("prism.dev/app");
    let left = Api::<Deployment>::namespaced(on_drained.clone(), env.namespace())
        .list(&every_app)
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{} still runs something", drained);
    let services: Vec<String> = Api::<Service>::namespaced(on_drained.clone(), env.namespace())
        .list(&every_app)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|service| service.metadata.name)
        .collect();
    assert!(
        services.is_empty(),
        "the drain said {drained} is empty, but it still holds the Services {services:?}"
    );
    let pods = Api::<Pod>::namespaced(on_drained, env.namespace());
    wait_until(
        format!("the pods on {drained} are gone"),
        DEFAULT_TIMEOUT,
        || async { Ok(pods.list(&every_app).await?.items.is_empty().then_some(())) },
    )
    .await
    .unwrap();
    // The other clusters still serve each application: its Service, and ready pods it selects.
    for name in APPS {
        let newest = releases
            .list(&ListParams::default().labels(&format!("prism.dev/app={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .max_by_key(|release| release.spec.revision)
            .unwrap();
        for cluster in &newest.spec.clusters {
            let client = sandbox_cluster(&cluster.name);
            let service = Api::<Service>::namespaced(client.clone(), env.namespace())
                .get_opt(name)
                .await
                .unwrap();
            assert!(
                service.is_some(),
                "{name} has no Service on {}",
                cluster.name
            );
            let serving = Api::<Pod>::namespaced(client, env.namespace())
                .list(
                    &ListParams::default()
                        .labels(&format!("prism.dev/app={name},prism.dev/traffic=enabled")),
                )
                .await
                .unwrap();
            assert!(
                !serving.items.is_empty(),
                "no pod of {name} on {} receives its traffic",
                cluster.name
            );
        }
    }
    let cordoned = Api::<Cluster>::all(client.clone())
        .get(&drained)
        .await
        .unwrap();
    assert!(
        cordoned.spec.unschedulable,
        "a drained cluster stays cordoned"
    );
}

#[tokio::test]
async fn a_drain_that_a_block_would_hold_is_refused_and_changes_nothing() {
    let env = TestEnv::new("drain-blocked").await;
    let client = env.cluster("c1").client();
    let (apps, releases, _controller) = with_controller(&env).await;
    let _fleet = TestFleet::join(&env, &client).await.unwrap();
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "template": web_template("web:1", 1),
            "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"},
                                    "traffic": {"contender": 100}}]},
            "schedule": {"clusters": 1},
        },
    }))
    .unwrap();
    apps.patch(
        "web",
        &PatchParams::apply("prism-tests"),
        &Patch::Apply(&app),
    )
    .await
    .unwrap();
    let first = wait_until("web-1 is Complete", DEFAULT_TIMEOUT, || async {
        let release = releases.get_opt("web-1").await?;
        Ok(release
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete)))
    })
    .await
    .unwrap();
    let drained = first.spec.clusters[0].name.clone();
    let block: RolloutBlock = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "RolloutBlock",
        "metadata": {"name": "freeze"},
        "spec": {"message": "release freeze until Monday"},
    }))
    .unwrap();
    Api::<RolloutBlock>::namespaced(client.clone(), env.namespace())
        .patch(
            "freeze",
            &PatchParams::apply("prism-tests"),
            &Patch::Apply(&block),
        )
        .await
        .unwrap();

    // The new Release that would move web is what the block stops: the drain would wait for it.
    let output = prism(&env, &["cluster", "drain", &drained, "--timeout", "30s"]).await;
    let said = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "stdout: {}\nstderr: {said}",
        text(&output.stdout)
    );
    let namespace = env.namespace();
    assert!(
        said.contains(&format!(
            "{namespace}/web: RolloutBlock {namespace}/freeze: release freeze until Monday"
        )),
        "{said}"
    );
    let cluster = Api::<Cluster>::all(client).get(&drained).await.unwrap();
    assert!(
        !cluster.spec.unschedulable,
        "nothing was changed: not cordoned"
    );
    let annotations = apps
        .get("web")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("prism.dev/reschedule"),
        "nothing was changed: {annotations:?}"
    );
}
