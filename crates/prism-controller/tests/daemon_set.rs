//! End to end on the sandbox's three clusters (each with three nodes, one per zone): a
//! DaemonSet rolled out zone by zone, a step per zone with a soak, its pods deleted no faster
//! than each step's share of the nodes; an abort that puts the incumbent back on the nodes the
//! contender took; and a DaemonSet's bad input refused with the field named and nothing
//! installed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use common::invalid::{installed, made_for, wait_for_valid};
use common::{
    application, apply, apply_strategy, patch_release_spec, setup, valid_condition, wait_for_phase,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use prism_api::release::ReleasePhase;
use prism_controller::cached::Pod;
use prism_testkit::fleet::TestFleet;
use prism_testkit::{AbortOnDrop, DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

const ZONE: &str = "topology.kubernetes.io/zone";

fn daemon_set_template(image: &str) -> Value {
    json!({"manifests": [{
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": image}]}
            }
        }
    }]})
}

/// A zone a step, each soaked long enough for the test to read the fleet at the step.
fn zone_by_zone(image: &str) -> Value {
    json!({
        "template": daemon_set_template(image),
        "traffic": {"provider": "none"},
        "schedule": {"clusters": 3},
        "strategy": {"steps": [
            {"name": "zone-a", "capacity": {"contender": "33%"}, "gate": {"pause": "20s"}},
            {"name": "zone-b", "capacity": {"contender": "67%"}, "gate": {"pause": "20s"}},
            {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}
        ]},
    })
}

/// Per cluster, the release each zone's node runs (of the pods not being deleted).
async fn releases_by_zone(
    env: &TestEnv,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut found = BTreeMap::new();
    for cluster in env.clusters() {
        let zones: BTreeMap<String, String> = Api::<Node>::all(cluster.client())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|node| {
                let zone = node.labels().get(ZONE).cloned().unwrap_or_default();
                (node.name_any(), zone)
            })
            .collect();
        let pods = Api::<Pod>::namespaced(cluster.client(), env.namespace())
            .list(&ListParams::default().labels("prism.dev/app=agent"))
            .await?;
        let mut by_zone = BTreeMap::new();
        for pod in pods.items {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let zone = node.and_then(|node| zones.get(&node).cloned());
            let release = pod.labels().get("prism.dev/release").cloned();
            if let (Some(zone), Some(release)) = (zone, release) {
                by_zone.insert(zone, release);
            }
        }
        found.insert(cluster.name().to_owned(), by_zone);
    }
    Ok(found)
}

/// Every pod of `agent` deleted in each cluster, by uid, as its watch sees them.
struct Deletions {
    deleted: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    _watches: Vec<AbortOnDrop<()>>,
}

impl Deletions {
    fn watch(env: &TestEnv) -> Deletions {
        let deleted: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let watches = env
            .clusters()
            .iter()
            .map(|cluster| {
                let pods = Api::<Pod>::namespaced(cluster.client(), env.namespace());
                let (name, deleted) = (cluster.name().to_owned(), deleted.clone());
                prism_testkit::spawn_for_test(async move {
                    let config = watcher::Config::default().labels("prism.dev/app=agent");
                    let mut events = watcher(pods, config).boxed();
                    while let Some(event) = events.next().await {
                        let gone = match event {
                            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                                pod.metadata.deletion_timestamp.is_some().then_some(pod)
                            }
                            Ok(watcher::Event::Delete(pod)) => Some(pod),
                            _ => None,
                        };
                        if let Some(uid) = gone.and_then(|pod| pod.metadata.uid) {
                            let mut deleted = deleted.lock().unwrap();
                            deleted.entry(name.clone()).or_default().insert(uid);
                        }
                    }
                })
            })
            .collect();
        Deletions {
            deleted,
            _watches: watches,
        }
    }

    fn count(&self, cluster: &str) -> usize {
        self.deleted
            .lock()
            .unwrap()
            .get(cluster)
            .map_or(0, BTreeSet::len)
    }
}

