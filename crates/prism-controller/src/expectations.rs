//! What the controller's caches must show before it decides again.
//!
//! A reconcile writes several objects, and the first watch event that comes back triggers the
//! next reconcile while the caches may not hold the other writes yet. Deciding on such a cache
//! would repeat those writes (each a request that changes nothing) and repeat the Events of
//! transitions already made. So every write records the resourceVersion it produced (or that
//! the object is gone), the watch streams tick them off as the events arrive, and a reconcile
//! waits while any of its application's writes is unseen. This is the "expectations" pattern
//! of kube-controller-manager; kube-runtime has no equivalent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use prism_api::Application;

use prism_api::labels::APP_LABEL;

/// After this long an unseen write is given up on: a watch that relisted may never show that
/// exact version, and a stale decision is then corrected by the next one.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// One object, in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug)]
enum Awaited {
    /// The request is under way; what the watches showed meanwhile is kept, since a watch
    /// event can overtake the response to the request that caused it.
    InFlight { versions: Vec<String>, gone: bool },
    /// The write produced this resourceVersion.
    Version(String),
    /// The object was deleted.
    Gone,
}

#[derive(Debug)]
struct Expectation {
    key: ObjectKey,
    awaited: Awaited,
    since: Instant,
}

/// Writes not yet seen in the caches, per application.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectRef<Application>, Vec<Expectation>>>,
}

impl Expectations {
    /// A write of `key` for `app` is about to be made: call before the request.
    fn begin(&self, app: &ObjectRef<Application>, key: ObjectKey) {
        let mut pending = self.pending.lock().expect("expectations lock");
        let list = pending.entry(app.clone()).or_default();
        list.retain(|e| e.key != key);
        list.push(Expectation {
            key,
            awaited: Awaited::InFlight {
                versions: Vec::new(),
                gone: false,
            },
            since: Instant::now(),
        });
    }

    /// The write of `key` produced `version` (Some) or deleted the object (None); the caches
    /// must show it unless they already did.
    fn end(&self, app: &ObjectRef<Application>, key: &ObjectKey, version: Option<String>) {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(list) = pending.get_mut(app) else {
            return;
        };
        list.retain_mut(|e| {
            if &e.key != key {
                return true;
            }
            let Awaited::InFlight { versions, gone } = &e.awaited else {
                return true;
            };
            match &version {
                Some(version) if versions.contains(version) => false,
                Some(version) => {
                    e.awaited = Awaited::Version(version.clone());
                    true
                }
                None if *gone => false,
                None => {
                    e.awaited = Awaited::Gone;
                    true
                }
            }
        });
        if list.is_empty() {
            pending.remove(app);
        }
    }

    /// The write of `key` failed.
    fn cancel(&self, app: &ObjectRef<Application>, key: &ObjectKey) {
        let mut pending = self.pending.lock().expect("expectations lock");
        if let Some(list) = pending.get_mut(app) {
            list.retain(|e| &e.key != key);
            if list.is_empty() {
                pending.remove(app);
            }
        }
    }

    /// Makes `request`, a write of `key` for `app`, and awaits it in the caches. `left` is the
    /// resourceVersion the request's outcome left, or None when the object is gone.
    pub async fn track<T>(
        &self,
        app: &ObjectRef<Application>,
        key: ObjectKey,
        request: impl Future<Output = Result<T, kube::Error>>,
        left: impl FnOnce(&T) -> Option<String>,
    ) -> Result<T, kube::Error> {
        self.begin(app, key.clone());
        let outcome = request.await;
        match &outcome {
            Ok(written) => self.end(app, &key, left(written)),
            Err(_) => self.cancel(app, &key),
        }
        outcome
    }

    /// Ticks off what a watch event shows: `object`, of `cluster` and belonging to `app`, as its
    /// cache now holds it (`store` is that cache, already updated by the reflector).
    pub fn observe<K>(
        &self,
        app: &ObjectRef<Application>,
        cluster: &str,
        object: &K,
        store: &Store<K>,
    ) where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(list) = pending.get_mut(app) else {
            return;
        };
        let key = key_of(cluster, object);
        let version = object.resource_version();
        let gone = store.get(&ObjectRef::from_obj(object)).is_none();
        list.retain_mut(|e| {
            if e.key != key {
                return true;
            }
            match &mut e.awaited {
                Awaited::InFlight {
                    versions,
                    gone: seen_gone,
                } => {
                    versions.extend(version.clone());
                    *seen_gone |= gone;
                    true
                }
                Awaited::Version(awaited) => version.as_ref() != Some(awaited),
                Awaited::Gone => !gone,
            }
        });
        if list.is_empty() {
            pending.remove(app);
        }
    }

    /// Whether some write of `app` is not in the caches yet (and not given up on).
    pub fn waiting(&self, app: &ObjectRef<Application>) -> bool {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(list) = pending.get_mut(app) else {
            return false;
        };
        list.retain(|e| e.since.elapsed() < PATIENCE);
        let waiting = !list.is_empty();
        if !waiting {
            pending.remove(app);
        }
        waiting
    }
}

