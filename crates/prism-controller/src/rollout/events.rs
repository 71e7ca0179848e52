//! The Events stage of a Release reconcile: the engine's transitions, said to the people
//! watching (Kubernetes Events, folded) and to the webhooks that subscribe to them.
//!
//! Each transition is said exactly once, whoever leads and whenever a leader dies: its Event is
//! created before the status that records the transition, under a name derived from the
//! transition and the progress it leaves (the Release's uid and generation, its step, phase,
//! state, abort and when the step was achieved). A leader killed between the two leaves that
//! progress as it was, so the next one decides the same transition from it and creates the same
//! Event again, which the API server refuses as existing. (The other order lost the Event of a
//! leader killed between the status and the Event; a name from the resourceVersion said it twice
//! when the next leader wrote counters first: both found by `scripts/chaos.sh --kills 100`.) So a
//! transition that repeats another word for word from the same progress (a webhook that holds
//! the same step again, say) is said once; its condition still shows it. Event webhooks are
//! called at least once.

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use prism_api::Release;
use prism_api::labels::FIELD_MANAGER;
use prism_engine::{Decision, Event, EventKind};
use tracing::{info, warn};

use crate::Context;
use crate::application::truncate;
use crate::webhooks;

pub(super) async fn publish_events(
    decision: &Decision<'_>,
    releases: &BTreeMap<String, &Release>,
    ctx: &Context,
) {
    for event in &decision.events {
        ctx.metrics.transition(event.reason);
        info!(
            release = event.release,
            reason = event.reason,
            "{}",
            event.message
        );
        if let Some(release) = releases.get(event.release) {
            webhooks::notify(ctx, release, event);
        }
    }
    for event in fold_transitions(&decision.events) {
        let Some(release) = releases.get(event.release) else {
            continue;
        };
        let event = transition_event(release, &event);
        let name = event.name_any();
        let api = Api::<KubeEvent>::namespaced(
            ctx.client.clone(),
            &release.namespace().unwrap_or_default(),
        );
        // An Event is a courtesy: failing to record one does not fail the reconcile.
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                info!(event = name, "the transition's Event exists: said already");
            }
            Err(error) => warn!(event = name, %error, "could not publish an Event"),
        }
    }
}

/// The Event of a transition of `release`, named after the transition and the progress it leaves
/// (see the module's documentation).
fn transition_event(release: &Release, event: &Event<'_>) -> KubeEvent {
    let progress = release.status.as_ref().map(|status| {
        (
            status.step,
            status.phase,
            status.state,
            status.abort.as_ref().map(|abort| abort.cause),
            status.achieved_at.as_ref().map(|time| time.0.as_second()),
        )
    });
    let key = format!(
        "{}/{}/{progress:?}/{}/{}",
        release.uid().unwrap_or_default(),
        release.metadata.generation.unwrap_or_default(),
        event.reason,
        event.message
    );
    let type_ = match event.kind {
        EventKind::Normal => "Normal",
        EventKind::Warning => "Warning",
    };
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:016x}",
                release.name_any(),
                prism_engine::stable_hash(key.as_bytes())
            )),
            namespace: release.namespace(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        regarding: Some(release.object_ref(&())),
        reason: Some(event.reason.to_owned()),
        // An Event's note is at most 1 kB.
        note: Some(truncate(event.message.clone(), 1000)),
        type_: Some(type_.to_owned()),
        action: Some("Rollout".to_owned()),
        reporting_controller: Some(FIELD_MANAGER.to_owned()),
        reporting_instance: Some(FIELD_MANAGER.to_owned()),
        ..KubeEvent::default()
    }
}

/// The Kubernetes Events of one decision's transitions: the normal transitions one decision
/// makes of a release in a row (a step achieved, the next entered, achieved at once and paused)
/// are one Event, named after the last and listing each in order; a warning is always an Event
/// of its own. Each transition is still said once, in fewer writes.
fn fold_transitions<'a>(events: &[Event<'a>]) -> Vec<Event<'a>> {
    let mut folded: Vec<Event<'a>> = Vec::new();
    for event in events {
        match folded.last_mut() {
            Some(last)
                if last.release == event.release
                    && last.kind == EventKind::Normal
                    && event.kind == EventKind::Normal =>
            {
                last.reason = event.reason;
                last.message = format!("{}; {}", last.message, event.message);
            }
            _ => folded.push(event.clone()),
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(release: &'static str, kind: EventKind, reason: &'static str) -> Event<'static> {
        Event {
            release,
            kind,
            reason,
            message: format!("{reason} of {release}"),
        }
    }

    #[test]
    fn a_decision_s_transitions_of_a_release_make_one_event_and_warnings_their_own() {
        let normal = EventKind::Normal;
        let events = [
            event("web-2", normal, "StepAchieved"),
            event("web-2", normal, "StepAdvanced"),
            event("web-2", normal, "StepAchieved"),
            event("web-1", normal, "Retired"),
            event("web-1", EventKind::Warning, "RollbackStarted"),
            event("web-1", normal, "Aborted"),
        ];
        let folded = fold_transitions(&events);
        let summary: Vec<(&str, &str, &str)> = folded
            .iter()
            .map(|e| (e.release, e.reason, e.message.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "web-2",
                    "StepAchieved",
                    "StepAchieved of web-2; StepAdvanced of web-2; StepAchieved of web-2"
                ),
                ("web-1", "Retired", "Retired of web-1"),
                ("web-1", "RollbackStarted", "RollbackStarted of web-1"),
                ("web-1", "Aborted", "Aborted of web-1"),
            ]
        );
    }

    #[test]
    fn a_transition_decided_again_from_the_same_progress_has_the_same_event_name() {
        let mut release: Release = serde_json::from_value(serde_json::json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": "web-2", "namespace": "shop", "uid": "u-1", "generation": 1, "resourceVersion": "10"},
            "spec": {"application": "web", "revision": 2, "template": {"manifests": []}, "strategy": {"steps": []}, "clusters": []},
            "status": {"step": 0, "phase": "Progressing", "achievedAt": "2026-12-07T16:13:14Z"},
        }))
        .unwrap();
        let advanced = event("web-2", EventKind::Normal, "StepAdvanced");
        let first = transition_event(&release, &advanced).metadata.name;
        // The next leader wrote the clusters' counters first: another resourceVersion.
        release.metadata.resource_version = Some("11".into());
        release.status.as_mut().unwrap().clusters = Vec::new();
        assert_eq!(transition_event(&release, &advanced).metadata.name, first);
        // From another step, the same words are another transition.
        release.status.as_mut().unwrap().step = Some(1);
        assert_ne!(transition_event(&release, &advanced).metadata.name, first);
    }
}
