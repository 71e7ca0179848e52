//! RolloutBlocks as the commands see them. While a block stops an Application, its rollout does
//! not leave its current step and no new Release of it is made; the controller carries out a
//! promotion or a new template only once the block is lifted or passed. So the commands whose
//! effect a block holds back (`promote`, `rollback`) refuse under one, naming it and the ways
//! past it, unless told with `--when-unblocked` to record their change now and let it wait:
//! a step must never move later by surprise. `abort` goes on under a block: aborts roll back.
//!
//! [`stopping`] and [`held`] are pure; [`read`] lists the namespace's blocks.

use kube::ResourceExt;
use kube::api::ListParams;
use prism_api::conditions;
use prism_api::rollout_block::overridden_blocks;
use prism_api::{Application, RolloutBlock, rollout_block::OVERRIDE_ROLLOUT_BLOCK_ANNOTATION};

use crate::Error;
use crate::connection::Connection;

/// The flag that lets a command record its change under a block, for messages.
pub const WHEN_UNBLOCKED: &str = "--when-unblocked";

/// The blocks that stop `app`, as people read them: each RolloutBlock of its namespace that its
/// override annotation does not name, then what the controller's Blocked condition names
/// elsewhere (a block in the controller's own namespace stops every Application). The
/// condition's word on a block of the Application's namespace gives way to `namespace_blocks`,
/// which are current where the condition may lag.
pub fn stopping(app: &Application, namespace_blocks: &[RolloutBlock]) -> Vec<String> {
    let namespace = app.namespace().unwrap_or_default();
    let overridden: Vec<&str> = app
        .annotations()
        .get(OVERRIDE_ROLLOUT_BLOCK_ANNOTATION)
        .map(|value| overridden_blocks(value).collect())
        .unwrap_or_default();
    let mut blocks: Vec<&RolloutBlock> = namespace_blocks
        .iter()
        .filter(|block| block.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|block| block.metadata.deletion_timestamp.is_none())
        .filter(|block| !overridden.contains(&block.name_any().as_str()))
        .collect();
    blocks.sort_by_key(|block| block.name_any());
    let mut stopping: Vec<String> = blocks.iter().map(|block| block.describe()).collect();
    let condition = app
        .status
        .as_ref()
        .and_then(|status| conditions::find(&status.conditions, conditions::application::BLOCKED))
        .filter(|condition| condition.status == "True");
    if let Some(condition) = condition
        && !condition
            .message
            .starts_with(&format!("RolloutBlock {namespace}/"))
    {
        stopping.push(condition.message.clone());
    }
    stopping
}

/// A command's change under `blocks`: `Ok(None)` when none stops it; with `when_unblocked`,
/// `Ok(Some(note))`, the note saying plainly that the change waits; otherwise refused (exit 4),
/// naming the blocks and the ways past them. `holds` says what the blocks hold back
/// (`web-3 stays at step 1/2 "canary"`), `retry` is the command to run with the flag.
pub fn held(
    blocks: &[String],
    when_unblocked: bool,
    holds: &str,
    retry: &str,
) -> Result<Option<String>, Error> {
    if blocks.is_empty() {
        return Ok(None);
    }
    let list = blocks
        .iter()
        .map(|block| format!("  {block}"))
        .collect::<Vec<_>>()
        .join("\n");
    if when_unblocked {
        return Ok(Some(format!(
            "it waits: {holds} until the block is lifted or passed:\n{list}"
        )));
    }
    Err(Error::Refused(format!(
        "nothing was changed: {holds} while a RolloutBlock stops it:\n{list}\n\
         To go on, lift the block (`kubectl delete rolloutblock NAME -n NAMESPACE`) or pass it \
         as its line says (each pass is recorded on the block); or run `{retry} {WHEN_UNBLOCKED}` \
         to record the change now, to take effect when the block is lifted"
    )))
}