/// Waits until Release `name` has achieved step `step` (0-based), however long it is soaked.
async fn wait_for_achieved(
    releases: &Api<prism_api::Release>,
    name: &str,
    step: u32,
) -> anyhow::Result<()> {
    wait_until(
        format!("Release {name} achieves step {}", step + 1),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            Ok(release
                .and_then(|r| r.status)
                .filter(|s| s.step == Some(step) && s.achieved_at.is_some())
                .map(|_| ()))
        },
    )
    .await
}

/// The release the application's one DaemonSet holds in a cluster.
async fn held_release(client: &kube::Client, namespace: &str) -> anyhow::Result<Option<String>> {
    let daemon_set = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get("agent")
        .await?;
    Ok(daemon_set.labels().get("prism.dev/release").cloned())
}

#[tokio::test]
async fn a_daemon_set_moves_zone_by_zone_in_every_cluster() -> anyhow::Result<()> {
    let env = TestEnv::new("daemon-set-zones").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;

    apply(&apps, &application("agent", zone_by_zone("agent:1"))?).await?;
    wait_for_phase(&releases, "agent-1", ReleasePhase::Complete).await?;
    let zones = ["a", "b", "c"];
    wait_for_zones(&env, &["agent-1"; 3], &zones).await?;

    let deletions = Deletions::watch(&env);
    apply(&apps, &application("agent", zone_by_zone("agent:2"))?).await?;
    // Each step's share of three nodes is that many zones, taken in zone order.
    let expected = [
        (0, vec!["agent-2", "agent-1", "agent-1"]),
        (1, vec!["agent-2", "agent-2", "agent-1"]),
    ];
    for (step, by_zone) in &expected {
        wait_for_achieved(&releases, "agent-2", *step).await?;
        let found = releases_by_zone(&env).await?;
        for (cluster, found) in &found {
            let found: Vec<&str> = found.values().map(String::as_str).collect();
            assert_eq!(
                &found,
                by_zone,
                "{cluster}'s zones a, b and c at step {}",
                step + 1
            );
            let moved = by_zone.iter().filter(|r| **r == "agent-2").count();
            assert!(
                deletions.count(cluster) <= moved,
                "{cluster}: {} pods deleted for a share of {moved} nodes",
                deletions.count(cluster)
            );
        }
    }
    wait_for_phase(&releases, "agent-2", ReleasePhase::Complete).await?;
    wait_for_zones(&env, &["agent-2"; 3], &zones).await?;
    for cluster in env.clusters() {
        assert_eq!(
            deletions.count(cluster.name()),
            3,
            "{}: one pod deleted per node",
            cluster.name()
        );
        assert_eq!(
            held_release(&cluster.client(), env.namespace())
                .await?
                .as_deref(),
            Some("agent-2"),
            "one DaemonSet, now holding the new version"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_aborted_daemon_set_goes_back_to_the_incumbent_on_the_nodes_it_took()
-> anyhow::Result<()> {
    let env = TestEnv::new("daemon-set-abort").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let spec = |image: &str| {
        json!({
            "template": daemon_set_template(image),
            "traffic": {"provider": "none"},
            "schedule": {"clusters": 3},
            "strategy": {"steps": [
                {"name": "zone-a", "capacity": {"contender": "33%"}, "gate": {"manual": true}},
                {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}
            ]},
        })
    };
    apply(&apps, &application("agent", spec("agent:1"))?).await?;
    wait_for_phase(&releases, "agent-1", ReleasePhase::Complete).await?;
    wait_for_zones(&env, &["agent-1"; 3], &["a", "b", "c"]).await?;

    let deletions = Deletions::watch(&env);
    apply(&apps, &application("agent", spec("agent:2"))?).await?;
    wait_for_achieved(&releases, "agent-2", 0).await?;
    wait_for_zones(&env, &["agent-2", "agent-1", "agent-1"], &["a", "b", "c"]).await?;

    patch_release_spec(&releases, "agent-2", json!({"aborted": true})).await?;
    wait_for_phase(&releases, "agent-2", ReleasePhase::Aborted).await?;
    wait_for_zones(&env, &["agent-1"; 3], &["a", "b", "c"]).await?;
    for cluster in env.clusters() {
        assert_eq!(
            deletions.count(cluster.name()),
            2,
            "{}: the incumbent's pod of zone a, then the contender's",
            cluster.name()
        );
        assert_eq!(
            held_release(&cluster.client(), env.namespace())
                .await?
                .as_deref(),
            Some("agent-1"),
            "the DaemonSet holds the incumbent again"
        );
    }
    Ok(())
}

/// Waits until every cluster's zones run `releases`, in zone order.
async fn wait_for_zones(env: &TestEnv, releases: &[&str], zones: &[&str]) -> anyhow::Result<()> {
    wait_until(
        format!("zones {zones:?} run {releases:?} in every cluster"),
        DEFAULT_TIMEOUT,
        || async {
            let found = releases_by_zone(env).await?;
            let all = found.values().all(|by_zone| {
                by_zone.values().map(String::as_str).collect::<Vec<_>>() == releases
            });
            Ok((all && found.len() == env.clusters().len()).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn a_daemon_set_s_bad_input_names_the_field_and_installs_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new("daemon-set-invalid").await;
    let (client, apps, _releases, _controller) = setup(&env).await?;
    let inline = |traffic: Value, contender: Value| {
        json!({
            "template": daemon_set_template("agent:1"),
            "traffic": traffic,
            "strategy": {"steps": [
                {"name": "all", "capacity": {"contender": contender, "incumbent": "0%"}}
            ]},
        })
    };
    let refused = [
        (
            "with-traffic",
            inline(json!({"provider": "podLabels"}), json!("100%")),
            "spec.traffic.provider",
            "a DaemonSet runs one pod per node and serves no traffic that Prism shifts",
        ),
        (
            "replica-count",
            inline(json!({"provider": "none"}), json!(3)),
            "spec.strategy.steps",
            "a DaemonSet runs one pod per node: give its share of the nodes as a percentage, e.g. \"33%\"",
        ),
    ];
    for (name, spec, field, message) in refused {
        let error = match apply(&apps, &application(name, spec)?).await {
            Ok(_) => bail!("the API server accepted Application {name}"),
            Err(error) => error,
        };
        let Some(kube::Error::Api(status)) = error.downcast_ref::<kube::Error>() else {
            return Err(error);
        };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(
            status.message.contains(&format!("{field}: ")) && status.message.contains(message),
            "{name}: the API server said {:?}",
            status.message
        );
        assert_eq!(apps.get_opt(name).await?.map(|a| a.name_any()), None);
    }

    // A named Strategy is checked by the controller, for the workload of the Application.
    apply_strategy(
        &client,
        env.namespace(),
        "two-pods",
        json!([{"name": "all", "capacity": {"contender": 2}}]),
    )
    .await?;
    let spec = json!({
        "template": daemon_set_template("agent:1"),
        "traffic": {"provider": "none"},
        "strategy": {"name": "two-pods"},
    });
    apply(&apps, &application("named", spec)?).await?;
    let status = wait_for_valid(&apps, "named", "Valid is False", |c| c.status == "False").await?;
    let valid = valid_condition(&status).unwrap();
    assert!(
        valid.message.contains(
            "Strategy/two-pods spec.steps[0].capacity.contender: a DaemonSet runs one pod per node"
        ),
        "the condition says {:?}",
        valid.message
    );
    assert_eq!(made_for(&env, &client, "named").await?, BTreeSet::new());
    assert_eq!(
        installed::<DaemonSet>(&env, "named").await?,
        BTreeSet::new()
    );
    Ok(())
}
