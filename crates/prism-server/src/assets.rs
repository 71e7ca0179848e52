//! The web UI's files, embedded in the binary at build time: clusters without internet get the
//! whole UI from the server, and nothing is fetched from elsewhere.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};

use crate::state::State;

static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/assets");

pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

fn file(path: &str) -> Response {
    let Some(file) = ASSETS.get_file(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        file.contents(),
    )
        .into_response()
}
