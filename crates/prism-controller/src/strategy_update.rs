//! A change of an Application's strategy alone makes no Release: it applies to the Release
//! rolling out, as Argo Rollouts applies step edits in flight. The controller updates that
//! Release's `spec.strategy` in place, and the rollout goes on from its current step under the
//! new strategy (`prism_engine::Progress::follow`): nothing is installed again, so no pod
//! restarts. A Release that completed, was rolled back or was superseded keeps the strategy it
//! ran under; the next Release snapshots the new one.
//!
//! Pure: [`desired`] says what to write; the Application stage writes it.

use kube::ResourceExt;
use prism_api::release::newest;
use prism_api::{Pipeline, Release};
use prism_engine::Followed;
use serde_json::{Map, Value, json};

use crate::status::progress;

/// The Event recorded on a Release whose strategy was updated in flight.
pub const REASON_STRATEGY_UPDATED: &str = "StrategyUpdated";

/// The update of the strategy of a Release in flight.
#[derive(Clone, Debug)]
pub struct StrategyUpdate {
    /// The Release as it is after the update.
    pub release: Release,
    /// The JSON merge patch that makes it so; it names the resourceVersion read, so an update
    /// racing with another write (a `prism promote`, a `prism abort`) is refused and tried
    /// again on what that write left.
    pub patch: Value,
    /// For the Release's Event: what changed for the rollout.
    pub message: String,
}

/// The update that `pipeline`, the Application's resolved strategy, makes to its Releases: the
/// newest one's, while it rolls out and runs under another strategy. `releases` are in any order.
pub fn desired(pipeline: &Pipeline, releases: &[Release]) -> Option<StrategyUpdate> {
    let release = newest(releases)?;
    let rolling_out = release
        .status
        .as_ref()
        .and_then(|status| status.phase)
        .is_none_or(|phase| phase.is_rolling_out());
    if !rolling_out || release.is_rolled_back() || release.spec.strategy == *pipeline {
        return None;
    }
    let old = &release.spec.strategy;
    let target_step = target_step(release.spec.target_step, old, pipeline);
    let mut spec = Map::new();
    spec.insert(
        "strategy".into(),
        merge_patch(&to_value(old), &to_value(pipeline)),
    );
    if target_step != release.spec.target_step {
        spec.insert("targetStep".into(), json!(target_step));
    }
    let patch = json!({
        "metadata": {"resourceVersion": release.resource_version()},
        "spec": spec,
    });

    let mut progress = progress(release);
    let from = old.step_label(progress.step as usize);
    let message = match progress.follow(pipeline) {
        Followed::Same => format!(
            "the Application's strategy changed: the rollout goes on under it at step {}",
            pipeline.step_label(progress.step as usize)
        ),
        Followed::Moved { .. } => format!(
            "the Application's strategy changed: the rollout goes on under it at step {from}, now step {}",
            pipeline.step_label(progress.step as usize)
        ),
        Followed::Replaced { .. } => format!(
            "the Application's strategy changed and has no step {from} any more: the rollout goes on under it from step {}, entered anew",
            pipeline.step_label(progress.step as usize)
        ),
    };
    let mut updated = release.clone();
    updated.spec.strategy = pipeline.clone();
    updated.spec.target_step = target_step;
    Some(StrategyUpdate {
        release: updated,
        patch,
        message,
    })
}

/// A person's target step (`prism promote`) on the `new` strategy instead of the `old` one: the
/// same step, found by its name; past the last gate stays past the last gate; a step that no
/// longer exists keeps its index, or becomes the last step, its gate kept.
fn target_step(target: Option<u32>, old: &Pipeline, new: &Pipeline) -> Option<u32> {
    let steps = new.steps.len() as u32;
    target.map(|target| match old.steps.get(target as usize) {
        None => steps,
        Some(step) => new
            .steps
            .iter()
            .position(|s| s.name == step.name)
            .map_or(target.min(steps.saturating_sub(1)), |index| index as u32),
    })
}

