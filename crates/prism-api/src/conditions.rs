//! Condition types, in Kubernetes' standard shape (`metav1.Condition`).

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The condition of `type_` in a status's conditions, if it is there.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is there with status "True".
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Gives each of `desired` the transition time of the same condition in `current` when its
/// status is the same: a condition's lastTransitionTime moves only when its status flips.
pub fn keep_transition_times(desired: &mut [Condition], current: &[Condition]) {
    for condition in desired {
        if let Some(before) = find(current, &condition.type_)
            && before.status == condition.status
        {
            condition.last_transition_time = before.last_transition_time.clone();
        }
    }
}

/// Condition types of an Application.
pub mod application {
    /// False when the spec (or the strategy it names) is invalid; the message lists every error.
    pub const VALID: &str = "Valid";
    /// True while a RolloutBlock stops the application's rollouts.
    pub const BLOCKED: &str = "Blocked";
    /// False when no set of clusters meets spec.schedule; the message says what is missing.
    pub const SCHEDULED: &str = "Scheduled";
    /// True while a Release is being rolled out.
    pub const PROGRESSING: &str = "Progressing";
    /// With pre-rollout webhooks: False while one of them holds the next Release back.
    pub const PRE_ROLLOUT_PASSED: &str = "PreRolloutPassed";
}

/// Condition types of a Release.
pub mod release {
    /// True once the Release's clusters are chosen.
    pub const SCHEDULED: &str = "Scheduled";
    /// True while the Release moves towards its target step.
    pub const PROGRESSING: &str = "Progressing";
    /// True when every cluster in the current step's scope achieved it.
    pub const STEP_ACHIEVED: &str = "StepAchieved";
    /// True while a manual gate waits for `prism promote`.
    pub const WAITING_FOR_COMMAND: &str = "WaitingForCommand";
    /// True while a RolloutBlock stops the Release.
    pub const BLOCKED: &str = "Blocked";
    /// True once the last step is achieved.
    pub const COMPLETE: &str = "Complete";
    /// True once the Release is aborted (by a person or by a failed analysis).
    pub const ABORTED: &str = "Aborted";
    /// True while an application cluster refuses the Release's writes (an admission webhook or
    /// policy, a quota, permissions, an invalid object); the message names each cluster, the
    /// object and the API server's words.
    pub const WRITES_REFUSED: &str = "WritesRefused";
    /// True while the version is live; False once it retires, with its state (Draining, Drained,
    /// Retired) as the reason.
    pub const LIVE: &str = "Live";
}

/// Condition types of a Cluster.
pub mod cluster {
    /// True when the cluster's API server answers and its credentials work.
    pub const REACHABLE: &str = "Reachable";
    /// True when the cluster may run rollouts: reachable, and its API server version supported.
    pub const READY: &str = "Ready";
}
