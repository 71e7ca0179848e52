//! `prism cluster ...`: the fleet's application clusters. `join` gives Prism access to a cluster
//! and registers it, `list` sums up what each cluster runs, `cordon`/`uncordon` close a cluster to
//! new Releases and open it again, `drain` moves every application off a cluster.
//!
//! Each submodule keeps its pure part (objects to apply, summaries, progress) apart from the
//! requests, which go through a [`Management`] connection.

pub mod list;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use prism_api::Cluster;
use serde_json::json;

use crate::Error;
pub use crate::connection::Target;
use crate::connection::{FIELD_MANAGER, current_kubeconfig};

/// The management cluster: that of the current kubeconfig (or the in-cluster service account),
/// where Cluster, Application and Release objects live.
pub struct Management {
    client: Client,
    target: Target,
}

impl Management {
    pub async fn new() -> Result<Management, Error> {
        let (client, config) = current_kubeconfig().await?;
        let url = config.cluster_url.to_string();
        Ok(Management {
            client,
            target: Target {
                name: "the management cluster".to_owned(),
                url,
                needs: "the command needs rights on Prism's resources there",
            },
        })
    }

    /// The management cluster, for messages.
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn clusters(&self) -> Api<Cluster> {
        Api::all(self.client.clone())
    }

    /// Fails with the fix when the Cluster CRD is not installed: a list of a missing resource
    /// type is a 404, where a get could not tell it from a missing object.
    pub async fn check_crds(&self) -> Result<(), Error> {
        self.clusters()
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map_err(|error| self.explain_list("listing Clusters", error))?;
        Ok(())
    }

    /// The Cluster `name`, or `NotFound` (exit 3).
    pub async fn cluster(&self, name: &str) -> Result<Cluster, Error> {
        self.check_crds().await?;
        self.clusters()
            .get_opt(name)
            .await
            .map_err(|e| self.explain(&format!("reading Cluster {name}"), e))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "cluster {name} not found (`prism cluster list` lists the clusters; \
                     `prism cluster join` adds one)"
                ))
            })
    }

    /// See [`Target::explain`].
    pub fn explain(&self, what: &str, error: kube::Error) -> Error {
        self.target.explain(what, error)
    }

    /// See [`Target::explain_list`].
    pub fn explain_list(&self, what: &str, error: kube::Error) -> Error {
        self.target.explain_list(what, error)
    }
}

/// `cordon` (true) or `uncordon` (false) the Cluster `name`: a merge patch of
/// `spec.unschedulable`. Returns what happened, for people.
pub async fn set_unschedulable(
    management: &Management,
    name: &str,
    unschedulable: bool,
) -> Result<String, Error> {
    let cluster = management.cluster(name).await?;
    let was = cluster.spec.unschedulable;
    management
        .clusters()
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
        )
        .await
        .map_err(|e| management.explain(&format!("patching Cluster {name}"), e))?;
    Ok(cordon_message(name, was, unschedulable))
}

/// What `cordon`/`uncordon` says, given the state before.
pub fn cordon_message(name: &str, was: bool, unschedulable: bool) -> String {
    match (was, unschedulable) {
        (false, true) => format!(
            "cluster {name} cordoned: no new Release is scheduled to it; what runs there stays \
             (`prism cluster drain {name}` moves it)"
        ),
        (true, true) => format!("cluster {name} was already cordoned"),
        (true, false) => {
            format!("cluster {name} uncordoned: new Releases may be scheduled to it again")
        }
        (false, false) => format!("cluster {name} was not cordoned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordon_says_what_changed() {
        assert!(cordon_message("c3", false, true).starts_with("cluster c3 cordoned: "));
        assert_eq!(
            cordon_message("c3", true, true),
            "cluster c3 was already cordoned"
        );
        assert!(cordon_message("c3", true, false).starts_with("cluster c3 uncordoned: "));
        assert_eq!(
            cordon_message("c3", false, false),
            "cluster c3 was not cordoned"
        );
    }

    #[test]
    fn a_list_that_finds_no_resource_type_means_the_crds_are_missing() {
        let target = Target {
            name: "the management cluster".into(),
            url: "https://m".into(),
            needs: "",
        };
        let not_found = || {
            kube::Error::Api(
                kube::core::Status::failure(
                    "the server could not find the requested resource",
                    "NotFound",
                )
                .with_code(404)
                .boxed(),
            )
        };
        let error = target.explain_list("listing Clusters", not_found());
        assert!(matches!(error, crate::Error::Api(_)));
        assert!(error.to_string().contains("prism crds"), "{error}");
        let error = target.explain("reading Cluster c3", not_found());
        assert!(matches!(error, crate::Error::NotFound(_)));
    }
}
