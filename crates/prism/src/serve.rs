//! `prism serve` and `prism dashboard`: the HTTP API and web UI of `prism-server`, against the
//! management cluster of the current kubeconfig (or the in-cluster service account).

use std::net::SocketAddr;

use prism_server::{Mode, Options};

use crate::controller::{LogFormat, init_logs};

/// Serves until SIGINT or SIGTERM. The dashboard prints its URL first, for a person to open.
pub fn run(options: Options, address: SocketAddr, log_format: LogFormat) -> Result<(), String> {
    let mode = options.mode;
    init_logs(log_format);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async {
        let (client, _) = prism_ops::connection::current_kubeconfig()
            .await
            .map_err(|e| e.to_string())?;
        let listener = prism_server::bind(address, mode)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        match mode {
            Mode::Dashboard => println!("Prism dashboard: http://{bound}/ (Ctrl-C stops it)"),
            Mode::Serve => tracing::info!(address = %bound, "serving the HTTP API and the web UI"),
        }
        prism_server::serve(client, options, listener, stopped())
            .await
            .map_err(|e| e.to_string())
    })
}

async fn stopped() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match terminate.as_mut() {
                Some(terminate) => { terminate.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}
