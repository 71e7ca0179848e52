//! The exit code a script sees for each kind of [`Error`]. The codes are the same for every
//! command; [`EXIT_CODES`] lists them in each command's help.

use prism_ops::Error;

/// The exit codes, as each command's `--help` lists them.
pub const EXIT_CODES: &str = "Exit codes:
  0  done
  1  no kubeconfig, the cluster cannot be reached, access denied, or Prism's CRDs are not installed
  2  usage error
  3  the Application does not exist in the namespace, or the revision does not (rollback --to)
  4  refused: the rollout's state or a RolloutBlock does not allow the command; the message says why
  5  status --watch: the newest Release was rolled back
  6  status --watch: the --timeout passed before the newest Release finished";

/// The process's exit code for `error`; see [`EXIT_CODES`]. 2 (usage) is clap's.
pub fn code(error: &Error) -> u8 {
    match error {
        Error::Api(_) | Error::Forbidden(_) => 1,
        Error::NotFound(_) => 3,
        Error::Refused(_) => 4,
        Error::RolledBack(_) => 5,
        Error::Timeout(_) => 6,
    }
}
