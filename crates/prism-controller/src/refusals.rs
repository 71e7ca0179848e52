//! The writes application clusters refused (`write::Refusal`), per application and cluster,
//! kept in memory between reconciles: what the Release's status and the engine's input say of
//! the cluster, whether a refusal is new (a Warning Event, once), and when to try the same write
//! again, with exponential backoff rather than on every reconcile. A cluster that accepts the
//! application's writes again, or is no longer asked to make the refused one, is forgotten.
//! After a restart the first write is refused again and recorded anew.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use crate::write::{Refusal, Write};

/// The first retry of a refused write waits this long; each refusal after doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between retries of a refused write.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// How long to wait before the `attempts + 1`th try of a write refused `attempts` times.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// One cluster's refusal of one application's write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The Release whose write was refused (the newest one for traffic writes).
    pub release: String,
    pub refusal: Refusal,
    /// How many times in a row the same write was refused.
    pub attempts: u32,
    /// Not before this time is the same write tried again.
    pub retry_at: Timestamp,
}

impl Refused {
    /// Whether `writes` include the refused one (the same object), which waits for `retry_at`.
    pub fn withholds(&self, writes: &[Write], now: Timestamp) -> bool {
        now < self.retry_at
            && writes
                .iter()
                .any(|write| write.object() == (self.refusal.kind, self.refusal.name.as_str()))
    }

    /// The refused object, for the engine's input and the cluster's entry in the status.
    pub fn describe(&self) -> String {
        self.refusal.to_string()
    }
}

/// Keyed by the application's namespace and name, then the cluster's.
type Key = (String, String, String);

#[derive(Debug, Default)]
pub struct Refusals {
    by_cluster: Mutex<BTreeMap<Key, Refused>>,
}

fn key(namespace: &str, app: &str, cluster: &str) -> Key {
    (namespace.to_owned(), app.to_owned(), cluster.to_owned())
}

impl Refusals {
    /// The refusal standing in `cluster` for the application, if any.
    pub fn get(&self, namespace: &str, app: &str, cluster: &str) -> Option<Refused> {
        self.lock().get(&key(namespace, app, cluster)).cloned()
    }

    /// Records that `cluster` refused `refusal` of `release`'s write at `now`; returns whether it
    /// is a new refusal (not the same one refused again), which deserves an Event.
    pub fn refused(
        &self,
        (namespace, app, cluster): (&str, &str, &str),
        release: &str,
        refusal: Refusal,
        now: Timestamp,
    ) -> bool {
        let mut by_cluster = self.lock();
        let key = key(namespace, app, cluster);
        let attempts = match by_cluster.get(&key) {
            Some(before) if before.refusal == refusal && before.release == release => {
                before.attempts.saturating_add(1)
            }
            _ => 1,
        };
        let retry_at = now.checked_add(backoff(attempts)).unwrap_or(Timestamp::MAX);
        let refused = Refused {
            release: release.to_owned(),
            refusal,
            attempts,
            retry_at,
        };
        by_cluster.insert(key, refused);
        attempts == 1
    }

    /// Forgets `cluster`'s refusal of the application's writes: it accepted them, or no longer
    /// gets the refused one.
    pub fn accepted(&self, namespace: &str, app: &str, cluster: &str) {
        self.lock().remove(&key(namespace, app, cluster));
    }

    /// Keeps the refusals of the applications that `exists` (by namespace and name): those of a
    /// deleted application, which is never reconciled again, would stay forever.
    pub fn retain_apps(&self, exists: impl Fn(&str, &str) -> bool) {
        self.lock()
            .retain(|(namespace, app, _), _| exists(namespace, app));
    }

    /// The application's refusals, by cluster.
    pub fn of_app(&self, namespace: &str, app: &str) -> BTreeMap<String, Refused> {
        self.lock()
            .iter()
            .filter(|((ns, name, _), _)| ns == namespace && name == app)
            .map(|((_, _, cluster), refused)| (cluster.clone(), refused.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Refused>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.by_cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::Kind;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn denied(message: &str) -> Refusal {
        Refusal {
            kind: Kind::Deployment,
            name: "web-2".into(),
            verb: "apply",
            code: 422,
            reason: "Invalid".into(),
            message: message.into(),
        }
    }

    const WHERE: (&str, &str, &str) = ("ns", "web", "c2");

    #[test]
    fn the_backoff_doubles_from_5_seconds_to_5_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn the_same_refusal_again_is_not_new_and_waits_longer() {
        let refusals = Refusals::default();
        assert!(refusals.refused(WHERE, "web-2", denied("no"), at(0)));
        assert!(!refusals.refused(WHERE, "web-2", denied("no"), at(5)));
        let refused = refusals.get("ns", "web", "c2").unwrap();
        assert_eq!((refused.attempts, refused.retry_at), (2, at(15)));
        assert!(
            refusals.refused(WHERE, "web-2", denied("another policy"), at(15)),
            "another message is another refusal"
        );
        assert_eq!(refusals.get("ns", "web", "c2").unwrap().attempts, 1);
    }

    #[test]
    fn only_the_refused_object_waits_for_its_retry() {
        let refusals = Refusals::default();
        refusals.refused(WHERE, "web-2", denied("no"), at(0));
        let refused = refusals.get("ns", "web", "c2").unwrap();
        let deployment = |name: &str| Write::Delete {
            kind: Kind::Deployment,
            name: name.into(),
        };
        assert!(refused.withholds(&[deployment("web-2")], at(4)));
        assert!(!refused.withholds(&[deployment("web-2")], at(5)), "retry");
        assert!(!refused.withholds(&[deployment("web-1")], at(1)));
    }

    #[test]
    fn an_accepting_cluster_and_a_deleted_application_are_forgotten() {
        let refusals = Refusals::default();
        refusals.refused(WHERE, "web-2", denied("no"), at(0));
        refusals.refused(("ns", "web", "c3"), "web-2", denied("no"), at(0));
        refusals.refused(("ns", "api", "c3"), "api-2", denied("no"), at(0));
        refusals.accepted("ns", "web", "c2");
        assert_eq!(
            refusals.of_app("ns", "web").keys().collect::<Vec<_>>(),
            ["c3"]
        );
        refusals.retain_apps(|_, app| app != "web");
        assert!(refusals.of_app("ns", "web").is_empty());
        assert!(refusals.get("ns", "api", "c3").is_some());
    }
}
