//! Prometheus, read through its HTTP API (`/api/v1/query`, `/api/v1/query_range`).
//!
//! No well-kept Rust client covers the query API with the timeouts and retries Prism needs, and
//! the two endpoints are small: reqwest and serde do the work.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::IgnoredAny;
use thiserror::Error;

/// How long one request may take, and how many times a request that got no answer (or a 5xx)
/// is tried again, a little later each time.
const TIMEOUT: Duration = Duration::from_secs(5);
const RETRIES: u32 = 2;
const RETRY_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum QueryError {
    /// The server did not answer, or answered with a server error, after the retries.
    #[error("Prometheus at {address} does not answer: {reason}")]
    Unavailable { address: String, reason: String },
    /// The server answered, and refused the query (a syntax error, say).
    #[error("Prometheus at {address} refused the query: {reason}")]
    Rejected { address: String, reason: String },
}

#[derive(Clone, Debug)]
pub struct Prometheus {
    http: reqwest::Client,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .expect("a reqwest client with a timeout builds"),
        }
    }
}

/// One series of a query's result: its labels, and its values, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub values: Vec<f64>,
}

impl Prometheus {
    /// The query's value now: one value per series of the instant vector (a scalar is one
    /// series without labels).
    pub async fn instant(&self, address: &str, query: &str) -> Result<Vec<Series>, QueryError> {
        self.get(address, "query", &[("query", query.to_owned())])
            .await
    }

    /// The query's value at `at`, as [`instant`](Self::instant) gives it now.
    pub async fn instant_at(
        &self,
        address: &str,
        query: &str,
        at: Timestamp,
    ) -> Result<Vec<Series>, QueryError> {
        let params = [("query", query.to_owned()), ("time", seconds(at))];
        self.get(address, "query", &params).await
    }

    /// The query's samples from `start` to `end`, `step` apart.
    pub async fn range(
        &self,
        address: &str,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<Series>, QueryError> {
        self.get(
            address,
            "query_range",
            &[
                ("query", query.to_owned()),
                ("start", seconds(start)),
                ("end", seconds(end)),
                ("step", format!("{:.3}", step.as_secs_f64())),
            ],
        )
        .await
    }

    async fn get(
        &self,
        address: &str,
        endpoint: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Series>, QueryError> {
        let url = format!("{}/api/v1/{endpoint}", address.trim_end_matches('/'));
        let unavailable = |reason: String| QueryError::Unavailable {
            address: address.to_owned(),
            reason,
        };
        let rejected = |reason: String| QueryError::Rejected {
            address: address.to_owned(),
            reason,
        };
        let mut attempt = 0;
        loop {
            let answer = match self.http.get(&url).query(params).send().await {
                Ok(response) if response.status().is_server_error() => {
                    Err(format!("HTTP {}", response.status()))
                }
                Ok(response) => Ok(response),
                Err(error) => Err(error.to_string()),
            };
            match answer {
                Ok(response) => {
                    let status = response.status();
                    let body: ApiResponse = response.json().await.map_err(|error| {
                        rejected(format!("HTTP {status}, not a Prometheus answer: {error}"))
                    })?;
                    return match body.data {
                        Some(data) if body.status == "success" => Ok(data.series()),
                        _ => Err(rejected(
                            body.error.unwrap_or_else(|| format!("HTTP {status}")),
                        )),
                    };
                }
                Err(reason) if attempt >= RETRIES => return Err(unavailable(reason)),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
            }
        }
    }
}

/// A time as the API takes it: Unix seconds, to the millisecond.
fn seconds(at: Timestamp) -> String {
    format!("{:.3}", at.as_millisecond() as f64 / 1000.0)
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<Data>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "camelCase")]
enum Data {
    Vector(Vec<Sample>),
    Matrix(Vec<Samples>),
    Scalar(Point),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Sample {
    metric: std::collections::BTreeMap<String, String>,
    value: Point,
}

#[derive(Deserialize)]
struct Samples {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<Point>,
}

/// `[unix seconds, "value"]`: Prometheus sends values as strings, to carry NaN and ±Inf.
#[derive(Deserialize)]
struct Point(IgnoredAny, String);

impl Point {
    fn value(&self) -> f64 {
        self.1.parse().unwrap_or(f64::NAN)
    }
}

impl Data {
    fn series(self) -> Vec<Series> {
        match self {
            Data::Vector(samples) => samples
                .into_iter()
                .map(|sample| Series {
                    labels: sample.metric,
                    values: vec![sample.value.value()],
                })
                .collect(),
            Data::Matrix(series) => series
                .into_iter()
                .map(|series| Series {
                    labels: series.metric,
                    values: series.values.iter().map(Point::value).collect(),
                })
                .collect(),
            Data::Scalar(point) => vec![Series {
                labels: Default::default(),
                values: vec![point.value()],
            }],
            Data::Other => Vec::new(),
        }
    }
}
