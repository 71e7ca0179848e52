//! `prism cluster ...`: the fleet's application clusters. `join` gives Prism access to a cluster
//! and registers it, `list` sums up what each cluster runs, `cordon`/`uncordon` close a cluster to
//! new Releases and open it again, `drain` moves every application off a cluster.
//!
//! Each submodule keeps its pure part (objects to apply, summaries, progress) apart from the
//! requests, which go through a [`Management`] connection.

pub mod drain;
pub mod join;

/// The exit codes of the `cluster` commands, as their `--help` lists them.
pub const EXIT_CODES: &str = "Exit codes:
  0  done
  1  no kubeconfig, a cluster cannot be reached, access denied, or Prism's CRDs are not installed
  2  usage error
  3  the Cluster does not exist (cordon, uncordon, drain)
  6  drain: the --timeout passed before the cluster was empty";
