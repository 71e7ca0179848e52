//! Why a pod fails to start: one pure function of the pod as the API server returns it, for the
//! pods of an application that the CLI and the web UI list per cluster.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use serde::{Deserialize, Serialize};

/// A pod that does not start, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailure {
    /// The kubelet's reason for a waiting container (`CrashLoopBackOff`, `ImagePullBackOff`,
    /// `ErrImagePull`, `CreateContainerConfigError`, ...), the scheduler's `Unschedulable`, or
    /// `ReadinessProbeFailed` for a container that runs but is not ready.
    pub reason: String,
    /// The kubelet's or the scheduler's message, else a sentence.
    pub message: String,
    /// When the failure started, as far as the pod tells: when its condition changed, else when
    /// its container started, else when the pod was made.
    pub since: Option<Timestamp>,
    /// The failing container's restarts (0 when no container is to blame).
    pub restarts: u32,
    /// The failing container; none when the pod as a whole fails (unschedulable).
    pub container: Option<String>,
}

/// Reasons a kubelet gives a container that is on its way to start: not failures.
const STARTING_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why `pod` fails to start at `now`, or `None` when it does not: it is Ready, on its way
/// (scheduled and creating its containers), being deleted, or done (Succeeded).
pub fn failure(pod: &Pod, now: Timestamp) -> Option<PodFailure> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    match status.phase.as_deref() {
        Some("Succeeded") => return None,
        Some("Failed") => {
            return Some(PodFailure {
                reason: status.reason.clone().unwrap_or_else(|| "Failed".to_owned()),
                message: status
                    .message
                    .clone()
                    .unwrap_or_else(|| "the pod failed".to_owned()),
                since: not_ready_since(pod),
                restarts: 0,
                container: None,
            });
        }
        _ => {}
    }
    if let Some(scheduled) = condition(pod, "PodScheduled")
        && scheduled.status == "False"
        && scheduled.reason.as_deref() == Some("Unschedulable")
    {
        return Some(PodFailure {
            reason: "Unschedulable".to_owned(),
            message: scheduled
                .message
                .clone()
                .unwrap_or_else(|| "no node can run the pod".to_owned()),
            since: scheduled
                .last_transition_time
                .as_ref()
                .map(|time| time.0)
                .or_else(|| created(pod)),
            restarts: 0,
            container: None,
        });
    }
    // Init containers run first: one that cannot start keeps the others waiting in
    // PodInitializing, so it is the one to blame.
    let init = status.init_container_statuses.iter().flatten();
    let regular = status.container_statuses.iter().flatten();
    if let Some(waiting) = init
        .chain(regular)
        .find_map(|container| waiting(pod, container))
    {
        return Some(waiting);
    }
    if status.phase.as_deref() == Some("Running") {
        return status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|container| running_unready(pod, container, now));
    }
    None
}

/// A container waiting for any reason but being on its way.
fn waiting(pod: &Pod, container: &ContainerStatus) -> Option<PodFailure> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if STARTING_REASONS.contains(&reason) {
        return None;
    }
    Some(PodFailure {
        reason: reason.to_owned(),
        message: waiting
            .message
            .clone()
            .unwrap_or_else(|| format!("container {} is waiting: {reason}", container.name)),
        since: not_ready_since(pod),
        restarts: restarts(container),
        container: Some(container.name.clone()),
    })
}

/// A container that runs but is not ready once its readiness probe had its initial delay to
/// pass. No further grace: a probe's first success comes a period after that delay at most, and
/// the UI says since when, so a pod that just missed its first probe shows as failing for
/// seconds rather than a failing one hiding behind a guessed grace.
fn running_unready(pod: &Pod, container: &ContainerStatus, now: Timestamp) -> Option<PodFailure> {
    if container.ready {
        return None;
    }
    let running = container.state.as_ref()?.running.as_ref()?;
    let started = running
        .started_at
        .as_ref()
        .map(|time| time.0)
        .or_else(|| created(pod));
    let probe = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|spec| spec.name == container.name)
        .and_then(|spec| spec.readiness_probe.as_ref());
    let initial_delay = probe
        .and_then(|probe| probe.initial_delay_seconds)
        .unwrap_or(0);
    if let Some(started) = started
        && now < started + SignedDuration::from_secs(initial_delay.into())
    {
        return None;
    }
    let message = if probe.is_some() {
        format!(
            "container {} runs but is not ready: its readiness probe fails",
            container.name
        )
    } else {
        format!("container {} runs but is not ready", container.name)
    };
    Some(PodFailure {
        reason: "ReadinessProbeFailed".to_owned(),
        message,
        since: not_ready_since(pod).or(started),
        restarts: restarts(container),
        container: Some(container.name.clone()),
    })
}

/// When the pod stopped being Ready (or was first found not to be), else when it started, else
/// when it was made.
fn not_ready_since(pod: &Pod) -> Option<Timestamp> {
    condition(pod, "Ready")
        .filter(|ready| ready.status != "True")
        .and_then(|ready| ready.last_transition_time.as_ref())
        .or_else(|| pod.status.as_ref()?.start_time.as_ref())
        .map(|time| time.0)
        .or_else(|| created(pod))
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == kind)
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|time| time.0)
}

fn restarts(container: &ContainerStatus) -> u32 {
    u32::try_from(container.restart_count).unwrap_or(0)
}

#[cfg(test)]
mod tests;
