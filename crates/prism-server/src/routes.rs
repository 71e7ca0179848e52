//! The routes: each JSON resource is a [`Resource`], rendered the same way for a GET and for
//! each update of its stream; actions go through `prism-ops` as the CLI's do. [`ROUTES`] lists
//! every route, and a test holds `openapi.json` to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prism_ops::actions::Action;
use prism_ops::connection::Connection;
use prism_ops::{abort, promote, rollback};
use serde::{Deserialize, Serialize};

use crate::auth::{Access, Auth, Caller, Mode, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::State;
use crate::views::Visible;
use crate::{assets, openapi, stream};

pub const WHOAMI: &str = "/api/v1/whoami";
pub const SESSION: &str = "/api/v1/session";
pub const FLEET: &str = "/api/v1/fleet";
pub const FLEET_STREAM: &str = "/api/v1/fleet/stream";
pub const APPLICATIONS: &str = "/api/v1/applications";
pub const APPLICATION: &str = "/api/v1/namespaces/{namespace}/applications/{name}";
pub const APPLICATION_STREAM: &str = "/api/v1/namespaces/{namespace}/applications/{name}/stream";
pub const RELEASES: &str = "/api/v1/namespaces/{namespace}/applications/{name}/releases";
pub const VERSIONS: &str = "/api/v1/namespaces/{namespace}/applications/{name}/versions";
pub const PODS: &str = "/api/v1/namespaces/{namespace}/applications/{name}/pods";
pub const PROMOTE: &str = "/api/v1/namespaces/{namespace}/applications/{name}/promote";
pub const ABORT: &str = "/api/v1/namespaces/{namespace}/applications/{name}/abort";
pub const ROLLBACK: &str = "/api/v1/namespaces/{namespace}/applications/{name}/rollback";
pub const OPENAPI: &str = "/api/v1/openapi.json";

/// Every route of the API, with its methods: what `openapi.json` must describe.
pub const ROUTES: &[(&str, &[&str])] = &[
    (WHOAMI, &["get"]),
    (SESSION, &["post", "delete"]),
    (FLEET, &["get"]),
    (FLEET_STREAM, &["get"]),
    (APPLICATIONS, &["get"]),
    (APPLICATION, &["get"]),
    (APPLICATION_STREAM, &["get"]),
    (RELEASES, &["get"]),
    (VERSIONS, &["get"]),
    (PODS, &["get"]),
    (PROMOTE, &["post"]),
    (ABORT, &["post"]),
    (ROLLBACK, &["post"]),
    (OPENAPI, &["get"]),
];

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(WHOAMI, get(whoami))
        .route(SESSION, post(sign_in).delete(sign_out))
        .route(FLEET, get(fleet))
        .route(FLEET_STREAM, get(fleet_stream))
        .route(APPLICATIONS, get(applications))
        .route(APPLICATION, get(application))
        .route(APPLICATION_STREAM, get(application_stream))
        .route(RELEASES, get(releases))
        .route(VERSIONS, get(versions))
        .route(PODS, get(pods))
        .route(PROMOTE, post(promote))
        .route(ABORT, post(abort))
        .route(ROLLBACK, post(rollback))
        .route(OPENAPI, get(openapi::document))
        .route("/healthz", get(|| async { "ok" }))
        .merge(assets::router())
        .with_state(state)
}

/// A JSON resource of the API: what it shows and who may see it.
#[derive(Clone, Debug)]
pub enum Resource {
    Fleet,
    Applications {
        namespace: Option<String>,
    },
    Application {
        namespace: String,
        name: String,
        part: Part,
    },
}

/// Which part of an application a route shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Whole,
    Releases,
    Versions,
    Pods,
}

