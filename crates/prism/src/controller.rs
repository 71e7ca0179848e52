//! `prism controller`: runs Prism's controllers against the cluster of the current kubeconfig
//! (or the in-cluster service account) until SIGINT or SIGTERM.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line, with the reconcile's span (its application), for log
    /// pipelines.
    Json,
}

/// Leader election: which replica acts, and for which shard of the Applications.
#[derive(Clone, Debug, clap::Args)]
pub struct ElectionArgs {
    /// Act only while holding a Lease, so that several replicas can run: one acts for each
    /// shard, the others keep their caches warm and take over when it stops renewing.
    #[arg(long)]
    leader_elect: bool,
    /// Where the Leases are. Default: $POD_NAMESPACE, else prism-system.
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Leases. Default: $POD_NAME, else the host's name.
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// Shards of the Applications, each led by one replica (a stable hash of namespace/name).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Seconds a lease lasts unrenewed: a stopped leader's shards move after this.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration: u64,
}

impl ElectionArgs {
    /// The election, with the defaults that come from the environment (a Pod's downward API).
    pub fn resolve(self) -> Option<prism_controller::LeaderElection> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        self.leader_elect.then(|| prism_controller::LeaderElection {
            identity: self
                .identity
                .or_else(|| from_env("POD_NAME"))
                .or_else(|| from_env("HOSTNAME"))
                .unwrap_or_else(|| format!("prism-{}", std::process::id())),
            namespace: self
                .lease_namespace
                .or_else(|| from_env("POD_NAMESPACE"))
                .unwrap_or_else(|| prism_controller::DEFAULT_GLOBAL_NAMESPACE.to_owned()),
            shards: self.shards,
            lease_duration: std::time::Duration::from_secs(self.lease_duration),
        })
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), then runs the controllers.
pub fn run(options: prism_controller::Options, log_format: LogFormat) -> Result<(), String> {
    init_logs(log_format);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
        prism_controller::run(config, options)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), in `log_format`.
pub fn init_logs(log_format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}
