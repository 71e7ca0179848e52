//! `prism controller` killed (SIGKILL) and started again in the middle of a rollout, on the
//! sandbox (c1 is the management cluster and the only application cluster): everything the
//! controller knows is in the Release's status, so the new process resumes where the old one
//! stopped, without repeating or skipping a step, and a pause counts from the step's original
//! achievement.

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
const HALF_PAUSE: i64 = 15;

/// A scheduling gate that keeps the contender's pods from being scheduled, hence from becoming
/// ready, until the test lifts it: a step held in convergence for as long as the test wants.
const HOLD_GATE: &str = "prism.dev/test-hold";

/// A `prism controller -n <namespace>` process, its stdout and stderr in a log file. Killed when
/// dropped; when the test panics, its log is printed.
struct ControllerProcess {
    child: Child,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(env: &TestEnv, label: &str) -> ControllerProcess {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("restart");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{}-{label}.log", env.namespace()));
        let file = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["controller", "-n", env.namespace()])
            .args(["--cluster-selector", &env.cluster_selector()])
            .env("KUBECONFIG", env.cluster("c1").kubeconfig())
            // Debug for the controller's crate: each reconcile says when it is done.
            .env("RUST_LOG", "info,prism_controller=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        ControllerProcess { child, log }
    }

    /// SIGKILL: no shutdown of any kind, as when a node dies.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A restart is routine: the process ran without a failed reconcile (one that decided on
    /// caches that had not listed yet would, say, make Release web-1 again).
    fn assert_no_failed_reconcile(&self) {
        let failures: Vec<String> = self
            .log()
            .lines()
            .filter(|line| line.contains("reconcile failed"))
            .map(str::to_owned)
            .collect();
        assert_eq!(failures, Vec::<String>::new(), "in {}", self.log.display());
    }