impl Resource {
    /// The resource's JSON for `caller`, or why they may not see it.
    pub async fn render(&self, state: &State, caller: &Caller) -> Result<Bytes, ApiError> {
        match self {
            Resource::Fleet => {
                let visible = state.visible(caller).await?;
                let clusters = Access {
                    verb: "list",
                    group: "prism.dev",
                    resource: "clusters",
                    namespace: String::new(),
                    name: None,
                };
                let may_list_clusters = state.auth.allows(caller, &clusters).await?;
                if !may_list_clusters && visible == Visible::Namespaces(Default::default()) {
                    return Err(ApiError::forbidden(format!(
                        "{} may neither {} nor list applications.prism.dev in any namespace",
                        caller.user,
                        clusters.describe()
                    )));
                }
                state.rendered(format!("fleet {visible:?} {may_list_clusters}"), |s| {
                    Ok(s.fleet(&visible, may_list_clusters))
                })
            }
            Resource::Applications { namespace } => {
                let visible = match namespace {
                    Some(namespace) => {
                        let access = Access::prism("list", "applications", namespace);
                        state.auth.require(caller, access).await?;
                        Visible::Namespaces([namespace.clone()].into())
                    }
                    None => state.visible(caller).await?,
                };
                if visible == Visible::Namespaces(Default::default()) {
                    return Err(ApiError::forbidden(format!(
                        "{} may not list applications.prism.dev in any namespace",
                        caller.user
                    )));
                }
                state.rendered(format!("applications {visible:?}"), |s| {
                    Ok(s.applications(&visible))
                })
            }
            Resource::Application {
                namespace,
                name,
                part,
            } => {
                let access = Access::prism("get", "applications", namespace).named(name);
                state.auth.require(caller, access).await?;
                let allowed = state.allowed(caller, namespace).await?;
                let key = format!("application {namespace}/{name} {allowed:?} {part:?}");
                state.rendered(key, |s| {
                    let detail = s.application(namespace, name, allowed).ok_or_else(|| {
                        ApiError::not_found(format!("application {namespace}/{name} not found"))
                    })?;
                    match part {
                        Part::Whole => serde_json::to_value(detail),
                        Part::Releases => serde_json::to_value(Items::of(detail.releases)),
                        Part::Versions => serde_json::to_value(Items::of(detail.versions)),
                        Part::Pods => serde_json::to_value(Items::of(detail.failing_pods)),
                    }
                    .map_err(|e| ApiError::upstream(format!("rendering the response: {e}")))
                })
            }
        }
    }
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

impl<T> Items<T> {
    fn of(items: Vec<T>) -> Items<T> {
        Items { items }
    }
}

fn json(body: Bytes) -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn get_resource(
    state: &State,
    headers: &HeaderMap,
    resource: Resource,
) -> Result<Response, ApiError> {
    let caller = state.auth.caller(headers).await?;
    let started = Instant::now();
    let body = resource.render(state, &caller).await?;
    let took = started.elapsed();
    let mut response = json(body);
    // The time the server took to answer from its caches (its authorization included), so that
    // a client tells it apart from the network's: `scripts/bench-serve.sh` reads it.
    response
        .headers_mut()
        .insert("server-timing", server_timing(took));
    Ok(response)
}

/// `app;dur=1.234`, in milliseconds.
fn server_timing(took: Duration) -> HeaderValue {
    let millis = took.as_secs_f64() * 1000.0;
    HeaderValue::try_from(format!("app;dur={millis:.3}")).expect("digits are a header value")
}

#[derive(Serialize)]
struct WhoAmI {
    #[serde(flatten)]
    caller: Caller,
    mode: Mode,
}

async fn whoami(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
) -> Result<Json<WhoAmI>, ApiError> {
    let caller = state.auth.caller(&headers).await?;
    Ok(Json(WhoAmI {
        caller,
        mode: state.auth.mode,
    }))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// Checks the token and keeps it in an HttpOnly cookie, so that the UI's requests and streams
/// carry it without any script reading it.
async fn sign_in(
    Shared(state): Shared<Arc<State>>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let token = body.token.trim();
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "token: give the bearer token, e.g. from `kubectl create token`",
        ));
    }
    if state.auth.review(token).await?.is_none() {
        return Err(ApiError::unauthorized(
            "the token was not accepted by the management cluster's TokenReview",
        ));
    }
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

async fn sign_out() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response()
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

async fn fleet(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_resource(&state, &headers, Resource::Fleet).await
}

async fn fleet_stream(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    stream::follow(state, &headers, Resource::Fleet).await
}

async fn applications(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<NamespaceQuery>,
) -> Result<Response, ApiError> {
    let resource = Resource::Applications {
        namespace: query.namespace.filter(|ns| !ns.is_empty()),
    };
    get_resource(&state, &headers, resource).await
}

fn application_part((namespace, name): (String, String), part: Part) -> Resource {
    Resource::Application {
        namespace,
        name,
        part,
    }
}

async fn application(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_resource(&state, &headers, application_part(path, Part::Whole)).await
}

async fn application_stream(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    stream::follow(state, &headers, application_part(path, Part::Whole)).await
}

async fn releases(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_resource(&state, &headers, application_part(path, Part::Releases)).await
}

async fn versions(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_resource(&state, &headers, application_part(path, Part::Versions)).await
}

async fn pods(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_resource(&state, &headers, application_part(path, Part::Pods)).await
}

#[derive(Serialize)]
struct Done {
    message: String,
}

/// Checks that the caller may do `action` (403 naming the first right missing), then does it as
/// the CLI does, through the server's client; the CLI's refusals come back as 409.
async fn act(
    state: &State,
    headers: &HeaderMap,
    namespace: &str,
    action: Action,
) -> Result<Connection, ApiError> {
    let caller = state.auth.caller(headers).await?;
    if let Some(access) = state.missing(&caller, action, namespace).await? {
        return Err(Auth::refusal(&caller, &access));
    }
    Ok(Connection::with_client(
        state.client.clone(),
        namespace,
        "the management cluster",
    ))
}

#[derive(Deserialize, Default)]
struct PromoteBody {
    #[serde(default)]
    full: bool,
}

async fn promote(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<PromoteBody>,
) -> Result<Json<Done>, ApiError> {
    let connection = act(&state, &headers, &namespace, Action::Promote).await?;
    let message = promote::promote(&connection, &name, body.full, false).await?;
    Ok(Json(Done { message }))
}

#[derive(Deserialize, Default)]
struct AbortBody {}

async fn abort(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    Json(_): Json<AbortBody>,
) -> Result<Json<Done>, ApiError> {
    let connection = act(&state, &headers, &namespace, Action::Abort).await?;
    let message = abort::abort(&connection, &name).await?;
    Ok(Json(Done { message }))
}

#[derive(Deserialize, Default)]
struct RollbackBody {
    to: Option<u32>,
}

async fn rollback(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<RollbackBody>,
) -> Result<Json<Done>, ApiError> {
    let connection = act(&state, &headers, &namespace, Action::Rollback).await?;
    let message = rollback::rollback(&connection, &name, body.to, false).await?;
    Ok(Json(Done { message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_the_render_time_in_milliseconds() {
        assert_eq!(server_timing(Duration::from_micros(1_500)), "app;dur=1.500");
    }
}
