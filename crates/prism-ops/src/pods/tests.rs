//! Each reason from a pod as a kubelet or the scheduler leaves it (the shapes of a real cluster's
//! `kubectl get pod -o json`, trimmed to what the status says).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::{PodFailure, failure};

const CREATED: &str = "2026-12-07T10:00:00Z";
const STARTED: &str = "2026-12-07T10:00:02Z";
const NOT_READY: &str = "2026-12-07T10:00:03Z";

fn at(time: &str) -> Timestamp {
    time.parse().unwrap()
}

/// Well after every moment of the pods below.
fn later() -> Timestamp {
    at("2026-12-07T11:00:00Z")
}

/// A pod of two containers, `app` (with a readiness probe of `initial_delay` seconds) and
/// `sidecar`, with `status`.
fn pod(initial_delay: i32, status: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9c5b8f4-x2x9q",
            "namespace": "shop",
            "creationTimestamp": CREATED,
            "labels": { "prism.dev/app": "web" }
        },
        "spec": {
            "initContainers": [{ "name": "migrate", "image": "registry.example/web-migrate:2" }],
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/web:2",
                    "readinessProbe": {
                        "httpGet": { "path": "/ready", "port": 8080 },
                        "initialDelaySeconds": initial_delay,
                        "periodSeconds": 10
                    }
                },
                { "name": "sidecar", "image": "registry.example/proxy:1" }
            ]
        },
        "status": status
    }))
    .unwrap()
}

fn conditions(ready: &str) -> Value {
    let unready = json!({
        "type": "Ready", "status": "False", "lastProbeTime": null,
        "lastTransitionTime": NOT_READY,
        "reason": "ContainersNotReady", "message": "containers with unready status: [app]"
    });
    let ready = if ready == "True" {
        json!({ "type": "Ready", "status": "True", "lastTransitionTime": NOT_READY })
    } else {
        unready
    };
    json!([
        { "type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": STARTED },
        { "type": "Initialized", "status": "True", "lastTransitionTime": STARTED },
        ready,
        { "type": "ContainersReady", "status": ready["status"], "lastTransitionTime": NOT_READY },
        { "type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED }
    ])
}

fn init_completed() -> Value {
    json!([{
        "name": "migrate", "image": "registry.example/web-migrate:2", "imageID": "",
        "ready": true, "restartCount": 0, "started": false,
        "state": { "terminated": {
            "exitCode": 0, "reason": "Completed", "startedAt": CREATED, "finishedAt": STARTED
        } }
    }])
}

fn running(name: &str, ready: bool) -> Value {
    json!({
        "name": name, "image": "registry.example/x", "imageID": "", "ready": ready,
        "restartCount": 0, "started": true, "state": { "running": { "startedAt": STARTED } }
    })
}

fn waiting(name: &str, reason: &str, message: Option<&str>, restarts: u32) -> Value {
    let mut waiting = json!({ "reason": reason });
    if let Some(message) = message {
        waiting["message"] = json!(message);
    }
    json!({
        "name": name, "image": "registry.example/x", "imageID": "", "ready": false,
        "restartCount": restarts, "started": false, "state": { "waiting": waiting },
        "lastState": if restarts > 0 {
            json!({ "terminated": {
                "exitCode": 1, "reason": "Error", "startedAt": STARTED, "finishedAt": NOT_READY
            } })
        } else {
            json!({})
        }
    })
}

fn status(phase: &str, ready: &str, containers: Value) -> Value {
    json!({
        "phase": phase,
        "conditions": conditions(ready),
        "startTime": CREATED,
        "podIP": "10.244.0.7",
        "initContainerStatuses": init_completed(),
        "containerStatuses": containers
    })
}

#[test]
fn a_crash_looping_container_is_crash_loop_back_off_with_its_restarts() {
    let message = "back-off 40s restarting failed container=app pod=web-7d9c5b8f4-x2x9q_shop(5b2c)";
    let containers = json!([
        waiting("app", "CrashLoopBackOff", Some(message), 3),
        running("sidecar", true)
    ]);
    let failure = failure(&pod(0, status("Running", "False", containers)), later());
    assert_eq!(
        failure,
        Some(PodFailure {
            reason: "CrashLoopBackOff".to_owned(),
            message: message.to_owned(),
            since: Some(at(NOT_READY)),
            restarts: 3,
            container: Some("app".to_owned()),
        })
    );
}

#[test]
fn an_image_that_cannot_be_pulled_is_image_pull_back_off_or_err_image_pull() {
    let message = "Back-off pulling image \"registry.example/web:2\": ErrImagePull: rpc error: \
                   code = NotFound desc = failed to pull and unpack image";
    for reason in ["ImagePullBackOff", "ErrImagePull"] {
        let containers = json!([
            waiting("app", reason, Some(message), 0),
            running("sidecar", true)
        ]);
        let failure = failure(&pod(0, status("Pending", "False", containers)), later()).unwrap();
        assert_eq!(failure.reason, reason);
        assert_eq!(failure.message, message);
        assert_eq!(failure.container.as_deref(), Some("app"));
        assert_eq!(failure.restarts, 0);
    }
}

#[test]
fn any_other_waiting_reason_is_a_failure_with_a_sentence_when_the_kubelet_gave_no_message() {
    let containers = json!([
        running("app", true),
        waiting("sidecar", "CreateContainerConfigError", None, 0)
    ]);
    let failure = failure(&pod(0, status("Pending", "False", containers)), later()).unwrap();
    assert_eq!(failure.reason, "CreateContainerConfigError");
    assert_eq!(
        failure.message,
        "container sidecar is waiting: CreateContainerConfigError"
    );
    assert_eq!(failure.container.as_deref(), Some("sidecar"));
}

#[test]
fn a_crash_looping_init_container_is_to_blame_not_the_containers_it_keeps_waiting() {
    let mut status = status(
        "Pending",
        "False",
        json!([
            waiting("app", "PodInitializing", None, 0),
            waiting("sidecar", "PodInitializing", None, 0)
        ]),
    );
    status["initContainerStatuses"] = json!([waiting(
        "migrate",
        "CrashLoopBackOff",
        Some("back-off 20s restarting failed container=migrate"),
        2
    )]);
    let failure = failure(&pod(0, status), later()).unwrap();
    assert_eq!(failure.reason, "CrashLoopBackOff");
    assert_eq!(failure.container.as_deref(), Some("migrate"));
    assert_eq!(failure.restarts, 2);
}

#[test]
fn an_unschedulable_pod_has_the_schedulers_reason_message_and_time() {
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    let status = json!({
        "phase": "Pending",
        "qosClass": "BestEffort",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "lastProbeTime": null,
            "lastTransitionTime": STARTED, "reason": "Unschedulable", "message": message
        }]
    });
    assert_eq!(
        failure(&pod(0, status), later()),
        Some(PodFailure {
            reason: "Unschedulable".to_owned(),
            message: message.to_owned(),
            since: Some(at(STARTED)),
            restarts: 0,
            container: None,
        })
    );
}

