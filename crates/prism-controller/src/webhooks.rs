//! Webhooks: the pre-rollout webhooks (asked before a Release is made), the gate of a step (asked
//! once the step is achieved), where a refusal or no answer holds and the webhook is asked again
//! after `REASK`; and the notifications of a rollout (post-rollout, rollback, and every
//! transition). Every call runs in the background: questions through [`crate::calls`], whose
//! answer the next reconcile takes; notifications on their own, unheard.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client, ResourceExt};
use prism_analysis::webhook::{Answer, Caller};
use prism_api::Release;
use prism_api::application::PreRolloutHold;
use prism_api::release::{GateStatus, Verdict as Answered};
use prism_api::strategy::{GateKind, Webhook};
use prism_engine::{Event, EventKind, Verdict};
use serde::Serialize;
use tracing::warn;

use crate::Context;
use crate::calls::purpose;
use crate::status::{judged_step, not_judged, progress};

/// How long a held step waits before its webhook is asked again.
pub const REASK: Duration = Duration::from_secs(15);

/// What a webhook is told: the Release, where it stands, and why it is called.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload<'a> {
    /// `confirm-step`, `pre-rollout`, `post-rollout`, `rollback` or `event`.
    pub kind: &'a str,
    pub application: &'a str,
    pub namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<&'a str>,
    pub revision: u32,
    /// The current step, from 1, and its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_name: Option<&'a str>,
    pub clusters: Vec<&'a str>,
    /// For notifications: the Event's type (Normal or Warning), reason and message.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

impl<'a> Payload<'a> {
    pub fn of(kind: &'a str, release: &'a Release) -> Payload<'a> {
        let step = progress(release).step;
        Payload {
            kind,
            application: &release.spec.application,
            namespace: release.metadata.namespace.as_deref().unwrap_or_default(),
            release: release.metadata.name.as_deref(),
            revision: release.spec.revision,
            step: Some(step + 1),
            step_name: release
                .spec
                .strategy
                .steps
                .get(step as usize)
                .map(|s| s.name.as_str()),
            clusters: release
                .spec
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
            event_type: None,
            reason: None,
            message: None,
        }
    }
}

/// The current step's webhook gate: its verdict, its status, and when to ask again.
pub struct Gate {
    pub verdict: Verdict,
    pub status: Option<GateStatus>,
    pub next: Option<Duration>,
}

/// Asks the current step's webhook when the step is achieved and the last answer (if any) was
/// not a yes and is older than `REASK`. While it is asked, the last answer stands.
pub fn gate(release: &Release, ctx: &Context, now: Timestamp) -> Gate {
    let judged = judged_step(release);
    let step = judged.index;
    // An answer kept for another step (one an edit of the strategy put at this index) is dropped.
    let previous = release
        .status
        .as_ref()
        .and_then(|s| s.gate.clone())
        .filter(|_| judged.records_hold);
    let webhook = judged
        .step
        .and_then(|s| s.gate.as_ref())
        .and_then(|gate| match gate.kind() {
            GateKind::Webhook(webhook) => Some(webhook),
            _ => None,
        });
    let (Some(webhook), Some(_)) = (webhook, judged.achieved_at) else {
        return Gate {
            verdict: not_judged(webhook),
            status: previous,
            next: None,
        };
    };
    let asked = previous.clone().filter(|g| g.step == step);
    let (status, asking) = match asked {
        Some(answered)
            if answered.verdict == Answered::Pass || now < reask_at(&answered.asked_at) =>
        {
            (Some(answered), false)
        }
        asked => {
            let attempt = format!(
                "step {step} ({}), after {:?}",
                judged.step.map_or("", |step| step.name.as_str()),
                asked.as_ref().map(|a| &a.asked_at)
            );
            let answered = ctx.gates.answer(purpose(release, "gate"), attempt, || {
                let webhook = webhook.clone();
                let payload = owned(&Payload::of("confirm-step", release));
                let (client, caller) = (ctx.client.clone(), ctx.webhooks.clone());
                let metrics = ctx.metrics.clone();
                let namespace = release.namespace().unwrap_or_default();
                async move {
                    let answer = call(&client, &caller, &namespace, &webhook, &payload).await;
                    metrics.webhook_called("confirm-step", &answer);
                    GateStatus {
                        step,
                        asked_at: Time(now),
                        verdict: match answer {
                            Answer::Accepted => Answered::Pass,
                            Answer::Refused { .. } => Answered::Fail,
                            Answer::NoAnswer { .. } => Answered::Inconclusive,
                        },
                        message: answer.describe(&webhook.url),
                    }
                }
            });
            match answered {
                Some(answered) => (Some(answered), false),
                None => (asked, true),
            }
        }
    };
    let Some(status) = status else {
        return Gate {
            verdict: Verdict::Pending,
            status: previous,
            next: None,
        };
    };
    let (verdict, next) = match status.verdict {
        Answered::Pass => (Verdict::Passed, None),
        _ => (
            Verdict::Inconclusive {
                reason: status.message.clone(),
            },
            // While it is asked again, the end of the call reconciles.
            (!asking).then(|| until(now, reask_at(&status.asked_at))),
        ),
    };
    Gate {
        verdict,
        status: Some(status),
        next,
    }
}

/// A payload the background task owns.
fn owned(payload: &Payload<'_>) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or_default()
}

