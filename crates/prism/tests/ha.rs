//! Two replicas of `prism controller --leader-elect` on the sandbox, each under its own identity
//! (`prism-replica-a`, `prism-replica-b`, told apart in c1's audit log): one acts, the other
//! keeps its caches warm and takes over when the first stops renewing its lease, whether it was
//! killed or frozen. A frozen leader that resumes writes nothing once the new one has written.
//! With two shards, each replica leads one, and a dead replica's shard moves to the other.

mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use prism_api::release::ReleasePhase;
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use process::*;
use serde_json::Value;

/// Short, so that takeovers come soon, yet long enough that a renewal (a third of a lease before
/// its end) lands well before the write fence closes (a sixth before it) on a loaded machine.
const LEASE_SECONDS: u64 = 6;

fn replica(fixture: &Fixture, name: &str) -> ControllerProcess {
    ControllerProcess::replica(
        &fixture.env,
        name,
        &format!("replica-{name}"),
        LEASE_SECONDS,
        1,
    )
}

/// c1's directory in the sandbox: its kubeconfigs and its audit log.
fn sandbox_dir(fixture: &Fixture) -> PathBuf {
    fixture
        .env
        .cluster("c1")
        .kubeconfig()
        .parent()
        .unwrap()
        .to_owned()
}

/// A write of a replica in the test's namespace, as c1's audit log recorded it.
struct Write {
    user: String,
    received: Timestamp,
    what: String,
}

/// The writes of the replicas in `namespace`, their leases aside (renewing or giving up a lease
/// is how a replica learns it lost it), from byte `from` of the audit log on.
fn replica_writes(audit_log: &Path, from: u64, namespace: &str) -> Vec<Write> {
    let text = std::fs::read(audit_log).unwrap();
    let text = String::from_utf8_lossy(&text[from as usize..]).into_owned();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["stage"] == "ResponseComplete")
        .filter(|event| {
            ["create", "update", "patch", "delete", "deletecollection"]
                .contains(&event["verb"].as_str().unwrap_or_default())
        })
        .filter(|event| event["objectRef"]["namespace"] == namespace)
        .filter(|event| event["objectRef"]["resource"] != "leases")
        .filter_map(|event| {
            let user = event["user"]["username"].as_str()?;
            let received = event["requestReceivedTimestamp"].as_str()?.parse().ok()?;
            user.starts_with("prism-replica-").then(|| Write {
                user: user.to_owned(),
                received,
                what: format!(
                    "{} {}/{} {}",
                    event["verb"].as_str().unwrap_or_default(),
                    event["objectRef"]["resource"].as_str().unwrap_or_default(),
                    event["objectRef"]["subresource"]
                        .as_str()
                        .unwrap_or_default(),
                    event["objectRef"]["name"].as_str().unwrap_or_default(),
                ),
            })
        })
        .collect()
}

