//! Chaos: rollouts of three strategies across the sandbox's 3 clusters while requests flow through
//! each cluster's gateway, and the leader of two `prism controller --leader-elect` replicas is
//! killed (SIGKILL) at seeded random moments and started again. Every Release completes, each
//! transition is reported once, no request fails, and nothing is left behind once the
//! Applications go.
//!
//! `scripts/chaos.sh --kills N --seed S` runs this with N kills (`PRISM_CHAOS_KILLS`, default 3,
//! what CI runs) and seed S (`PRISM_CHAOS_SEED`, default 1): the same seed kills at the same
//! moments of the test's clock.

mod process;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use prism_api::Application;
use prism_api::release::ReleasePhase;
use prism_testkit::fleet::TestFleet;
use prism_testkit::gateway::{Gateway, LoadLoop, Request, http_route_resource, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use process::*;
use serde_json::json;

/// Short, so that takeovers come soon, yet long enough that a renewal (a third of a lease before
/// its end) lands well before the write fence closes (a sixth before it) on a loaded machine.
const LEASE_SECONDS: u64 = 6;
/// Requests a second to each cluster's gateway, per routed application.
const LOAD: f64 = 20.0;

/// A seeded generator of the kill moments (SplitMix64: a few lines, the same sequence on every
/// machine).
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The wait before the next kill: 0.5 to 6 s, so that kills land in every part of a step
    /// (converging, paused, advancing) and sometimes before the last takeover settled.
    fn wait(&mut self) -> Duration {
        Duration::from_millis(500 + self.next() % 5500)
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value}: not a number"))
        })
        .unwrap_or(default)
}

/// Three Applications, each rolled out by another strategy, and how many steps each has.
fn applications(revision: u32) -> Vec<(Application, u32)> {
    let pause = json!({"pause": "2s"});
    let canary = json!({
        "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
        "strategy": {"steps": [
            {"name": "quarter", "capacity": {"contender": "25%"}, "traffic": {"contender": 25}, "gate": pause},
            {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": pause},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
        ]},
    });
    let blue_green = json!({
        "traffic": {"provider": "gatewayAPI", "httpRoutes": ["bg"]},
        "strategy": {"steps": [
            {"name": "preview", "capacity": {"contender": "100%"}, "traffic": {"contender": 0}, "gate": pause},
            {"name": "switch", "traffic": {"contender": 100}, "gate": pause},
            {"name": "scale-down", "capacity": {"incumbent": "0%"}},
        ]},
    });
    let workers = json!({
        "traffic": {"provider": "none"},
        "strategy": {"steps": [
            {"name": "one-pod", "capacity": {"contender": 1}, "gate": pause},
            {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}},
        ]},
    });
    [
        ("web", canary, 3),
        ("bg", blue_green, 3),
        ("worker", workers, 2),
    ]
    .into_iter()
    .map(|(name, mut spec, steps)| {
        spec["template"] = template(
            name,
            &format!("example.test/{name}:{revision}"),
            name != "worker",
        );
        let app = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        (app, steps)
    })
    .collect()
}

/// A Deployment `name` of 4 pods, and with `service` a Service `name` in front of it (a headless
/// worker has none).
fn template(name: &str, image: &str, service: bool) -> serde_json::Value {
    let mut manifests = vec![json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })];
    if service {
        manifests.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        }));
    }
    json!({"manifests": manifests})
}

async fn apply_all(fixture: &Fixture, revision: u32) {
    for (app, _) in applications(revision) {
        fixture
            .apps
            .patch(
                &app.name_any(),
                &PatchParams::apply("prism-tests").force(),
                &Patch::Apply(&app),
            )
            .await
            .unwrap();
    }
}

async fn all_complete(fixture: &Fixture, revision: u32) -> bool {
    for (app, _) in applications(revision) {
        let name = format!("{}-{revision}", app.name_any());
        let phase = fixture
            .releases
            .get_opt(&name)
            .await
            .unwrap()
            .and_then(|r| r.status)
            .and_then(|s| s.phase);
        if phase != Some(ReleasePhase::Complete) {
            return false;
        }
    }
    true
}

/// The two replicas, one started again after each kill.
struct Replicas {
    processes: BTreeMap<String, ControllerProcess>,
    starts: u32,
}

impl Replicas {
    fn start(env: &TestEnv) -> Replicas {
        let mut replicas = Replicas {
            processes: BTreeMap::new(),
            starts: 0,
        };
        for name in ["a", "b"] {
            replicas.restart(env, name);
        }
        replicas
    }

    fn restart(&mut self, env: &TestEnv, name: &str) {
        self.starts += 1;
        let label = format!("replica-{name}-{}", self.starts);
        let process = ControllerProcess::replica(env, name, &label, LEASE_SECONDS, 1);
        self.processes.insert(name.to_owned(), process);
    }
}

