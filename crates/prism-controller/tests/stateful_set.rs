//! End to end on the sandbox's three clusters: a StatefulSet of 4 replicas, each with a
//! PersistentVolumeClaim, rolled out in place in 3 steps (the highest ordinals move first, the
//! claims stay), an abort at the second step that moves the pods back to the incumbent (and the
//! Application's deletion, which takes the StatefulSet but no claim), a contender superseded at
//! half, and the example. The
//! claims bind to hostPath PersistentVolumes the test makes, of a storage class of its own.

mod common;

use std::collections::BTreeMap;

use common::{
    RunningController, application, apply, patch_release_spec, setup_serving_metrics,
    wait_for_phase, wait_for_step,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release};
use prism_testkit::fleet::TestFleet;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

const REPLICAS: u32 = 4;

/// The test's controller, serving `/metrics` at the address returned, its fleet of the three
/// clusters, and its volumes.
async fn start(
    env: &TestEnv,
) -> anyhow::Result<(
    Api<Application>,
    Api<Release>,
    std::net::SocketAddr,
    Volumes,
    TestFleet,
    RunningController,
)> {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], prism_testkit::free_port()?));
    let (client, apps, releases, controller) = setup_serving_metrics(env, Some(metrics)).await?;
    let fleet = TestFleet::join(env, &client).await?;
    let volumes = Volumes::make(env).await?;
    Ok((apps, releases, metrics, volumes, fleet, controller))
}

