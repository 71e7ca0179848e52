//! Why a command that talks to the cluster failed, and the exit code a script sees for it. The
//! codes are the same for every command; [`EXIT_CODES`] lists them in each command's help.

/// The exit codes, as each command's `--help` lists them.
pub const EXIT_CODES: &str = "Exit codes:
  0  done
  1  no kubeconfig, the cluster cannot be reached, access denied, or Prism's CRDs are not installed
  2  usage error
  3  the Application does not exist in the namespace, or the revision does not (rollback --to)
  4  refused: the rollout's state or a RolloutBlock does not allow the command; the message says why
  5  status --watch: the newest Release was rolled back
  6  status --watch: the --timeout passed before the newest Release finished";

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No configuration, no connection, access denied, CRDs missing: the message says the fix.
    #[error("{0}")]
    Api(String),
    /// The Application, or a revision of it, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state of the rollout does not allow the command.
    #[error("{0}")]
    Refused(String),
    /// The Release `status --watch` followed was rolled back.
    #[error("{0}")]
    RolledBack(String),
    /// `status --watch --timeout` ran out.
    #[error("{0}")]
    Timeout(String),
}

impl CommandError {
    /// The process's exit code; see [`EXIT_CODES`]. 2 (usage) is clap's.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Api(_) => 1,
            CommandError::NotFound(_) => 3,
            CommandError::Refused(_) => 4,
            CommandError::RolledBack(_) => 5,
            CommandError::Timeout(_) => 6,
        }
    }
}
