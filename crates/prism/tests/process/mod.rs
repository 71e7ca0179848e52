//! A `prism controller` process on the sandbox, and what the tests that stop, kill or freeze one
//! read: Releases' statuses as they were seen, the Events of their transitions, and the state the
//! controller writes. c1 is the management cluster and the only application cluster (`local`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use prism_api::Application;
use prism_api::release::{ClusterPhase, Release, ReleasePhase, ReleaseStatus};
use prism_testkit::fixtures::web_template;
use prism_testkit::{AbortOnDrop, DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

/// The pause of the step the first test kills the controller in: long enough that the new
/// process is up well before it ends, so that a pause restarted by the new process would show.
pub const HALF_PAUSE: i64 = 15;

/// A scheduling gate that keeps the contender's pods from being scheduled, hence from becoming
/// ready, until the test lifts it: a step held in convergence for as long as the test wants.
pub const HOLD_GATE: &str = "prism.dev/test-hold";

/// A `prism controller -n <namespace>` process, its stdout and stderr in a log file. Killed when
/// dropped; when the test panics, its log is printed.
pub struct ControllerProcess {
    child: Child,
    log: PathBuf,
}

impl ControllerProcess {
    pub fn start(env: &TestEnv, label: &str) -> ControllerProcess {
        ControllerProcess::start_as(env, label, env.cluster("c1").kubeconfig(), &[])
    }

    /// A controller with the identity of `kubeconfig` and these further arguments.
    pub fn start_as(
        env: &TestEnv,
        label: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> ControllerProcess {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("restart");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{}-{label}.log", env.namespace()));
        let file = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["controller", "-n", env.namespace()])
            .args(["--cluster-selector", &env.cluster_selector()])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            // Debug for the controller's crate: each reconcile says when it is done.
            .env("RUST_LOG", "info,prism_controller=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        ControllerProcess { child, log }
    }

    /// A replica of a highly available controller, `prism-replica-<name>` in c1's audit log
    /// (the sandbox's kubeconfig `replica-<name>.kubeconfig`), its Leases in the test's
    /// namespace; `label` names its log.
    pub fn replica(
        env: &TestEnv,
        name: &str,
        label: &str,
        lease_seconds: u64,
        shards: u32,
    ) -> ControllerProcess {
        let identity = format!("replica-{name}");
        let kubeconfig = env
            .cluster("c1")
            .kubeconfig()
            .with_file_name(format!("{identity}.kubeconfig"));
        let lease = lease_seconds.to_string();
        let shards = shards.to_string();
        ControllerProcess::start_as(
            env,
            label,
            &kubeconfig,
            &[
                "--leader-elect",
                "--identity",
                &identity,
                "--lease-namespace",
                env.namespace(),
                "--lease-duration",
                &lease,
                "--shards",
                &shards,
            ],
        )
    }

    /// Sends the process `signal` (STOP, CONT), as `kill -s` names it.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// SIGKILL: no shutdown of any kind, as when a node dies.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A restart is routine: the process ran without a failed reconcile (one that decided on
    /// caches that had not listed yet would, say, make Release web-1 again).
    pub fn assert_no_failed_reconcile(&self) {
        let failures: Vec<String> = self
            .log()
            .lines()
            .filter(|line| line.contains("reconcile failed"))
            .map(str::to_owned)
            .collect();
        assert_eq!(failures, Vec::<String>::new(), "in {}", self.log.display());
    }

    /// Whether the process has finished a reconcile of Application `web`.
    pub fn reconciled(&self) -> bool {
        self.log()
            .lines()
            .any(|line| line.contains("reconciled") && line.contains("web"))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} ----\n{}---- end of {} ----",
                self.log.display(),
                self.log(),
                self.log.display()
            );
        }
    }
}

pub fn steps() -> Value {
    json!([
        {"name": "quarter", "capacity": {"contender": "25%"}, "traffic": {"contender": 25}, "gate": {"pause": "4s"}},
        {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"pause": format!("{HALF_PAUSE}s")}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
    ])
}

/// Application `web` with 4 replicas of `image`; with `held`, its pods carry [`HOLD_GATE`].
pub fn application(image: &str, held: bool) -> Application {
    let mut template = web_template(image, 4);
    if held {
        template["manifests"][0]["spec"]["template"]["spec"]["schedulingGates"] =
            json!([{"name": HOLD_GATE}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {"template": template, "strategy": {"steps": steps()}},
    }))
    .unwrap()
}

/// The holder of the lease of the Applications' first shard, if any.
pub async fn lease_holder(env: &TestEnv) -> Option<String> {
    shard_holder(env, 0).await
}

/// The holder of the lease of a shard of the Applications, if any.
pub async fn shard_holder(env: &TestEnv, shard: u32) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.cluster("c1").client(), env.namespace());
    leases
        .get_opt(&format!("prism-shard-{shard}"))
        .await
        .unwrap()
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
}

/// Waits until `identity` holds the lease of the first shard.
pub async fn wait_for_holder(env: &TestEnv, identity: &str, within: Duration) {
    wait_until(format!("{identity} holds the lease"), within, || async {
        Ok((lease_holder(env).await.as_deref() == Some(identity)).then_some(()))
    })
    .await
    .unwrap();
}

