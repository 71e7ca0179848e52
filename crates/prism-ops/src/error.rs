//! Why reading or acting on an Application failed. The CLI maps each kind to its exit code
//! (`prism`'s `exit.rs`), the HTTP server to a status; the message is for people in both.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No configuration, no connection, CRDs missing: the message says the fix.
    #[error("{0}")]
    Api(String),
    /// The cluster denied the request: the message names the rights needed.
    #[error("{0}")]
    Forbidden(String),
    /// The Application, a revision of it or a Cluster does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state of the rollout does not allow the action.
    #[error("{0}")]
    Refused(String),
    /// The Release `status --watch` followed was rolled back.
    #[error("{0}")]
    RolledBack(String),
    /// `status --watch --timeout` ran out.
    #[error("{0}")]
    Timeout(String),
}
