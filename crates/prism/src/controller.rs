//! `prism controller`: runs Prism's controllers against the cluster of the current kubeconfig
//! (or the in-cluster service account) until SIGINT or SIGTERM.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), then runs the controllers.
pub fn run(options: prism_controller::Options) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("no Kubernetes client: {e}"))?;
        prism_controller::run(client, options)
            .await
            .map_err(|e| e.to_string())
    })
}
