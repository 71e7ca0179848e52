//! Webhooks: a JSON payload POSTed to a URL, signed when the webhook has a secret, with a
//! timeout per attempt and retries when there is no answer.

use std::time::Duration;

use prism_api::strategy::Webhook;
use serde::Serialize;

/// The header that carries the payload's signature: `sha256=<hex HMAC-SHA256 of the body>`,
/// keyed with the webhook's secret. The receiver computes the same over the raw body.
pub const SIGNATURE_HEADER: &str = "X-Prism-Signature";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRIES: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// How a webhook answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Accepted,
    /// 4xx, or another answer that is not a success and not worth retrying.
    Refused { status: u16, body: String },
    /// No answer within the timeout, a connection error or 5xx, on every attempt.
    NoAnswer { attempts: u32, error: String },
}

impl Answer {
    /// The answer as a status or an Event says it.
    pub fn describe(&self, url: &str) -> String {
        match self {
            Answer::Accepted => format!("{url} accepted"),
            Answer::Refused { status, body } if body.is_empty() => {
                format!("{url} refused with HTTP {status}")
            }
            Answer::Refused { status, body } => {
                format!("{url} refused with HTTP {status}: {body}")
            }
            Answer::NoAnswer { attempts, error } => {
                format!("{url} did not answer in {attempts} attempts: {error}")
            }
        }
    }
}

/// Calls webhooks; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    http: reqwest::Client,
}

/// Characters of a refusal's body kept for a condition message.
const MAX_BODY: usize = 256;

impl Caller {
    /// POSTs `payload` to the webhook, trying again after no answer, at most `retries` times.
    pub async fn call(
        &self,
        webhook: &Webhook,
        secret: Option<&[u8]>,
        payload: &impl Serialize,
    ) -> Answer {
        let body = match serde_json::to_vec(payload) {
            Ok(body) => body,
            Err(error) => {
                return Answer::NoAnswer {
                    attempts: 0,
                    error: format!("the payload does not serialise: {error}"),
                };
            }
        };
        let timeout = webhook
            .timeout
            .map_or(DEFAULT_TIMEOUT, |t| t.0.unsigned_abs());
        let attempts = webhook.retries.unwrap_or(DEFAULT_RETRIES) + 1;
        let mut error = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(RETRY_DELAY * (attempt - 1)).await;
            }
            let mut request = self
                .http
                .post(&webhook.url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = secret {
                request = request.header(SIGNATURE_HEADER, signature(secret, &body));
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Answer::Accepted,
                Ok(response) if response.status().is_server_error() => {
                    error = format!("HTTP {}", response.status());
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    return Answer::Refused {
                        status,
                        body: body.trim().chars().take(MAX_BODY).collect(),
                    };
                }
                Err(e) if e.is_timeout() => error = format!("no answer within {timeout:?}"),
                Err(e) => error = e.to_string(),
            }
        }
        Answer::NoAnswer { attempts, error }
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
