//! The controllers' errors, one type per stage of the pipeline: starting the controller
//! ([`StartError`]), making and keeping an Application's Releases ([`ReleasesError`]: the
//! Releases made, updated and pruned, side versions, the dry run of a new template, overrides
//! recorded on RolloutBlocks) and writing what a decision asks ([`WriteError`]: objects in the
//! clusters, statuses). [`Error`] is any of them. Each says what was being done, to what, in
//! typed fields, and has a category (the metric's reason) and a fix (the Warning Event's advice).
//! An invalid spec is not an error: it is reported in the object's status and in an Event, and
//! reconciling succeeds.

use crate::write::Refusal;

/// What stopped one reconcile, or the controller's start; the controller logs it and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Releases(#[from] ReleasesError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What stops the controller from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("making a client of the management cluster: {0}")]
    Client(#[source] kube::Error),
    #[error("listing Applications (are the CRDs installed?): {0}")]
    ListApplications(#[source] kube::Error),
    /// The address of `/metrics` could not be bound (in use, say).
    #[error("serving metrics on {address}: {source}")]
    Serve {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What stops an Application's Releases from being made, updated or pruned (`application.rs`,
/// `strategy_update.rs`, `side_versions.rs`, `dry_run.rs`, `blocks.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ReleasesError {
    /// An object the controller needs lacks a field the API server always sets.
    #[error("{object} has no {field}")]
    MissingField { object: String, field: &'static str },
    /// A Release whose template's capacity cannot be read (made by hand, or before templates were
    /// checked): it is not rolled out, since Prism never guesses a count.
    #[error(
        "Release {0}: the template's replicas or autoscaler bounds cannot be read; make a new Release by fixing the Application's spec.template"
    )]
    UnreadableCapacity(String),
    #[error("creating Release {release}: {source}")]
    Create {
        release: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the strategy of Release {release}: {source}")]
    UpdateStrategy {
        release: String,
        #[source]
        source: kube::Error,
    },
    #[error("retiring side Release {release}: {source}")]
    Retire {
        release: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting Release {release}: {source}")]
    Prune {
        release: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of SideVersion {side_version}: {source}")]
    SideVersionStatus {
        side_version: String,
        #[source]
        source: kube::Error,
    },
    /// The dry run of a new template's object failed for a reason that is not the template's.
    #[error("{object}: {source}")]
    DryRun {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// An object could not be turned into the JSON of a request.
    #[error("serializing {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("recording an override on RolloutBlock {block}: {source}")]
    RecordOverride {
        block: String,
        #[source]
        source: kube::Error,
    },
    /// A chart could not be rendered for a reason that may pass by itself: its repository did
    /// not answer, Helm could not run or took too long.
    #[error("rendering the chart: {0}")]
    Render(String),
    #[error("reading the chart's values file {object}: {source}")]
    ReadValues {
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// What stops a decision's writes (`write.rs`): an object in a cluster, or a status.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("updating the status of {object}: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing {object}: {source}")]
    Object {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// An application cluster's API server refused a write for what it is (see
    /// [`crate::write::is_refusal`]); the rollout stage reports it rather than fail.
    #[error("cluster {cluster}: {refusal}")]
    Refused { cluster: String, refusal: Refusal },
}

impl Error {
    /// The request to an API server that failed, if one did.
    fn kube(&self) -> Option<&kube::Error> {
        match self {
            Error::Start(StartError::Client(source) | StartError::ListApplications(source)) => {
                Some(source)
            }
            Error::Start(StartError::Serve { .. }) => None,
            Error::Releases(error) => match error {
                ReleasesError::Create { source, .. }
                | ReleasesError::UpdateStrategy { source, .. }
                | ReleasesError::Retire { source, .. }
                | ReleasesError::Prune { source, .. }
                | ReleasesError::SideVersionStatus { source, .. }
                | ReleasesError::DryRun { source, .. }
                | ReleasesError::RecordOverride { source, .. }
                | ReleasesError::ReadValues { source, .. } => Some(source),
                ReleasesError::MissingField { .. }
                | ReleasesError::UnreadableCapacity(_)
                | ReleasesError::Serialize { .. }
                | ReleasesError::Render(_) => None,
            },
            Error::Write(WriteError::Status { source, .. } | WriteError::Object { source, .. }) => {
                Some(source)
            }
            Error::Write(WriteError::Refused { .. }) => None,
        }
    }

    /// The error's category, a label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            _ if self.kube().is_some() => "kube",
            Error::Write(WriteError::Refused { .. }) => "refused",
            Error::Releases(ReleasesError::MissingField { .. }) => "missing_field",
            Error::Releases(ReleasesError::UnreadableCapacity(_)) => "unreadable_capacity",
            Error::Releases(ReleasesError::Serialize { .. }) => "serialize",
            Error::Releases(ReleasesError::Render(_)) => "render",
            _ => "serve",
        }
    }

    /// What a person can do about it, for the Warning Event that reports it.
    pub fn fix(&self) -> String {
        if let Some(source) = self.kube() {
            return match source {
                kube::Error::Api(status) if status.code == 403 => "the controller's identity lacks a right it needs: grant what docs/fleet.md lists in application clusters (prism cluster join grants it) and docs/operations.md's RBAC in the management cluster (the Helm chart grants it)".into(),
                kube::Error::Api(status) if status.code == 404 => "a kind the controller reads is not installed: install Prism's CRDs (prism crds | kubectl apply --server-side -f -)".into(),
                _ => "the API server did not do what was asked; the controller retries every 5 s, and the cluster's health (prism cluster list) may say why".into(),
            };
        }
        match self {
            Error::Write(WriteError::Refused { cluster, .. }) => format!(
                "cluster {cluster} refuses the write: the Release's conditions and its WriteRefused Event say what it said"
            ),
            Error::Releases(ReleasesError::MissingField { object, field }) => format!(
                "{object} lacks {field}, which the API server always sets: it was not made through the API server; make it again with kubectl"
            ),
            Error::Releases(ReleasesError::UnreadableCapacity(release)) => format!(
                "delete Release {release} (made by hand, or before templates were checked); the controller makes Releases from the Application's spec.template"
            ),
            Error::Releases(ReleasesError::Render(_)) => "check that the chart repository answers from the controller's network and that helm runs (the controller's --helm); the controller retries".into(),
            _ => "a defect of Prism: report it with the controller's log".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden() -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("forbidden", "Forbidden")
                .with_code(403)
                .boxed(),
        )
    }

    #[test]
    fn each_stage_names_what_it_was_doing_and_its_category() {
        let create: Error = ReleasesError::Create {
            release: "shop/web-2".into(),
            source: forbidden(),
        }
        .into();
        assert!(
            create
                .to_string()
                .starts_with("creating Release shop/web-2: ")
        );
        assert_eq!(create.metric_label(), "kube");
        assert!(create.fix().contains("lacks a right"), "{}", create.fix());

        let missing: Error = ReleasesError::MissingField {
            object: "web".into(),
            field: "metadata.uid",
        }
        .into();
        assert_eq!(missing.to_string(), "web has no metadata.uid");
        assert_eq!(missing.metric_label(), "missing_field");

        let status: Error = WriteError::Status {
            object: "Release shop/web-2".into(),
            source: forbidden(),
        }
        .into();
        assert!(
            status
                .to_string()
                .starts_with("updating the status of Release shop/web-2")
        );
        assert_eq!(status.metric_label(), "kube");
    }
}
