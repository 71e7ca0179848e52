//! Calls out of the controller (Prometheus queries, webhooks) run in the background, never inside
//! a reconcile: a Prometheus or a webhook that hangs for its whole timeout, retries included,
//! would hold its application's reconcile that long (an abort would wait for it), and one of the
//! few reconcile slots, so other applications' rollouts too. A reconcile starts a call and
//! decides with what it knew before; the call's end reconciles the application again, and that
//! reconcile takes the answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use prism_api::{Application, Release};

/// An answer nobody took for this long is for an Application that is gone, or for a question
/// nobody asks any more: every Application is reconciled at least every few minutes.
const UNCLAIMED: Duration = Duration::from_secs(900);

/// Which call: the application it reconciles, and what for (`web-2 analysis`). One runs at a time
/// for each.
pub type Purpose = (ObjectRef<Application>, String);

/// What a call is for: `what` of `release` (`analysis`, `gate`), for its Application. The
/// Release's uid is part of it: one deleted and made again under the same name asks its own
/// questions, and never takes the answers to the old one's.
pub fn purpose(release: &Release, what: &str) -> Purpose {
    let namespace = release.namespace().unwrap_or_default();
    (
        ObjectRef::new(&release.spec.application).within(&namespace),
        format!(
            "{} ({}) {what}",
            release.name_any(),
            release.uid().unwrap_or_default()
        ),
    )
}

/// The calls of one kind in flight, and the answers not taken yet.
pub struct Calls<T> {
    slots: Arc<Mutex<HashMap<Purpose, Slot<T>>>>,
    ended: UnboundedSender<ObjectRef<Application>>,
}

/// `attempt` names the question (say, the step and when its measurement was due), so that the
/// answer to an older question is never taken for a newer one's.
enum Slot<T> {
    Running {
        attempt: String,
    },
    Ended {
        attempt: String,
        answer: T,
        at: Instant,
    },
}

impl<T: Send + 'static> Calls<T> {
    /// `ended` gets the application of each call that ends.
    pub fn new(ended: UnboundedSender<ObjectRef<Application>>) -> Self {
        Calls {
            slots: Arc::default(),
            ended,
        }
    }

    /// The answer to `attempt` for `purpose`, once its call has ended; it is taken, so asking
    /// again makes a new call. Until then `None`, and the call made by `call` is started unless
    /// it runs already.
    pub fn answer<F>(
        &self,
        purpose: Purpose,
        attempt: String,
        call: impl FnOnce() -> F,
    ) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|_, slot| !matches!(slot, Slot::Ended { at, .. } if at.elapsed() > UNCLAIMED));
        match slots.remove(&purpose) {
            Some(Slot::Ended {
                attempt: answered,
                answer,
                ..
            }) if answered == attempt => return Some(answer),
            Some(Slot::Running { attempt: running }) if running == attempt => {
                slots.insert(purpose, Slot::Running { attempt: running });
                return None;
            }
            // None yet, or one for an older question: an older call still running ends unheard.
            _ => {}
        }
        slots.insert(
            purpose.clone(),
            Slot::Running {
                attempt: attempt.clone(),
            },
        );
        let (shared, ended, future) = (self.slots.clone(), self.ended.clone(), call());
        tokio::spawn(async move {
            let answer = future.await;
            let mut slots = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(slots.get(&purpose), Some(Slot::Running { attempt: running }) if *running == attempt)
            {
                let app = purpose.0.clone();
                slots.insert(
                    purpose,
                    Slot::Ended {
                        attempt,
                        answer,
                        at: Instant::now(),
                    },
                );
                // Closed only when the controller stops.
                let _ = ended.unbounded_send(app);
            }
        });
        None
    }
}

/// Calls asked again every round of a period (a probe every 5 s, a query while a version
/// drains): each round's answer is given once, a round already answered starts no call, and a
/// call still running is waited for rather than given up for a newer round (the reconcile that
/// takes an answer may come a round later).
pub struct Rounds<T> {
    calls: Calls<T>,
    rounds: Mutex<HashMap<Purpose, RoundState>>,
}

#[derive(Clone, Copy, Debug)]
struct RoundState {
    /// The round whose call was started and not answered yet.
    asked: Option<u64>,
    answered: Option<u64>,
    at: Instant,
}

impl<T: Send + 'static> Rounds<T> {
    pub fn new(ended: UnboundedSender<ObjectRef<Application>>) -> Self {
        Rounds {
            calls: Calls::new(ended),
            rounds: Mutex::default(),
        }
    }

    /// The answer of the round asked last for `purpose`, on the first ask after its call ended;
    /// else `None`, and the call of `round` is started unless one runs or `round` was answered.
    pub fn take<F>(&self, purpose: Purpose, round: u64, call: impl FnOnce() -> F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        rounds.retain(|_, state| state.at.elapsed() < UNCLAIMED);
        let state = rounds.entry(purpose.clone()).or_insert(RoundState {
            asked: None,
            answered: None,
            at: Instant::now(),
        });
        state.at = Instant::now();
        let asked = match state.asked {
            Some(asked) => asked,
            None if state.answered.is_some_and(|answered| answered >= round) => return None,
            None => round,
        };
        match self.calls.answer(purpose, asked.to_string(), call) {
            Some(answer) => {
                state.asked = None;
                state.answered = Some(asked);
                Some(answer)
            }
            None => {
                state.asked = Some(asked);
                None
            }
        }
    }
}