    /// Whether the process has finished a reconcile of Application `web`.
    fn reconciled(&self) -> bool {
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

fn steps() -> Value {
    json!([
        {"name": "quarter", "capacity": {"contender": "25%"}, "traffic": {"contender": 25}, "gate": {"pause": "4s"}},
        {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"pause": format!("{HALF_PAUSE}s")}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
    ])
}

/// Application `web` with 4 replicas of `image`; with `held`, its pods carry [`HOLD_GATE`].
fn application(image: &str, held: bool) -> Application {
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

/// What one test works with: the management cluster's APIs in the test's namespace.
struct Fixture {
    env: TestEnv,
    apps: Api<Application>,
    releases: Api<Release>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    pods: Api<Pod>,
    events: Api<Event>,
}

impl Fixture {
    async fn new(name: &str) -> Fixture {
        let env = TestEnv::new(name).await;
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

    async fn apply(&self, app: &Application) {
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
    async fn wait_for_release(
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

    async fn wait_for_complete(&self, name: &str) -> ReleaseStatus {
        self.wait_for_release(name, "Complete", |s| {
            s.phase == Some(ReleasePhase::Complete)
        })
        .await
    }

    /// The Events regarding Release `release`, as the controller's Recorder writes them.
    async fn release_events(&self, release: &str) -> Vec<Event> {
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
    async fn transitions(&self, release: &str) -> BTreeMap<String, i32> {
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
    async fn cluster_state(&self) -> Value {
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
    async fn assert_frozen(&self) -> Value {
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
fn summary(events: &[Event]) -> Vec<String> {
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
fn occurrences(event: &Event) -> i32 {
    event.series.as_ref().map_or(1, |series| series.count)
}

/// Every status of Release `name` the API server shows, as it shows them, with the time each was
/// seen; recorded until dropped.
struct StatusLog {
    seen: Arc<Mutex<Vec<(Timestamp, ReleaseStatus)>>>,
    _task: AbortOnDrop<()>,
}

impl StatusLog {
    fn start(releases: &Api<Release>, name: &str) -> StatusLog {
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

    fn statuses(&self) -> Vec<(Timestamp, ReleaseStatus)> {
        self.seen.lock().unwrap().clone()
    }
}

/// The invariants of any rollout of Release `web-2` through [`steps`], killed or not: its cluster
/// is never reported unreachable; its step never goes back; each step is achieved once (one
/// achievedAt per step); it advances past a paused step no earlier than the pause after that
/// achievedAt.
fn assert_rollout_history(statuses: &[(Timestamp, ReleaseStatus)]) {
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
async fn assert_one_event_per_transition(fixture: &Fixture) {
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
async fn deploy_revision_1(fixture: &Fixture) {
    fixture.apply(&application("web:1", false)).await;
    fixture.wait_for_complete("web-1").await;
}

#[tokio::test]
async fn a_controller_killed_during_a_pause_resumes_the_same_pause() {
    let fixture = Fixture::new("restart-pause").await;
    let mut first = ControllerProcess::start(&fixture.env, "controller-1");
    deploy_revision_1(&fixture).await;

    let log = StatusLog::start(&fixture.releases, "web-2");
    fixture.apply(&application("web:2", false)).await;
    let before = fixture
        .wait_for_release("web-2", "step 1 (half) achieved", |s| {
            s.step == Some(1) && s.achieved_at.is_some()
        })
        .await;
    // The status is written before the Events of a decision; kill once both are out, so that
    // the kill tests the resumption and not that window.
    wait_until(
        "web-2 reports step 2/3 achieved",
        DEFAULT_TIMEOUT,
        || async {
            Ok((fixture.transitions("web-2").await.get("StepAchieved") == Some(&2)).then_some(()))
        },
    )
    .await
    .unwrap();
    first.kill();
    let killed_at = Timestamp::now();
    let achieved_at = before.achieved_at.clone().unwrap().0;
    assert!(
        killed_at < achieved_at + SignedDuration::from_secs(HALF_PAUSE - 5),
        "the kill came too late in the pause to tell anything: achieved at {achieved_at}, killed at {killed_at}"
    );

    let frozen = fixture.assert_frozen().await;
    assert_eq!(
        frozen["deployments"]["web-1"],
        json!({"replicas": 4, "ready": 4})
    );
    assert_eq!(
        frozen["deployments"]["web-2"],
        json!({"replicas": 2, "ready": 2})
    );
    assert_eq!(
        frozen["service"]["annotations"]["prism.dev/weights"],
        "web-1=50,web-2=50"
    );
    let paused: ReleaseStatus =
        serde_json::from_value(frozen["releases"]["web-2"]["status"].clone()).unwrap();
    assert_eq!(
        (
            paused.step,
            paused.achieved_at.as_ref().map(|t| t.0),
            paused.phase
        ),
        (Some(1), Some(achieved_at), Some(ReleasePhase::Progressing))
    );

    let restarted_at = Timestamp::now();
    let second = ControllerProcess::start(&fixture.env, "controller-2");
    wait_until(
        "the new controller has reconciled Application web",
        DEFAULT_TIMEOUT,
        || async { Ok(second.reconciled().then_some(())) },
    )
    .await
    .unwrap();
    // The new process has decided on what the old one left: the same step, achieved at the same
    // time, still pausing; and it has changed nothing in the cluster.
    let resumed_state = fixture.cluster_state().await;
    for part in ["deployments", "service", "pods"] {
        assert_eq!(
            resumed_state[part], frozen[part],
            "the new controller changed the {part} on resuming"
        );
    }
    let resumed: ReleaseStatus =
        serde_json::from_value(resumed_state["releases"]["web-2"]["status"].clone()).unwrap();
    assert_eq!(
        (
            resumed.step,
            resumed.achieved_at.as_ref().map(|t| t.0),
            resumed.phase,
            &resumed.clusters
        ),
        (
            Some(1),
            Some(achieved_at),
            Some(ReleasePhase::Progressing),
            &paused.clusters
        ),
        "the new controller should resume step 1 as the old one left it"
    );

    fixture.wait_for_complete("web-2").await;
    let statuses = log.statuses();
    assert_rollout_history(&statuses);
    // Until it left step 1, every status of web-2 was the one the old process left (the new one
    // rewrote no progress, and saw the cluster as it was: no flap through Unreachable or
    // Progressing).
    for (seen, status) in statuses.iter().filter(|(seen, _)| *seen >= killed_at) {
        if status.step != Some(1) {
            break;
        }
        assert_eq!(
            (
                status.achieved_at.as_ref().map(|t| t.0),
                status.phase,
                &status.clusters,
                &status.progress
            ),
            (
                Some(achieved_at),
                Some(ReleasePhase::Progressing),
                &paused.clusters,
                &paused.progress
            ),
            "the status of web-2 changed at {seen} while it paused at step 1"
        );
    }
    // The pause counted from the original achievement: a pause started again by the new process
    // would have ended no earlier than HALF_PAUSE after it started (achievedAt has whole seconds).
    let left_half = statuses
        .iter()
        .find(|(_, s)| s.step == Some(2))
        .map(|(seen, _)| *seen)
        .unwrap();
    let restart_second = Timestamp::from_second(restarted_at.as_second()).unwrap();
    assert!(
        left_half < restart_second + SignedDuration::from_secs(HALF_PAUSE),
        "step 1 ended at {left_half}: its pause started again when the controller did (at {restarted_at})"
    );

    assert_one_event_per_transition(&fixture).await;
    second.assert_no_failed_reconcile();
    // The move to the last step was the new process's, after the original pause.
    let advanced_by_second: Vec<Event> = fixture
        .release_events("web-2")
        .await
        .into_iter()
        .filter(|e| e.note.as_deref().unwrap_or_default().contains("from step "))
        .filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 >= restarted_at))
        .collect();
    assert_eq!(
        advanced_by_second.len(),
        1,
        "{:#?}",
        summary(&advanced_by_second)
    );
    let advanced = &advanced_by_second[0];
    assert!(
        advanced
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("to step 3/3"),
        "{advanced:?}"
    );
    assert!(
        advanced.event_time.as_ref().unwrap().0
            >= achieved_at + SignedDuration::from_secs(HALF_PAUSE),
        "{advanced:?}"
    );
}

#[tokio::test]
async fn a_controller_killed_while_a_step_converges_resumes_it() {
    let fixture = Fixture::new("restart-converging").await;
    let mut first = ControllerProcess::start(&fixture.env, "controller-1");
    deploy_revision_1(&fixture).await;

    let log = StatusLog::start(&fixture.releases, "web-2");
    // Revision 2's pods are held unscheduled: step 0 cannot be achieved until the test says so.
    fixture.apply(&application("web:2", true)).await;
    wait_until(
        "Deployment web-2 runs 1 replica, none ready, and its pod exists",
        DEFAULT_TIMEOUT,
        || async {
            let deployment = fixture.deployments.get_opt("web-2").await?;
            // The ReplicaSet's pod comes after the scale: without it, its arrival would show as
            // a change while no controller runs.
            let pods = fixture
                .pods
                .list(&ListParams::default().labels("prism.dev/release=web-2"))
                .await?;
            Ok(deployment
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) == Some(1))
                .filter(|_| pods.items.len() == 1))
        },
    )
    .await
    .unwrap();
    fixture
        .wait_for_release("web-2", "step 0 converging", |s| {
            s.step == Some(0) && s.clusters.iter().any(|c| c.name == "local")
        })
        .await;
    first.kill();

    let frozen = fixture.assert_frozen().await;
    let converging: ReleaseStatus =
        serde_json::from_value(frozen["releases"]["web-2"]["status"].clone()).unwrap();
    assert_eq!(
        (
            converging.step,
            converging.achieved_at.clone(),
            converging.phase
        ),
        (Some(0), None, Some(ReleasePhase::Progressing))
    );
    assert_eq!(
        frozen["deployments"]["web-1"],
        json!({"replicas": 4, "ready": 4})
    );
    assert_eq!(frozen["deployments"]["web-2"]["replicas"], 1);
    assert_eq!(
        frozen["service"]["selector"],
        json!({"prism.dev/app": "web", "prism.dev/release": "web-1"}),
        "no traffic for a contender without ready pods: web-1 alone is selected"
    );

    let second = ControllerProcess::start(&fixture.env, "controller-2");
    // Lift the gate of every pod of revision 2, as they come, until the test ends.
    let pods = fixture.pods.clone();
    let _release_pods = prism_testkit::spawn_for_test(async move {
        let held = ListParams::default().labels("prism.dev/release=web-2");
        loop {
            if let Ok(list) = pods.list(&held).await {
                for pod in list.items {
                    let gated = pod
                        .spec
                        .as_ref()
                        .and_then(|spec| spec.scheduling_gates.as_ref())
                        .is_some_and(|gates| !gates.is_empty());
                    if gated {
                        let patch = json!({"spec": {"schedulingGates": null}});
                        let _ = pods
                            .patch(
                                &pod.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    fixture.wait_for_complete("web-2").await;
    assert_rollout_history(&log.statuses());
    assert_one_event_per_transition(&fixture).await;
    second.assert_no_failed_reconcile();
}