/// What one test works with: the management cluster's APIs in the test's namespace.
pub struct Fixture {
    pub env: TestEnv,
    pub apps: Api<Application>,
    pub releases: Api<Release>,
    pub deployments: Api<Deployment>,
    pub services: Api<Service>,
    pub pods: Api<Pod>,
    pub events: Api<Event>,
}

impl Fixture {
    pub async fn new(name: &str) -> Fixture {
        Fixture::of(TestEnv::new(name).await).await
    }

    /// The fixture of a test's environment, Prism's CRDs installed.
    pub async fn of(env: TestEnv) -> Fixture {
        let client = env.cluster("c1").client();
        prism_testkit::install_crds(&client, prism_api::crds())
            .await
            .unwrap();
        let ns = env.namespace().to_owned();
        Fixture {
            apps: Api::namespaced(client.clone(), &ns),
            releases: Api::namespaced(client.clone(), &ns),
            deployments: Api::namespaced(client.clone(), &ns),
            services: Api::namespaced(client.clone(), &ns),
            pods: Api::namespaced(client.clone(), &ns),
            events: Api::namespaced(client.clone(), &ns),
            env,
        }
    }

    pub async fn apply(&self, app: &Application) {
        self.apps
            .patch(
                "web",
                &PatchParams::apply("prism-tests").force(),
                &Patch::Apply(app),
            )
            .await
            .unwrap();
    }

    /// Waits until Release `name` has a status that passes `check`, and returns it.
    pub async fn wait_for_release(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ReleaseStatus) -> bool,
    ) -> ReleaseStatus {
        wait_until(
            format!("Release {name}: {what}"),
            DEFAULT_TIMEOUT,
            || async {
                let status = self.releases.get_opt(name).await?.and_then(|r| r.status);
                Ok(status.filter(|status| check(status)))
            },
        )
        .await
        .unwrap()
    }

    pub async fn wait_for_complete(&self, name: &str) -> ReleaseStatus {
        self.wait_for_release(name, "Complete", |s| {
            s.phase == Some(ReleasePhase::Complete)
        })
        .await
    }

    /// The Events regarding Release `release`, as the controller's Recorder writes them.
    pub async fn release_events(&self, release: &str) -> Vec<Event> {
        self.events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|event| {
                event.regarding.as_ref().is_some_and(|regarding| {
                    regarding.kind.as_deref() == Some("Release")
                        && regarding.name.as_deref() == Some(release)
                })
            })
            .collect()
    }

    /// How many times each reason was reported on Release `release`: a Recorder reports a
    /// repeat as one Event whose series counts it.
    /// How often each transition of `release` was reported. One Event lists the transitions one
    /// decision made, in order (`step 1/3 achieved; from step 1/3 to step 2/3`).
    pub async fn transitions(&self, release: &str) -> BTreeMap<String, i32> {
        let mut counts = BTreeMap::new();
        for event in self.release_events(release).await {
            let note = event.note.clone().unwrap_or_default();
            for transition in note.split("; ") {
                let kind = if transition.starts_with("from step ") {
                    "StepAdvanced"
                } else if transition.starts_with("step ") && transition.ends_with(" achieved") {
                    "StepAchieved"
                } else if transition == "rolled out to every cluster" {
                    "Complete"
                } else {
                    event.reason.as_deref().unwrap_or_default()
                };
                *counts.entry(kind.to_owned()).or_default() += occurrences(&event);
            }
        }
        counts
    }

    /// What the test compares while no controller runs: the Releases (whole, resourceVersion
    /// included), each Deployment's replicas and ready replicas, the Service's annotations and
    /// selector, and each pod's labels.
    pub async fn cluster_state(&self) -> Value {
        let list = ListParams::default();
        let releases: BTreeMap<String, Value> = self
            .releases
            .list(&list)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|r| {
                let value = json!({"resourceVersion": r.resource_version(), "status": r.status});
                (r.name_any(), value)
            })
            .collect();
        let deployments: BTreeMap<String, Value> = self
            .deployments
            .list(&list)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| {
                let replicas = d.spec.as_ref().and_then(|s| s.replicas);
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas);
                (d.name_any(), json!({"replicas": replicas, "ready": ready}))
            })
            .collect();
        let service = self.services.get("web").await.unwrap();
        let pods: BTreeMap<String, Value> = self
            .pods
            .list(&list)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| (p.name_any(), json!(p.labels())))
            .collect();
        json!({
            "releases": releases,
            "deployments": deployments,
            "service": {
                "annotations": service.annotations(),
                "selector": service.spec.and_then(|s| s.selector),
            },
            "pods": pods,
        })
    }

    /// Asserts that nothing the controller writes changes while none runs.
    pub async fn assert_frozen(&self) -> Value {
        let before = self.cluster_state().await;
        // Not a wait for something to happen but the opposite: the time given to anything that
        // would change without a controller (a requeue, a pause ending) to show up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = self.cluster_state().await;
        assert_eq!(before, after, "the cluster changed while no controller ran");
        after
    }
}

