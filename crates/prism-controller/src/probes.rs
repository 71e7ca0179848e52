//! The HTTP probes of ExternalName targets' addresses (`spec.target.service.probe`): a GET each
//! round of the probe's period, run in the background like every call out of the controller
//! ([`Rounds`]), its verdict remembered between rounds. An address is ready after one answer
//! below 400, unready after `failureThreshold` failures in a row, and unready until first
//! answered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use prism_api::Application;
use prism_api::application::Probe;

use crate::calls::{Purpose, Rounds, round_of};

/// A verdict nobody asked about for this long is for an address no copy names any more.
const FORGOTTEN: Duration = Duration::from_secs(900);

pub struct Probes {
    rounds: Rounds<bool>,
    verdicts: Mutex<HashMap<Purpose, (Verdict, Instant)>>,
    http: reqwest::Client,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Verdict {
    ready: bool,
    failures: u32,
}

impl Verdict {
    /// The verdict once a round answered `ok`.
    fn answered(self, ok: bool, failure_threshold: u32) -> Verdict {
        let failures = if ok { 0 } else { self.failures + 1 };
        Verdict {
            ready: ok || (self.ready && failures < failure_threshold),
            failures,
        }
    }
}

impl Probes {
    /// `ended` gets the application of each probe that ends, to reconcile it again.
    pub fn new(ended: UnboundedSender<ObjectRef<Application>>) -> Self {
        Probes {
            rounds: Rounds::new(ended),
            verdicts: Mutex::default(),
            http: reqwest::Client::new(),
        }
    }

    /// Whether `address` at `port` serves, for `app`'s `probe`, as far as its rounds have told
    /// by `unix_seconds`; the probe of the current round is started when due.
    pub fn ready(
        &self,
        app: &ObjectRef<Application>,
        probe: &Probe,
        address: &str,
        port: u16,
        unix_seconds: u64,
    ) -> bool {
        let port = probe.port.unwrap_or(port);
        let host = probe.host.clone().unwrap_or_else(|| address.to_owned());
        let url = format!("http://{address}:{port}{}", probe.path());
        let purpose = (app.clone(), format!("probe {url} host {host}"));
        let (http, timeout) = (self.http.clone(), probe.timeout());
        let answer = self.rounds.take(
            purpose.clone(),
            round_of(unix_seconds, probe.period()),
            move || async move {
                http.get(&url)
                    .header(reqwest::header::HOST, host)
                    .timeout(timeout)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().as_u16() < 400)
            },
        );
        let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        verdicts.retain(|_, (_, asked)| asked.elapsed() < FORGOTTEN);
        let (verdict, asked) = verdicts
            .entry(purpose)
            .or_insert_with(|| (Verdict::default(), Instant::now()));
        *asked = Instant::now();
        if let Some(ok) = answer {
            *verdict = verdict.answered(ok, probe.failure_threshold());
        }
        verdict.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_makes_ready_and_only_threshold_failures_in_a_row_make_unready() {
        let mut verdict = Verdict::default();
        assert!(!verdict.ready, "unready until first answered");
        verdict = verdict.answered(true, 3);
        assert!(verdict.ready);
        verdict = verdict.answered(false, 3).answered(false, 3);
        assert!(verdict.ready, "two failures of three");
        verdict = verdict.answered(true, 3).answered(false, 3);
        assert_eq!(verdict.failures, 1, "a success starts the count again");
        verdict = verdict.answered(false, 3).answered(false, 3);
        assert!(!verdict.ready);
        assert!(!Verdict::default().answered(false, 3).ready);
    }
}