#[test]
fn a_running_container_not_ready_after_its_probes_initial_delay_fails_its_readiness_probe() {
    let containers = json!([running("app", false), running("sidecar", true)]);
    let pod = pod(30, status("Running", "False", containers));
    let failure = failure(&pod, later()).unwrap();
    assert_eq!(
        failure,
        PodFailure {
            reason: "ReadinessProbeFailed".to_owned(),
            message: "container app runs but is not ready: its readiness probe fails".to_owned(),
            since: Some(at(NOT_READY)),
            restarts: 0,
            container: Some("app".to_owned()),
        }
    );
    assert_eq!(
        serde_json::to_value(&failure).unwrap(),
        json!({
            "reason": "ReadinessProbeFailed",
            "message": "container app runs but is not ready: its readiness probe fails",
            "since": NOT_READY,
            "restarts": 0,
            "container": "app"
        })
    );
}

#[test]
fn a_running_container_within_its_probes_initial_delay_is_not_failing_yet() {
    let containers = json!([running("app", false), running("sidecar", true)]);
    let pod = pod(30, status("Running", "False", containers));
    assert_eq!(failure(&pod, at("2026-12-07T10:00:31Z")), None);
    assert!(failure(&pod, at("2026-12-07T10:00:32Z")).is_some());
}

#[test]
fn a_ready_pod_is_not_failing() {
    let containers = json!([running("app", true), running("sidecar", true)]);
    assert_eq!(
        failure(&pod(0, status("Running", "True", containers)), later()),
        None
    );
}

#[test]
fn a_pod_creating_its_containers_is_not_failing() {
    let just_scheduled = json!({
        "phase": "Pending",
        "conditions": [{ "type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED }]
    });
    assert_eq!(failure(&pod(0, just_scheduled), later()), None);
    let creating = json!([
        waiting("app", "ContainerCreating", None, 0),
        waiting("sidecar", "ContainerCreating", None, 0)
    ]);
    assert_eq!(
        failure(&pod(0, status("Pending", "False", creating)), later()),
        None
    );
}

#[test]
fn a_pod_being_deleted_or_succeeded_is_not_failing() {
    let crash_looping = || {
        status(
            "Running",
            "False",
            json!([
                waiting("app", "CrashLoopBackOff", None, 5),
                running("sidecar", true)
            ]),
        )
    };
    let mut deleted = pod(0, crash_looping());
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(NOT_READY)),
    );
    assert_eq!(failure(&deleted, later()), None);
    let mut succeeded = crash_looping();
    succeeded["phase"] = json!("Succeeded");
    assert_eq!(failure(&pod(0, succeeded), later()), None);
}

#[test]
fn a_failed_pod_has_the_reason_the_kubelet_gave_it() {
    let status = json!({
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
        "startTime": CREATED
    });
    let failure = failure(&pod(0, status), later()).unwrap();
    assert_eq!(failure.reason, "Evicted");
    assert_eq!(failure.message, "The node was low on resource: memory.");
    assert_eq!(failure.since, Some(at(CREATED)));
    assert_eq!(failure.container, None);
}
