//! RolloutBlocks: while one applies to an Application, no new Release is made for it and its
//! rollout does not leave its current step. A block applies to the Applications of its own
//! namespace, or to every Application when it is in the global namespace
//! ([`crate::Options::global_namespace`]). An Application passes the blocks it names in its
//! `prism.dev/override-rollout-block` annotation, and each pass is recorded on the block.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use prism_api::labels::FIELD_MANAGER;
use prism_api::rollout_block::{
    BlockOverride, OVERRIDE_ROLLOUT_BLOCK_ANNOTATION, RolloutBlockStatus, overridden_blocks,
};
use prism_api::{Application, RolloutBlock};
use tracing::info;

use crate::error::{Error, ReleasesError};

/// The blocks that apply to `app`, and whether its annotation overrides each.
pub struct Blocks {
    applying: Vec<(Arc<RolloutBlock>, bool)>,
}

impl Blocks {
    pub fn of(app: &Application, store: &Store<RolloutBlock>, global_namespace: &str) -> Blocks {
        let namespace = app.namespace().unwrap_or_default();
        let overrides: Vec<&str> = app
            .annotations()
            .get(OVERRIDE_ROLLOUT_BLOCK_ANNOTATION)
            .map(|value| overridden_blocks(value).collect())
            .unwrap_or_default();
        let mut applying: Vec<(Arc<RolloutBlock>, bool)> = store
            .state()
            .into_iter()
            .filter(|block| {
                let home = block.namespace().unwrap_or_default();
                home == namespace || home == global_namespace
            })
            .map(|block| {
                let overridden = overrides.contains(&block.name_any().as_str());
                (block, overridden)
            })
            .collect();
        applying.sort_by_key(|(block, _)| (block.namespace(), block.name_any()));
        Blocks { applying }
    }

    /// What stops the application's rollout: the first block it does not override, as people
    /// read it, with the way past it.
    pub fn stopping(&self) -> Option<String> {
        let (block, _) = self.applying.iter().find(|(_, overridden)| !overridden)?;
        Some(block.describe())
    }

    /// Records on each overridden block that `release` of `app` rolled out through it, once.
    pub async fn record_overrides(
        &self,
        client: &kube::Client,
        app: &Application,
        release: &str,
    ) -> Result<(), Error> {
        let application = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
        for (block, _) in self.applying.iter().filter(|(_, overridden)| *overridden) {
            let mut status = block.status.clone().unwrap_or_default();
            if status
                .overrides
                .iter()
                .any(|o| o.application == application && o.release == release)
            {
                continue;
            }
            status.overrides.push(BlockOverride {
                application: application.clone(),
                release: release.to_owned(),
                at: Time(jiff::Timestamp::now()),
            });
            write_status(client, block, &status).await?;
            info!(block = %block.name_any(), %application, release, "a rollout passed a RolloutBlock by override");
        }
        Ok(())
    }
}

async fn write_status(
    client: &kube::Client,
    block: &RolloutBlock,
    status: &RolloutBlockStatus,
) -> Result<(), Error> {
    let namespace = block.namespace().unwrap_or_default();
    let name = block.name_any();
    let patch = serde_json::json!({
        "apiVersion": RolloutBlock::api_version(&()),
        "kind": RolloutBlock::kind(&()),
        "status": status,
    });
    Api::<RolloutBlock>::namespaced(client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReleasesError::RecordOverride {
            block: format!("{namespace}/{name}"),
            source,
        })?;
    Ok(())
}
