//! Live updates as Server-Sent Events: a resource's JSON at once, then again after every change
//! of the caches that changes it. Changes are gathered for [`GATHER`] before rendering, so a
//! burst of watch events is one update, and a client hears a change well within a second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, stream};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::Resource;
use crate::state::State;

/// How long changes are gathered into one update.
const GATHER: Duration = Duration::from_millis(100);

/// The stream of `resource` for the request's caller; 401, 403 and 404 before the stream starts,
/// an `error` event (then the end) when the caller loses access or the resource goes.
pub async fn follow(
    state: Arc<State>,
    headers: &HeaderMap,
    resource: Resource,
) -> Result<Response, ApiError> {
    let caller = state.auth.caller(headers).await?;
    let first = resource.render(&state, &caller).await?;
    let changes = state.caches.changes.subscribe();
    let follower = Follower {
        state,
        caller,
        resource,
        changes,
        last: None,
        first: Some(first),
        ended: false,
    };
    Ok(Sse::new(updates(follower))
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct Follower {
    state: Arc<State>,
    caller: Caller,
    resource: Resource,
    changes: tokio::sync::watch::Receiver<u64>,
    last: Option<Bytes>,
    first: Option<Bytes>,
    ended: bool,
}

fn updates(follower: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follower, |mut follower| async move {
        if follower.ended {
            return None;
        }
        if let Some(first) = follower.first.take() {
            follower.last = Some(first.clone());
            return Some((Ok(update(&first)), follower));
        }
        loop {
            follower.changes.changed().await.ok()?;
            tokio::time::sleep(GATHER).await;
            follower.changes.borrow_and_update();
            match follower
                .resource
                .render(&follower.state, &follower.caller)
                .await
            {
                Ok(json) if follower.last.as_ref() == Some(&json) => continue,
                Ok(json) => {
                    follower.last = Some(json.clone());
                    return Some((Ok(update(&json)), follower));
                }
                Err(error) => {
                    follower.ended = true;
                    let data = serde_json::to_string(&error).unwrap_or_default();
                    return Some((Ok(Event::default().event("error").data(data)), follower));
                }
            }
        }
    })
}

fn update(json: &Bytes) -> Event {
    Event::default()
        .event("update")
        .data(String::from_utf8_lossy(json))
}