/// Whether `candidate`, the Release about to be made, may be made. `Err` holds it back: with
/// the webhook's refusal (or silence), or, while they are asked, the Application's current hold
/// as it is; and when to look again.
pub type PreRollout = Result<(), (Option<PreRolloutHold>, Duration)>;

/// Every pre-rollout webhook must accept `candidate`, asked in order. A hold keeps the refusal
/// (or silence) so that the webhooks are asked again only `REASK` after it.
pub fn pre_rollout(
    ctx: &Context,
    candidate: &Release,
    hooks: &[Webhook],
    held: Option<&PreRolloutHold>,
    now: Timestamp,
) -> PreRollout {
    let revision = candidate.spec.revision;
    let this_revision = held.filter(|h| h.revision == revision);
    if let Some(held) = this_revision
        && now < reask_at(&held.asked_at)
    {
        return Err((Some(held.clone()), until(now, reask_at(&held.asked_at))));
    }
    let attempt = format!(
        "revision {revision}, after {:?}",
        this_revision.map(|h| &h.asked_at)
    );
    let answered = ctx
        .pre_rollouts
        .answer(purpose(candidate, "pre-rollout"), attempt, || {
            let namespace = candidate.namespace().unwrap_or_default();
            let payload = owned(&Payload {
                step: None,
                step_name: None,
                ..Payload::of("pre-rollout", candidate)
            });
            let (client, caller, hooks) =
                (ctx.client.clone(), ctx.webhooks.clone(), hooks.to_vec());
            let metrics = ctx.metrics.clone();
            async move {
                for webhook in &hooks {
                    let answer = call(&client, &caller, &namespace, webhook, &payload).await;
                    metrics.webhook_called("pre-rollout", &answer);
                    if answer != Answer::Accepted {
                        return Some(PreRolloutHold {
                            revision,
                            asked_at: Time(now),
                            message: answer.describe(&webhook.url),
                        });
                    }
                }
                None
            }
        });
    match answered {
        Some(None) => Ok(()),
        Some(Some(hold)) => Err((Some(hold), REASK)),
        // The end of the call reconciles; `REASK` is only a safety net.
        None => Err((held.cloned(), REASK)),
    }
}

/// When a webhook asked at `asked_at` that did not say yes is asked again.
fn reask_at(asked_at: &Time) -> Timestamp {
    asked_at
        .0
        .saturating_add(jiff::SignedDuration::try_from(REASK).unwrap_or_default())
        .unwrap_or(Timestamp::MAX)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    now.duration_until(at).unsigned_abs()
}

/// Tells the rollout's notification webhooks of an Event of the engine's, in the background:
/// every webhook under `event`, and those under `postRollout` or `rollback` for the Events that
/// complete or start rolling back a Release.
pub fn notify(ctx: &Context, release: &Release, event: &Event<'_>) {
    let Some(webhooks) = &release.spec.strategy.webhooks else {
        return;
    };
    let mut calls: Vec<(&'static str, &Webhook)> =
        webhooks.event.iter().map(|w| ("event", w)).collect();
    match event.reason {
        "Complete" => calls.extend(webhooks.post_rollout.iter().map(|w| ("post-rollout", w))),
        "RollbackStarted" => calls.extend(webhooks.rollback.iter().map(|w| ("rollback", w))),
        _ => {}
    }
    let event_type = match event.kind {
        EventKind::Normal => "Normal",
        EventKind::Warning => "Warning",
    };
    for (kind, webhook) in calls {
        let payload = owned(&Payload {
            event_type: Some(event_type),
            reason: Some(event.reason),
            message: Some(&event.message),
            ..Payload::of(kind, release)
        });
        let (client, caller) = (ctx.client.clone(), ctx.webhooks.clone());
        let metrics = ctx.metrics.clone();
        let (namespace, name) = (release.namespace().unwrap_or_default(), release.name_any());
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let answer = call(&client, &caller, &namespace, &webhook, &payload).await;
            metrics.webhook_called(kind, &answer);
            if answer != Answer::Accepted {
                warn!(release = %name, kind = %payload["kind"], "webhook: {}", answer.describe(&webhook.url));
            }
        });
    }
}

/// Calls `webhook`, signing with its secret when it has one.
pub async fn call(
    client: &Client,
    caller: &Caller,
    namespace: &str,
    webhook: &Webhook,
    payload: &impl Serialize,
) -> Answer {
    let secret = match &webhook.secret_ref {
        None => None,
        Some(reference) => {
            let key = reference.key.as_deref().unwrap_or("secret");
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match secrets.get_opt(&reference.name).await {
                Ok(Some(secret)) => match secret.data.and_then(|mut data| data.remove(key)) {
                    Some(ByteString(bytes)) => Some(bytes),
                    None => {
                        return Answer::NoAnswer {
                            attempts: 0,
                            error: format!(
                                "Secret {namespace}/{} has no key {key:?} to sign with",
                                reference.name
                            ),
                        };
                    }
                },
                Ok(None) => {
                    return Answer::NoAnswer {
                        attempts: 0,
                        error: format!(
                            "Secret {namespace}/{} to sign with does not exist",
                            reference.name
                        ),
                    };
                }
                Err(error) => {
                    return Answer::NoAnswer {
                        attempts: 0,
                        error: format!("reading Secret {namespace}/{}: {error}", reference.name),
                    };
                }
            }
        }
    };
    caller.call(webhook, secret.as_deref(), payload).await
}
