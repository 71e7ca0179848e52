//! Prism's HTTP API and web UI over the whole fleet: `prism serve` (many callers, each with a
//! bearer token) and `prism dashboard` (the kubeconfig's user, on loopback).
//!
//! Reads are answered from watch caches ([`caches`]) through `prism-ops`' read models
//! ([`views`]); every read and action is authorized as the caller ([`auth`]); live updates are
//! Server-Sent Events ([`stream`]); the UI's files are embedded ([`assets`]); the routes and
//! their OpenAPI description are [`routes`] and [`openapi`].

pub mod assets;
pub mod auth;
pub mod caches;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod stream;
pub mod views;

use std::net::SocketAddr;

pub use auth::Mode;
use kube::Client;
use tokio::net::TcpListener;

/// What the command line decides.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Show only this namespace's applications: for a person whose rights end at one namespace.
    pub namespace: Option<String>,
    /// Show only the Clusters with these labels, as the controller's `--cluster-selector`.
    pub cluster_selector: Option<String>,
}

/// Serves the API and the UI on `listener` until `shutdown` resolves.
pub async fn serve(
    client: Client,
    options: Options,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    let auth = auth::Auth::new(client.clone(), options.mode)
        .await
        .map_err(|e| std::io::Error::other(format!("asking who the kubeconfig's user is: {e}")))?;
    let (caches, _keeper) = caches::Caches::start(
        client.clone(),
        options.namespace.as_deref(),
        options.cluster_selector,
    );
    let state = state::State::new(client, auth, caches);
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `address`; `prism dashboard` refuses any but a loopback one.
pub async fn bind(address: SocketAddr, mode: Mode) -> Result<TcpListener, std::io::Error> {
    if mode == Mode::Dashboard && !address.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "prism dashboard serves the kubeconfig's own rights, so it binds to loopback only, not {address}: use `prism serve` to serve others"
        )));
    }
    TcpListener::bind(address).await
}
