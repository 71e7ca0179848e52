//! What every request shares: the management cluster's client (for actions), the caller checks,
//! the caches, and the responses rendered for the caches' latest change, so that a hundred
//! pages following the same fleet cost one rendering per change, not a hundred.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use prism_ops::actions::Action;

use crate::auth::{Access, Auth, Caller};
use crate::caches::Caches;
use crate::error::ApiError;
use crate::views::{Allowed, Snapshot, Visible};

/// At most this many access reviews at once when finding the namespaces a caller may read.
const CONCURRENT_REVIEWS: usize = 16;

pub struct State {
    pub client: Client,
    pub auth: Auth,
    pub caches: Arc<Caches>,
    /// Rendered responses by what they depend on (route and what the caller may see), with the
    /// change they were rendered at.
    rendered: Mutex<HashMap<String, (u64, Bytes)>>,
}

impl State {
    pub fn new(client: Client, auth: Auth, caches: Arc<Caches>) -> Arc<State> {
        Arc::new(State {
            client,
            auth,
            caches,
            rendered: Mutex::default(),
        })
    }

    /// The caches now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            applications: self.caches.applications.state(),
            releases: self.caches.releases.state(),
            clusters: self.caches.clusters.state(),
            events: self.caches.events.state(),
            clusters_seen: self.caches.clusters(),
            now: Timestamp::now(),
        }
    }

    /// `render`'s JSON, rendered once per change of the caches for each `key`: two callers
    /// with the same key see the same thing.
    pub fn rendered<T: serde::Serialize>(
        &self,
        key: String,
        render: impl FnOnce(&Snapshot) -> Result<T, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let change = *self.caches.changes.borrow();
        if let Some((at, json)) = self.rendered.lock().unwrap().get(&key)
            && *at == change
        {
            return Ok(json.clone());
        }
        let value = render(&self.snapshot())?;
        // Bytes: every caller of the same view shares the one rendering, copied by none.
        let json = Bytes::from(
            serde_json::to_vec(&value)
                .map_err(|e| ApiError::upstream(format!("rendering the response: {e}")))?,
        );
        let mut rendered = self.rendered.lock().unwrap();
        rendered.retain(|_, (at, _)| *at == change);
        rendered.insert(key, (change, json.clone()));
        Ok(json)
    }

    /// The namespaces whose Applications `caller` may list: every one, or those of the cached
    /// Applications where a review allows it.
    pub async fn visible(&self, caller: &Caller) -> Result<Visible, ApiError> {
        let everywhere = Access::prism("list", "applications", "");
        if self.auth.allows(caller, &everywhere).await? {
            return Ok(Visible::All);
        }
        let namespaces: BTreeSet<String> = self
            .caches
            .applications
            .state()
            .iter()
            .filter_map(|app| app.namespace())
            .collect();
        let reviews = futures::stream::iter(namespaces)
            .map(|namespace| async move {
                let access = Access::prism("list", "applications", &namespace);
                (self.auth.allows(caller, &access).await, namespace)
            })
            .buffer_unordered(CONCURRENT_REVIEWS)
            .collect::<Vec<_>>()
            .await;
        let mut visible = BTreeSet::new();
        for (allowed, namespace) in reviews {
            if allowed? {
                visible.insert(namespace);
            }
        }
        Ok(Visible::Namespaces(visible))
    }

    /// The first right `action` needs in `namespace` that `caller` lacks, if any.
    pub async fn missing(
        &self,
        caller: &Caller,
        action: Action,
        namespace: &str,
    ) -> Result<Option<Access>, ApiError> {
        for (verb, resource) in action.needs() {
            let access = Access::prism(verb, resource, namespace);
            if !self.auth.allows(caller, &access).await? {
                return Ok(Some(access));
            }
        }
        Ok(None)
    }

    /// Whether `caller` may do `action` to the applications of `namespace`.
    pub async fn may(
        &self,
        caller: &Caller,
        action: Action,
        namespace: &str,
    ) -> Result<bool, ApiError> {
        Ok(self.missing(caller, action, namespace).await?.is_none())
    }

    pub async fn allowed(&self, caller: &Caller, namespace: &str) -> Result<Allowed, ApiError> {
        Ok(Allowed {
            promote: self.may(caller, Action::Promote, namespace).await?,
            abort: self.may(caller, Action::Abort, namespace).await?,
            rollback: self.may(caller, Action::Rollback, namespace).await?,
        })
    }
}