/// The round of `period` that the time `unix_seconds` falls in.
pub fn round_of(unix_seconds: u64, period: Duration) -> u64 {
    unix_seconds / period.as_secs().max(1)
}

/// How long until the next round of `period` starts.
pub fn until_next_round(unix_seconds: u64, period: Duration) -> Duration {
    let period = period.as_secs().max(1);
    Duration::from_secs(period - unix_seconds % period)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use futures::channel::mpsc;
    use tokio::sync::oneshot;

    use super::*;

    fn purpose(what: &str) -> Purpose {
        (ObjectRef::new("web").within("ns"), what.to_owned())
    }

    #[tokio::test]
    async fn a_call_runs_once_and_its_answer_is_taken_once_it_has_ended() {
        let (ended, mut ends) = mpsc::unbounded();
        let calls = Calls::new(ended);
        let (reply, replied) = oneshot::channel();
        let started = calls.answer(purpose("web-2 analysis"), "1".into(), || async {
            replied.await.unwrap()
        });
        assert_eq!(started, None);
        // Asked again while it runs: no second call (this one would panic if awaited).
        let again = calls.answer(purpose("web-2 analysis"), "1".into(), || async {
            unreachable!("a second call of the same attempt")
        });
        assert_eq!(again, None);
        reply.send(7).unwrap();
        assert_eq!(ends.next().await, Some(ObjectRef::new("web").within("ns")));
        let taken = calls.answer(purpose("web-2 analysis"), "1".into(), || async { 0 });
        assert_eq!(taken, Some(7));
    }

    #[tokio::test]
    async fn the_answer_to_an_older_attempt_is_not_taken_for_a_newer_one() {
        let (ended, mut ends) = mpsc::unbounded();
        let calls = Calls::new(ended);
        let (old_reply, old_replied) = oneshot::channel();
        calls.answer(purpose("web-2 gate"), "step 1".into(), || async {
            old_replied.await.unwrap()
        });
        let (new_reply, new_replied) = oneshot::channel();
        let newer = calls.answer(purpose("web-2 gate"), "step 2".into(), || async {
            new_replied.await.unwrap()
        });
        assert_eq!(newer, None);
        old_reply.send(1).unwrap();
        new_reply.send(2).unwrap();
        assert_eq!(ends.next().await, Some(ObjectRef::new("web").within("ns")));
        let taken = calls.answer(purpose("web-2 gate"), "step 2".into(), || async { 0 });
        assert_eq!(taken, Some(2));
    }

    #[tokio::test]
    async fn a_rounds_answer_is_given_once_and_the_next_round_calls_again() {
        let (ended, mut ends) = mpsc::unbounded();
        let rounds = Rounds::new(ended);
        assert_eq!(rounds.take(purpose("probe"), 7, || async { 1 }), None);
        ends.next().await;
        assert_eq!(rounds.take(purpose("probe"), 7, || async { 2 }), Some(1));
        assert_eq!(
            rounds.take(purpose("probe"), 7, || async {
                unreachable!("round 7 was answered")
            }),
            None
        );
        assert_eq!(rounds.take(purpose("probe"), 8, || async { 3 }), None);
        ends.next().await;
        assert_eq!(rounds.take(purpose("probe"), 8, || async { 0 }), Some(3));
    }

    #[tokio::test]
    async fn an_answer_taken_a_round_late_is_still_taken() {
        let (ended, mut ends) = mpsc::unbounded();
        let rounds = Rounds::new(ended);
        assert_eq!(rounds.take(purpose("drain"), 7, || async { 1 }), None);
        ends.next().await;
        assert_eq!(
            rounds.take(purpose("drain"), 9, || async {
                unreachable!("round 7's answer is there")
            }),
            Some(1)
        );
        assert_eq!(rounds.take(purpose("drain"), 9, || async { 2 }), None);
        ends.next().await;
        assert_eq!(rounds.take(purpose("drain"), 9, || async { 0 }), Some(2));
    }

    #[test]
    fn rounds_follow_the_period() {
        let period = Duration::from_secs(5);
        assert_eq!(round_of(100, period), round_of(104, period));
        assert_ne!(round_of(104, period), round_of(105, period));
        assert_eq!(until_next_round(104, period), Duration::from_secs(1));
        assert_eq!(until_next_round(105, period), Duration::from_secs(5));
    }
}
