//! `prism controller` killed (SIGKILL) and started again in the middle of a rollout, on the
//! sandbox (c1 is the management cluster and the only application cluster): everything the
//! controller knows is in the Release's status, so the new process resumes where the old one
//! stopped, without repeating or skipping a step, and a pause counts from the step's original
//! achievement.

mod process;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use prism_api::release::{ReleasePhase, ReleaseStatus};
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use process::*;
use serde_json::json;

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
