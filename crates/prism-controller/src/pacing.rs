//! How long a Release's status may lag behind what moves with every pod. A rollout changes
//! ready counts and weights many times a second across its clusters; writing each change was
//! most of a rollout's status writes. A change of counters alone waits [`COUNTER_LAG`] for the
//! changes that follow it, and goes out in one write with them (or sooner, with a transition,
//! which is never held back). `prism status` is therefore at most this far behind the counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a change of counters alone waits before it is written.
pub const COUNTER_LAG: Duration = Duration::from_secs(1);

/// Since when each Release has had a change of counters alone that is not written yet, by a
/// key that names the Release (a recreated one gets a new key).
#[derive(Debug, Default)]
pub struct CounterLag {
    pending: Mutex<HashMap<String, Instant>>,
}

impl CounterLag {
    /// Whether the change of counters alone of `key` is due at `now`: it was first seen at
    /// least [`COUNTER_LAG`] ago. If not, how long it still waits.
    pub fn due(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Entries of Releases that went away before their write are dropped on the way.
        pending.retain(|_, since| now.saturating_duration_since(*since) < 60 * COUNTER_LAG);
        let since = *pending.entry(key.to_owned()).or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited >= COUNTER_LAG {
            pending.remove(key);
            Ok(())
        } else {
            Err(COUNTER_LAG - waited)
        }
    }

    /// The status of `key` was written: nothing of it waits any more.
    pub fn written(&self, key: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_counters_waits_at_most_the_lag_from_when_it_was_first_seen() {
        let lag = CounterLag::default();
        let start = Instant::now();
        assert_eq!(lag.due("ns/web-2", start), Err(COUNTER_LAG));
        let later = start + COUNTER_LAG / 4;
        assert_eq!(lag.due("ns/web-2", later), Err(COUNTER_LAG * 3 / 4));
        assert_eq!(lag.due("ns/web-2", start + COUNTER_LAG), Ok(()));
        // Written: the next change waits from its own first sight.
        let next = start + 3 * COUNTER_LAG;
        assert_eq!(lag.due("ns/web-2", next), Err(COUNTER_LAG));
        lag.written("ns/web-2");
        assert_eq!(lag.due("ns/web-2", next), Err(COUNTER_LAG));
    }
}