fn audit_log_size(fixture: &Fixture) -> u64 {
    std::fs::metadata(sandbox_dir(fixture).join("audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Replica a leading, b following, revision 2 of `web` rolling out at its step 1.
async fn leader_and_follower_at_step_1(
    fixture: &Fixture,
) -> (ControllerProcess, ControllerProcess) {
    let a = replica(fixture, "a");
    wait_for_holder(&fixture.env, "replica-a", DEFAULT_TIMEOUT).await;
    let b = replica(fixture, "b");
    deploy_revision_1(fixture).await;
    fixture.apply(&application("web:2", false)).await;
    fixture
        .wait_for_release("web-2", "step 1 under way", |s| s.step == Some(1))
        .await;
    (a, b)
}

#[tokio::test]
async fn a_follower_takes_over_within_the_lease_when_the_leader_is_killed() {
    let fixture = Fixture::new("ha-kill").await;
    let (mut a, b) = leader_and_follower_at_step_1(&fixture).await;

    a.kill();
    let killed = Instant::now();
    // The lease A renewed last ends at most a lease after the kill; B reads it, then takes it.
    wait_for_holder(
        &fixture.env,
        "replica-b",
        Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(3),
    )
    .await;
    eprintln!("replica-b took over {:?} after the kill", killed.elapsed());
    let status = fixture.wait_for_complete("web-2").await;
    assert_eq!(status.phase, Some(ReleasePhase::Complete));
    assert_one_event_per_transition(&fixture).await;
    b.assert_no_failed_reconcile();
}

#[tokio::test]
async fn a_frozen_leader_writes_nothing_once_the_new_leader_has_written() {
    let fixture = Fixture::new("ha-freeze").await;
    let audit_log = sandbox_dir(&fixture).join("audit.log");
    let from = audit_log_size(&fixture);
    let (a, b) = leader_and_follower_at_step_1(&fixture).await;

    a.signal("STOP");
    wait_for_holder(
        &fixture.env,
        "replica-b",
        Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(3),
    )
    .await;
    fixture.wait_for_complete("web-2").await;
    a.signal("CONT");
    // A learns from its watch of the Leases that B holds the lease; by then whatever it had in
    // flight when frozen has met the fence.
    wait_until(
        "replica-a sees it lost the lease",
        DEFAULT_TIMEOUT,
        || async { Ok(a.log().contains("no longer leading shard 0").then_some(())) },
    )
    .await
    .unwrap();
    // And a change after the resume reaches both: only B acts on it.
    fixture.apply(&application("web:3", false)).await;
    fixture.wait_for_complete("web-3").await;

    let writes = replica_writes(&audit_log, from, fixture.env.namespace());
    let first_of_b = writes
        .iter()
        .filter(|w| w.user == "prism-replica-b")
        .map(|w| w.received)
        .min()
        .expect("replica-b wrote");
    let late: Vec<String> = writes
        .iter()
        .filter(|w| w.user == "prism-replica-a" && w.received >= first_of_b)
        .map(|w| format!("{}: {}", w.received, w.what))
        .collect();
    assert!(
        writes.iter().any(|w| w.user == "prism-replica-a"),
        "replica-a led, so it wrote before it was frozen"
    );
    assert!(
        late.is_empty(),
        "replica-a wrote after replica-b's first write at {first_of_b}: {late:#?}"
    );
    b.assert_no_failed_reconcile();
}

/// Application `name`: one step to all of `image`'s 2 pods.
fn one_step(name: &str, image: &str) -> prism_api::Application {
    let mut template = prism_testkit::fixtures::web_template(image, 2);
    for manifest in template["manifests"].as_array_mut().unwrap() {
        manifest["metadata"]["name"] = name.into();
    }
    template["manifests"][0]["spec"]["selector"]["matchLabels"]["app"] = name.into();
    template["manifests"][0]["spec"]["template"]["metadata"]["labels"]["app"] = name.into();
    template["manifests"][1]["spec"]["selector"]["app"] = name.into();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "template": template,
            "strategy": {"steps": [
                {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
            ]},
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn two_shards_spread_over_two_replicas_and_a_dead_ones_shard_moves_to_the_other() {
    let fixture = Fixture::new("ha-shards").await;
    let env = &fixture.env;
    let mut replicas: Vec<ControllerProcess> = ["a", "b"]
        .iter()
        .map(|name| {
            ControllerProcess::replica(env, name, &format!("replica-{name}"), LEASE_SECONDS, 2)
        })
        .collect();
    // A replica leading one shard waits a lease before it takes a second: the other, leading
    // none, takes it first.
    let spread = wait_until("each replica leads a shard", DEFAULT_TIMEOUT, || async {
        let holders = [shard_holder(env, 0).await, shard_holder(env, 1).await];
        Ok(match holders {
            [Some(first), Some(second)] if first != second => Some([first, second]),
            _ => None,
        })
    })
    .await
    .unwrap();
    // Applications of both shards, by the controller's own hash.
    let names: Vec<String> = (0..6).map(|i| format!("app-{i}")).collect();
    let shards: Vec<u32> = names
        .iter()
        .map(|name| prism_controller::leadership::shard_of(env.namespace(), name, 2))
        .collect();
    assert!(shards.contains(&0) && shards.contains(&1), "{shards:?}");
    for revision in [1, 2] {
        if revision == 2 {
            // The leader of shard 1 dies; its shard moves to the other replica.
            let dead = usize::from(spread[1] == "replica-b");
            replicas[dead].kill();
            let survivor = &spread[0];
            wait_until(
                format!("{survivor} leads both shards"),
                DEFAULT_TIMEOUT,
                || async {
                    let holders = [shard_holder(env, 0).await, shard_holder(env, 1).await];
                    Ok(holders
                        .iter()
                        .all(|holder| holder.as_deref() == Some(survivor.as_str()))
                        .then_some(()))
                },
            )
            .await
            .unwrap();
        }
        for name in &names {
            fixture
                .apps
                .patch(
                    name,
                    &kube::api::PatchParams::apply("prism-tests").force(),
                    &kube::api::Patch::Apply(one_step(name, &format!("{name}:{revision}"))),
                )
                .await
                .unwrap();
        }
        for name in &names {
            fixture
                .wait_for_complete(&format!("{name}-{revision}"))
                .await;
        }
    }
}