#[tokio::test]
async fn the_leader_killed_at_random_moments_loses_no_step_no_request_and_no_object() {
    let kills = setting("PRISM_CHAOS_KILLS", 3);
    let mut moments = Moments(setting("PRISM_CHAOS_SEED", 1));
    let fixture = Fixture::of(TestEnv::new("chaos").await).await;
    let env = &fixture.env;
    let mut replicas = Replicas::start(env);
    let client = env.cluster("c1").client();
    let _fleet = TestFleet::join(env, &client).await.unwrap();
    let gateways = Gateway::of_each(env).unwrap();
    let host = |app: &str| format!("{app}.{}.example.test", env.namespace());
    for (cluster, gateway) in env.clusters().iter().zip(&gateways) {
        for app in ["web", "bg"] {
            let route = gateway.route(app, &host(app), &[(app, 1)]);
            Api::<DynamicObject>::namespaced_with(
                cluster.client(),
                env.namespace(),
                &http_route_resource(),
            )
            .patch(
                app,
                &PatchParams::apply("prism-tests"),
                &Patch::Apply(&route),
            )
            .await
            .unwrap();
        }
    }
    apply_all(&fixture, 1).await;
    wait_until("revision 1 complete", DEFAULT_TIMEOUT, || async {
        Ok(all_complete(&fixture, 1).await.then_some(()))
    })
    .await
    .unwrap();
    for app in ["web", "bg"] {
        for gateway in &gateways {
            wait_until_served(
                gateway,
                &Request::new(host(app)),
                &format!("{app}-1"),
                |s| s.release == format!("{app}-1"),
            )
            .await
            .unwrap();
        }
    }
    let loads: Vec<LoadLoop> = ["web", "bg"]
        .iter()
        .map(|app| LoadLoop::start(gateways.clone(), Request::new(host(app)), LOAD))
        .collect();

    let started = Instant::now();
    let mut revision = 1;
    let mut takeovers = Vec::new();
    for kill in 0..kills {
        if all_complete(&fixture, revision).await {
            revision += 1;
            apply_all(&fixture, revision).await;
        }
        tokio::time::sleep(moments.wait()).await;
        let leader = lease_holder(env).await.expect("a replica leads");
        let name = leader.trim_start_matches("replica-").to_owned();
        let follower = if name == "a" {
            "replica-b"
        } else {
            "replica-a"
        };
        replicas.processes.get_mut(&name).unwrap().kill();
        let killed = Instant::now();
        wait_for_holder(
            env,
            follower,
            Duration::from_secs(LEASE_SECONDS) + Duration::from_secs(3),
        )
        .await;
        takeovers.push(killed.elapsed());
        eprintln!(
            "kill {}/{kills} of {leader} at {:?} (revision {revision}): {follower} took over in {:?}",
            kill + 1,
            started.elapsed(),
            killed.elapsed()
        );
        replicas.restart(env, &name);
    }
    wait_until(
        format!("revision {revision} complete"),
        DEFAULT_TIMEOUT,
        || async { Ok(all_complete(&fixture, revision).await.then_some(())) },
    )
    .await
    .unwrap();
    for load in loads {
        let report = load.stop().await;
        assert!(report.total() > 0);
        assert!(report.failures().is_empty(), "{report}");
    }
    takeovers.sort();
    if let (Some(median), Some(max)) = (takeovers.get(takeovers.len() / 2), takeovers.last()) {
        eprintln!(
            "{kills} kills over {revision} revisions in {:?}: takeover median {median:?}, max {max:?}",
            started.elapsed()
        );
    }

    for version in 2..=revision {
        for (app, steps) in applications(version) {
            let release = format!("{}-{version}", app.name_any());
            let expected: BTreeMap<String, i32> = [
                ("StepAchieved", steps as i32),
                ("StepAdvanced", steps as i32 - 1),
                ("Complete", 1),
            ]
            .into_iter()
            .map(|(reason, count)| (reason.to_owned(), count))
            .collect();
            let mut transitions = fixture.transitions(&release).await;
            // The end of a rollout retires the version before it: not a transition of this one.
            transitions.retain(|reason, _| expected.contains_key(reason));
            assert_eq!(
                transitions,
                expected,
                "Events of {release}: {:#?}",
                summary(&fixture.release_events(&release).await)
            );
        }
    }

    for (app, _) in applications(revision) {
        fixture
            .apps
            .delete(&app.name_any(), &DeleteParams::default())
            .await
            .unwrap();
    }
    for cluster in env.clusters() {
        let labelled = ListParams::default().labels(prism_api::labels::APP_LABEL);
        let client = cluster.client();
        wait_until(
            format!("{}: nothing of the applications left", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let left: Vec<String> = [
                    names(
                        &Api::<Deployment>::namespaced(client.clone(), env.namespace()),
                        &labelled,
                    )
                    .await,
                    names(
                        &Api::<Service>::namespaced(client.clone(), env.namespace()),
                        &labelled,
                    )
                    .await,
                    names(
                        &Api::<ConfigMap>::namespaced(client.clone(), env.namespace()),
                        &labelled,
                    )
                    .await,
                ]
                .concat();
                if left.is_empty() {
                    Ok(Some(()))
                } else {
                    Err(anyhow::anyhow!("left: {left:?}"))
                }
            },
        )
        .await
        .unwrap();
    }
    drop(replicas);
}

async fn names<K>(api: &Api<K>, params: &ListParams) -> Vec<String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.list(params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|object| object.name_any())
        .collect()
}
