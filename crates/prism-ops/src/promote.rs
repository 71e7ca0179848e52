//! `prism promote APP [--full] [--when-unblocked]`: lets the rollout leave its current step
//! without waiting for the step's gate (or, with `--full`, for any gate), by raising the
//! contender's `spec.targetStep`. Under a RolloutBlock the step would move only once the block
//! is lifted, so the promotion is refused, unless `--when-unblocked` asks for exactly that
//! ([`crate::blocks`]).
//!
//! [`promotion`] is pure; [`promote`] reads and writes through a [`Connection`].

use kube::ResourceExt;
use prism_api::Release;
use serde_json::json;

use crate::Error;
use crate::blocks;
use crate::connection::Connection;
use crate::releases;

/// The write `prism promote` makes: the Release and its new `spec.targetStep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub release: String,
    pub target_step: u32,
    /// What was done, for people.
    pub message: String,
    /// Where a block would hold the Release instead, for people: `web-3 stays at step 1/3`.
    pub holds: String,
}

/// The promotion of the Application `app`'s contender: its target becomes the step after its
/// current one, or with `full` the number of steps (past the last step's gate too). Refused when
/// nothing is rolling out, or when an earlier promote already asked for as much.
pub fn promotion(app: &str, releases: &[Release], full: bool) -> Result<Promotion, Error> {
    let release = releases::rolling_out(app, releases).map_err(|why| {
        Error::Refused(format!(
            "nothing to promote: {why}. A change of the Application's template starts a new rollout"
        ))
    })?;
    let name = release.name_any();
    let steps = u32::try_from(release.spec.strategy.steps.len()).unwrap_or(u32::MAX);
    // Before the controller sets a step, the rollout is moving towards the first.
    let current = release.status.as_ref().and_then(|s| s.step).unwrap_or(0);
    let target_step = if full {
        steps
    } else {
        current.saturating_add(1).min(steps)
    };
    if release.spec.target_step >= Some(target_step) {
        let asked = release.spec.target_step.unwrap_or(target_step);
        return Err(Error::Refused(format!(
            "{name} is already promoted to {}: the controller has not got there yet",
            destination(release, asked)
        )));
    }
    Ok(Promotion {
        message: format!("promoted {name} to {}", destination(release, target_step)),
        holds: format!("{name} stays at {}", destination(release, current)),
        release: name,
        target_step,
    })
}

/// Where a `targetStep` takes the Release, for people: a step, or the end of the rollout.
fn destination(release: &Release, target_step: u32) -> String {
    let steps = release.spec.strategy.steps.len();
    if target_step as usize >= steps {
        let last = u32::try_from(steps.saturating_sub(1)).unwrap_or(u32::MAX);
        format!(
            "the end, past the gate of step {}",
            release.spec.strategy.step_label(last as usize)
        )
    } else {
        format!(
            "step {}",
            release.spec.strategy.step_label(target_step as usize)
        )
    }
}

/// Promotes the contender of the Application `app`, and says what was done. Under a
/// RolloutBlock, refused unless `when_unblocked`.
pub async fn promote(
    connection: &Connection,
    app: &str,
    full: bool,
    when_unblocked: bool,
) -> Result<String, Error> {
    let (application, releases) = connection.read(app).await?;
    let promotion = promotion(app, &releases, full)?;
    let stopping = blocks::stopping(&application, &blocks::read(connection).await?);
    let retry = format!(
        "prism promote {app} -n {}{}",
        connection.namespace(),
        if full { " --full" } else { "" }
    );
    let waits = blocks::held(&stopping, when_unblocked, &promotion.holds, &retry)?;
    connection
        .merge_patch(
            &connection.releases(),
            &promotion.release,
            json!({"spec": {"targetStep": promotion.target_step}}),
        )
        .await?;
    Ok(match waits {
        Some(note) => format!("{}, but {note}", promotion.message),
        None => promotion.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::release;
    use serde_json::json;

    fn waiting_at(step: u32) -> Vec<Release> {
        vec![
            release(2, "web:2", json!({"phase": "Complete", "step": 2})),
            release(
                3,
                "web:3",
                json!({"phase": "WaitingForCommand", "step": step}),
            ),
        ]
    }

    #[test]
    fn promote_targets_the_step_after_the_current_one() {
        assert_eq!(
            promotion("web", &waiting_at(1), false).unwrap(),
            Promotion {
                release: "web-3".into(),
                target_step: 2,
                message: "promoted web-3 to step 3/3 \"full\"".into(),
                holds: "web-3 stays at step 2/3 \"half\"".into(),
            }
        );
    }

    #[test]
    fn promote_at_the_last_step_passes_its_gate() {
        let promotion = promotion("web", &waiting_at(2), false).unwrap();
        assert_eq!(promotion.target_step, 3);
        assert_eq!(
            promotion.message,
            "promoted web-3 to the end, past the gate of step 3/3 \"full\""
        );
    }

    #[test]
    fn full_targets_the_number_of_steps() {
        assert_eq!(
            promotion("web", &waiting_at(0), true).unwrap().target_step,
            3
        );
    }

    #[test]
    fn a_release_the_controller_has_not_picked_up_is_promoted_past_its_first_step() {
        let releases = [release(1, "web:1", json!(null))];
        assert_eq!(promotion("web", &releases, false).unwrap().target_step, 1);
    }

    #[test]
    fn promote_is_refused_when_nothing_is_rolling_out() {
        let releases = [release(3, "web:3", json!({"phase": "Complete", "step": 2}))];
        let error = promotion("web", &releases, false).unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "nothing to promote: web-3, the newest Release of web, is Complete. A change of the Application's template starts a new rollout"
        );
    }

    #[test]
    fn promote_is_refused_when_an_earlier_promote_asked_for_as_much() {
        let mut releases = waiting_at(1);
        releases[1].spec.target_step = Some(3);
        let error = promotion("web", &releases, false).unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "web-3 is already promoted to the end, past the gate of step 3/3 \"full\": the controller has not got there yet"
        );
        assert!(matches!(
            promotion("web", &releases, true).unwrap_err(),
            crate::Error::Refused(_)
        ));
    }
}