/// The key of `object` in `cluster`.
pub fn key_of<K: Resource<DynamicType = ()>>(cluster: &str, object: &K) -> ObjectKey {
    ObjectKey::new::<K>(
        cluster,
        &object.namespace().unwrap_or_default(),
        &object.name_any(),
    )
}

impl ObjectKey {
    /// The `K` named `name` in `namespace` of `cluster`.
    pub fn new<K: Resource<DynamicType = ()>>(cluster: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            cluster: cluster.to_owned(),
            kind: K::kind(&()).into_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The Application an object belongs to: the `prism.dev/app` label, in the object's namespace.
pub fn application_of<K: Resource>(object: &K) -> Option<ObjectRef<Application>> {
    let name = object.labels().get(APP_LABEL)?;
    let namespace = object.meta().namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;

    fn config_map(version: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("web-3".into());
        cm.metadata.namespace = Some("ns".into());
        cm.metadata.labels = Some([(APP_LABEL.to_owned(), "web".to_owned())].into());
        cm.metadata.resource_version = Some(version.into());
        cm
    }

    fn app() -> ObjectRef<Application> {
        ObjectRef::new("web").within("ns")
    }

    #[test]
    fn a_write_is_awaited_until_its_version_is_seen() {
        let expectations = Expectations::default();
        let (reader, mut writer) = store::<ConfigMap>();
        let key = key_of("local", &config_map("1"));
        expectations.begin(&app(), key.clone());
        assert!(expectations.waiting(&app()), "a write under way is awaited");
        expectations.end(&app(), &key, Some("7".into()));
        assert!(expectations.waiting(&app()));

        let older = config_map("6");
        writer.apply_watcher_event(&Event::Apply(older.clone()));
        expectations.observe(&app(), "local", &older, &reader);
        assert!(
            expectations.waiting(&app()),
            "an older version is not the write"
        );

        let in_other_cluster = config_map("7");
        expectations.observe(&app(), "elsewhere", &in_other_cluster, &reader);
        assert!(
            expectations.waiting(&app()),
            "the same name elsewhere is not it"
        );

        let written = config_map("7");
        writer.apply_watcher_event(&Event::Apply(written.clone()));
        expectations.observe(&app(), "local", &written, &reader);
        assert!(!expectations.waiting(&app()));
    }

    #[test]
    fn an_event_that_overtakes_the_response_counts() {
        let expectations = Expectations::default();
        let (reader, mut writer) = store::<ConfigMap>();
        let written = config_map("7");
        let key = key_of("local", &written);
        expectations.begin(&app(), key.clone());
        writer.apply_watcher_event(&Event::Apply(written.clone()));
        expectations.observe(&app(), "local", &written, &reader);
        let later = config_map("8");
        writer.apply_watcher_event(&Event::Apply(later.clone()));
        expectations.observe(&app(), "local", &later, &reader);
        expectations.end(&app(), &key, Some("7".into()));
        assert!(!expectations.waiting(&app()));
    }

    #[test]
    fn a_deletion_is_awaited_until_the_cache_drops_the_object() {
        let expectations = Expectations::default();
        let (reader, mut writer) = store::<ConfigMap>();
        let object = config_map("3");
        writer.apply_watcher_event(&Event::Apply(object.clone()));
        let key = key_of("local", &object);
        expectations.begin(&app(), key.clone());
        expectations.end(&app(), &key, None);
        expectations.observe(&app(), "local", &object, &reader);
        assert!(expectations.waiting(&app()));

        writer.apply_watcher_event(&Event::Delete(object.clone()));
        expectations.observe(&app(), "local", &object, &reader);
        assert!(!expectations.waiting(&app()));
    }

    #[test]
    fn a_failed_write_is_not_awaited() {
        let expectations = Expectations::default();
        let key = key_of("local", &config_map("1"));
        expectations.begin(&app(), key.clone());
        expectations.cancel(&app(), &key);
        assert!(!expectations.waiting(&app()));
    }
}