/// One line per Event: when, why, how many times, what.
pub fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            format!(
                "{} {} x{} {:?} (last {})",
                event
                    .event_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                event.reason.as_deref().unwrap_or_default(),
                occurrences(event),
                event.note.as_deref().unwrap_or_default(),
                event
                    .series
                    .as_ref()
                    .map(|series| series.last_observed_time.0.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// How many occurrences one Event stands for.
pub fn occurrences(event: &Event) -> i32 {
    event.series.as_ref().map_or(1, |series| series.count)
}

/// Every status of Release `name` the API server shows, as it shows them, with the time each was
/// seen; recorded until dropped.
pub struct StatusLog {
    seen: Arc<Mutex<Vec<(Timestamp, ReleaseStatus)>>>,
    _task: AbortOnDrop<()>,
}

impl StatusLog {
    pub fn start(releases: &Api<Release>, name: &str) -> StatusLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(releases.clone(), config).applied_objects();
        let record = seen.clone();
        let task = prism_testkit::spawn_for_test(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(release) = stream.next().await {
                if let Ok(Release {
                    status: Some(status),
                    ..
                }) = release
                {
                    let mut seen = record.lock().unwrap();
                    // A relist shows the last status again.
                    if seen.last().is_none_or(|(_, last)| *last != status) {
                        seen.push((Timestamp::now(), status));
                    }
                }
            }
        });
        StatusLog { seen, _task: task }
    }

    pub fn statuses(&self) -> Vec<(Timestamp, ReleaseStatus)> {
        self.seen.lock().unwrap().clone()
    }
}

/// The invariants of any rollout of Release `web-2` through [`steps`], killed or not: its cluster
/// is never reported unreachable; its step never goes back; each step is achieved once (one
/// achievedAt per step); it advances past a paused step no earlier than the pause after that
/// achievedAt.
pub fn assert_rollout_history(statuses: &[(Timestamp, ReleaseStatus)]) {
    let summary: Vec<String> = statuses
        .iter()
        .map(|(seen, s)| {
            format!(
                "{seen}: step {:?} achievedAt {:?} {:?} clusters {:?}",
                s.step,
                s.achieved_at.as_ref().map(|t| t.0),
                s.phase,
                s.clusters
                    .iter()
                    .map(|c| (c.phase, c.replicas, c.ready_replicas, c.weight))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    // The cluster never went away: a status that says so was decided on caches that had not
    // listed yet.
    assert!(
        statuses
            .iter()
            .flat_map(|(_, s)| &s.clusters)
            .all(|c| c.phase != ClusterPhase::Unreachable),
        "cluster local was reported unreachable: {summary:#?}"
    );
    let steps: Vec<u32> = statuses.iter().filter_map(|(_, s)| s.step).collect();
    assert!(steps.is_sorted(), "the step went back: {summary:#?}");
    let pauses = [4, HALF_PAUSE];
    for (step, pause) in pauses.into_iter().enumerate() {
        let step = step as u32;
        let mut achieved: Vec<Timestamp> = statuses
            .iter()
            .filter(|(_, s)| s.step == Some(step) && s.phase != Some(ReleasePhase::Complete))
            .filter_map(|(_, s)| s.achieved_at.as_ref().map(|t| t.0))
            .collect();
        achieved.dedup();
        assert_eq!(
            achieved.len(),
            1,
            "step {step} should be achieved exactly once: {summary:#?}"
        );
        let next = statuses
            .iter()
            .find(|(_, s)| s.step.is_some_and(|s| s > step))
            .map(|(seen, _)| *seen)
            .expect("the rollout went past the step");
        assert!(
            next >= achieved[0] + SignedDuration::from_secs(pause),
            "step {step} was left at {next}, before its {pause}s pause from {}: {summary:#?}",
            achieved[0]
        );
    }
}

/// Asserts that Release `web-2` reported each transition exactly once: 3 steps achieved, 2 steps
/// advanced, complete; nothing else but the rollout's normal Events.
pub async fn assert_one_event_per_transition(fixture: &Fixture) {
    // The Events of a decision follow its status: Complete is the last of them.
    wait_until("web-2 reports Complete", DEFAULT_TIMEOUT, || async {
        Ok(fixture
            .transitions("web-2")
            .await
            .contains_key("Complete")
            .then_some(()))
    })
    .await
    .unwrap();
    let reasons = fixture.transitions("web-2").await;
    let expected: BTreeMap<String, i32> =
        [("StepAchieved", 3), ("StepAdvanced", 2), ("Complete", 1)]
            .into_iter()
            .map(|(reason, count)| (reason.to_owned(), count))
            .collect();
    assert_eq!(
        reasons,
        expected,
        "Events of web-2: {:#?}",
        summary(&fixture.release_events("web-2").await)
    );
}

/// Revision 1 runs complete; returns once it does.
pub async fn deploy_revision_1(fixture: &Fixture) {
    fixture.apply(&application("web:1", false)).await;
    fixture.wait_for_complete("web-1").await;
}
