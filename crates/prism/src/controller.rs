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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), then runs the controllers.
pub fn run(options: prism_controller::Options, log_format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async {
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
        let client = prism_controller::client::counted(
            config,
            prism_controller::fleet::MANAGEMENT_CLUSTER,
            &options.metrics,
        )
        .map_err(|e| format!("no Kubernetes client: {e}"))?;
        prism_controller::run(client, options)
            .await
            .map_err(|e| e.to_string())
    })
}