/// Application `db`: a StatefulSet of 4 replicas running `image`, each pod with a claim of
/// `storage_class`; a quarter, then a half, each held for a promotion, then everything.
fn spec(image: &str, storage_class: &str) -> Value {
    json!({
        "template": {"manifests": [{
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": REPLICAS,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": image,
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                             "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }]},
        "traffic": {"provider": "none"},
        "strategy": {"steps": [
            {"name": "quarter", "capacity": {"contender": "25%"}, "gate": {"manual": true}},
            {"name": "half", "capacity": {"contender": "50%"}, "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}},
        ]},
    })
}

/// The test's hostPath PersistentVolumes in every cluster, one per replica, of a storage class
/// named after the test's namespace; deleted by [`Volumes::delete`].
struct Volumes {
    storage_class: String,
    clusters: Vec<Client>,
}

impl Volumes {
    async fn make(env: &TestEnv) -> anyhow::Result<Volumes> {
        let storage_class = env.namespace().to_owned();
        let clusters: Vec<Client> = env.clusters().iter().map(|c| c.client()).collect();
        for client in &clusters {
            let volumes = Api::<PersistentVolume>::all(client.clone());
            for ordinal in 0..REPLICAS {
                let volume = serde_json::from_value(json!({
                    "metadata": {"name": format!("{storage_class}-{ordinal}")},
                    "spec": {
                        "capacity": {"storage": "10Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": storage_class,
                        "hostPath": {"path": format!("/tmp/{storage_class}-{ordinal}")}
                    }
                }))?;
                volumes.create(&PostParams::default(), &volume).await?;
            }
        }
        Ok(Volumes {
            storage_class,
            clusters,
        })
    }

    async fn delete(self) -> anyhow::Result<()> {
        for client in self.clusters {
            let volumes = Api::<PersistentVolume>::all(client);
            for ordinal in 0..REPLICAS {
                let name = format!("{}-{ordinal}", self.storage_class);
                volumes.delete(&name, &DeleteParams::background()).await?;
            }
        }
        Ok(())
    }
}

/// Each pod's release in one cluster, by ordinal, once all 4 of `app`'s StatefulSet (named as
/// the application) are Ready and none is being replaced; None while they are not.
async fn settled_releases(
    client: &Client,
    namespace: &str,
    app: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
        .await?;
    let mut by_ordinal = BTreeMap::new();
    for pod in pods.items {
        let ready = pod.metadata.deletion_timestamp.is_none()
            && pod
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
        let name = pod.metadata.name.clone().unwrap_or_default();
        let release = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("prism.dev/release"))
            .cloned();
        if !ready {
            return Ok(None);
        }
        by_ordinal.insert(name, release.unwrap_or_default());
    }
    let names: Vec<String> = (0..REPLICAS).map(|i| format!("{app}-{i}")).collect();
    if by_ordinal.keys().ne(names.iter()) {
        return Ok(None);
    }
    Ok(Some(by_ordinal.into_values().collect()))
}

/// Waits until every cluster runs `expected`, the release of each of `app`'s ordinals from 0 up.
async fn wait_for_pods(env: &TestEnv, app: &str, expected: &[&str]) -> anyhow::Result<()> {
    for cluster in env.clusters() {
        wait_until(
            format!(
                "{}: pods {app}-0..3 run {expected:?}, Ready",
                cluster.name()
            ),
            DEFAULT_TIMEOUT,
            || async {
                let releases = settled_releases(&cluster.client(), env.namespace(), app).await?;
                Ok(releases.filter(|releases| releases == expected).map(|_| ()))
            },
        )
        .await?;
    }
    Ok(())
}

/// The uid of each claim in each cluster, by cluster and name; every claim Bound.
async fn claim_uids(env: &TestEnv) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let mut uids = BTreeMap::new();
    for cluster in env.clusters() {
        let claims = Api::<PersistentVolumeClaim>::namespaced(cluster.client(), env.namespace())
            .list(&ListParams::default())
            .await?;
        for claim in claims.items {
            let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
            anyhow::ensure!(phase == Some("Bound"), "claim not bound: {claim:?}");
            uids.insert(
                (
                    cluster.name().to_owned(),
                    claim.metadata.name.unwrap_or_default(),
                ),
                claim.metadata.uid.unwrap_or_default(),
            );
        }
    }
    Ok(uids)
}

/// The controller's writes to the application clusters (`prism_api_requests_total`: every verb
/// that changes an object, of every resource, in every cluster but through the management
/// cluster's own "local" client), scraped from its `/metrics`.
async fn writes_so_far(metrics: std::net::SocketAddr) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await?
        .text()
        .await?;
    let mut writes = 0;
    for line in text.lines() {
        let Some(labels) = line
            .strip_prefix("prism_api_requests_total{")
            .and_then(|rest| rest.split_once('}'))
        else {
            continue;
        };
        let (labels, value) = labels;
        let is_write = ["verb=\"patch\"", "verb=\"delete\"", "verb=\"create\""]
            .iter()
            .any(|verb| labels.contains(verb));
        let in_application_cluster = !labels.contains("cluster=\"local\"");
        if is_write && in_application_cluster {
            writes += value.trim().parse::<f64>()? as u64;
        }
    }
    Ok(writes)
}

#[tokio::test]
async fn a_stateful_set_rolls_out_in_place_highest_ordinals_first_keeping_its_claims()
-> anyhow::Result<()> {
    let env = TestEnv::new("sts-rollout").await;
    let (apps, releases, metrics, volumes, _fleet, _controller) = start(&env).await?;
    let storage_class = volumes.storage_class.clone();

    apply(&apps, &application("db", spec("db:1", &storage_class))?).await?;
    wait_for_phase(&releases, "db-1", ReleasePhase::Complete).await?;
    wait_for_pods(&env, "db", &["db-1"; 4]).await?;
    let claims = claim_uids(&env).await?;
    assert_eq!(claims.len(), 12, "a claim per pod in each of 3 clusters");

    let mut writes = vec![writes_so_far(metrics).await?];
    apply(&apps, &application("db", spec("db:2", &storage_class))?).await?;
    wait_for_step(&releases, "db-2", 0).await?;
    wait_for_pods(&env, "db", &["db-1", "db-1", "db-1", "db-2"]).await?;
    writes.push(writes_so_far(metrics).await?);

    patch_release_spec(&releases, "db-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "db-2", 1).await?;
    wait_for_pods(&env, "db", &["db-1", "db-1", "db-2", "db-2"]).await?;
    writes.push(writes_so_far(metrics).await?);

    patch_release_spec(&releases, "db-2", json!({"targetStep": 2})).await?;
    wait_for_phase(&releases, "db-2", ReleasePhase::Complete).await?;
    wait_for_pods(&env, "db", &["db-2"; 4]).await?;
    writes.push(writes_so_far(metrics).await?);

    assert_eq!(claim_uids(&env).await?, claims, "every claim kept");
    let per_step: Vec<u64> = writes.windows(2).map(|w| w[1] - w[0]).collect();
    println!("writes to the application clusters per step, 3 clusters together: {per_step:?}");
    volumes.delete().await
}

#[tokio::test]
async fn an_abort_at_the_second_step_moves_the_pods_back_to_the_incumbent() -> anyhow::Result<()> {
    let env = TestEnv::new("sts-abort").await;
    let (apps, releases, _, volumes, _fleet, _controller) = start(&env).await?;
    let storage_class = volumes.storage_class.clone();

    apply(&apps, &application("db", spec("db:1", &storage_class))?).await?;
    wait_for_phase(&releases, "db-1", ReleasePhase::Complete).await?;
    wait_for_pods(&env, "db", &["db-1"; 4]).await?;
    let claims = claim_uids(&env).await?;

    apply(&apps, &application("db", spec("db:2", &storage_class))?).await?;
    patch_release_spec(&releases, "db-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "db-2", 1).await?;
    wait_for_pods(&env, "db", &["db-1", "db-1", "db-2", "db-2"]).await?;

    patch_release_spec(&releases, "db-2", json!({"aborted": true})).await?;
    wait_for_phase(&releases, "db-2", ReleasePhase::Aborted).await?;
    wait_for_pods(&env, "db", &["db-1"; 4]).await?;
    assert_eq!(claim_uids(&env).await?, claims, "every claim kept");

    // The StatefulSet outlives each Release, and goes with its Application; its claims stay.
    apps.delete("db", &DeleteParams::default()).await?;
    for cluster in env.clusters() {
        let stateful_sets = Api::<StatefulSet>::namespaced(cluster.client(), env.namespace());
        wait_until(
            format!("{}: the StatefulSet is gone", cluster.name()),
            // The sweep waits out a grace period before it takes anything for an orphan.
            DEFAULT_TIMEOUT,
            || async { Ok(stateful_sets.get_opt("db").await?.is_none().then_some(())) },
        )
        .await?;
    }
    assert_eq!(claim_uids(&env).await?, claims, "no claim deleted");
    volumes.delete().await
}

/// `examples/stateful-set.yaml` runs as written, but for its claims' storage class (the test's
/// own volumes') and the image of the second version: installed, then its first step.
#[tokio::test]
async fn the_example_runs_to_its_first_step() -> anyhow::Result<()> {
    let env = TestEnv::new("sts-example").await;
    let (apps, releases, _, volumes, _fleet, _controller) = start(&env).await?;
    // Read from this crate's repository: the testkit's `fixtures::example` finds the examples by
    // the directory it was built in, which a target directory shared between checkouts mixes up.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stateful-set.yaml");
    let example: Value = serde_saphyr::from_str(&std::fs::read_to_string(path)?)?;
    let spec = |image: &str| {
        let mut spec = example["spec"].clone();
        let stateful_set = &mut spec["template"]["manifests"][0]["spec"];
        stateful_set["volumeClaimTemplates"][0]["spec"]["storageClassName"] =
            json!(volumes.storage_class);
        stateful_set["template"]["spec"]["containers"][0]["image"] = json!(image);
        spec
    };

    apply(&apps, &application("ledger", spec("ledger:3.1.0"))?).await?;
    wait_for_phase(&releases, "ledger-1", ReleasePhase::Complete).await?;
    wait_for_pods(&env, "ledger", &["ledger-1"; 4]).await?;
    apply(&apps, &application("ledger", spec("ledger:3.2.0"))?).await?;
    wait_for_step(&releases, "ledger-2", 0).await?;
    wait_for_pods(
        &env,
        "ledger",
        &["ledger-1", "ledger-1", "ledger-1", "ledger-2"],
    )
    .await?;
    volumes.delete().await
}

/// A new version while the contender is at half: it takes the highest ordinal, and the
/// superseded contender's other pod, which no partition reaches, goes back to the incumbent.
#[tokio::test]
async fn a_contender_superseded_at_half_gives_its_pods_back_to_the_incumbent() -> anyhow::Result<()>
{
    let env = TestEnv::new("sts-supersede").await;
    let (apps, releases, _, volumes, _fleet, _controller) = start(&env).await?;
    let storage_class = volumes.storage_class.clone();

    apply(&apps, &application("db", spec("db:1", &storage_class))?).await?;
    wait_for_phase(&releases, "db-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("db", spec("db:2", &storage_class))?).await?;
    patch_release_spec(&releases, "db-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "db-2", 1).await?;
    wait_for_pods(&env, "db", &["db-1", "db-1", "db-2", "db-2"]).await?;

    apply(&apps, &application("db", spec("db:3", &storage_class))?).await?;
    wait_for_step(&releases, "db-3", 0).await?;
    wait_for_pods(&env, "db", &["db-1", "db-1", "db-1", "db-3"]).await?;
    volumes.delete().await
}
