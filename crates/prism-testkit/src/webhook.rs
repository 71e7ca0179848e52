//! A webhook receiver for tests: an in-process HTTP server that answers every POST as the test
//! says (accept, refuse, or never answer), and records what it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// How the receiver answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Accept,
    /// This status, with this body.
    Refuse(u16, String),
    /// Never: the caller's timeout decides.
    Hang,
}

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Call {
    pub body: Bytes,
    /// The `X-Prism-Signature` header, if any.
    pub signature: Option<String>,
}

impl Call {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    reply: Mutex<Option<Reply>>,
    calls: Mutex<Vec<Call>>,
}

/// Serves until dropped.
pub struct TestWebhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl TestWebhook {
    pub async fn start(reply: Reply) -> anyhow::Result<TestWebhook> {
        let shared = Arc::new(Shared::default());
        *shared.reply.lock().unwrap() = Some(reply);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/", post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestWebhook {
            addr,
            shared,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// From now on, answer so.
    pub fn set(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = Some(reply);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    shared.calls.lock().unwrap().push(Call {
        body,
        signature: headers
            .get("x-prism-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let reply = shared.reply.lock().unwrap().clone();
    match reply {
        Some(Reply::Refuse(status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            body,
        ),
        Some(Reply::Hang) => std::future::pending().await,
        _ => (StatusCode::OK, String::new()),
    }
}