fn to_value(pipeline: &Pipeline) -> Value {
    serde_json::to_value(pipeline).unwrap_or_default()
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: a field `new` lacks is set to
/// null, which deletes it.
fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before) => {
                        patch.insert(key.clone(), merge_patch(before, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use prism_api::ReleaseSpec;
    use prism_api::release::{ReleasePhase, ReleaseStatus};
    use prism_api::strategy::{Gate, Step, Waves};
    use prism_testkit::fixtures::web_template;

    use super::*;

    fn step(name: &str, pause_secs: Option<i64>) -> Step {
        Step {
            name: name.into(),
            gate: pause_secs.map(|secs| Gate {
                pause: Some(prism_api::strategy::Duration::from_secs(secs)),
                ..Gate::default()
            }),
            ..Step::default()
        }
    }

    fn pipeline(steps: &[(&str, Option<i64>)]) -> Pipeline {
        Pipeline {
            steps: steps
                .iter()
                .map(|(name, pause)| step(name, *pause))
                .collect(),
            ..Pipeline::default()
        }
    }

    fn release(revision: u32, strategy: Pipeline, phase: Option<ReleasePhase>) -> Release {
        let mut release = Release::new(
            &format!("web-{revision}"),
            ReleaseSpec {
                application: "web".into(),
                revision,
                template: serde_json::from_value(web_template("web:1", 2)).unwrap(),
                target: None,
                strategy,
                clusters: vec![],
                target_step: None,
                aborted: false,
                side: None,
            },
        );
        release.metadata.resource_version = Some("42".into());
        release.status = phase.map(|phase| ReleaseStatus {
            phase: Some(phase),
            step: Some(1),
            step_name: Some("b".into()),
            ..ReleaseStatus::default()
        });
        release
    }

    #[test]
    fn a_new_pause_updates_the_release_rolling_out_in_place() {
        let old = pipeline(&[("a", None), ("b", Some(600)), ("full", None)]);
        let new = pipeline(&[("a", None), ("b", Some(60)), ("full", None)]);
        let releases = [
            release(1, old.clone(), Some(ReleasePhase::Complete)),
            release(2, old, Some(ReleasePhase::Progressing)),
        ];
        let update = desired(&new, &releases).unwrap();
        assert_eq!(update.release.name_any(), "web-2");
        assert_eq!(update.release.spec.strategy, new);
        assert_eq!(update.patch["metadata"], json!({"resourceVersion": "42"}));
        // A merge patch replaces an array whole: the steps, as they are now.
        assert_eq!(
            update.patch["spec"],
            json!({"strategy": {"steps": to_value(&new)["steps"]}})
        );
        assert_eq!(
            update.message,
            "the Application's strategy changed: the rollout goes on under it at step 2/3 \"b\""
        );
        assert!(desired(&new, &[update.release]).is_none(), "once only");
    }

    #[test]
    fn a_finished_release_keeps_the_strategy_it_ran_under() {
        let old = pipeline(&[("a", None), ("b", Some(600)), ("full", None)]);
        let new = pipeline(&[("a", None), ("full", None)]);
        for phase in [
            ReleasePhase::Complete,
            ReleasePhase::Aborted,
            ReleasePhase::RollingBack,
            ReleasePhase::Superseded,
        ] {
            let releases = [release(2, old.clone(), Some(phase))];
            assert!(desired(&new, &releases).is_none(), "{phase:?}");
        }
        let mut aborted = release(2, old.clone(), Some(ReleasePhase::Progressing));
        aborted.spec.aborted = true;
        assert!(desired(&new, &[aborted]).is_none());
        // A Release without a status yet rolls out.
        assert!(desired(&new, &[release(2, old, None)]).is_some());
    }

    #[test]
    fn a_removed_field_is_deleted_and_a_removed_current_step_is_named() {
        let mut old = pipeline(&[("a", None), ("b", Some(600)), ("full", None)]);
        old.waves = Some(Waves {
            max_concurrency: Some(1),
            ..Waves::default()
        });
        let new = pipeline(&[("a", None), ("full", None)]);
        let update = desired(&new, &[release(2, old, Some(ReleasePhase::Paused))]).unwrap();
        assert_eq!(update.patch["spec"]["strategy"]["waves"], Value::Null);
        assert!(
            update.patch["spec"]["strategy"]
                .as_object()
                .unwrap()
                .contains_key("waves")
        );
        assert_eq!(
            update.message,
            "the Application's strategy changed and has no step 2/3 \"b\" any more: the rollout goes on under it from step 2/2 \"full\", entered anew"
        );
    }

    #[test]
    fn a_target_step_keeps_its_meaning() {
        let old = pipeline(&[("a", None), ("b", None), ("c", None), ("full", None)]);
        let new = pipeline(&[("x", None), ("c", None), ("full", None)]);
        // The same step by name; past the last gate stays so; a step gone keeps its index, or
        // becomes the last step.
        assert_eq!(target_step(Some(2), &old, &new), Some(1));
        assert_eq!(target_step(Some(4), &old, &new), Some(3));
        assert_eq!(target_step(Some(0), &old, &new), Some(0));
        let fewer = pipeline(&[("x", None), ("full", None)]);
        assert_eq!(target_step(Some(2), &old, &fewer), Some(1));
        assert_eq!(target_step(None, &old, &new), None);

        let mut promoted = release(2, old, Some(ReleasePhase::WaitingForCommand));
        promoted.spec.target_step = Some(2);
        let update = desired(&new, &[promoted]).unwrap();
        assert_eq!(update.patch["spec"]["targetStep"], json!(1));
        assert_eq!(update.release.spec.target_step, Some(1));
    }

    #[test]
    fn a_merge_patch_turns_the_old_into_the_new() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [1], "f": true});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"b": {"c": 5, "d": null}, "e": [1], "f": true})
        );
    }
}
