//! The Events stage of a Release reconcile: the engine's transitions, said to the people
//! watching (Kubernetes Events, folded) and to the webhooks that subscribe to them.

use std::collections::BTreeMap;

use kube::Resource;
use kube::runtime::events::EventType;
use prism_api::Release;
use prism_engine::{Decision, Event, EventKind};
use tracing::info;

use crate::Context;
use crate::application::publish;
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
        let type_ = match event.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        };
        publish(
            ctx,
            &release.object_ref(&()),
            type_,
            event.reason,
            event.message,
            "Rollout",
        )
        .await;
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
}
