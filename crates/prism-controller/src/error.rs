//! The controllers' errors. An invalid spec is not one: it is reported in the object's status
//! and in an Event, and reconciling succeeds.

/// What stopped one reconcile; the controller logs it and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// An application cluster's API server refused a write for what it is (see
    /// [`crate::write::is_refusal`]); the rollout stage reports it rather than fail.
    #[error("cluster {cluster}: {refusal}")]
    Refused {
        cluster: String,
        refusal: crate::write::Refusal,
    },
    /// An object the controller needs lacks a field the API server always sets.
    #[error("{0} has no {1}")]
    MissingField(String, &'static str),
    /// A Release whose template's capacity cannot be read (made by hand, or before templates were
    /// checked): it is not rolled out, since Prism never guesses a count.
    #[error(
        "Release {0}: the template's replicas or autoscaler bounds cannot be read; make a new Release by fixing the Application's spec.template"
    )]
    UnreadableCapacity(String),
    /// The address of `/metrics` could not be bound (in use, say).
    #[error("serving metrics on {address}: {source}")]
    Serve {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An object could not be turned into the JSON of an apply.
    #[error("serializing {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The error's kind, a label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Refused { .. } => "refused",
            Error::MissingField(..) => "missing_field",
            Error::UnreadableCapacity(_) => "unreadable_capacity",
            Error::Serialize { .. } => "serialize",
            Error::Serve { .. } => "serve",
        }
    }

    /// What a person can do about it, for the Warning Event that reports it.
    pub fn fix(&self) -> String {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 403 => "the controller's identity lacks a right it needs: grant what docs/fleet.md lists in application clusters (prism cluster join grants it) and docs/operations.md's RBAC in the management cluster (the Helm chart grants it)".into(),
                kube::Error::Api(status) if status.code == 404 => "a kind the controller reads is not installed: install Prism's CRDs (prism crds | kubectl apply --server-side -f -)".into(),
                _ => "the API server did not do what was asked; the controller retries every 5 s, and the cluster's health (prism cluster list) may say why".into(),
            },
            Error::Refused { cluster, .. } => format!("cluster {cluster} refuses the write: the Release's conditions and its WriteRefused Event say what it said"),
            Error::MissingField(object, field) => format!("{object} lacks {field}, which the API server always sets: it was not made through the API server; make it again with kubectl"),
            Error::UnreadableCapacity(release) => format!("delete Release {release} (made by hand, or before templates were checked); the controller makes Releases from the Application's spec.template"),
            Error::Serialize { .. } | Error::Serve { .. } => "a defect of Prism: report it with the controller's log".into(),
        }
    }

    /// Wraps a client error with what was being done.
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}