/// The RolloutBlocks of the connection's namespace. A person who may not list them still gets
/// the controller's Blocked condition, so a refusal of access is no failure here.
pub async fn read(connection: &Connection) -> Result<Vec<RolloutBlock>, Error> {
    match connection
        .rollout_blocks()
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.is_forbidden() => Ok(Vec::new()),
        Err(error) => Err(connection.explain(
            &format!("listing RolloutBlocks in {}", connection.namespace()),
            error,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::application;
    use serde_json::json;

    fn block(namespace: &str, name: &str, message: &str) -> RolloutBlock {
        serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "RolloutBlock",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"message": message},
        }))
        .unwrap()
    }

    fn blocked_by(message: &str) -> Application {
        application(
            "web:2",
            json!({"conditions": [{
                "type": "Blocked", "status": "True", "reason": "RolloutBlocked",
                "message": message, "lastTransitionTime": "2026-11-22T12:00:00Z",
            }]}),
        )
    }

    #[test]
    fn the_blocks_of_the_namespace_stop_the_application_unless_it_passes_them() {
        let blocks = [
            block("team", "freeze", "release freeze until Monday"),
            block("team", "incident", "incident 42"),
            block("other", "elsewhere", "not ours"),
        ];
        let mut app = application("web:2", json!({}));
        assert_eq!(
            stopping(&app, &blocks),
            [
                "RolloutBlock team/freeze: release freeze until Monday (to pass it, annotate the \
                 Application with prism.dev/override-rollout-block: freeze)",
                "RolloutBlock team/incident: incident 42 (to pass it, annotate the Application \
                 with prism.dev/override-rollout-block: incident)",
            ]
        );
        app.annotations_mut().insert(
            OVERRIDE_ROLLOUT_BLOCK_ANNOTATION.into(),
            "freeze, incident".into(),
        );
        assert!(stopping(&app, &blocks).is_empty());
    }

    #[test]
    fn a_global_block_comes_from_the_blocked_condition() {
        let global = "RolloutBlock prism-system/freeze: everyone stops (to pass it, annotate the \
                      Application with prism.dev/override-rollout-block: freeze)";
        assert_eq!(stopping(&blocked_by(global), &[]), [global]);
    }

    #[test]
    fn a_condition_that_names_a_lifted_block_of_the_namespace_is_stale() {
        let lifted = "RolloutBlock team/freeze: over (to pass it, annotate the Application with \
                      prism.dev/override-rollout-block: freeze)";
        assert!(stopping(&blocked_by(lifted), &[]).is_empty());
        // Still there: named once.
        let blocks = [block("team", "freeze", "over")];
        assert_eq!(stopping(&blocked_by(lifted), &blocks), [lifted]);
    }

    #[test]
    fn without_a_block_the_command_goes_ahead() {
        assert_eq!(
            held(&[], false, "web-3 stays", "prism promote web").unwrap(),
            None
        );
    }

    #[test]
    fn under_a_block_the_command_is_refused_naming_it_and_the_ways_past_it() {
        let blocks = ["RolloutBlock team/freeze: release freeze".to_owned()];
        let error = held(
            &blocks,
            false,
            "web-3 stays at step 1/2 \"canary\"",
            "prism promote web -n team",
        )
        .unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "nothing was changed: web-3 stays at step 1/2 \"canary\" while a RolloutBlock stops \
             it:\n  RolloutBlock team/freeze: release freeze\nTo go on, lift the block \
             (`kubectl delete rolloutblock NAME -n NAMESPACE`) or pass it as its line says (each \
             pass is recorded on the block); or run `prism promote web -n team --when-unblocked` \
             to record the change now, to take effect when the block is lifted"
        );
    }

    #[test]
    fn when_unblocked_the_change_is_made_and_said_to_wait() {
        let blocks = ["RolloutBlock team/freeze: release freeze".to_owned()];
        assert_eq!(
            held(
                &blocks,
                true,
                "web-3 stays at step 1/2",
                "prism promote web"
            )
            .unwrap(),
            Some(
                "it waits: web-3 stays at step 1/2 until the block is lifted or passed:\n  \
                 RolloutBlock team/freeze: release freeze"
                    .to_owned()
            )
        );
    }
}
