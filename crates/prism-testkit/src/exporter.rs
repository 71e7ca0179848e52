//! A test exporter: an in-process HTTP server whose `/metrics` (Prometheus text format 0.0.4)
//! stand in for the metrics of the application that a rollout ships. The sandbox's pods are fake
//! (KWOK), so they serve nothing; a test tells the exporter how each version of the app behaves
//! in each cluster, and a real Prometheus ([`crate::prometheus::Prometheus`]) scrapes it.
//!
//! # What it serves
//!
//! Each [`Series`] (app, namespace, version, cluster) that a test [`set`](TestExporter::set)
//! receives simulated traffic at a fixed rate ([`ExporterConfig::requests_per_second`], 100/s by
//! default), counted as whole requests in real counters:
//!
//! - `http_requests_total{app,namespace,version,cluster,code}` with `code="200"` and
//!   `code="500"` (both always present, so an error ratio is 0 rather than absent);
//! - the histogram `http_request_duration_seconds{app,namespace,version,cluster}`
//!   (`_bucket{le}`, `_sum`, `_count`), with exponential buckets from 1 ms to about 90 s, 10 %
//!   apart (see [`bucket_bounds`]).
//!
//! The counters are integrated over time: on each scrape, and on each `set`, the exporter adds
//! the requests of the time elapsed since it last did, at the behaviour in force during that time.
//! So a change takes effect from the moment `set` is called, and counters never go backwards.
//!
//! # Noise
//!
//! Real traffic is noisy, and the statistical judges must cope with that, so the behaviour is
//! not served exactly: time is cut into intervals of [`JITTER_INTERVAL`] (1 s, about one scrape)
//! from the exporter's start, and in each interval every series gets its own error ratio and
//! latency, the set ones times `1 + jitter * u` with `u` uniform in [-1, 1) (`jitter` is ±10 % by
//! default; an error ratio is then capped at 1). `u` is a hash of the seed, the series and the
//! interval's index: deterministic, different for each series and each interval, and the same
//! run after run for a given seed. All requests of one series in one interval take the same time.
//! A 10 s window thus averages ten draws: the error ratio over it is within a few percent
//! (relative) of the set one, and a quantile of the latency is within ±10 % (the jitter) of the
//! set latency, plus up to one bucket (10 %) of interpolation by `histogram_quantile`. An error
//! ratio of 0 stays exactly 0.
//!
//! # Queries
//!
//! The queries that tests use; [`Series::error_ratio_query`] and
//! [`Series::latency_quantile_query`] write them:
//!
//! ```
//! use prism_testkit::exporter::Series;
//!
//! let canary = Series::new("web", "shop", "v2", "c1");
//! assert_eq!(
//!     canary.error_ratio_query("10s"),
//!     r#"sum(rate(http_requests_total{app="web",namespace="shop",version="v2",cluster="c1",code="500"}[10s])) / sum(rate(http_requests_total{app="web",namespace="shop",version="v2",cluster="c1"}[10s]))"#,
//! );
//! assert_eq!(
//!     canary.latency_quantile_query(0.99, "10s"),
//!     r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{app="web",namespace="shop",version="v2",cluster="c1"}[10s])))"#,
//! );
//! ```
//!
//! A whole test:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use prism_testkit::exporter::{Behaviour, Series, TestExporter};
//! use prism_testkit::prometheus::Prometheus;
//! use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
//!
//! #[tokio::test]
//! async fn canary_errors_show() {
//!     let exporter = TestExporter::start().await.unwrap();
//!     let canary = Series::new("web", "shop", "v2", "c1");
//!     exporter.set(canary.clone(), Behaviour::new(0.2, Duration::from_millis(50)));
//!     let prometheus = Prometheus::start(&[exporter.addr()]).await.unwrap();
//!     let query = canary.error_ratio_query("10s");
//!     prometheus.wait_for_sample(&query).await.unwrap();
//!     wait_until("the error ratio is about 0.2", DEFAULT_TIMEOUT, || async {
//!         let ratio = prometheus.query_value(&query).await?;
//!         Ok(ratio.filter(|ratio| (ratio - 0.2).abs() < 0.03))
//!     })
//!     .await
//!     .unwrap();
//! }
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::{AbortOnDrop, spawn_for_test};

/// Length of the intervals that each get their own jitter: about one scrape.
pub const JITTER_INTERVAL: Duration = Duration::from_secs(1);

/// Which traffic a set of metrics describes: one version of an app in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    /// Label `app`.
    pub app: String,
    /// Label `namespace`.
    pub namespace: String,
    /// Label `version`.
    pub version: String,
    /// Label `cluster`.
    pub cluster: String,
}

impl Series {
    pub fn new(
        app: impl Into<String>,
        namespace: impl Into<String>,
        version: impl Into<String>,
        cluster: impl Into<String>,
    ) -> Series {
        Series {
            app: app.into(),
            namespace: namespace.into(),
            version: version.into(),
            cluster: cluster.into(),
        }
    }

    /// The label matchers of this series, without braces:
    /// `app="A",namespace="N",version="V",cluster="C"`.
    pub fn matchers(&self) -> String {
        self.labels()
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ratio of requests answered with code 500 over `window` (a PromQL duration, `10s`).
    pub fn error_ratio_query(&self, window: &str) -> String {
        let matchers = self.matchers();
        format!(
            "sum(rate(http_requests_total{{{matchers},code=\"500\"}}[{window}])) / \
             sum(rate(http_requests_total{{{matchers}}}[{window}]))"
        )
    }

    /// The `quantile` (0.99 for p99) of the request latency over `window`, in seconds.
    pub fn latency_quantile_query(&self, quantile: f64, window: &str) -> String {
        format!(
            "histogram_quantile({quantile}, sum by (le) \
             (rate(http_request_duration_seconds_bucket{{{}}}[{window}])))",
            self.matchers()
        )
    }

    fn labels(&self) -> [(&'static str, &str); 4] {
        [
            ("app", &self.app),
            ("namespace", &self.namespace),
            ("version", &self.version),
            ("cluster", &self.cluster),
        ]
    }

    /// A hash that is the same in every run (unlike `std`'s), to seed the jitter.
    fn stable_hash(&self) -> u64 {
        // FNV-1a, with a separator so that ("ab", "c") and ("a", "bc") differ.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, value) in self.labels() {
            for byte in value.bytes().chain([0xff]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}

/// How a series behaves from the moment it is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    /// The share of requests answered with code 500, in [0, 1].
    pub error_ratio: f64,
    /// How long each request takes.
    pub latency: Duration,
    /// Requests per second, when not the exporter's [`ExporterConfig::requests_per_second`]:
    /// 0 for a version nobody reaches any more.
    pub requests_per_second: Option<f64>,
}

impl Behaviour {
    pub fn new(error_ratio: f64, latency: Duration) -> Behaviour {
        Behaviour {
            error_ratio,
            latency,
            requests_per_second: None,
        }
    }

    /// This behaviour at `requests_per_second` rather than the exporter's rate.
    pub fn at_rate(self, requests_per_second: f64) -> Behaviour {
        Behaviour {
            requests_per_second: Some(requests_per_second),
            ..self
        }
    }
}

/// Settings of a [`TestExporter`]; see [`TestExporter::start_with`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExporterConfig {
    /// Requests per second of each series. Default 100.
    pub requests_per_second: f64,
    /// Relative jitter of error ratio and latency per [`JITTER_INTERVAL`]: 0.1 (the default)
    /// means ±10 %; 0 serves the behaviour exactly.
    pub jitter: f64,
    /// Seed of the jitter. Default 0.
    pub seed: u64,
}

impl Default for ExporterConfig {
    fn default() -> ExporterConfig {
        ExporterConfig {
            requests_per_second: 100.0,
            jitter: 0.1,
            seed: 0,
        }
    }
}

/// The upper bounds (`le`) of the latency histogram's buckets, in seconds, without `+Inf`:
/// 1 ms, then 10 % more each, rounded to three significant digits, up to about 90 s.
pub fn bucket_bounds() -> &'static [f64] {
    static BOUNDS: OnceLock<Vec<f64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        (0..120)
            .map(|i| {
                let bound = 0.001 * 1.1_f64.powi(i);
                // Parsing the rounded decimal gives the double that prints as that decimal.
                format!("{bound:.2e}").parse().expect("a formatted float")
            })
            .collect()
    })
}

/// The exporter; it serves until dropped. It belongs to the tokio runtime that started it (the
/// test's) and serves only while that runtime runs, i.e. while the test awaits.
pub struct TestExporter {
    addr: SocketAddr,
    state: Arc<Mutex<Exporter>>,
    _server: AbortOnDrop<std::io::Result<()>>,
}

impl TestExporter {
    /// Starts an exporter with the default [`ExporterConfig`] on a free loopback port.
    pub async fn start() -> anyhow::Result<TestExporter> {
        TestExporter::start_with(ExporterConfig::default()).await
    }

    /// Starts an exporter with these settings on a free loopback port.
    pub async fn start_with(config: ExporterConfig) -> anyhow::Result<TestExporter> {
        anyhow::ensure!(
            config.requests_per_second >= 0.0 && config.requests_per_second.is_finite(),
            "requests_per_second must be finite and not negative, not {}",
            config.requests_per_second
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&config.jitter),
            "jitter must be in [0, 1), not {}",
            config.jitter
        );
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the test exporter to a loopback port")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(Exporter {
            config,
            epoch: Instant::now(),
            series: BTreeMap::new(),
        }));
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(state.clone());
        let server = spawn_for_test(async move { axum::serve(listener, router).await });
        Ok(TestExporter {
            addr,
            state,
            _server: server,
        })
    }

    /// Where it listens (127.0.0.1 and its port): the scrape target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, `series` behaves so. A new series starts with its counters at 0.
    ///
    /// # Panics
    /// When the error ratio is not in [0, 1].
    pub fn set(&self, series: Series, behaviour: Behaviour) {
        assert!(
            (0.0..=1.0).contains(&behaviour.error_ratio),
            "an error ratio must be in [0, 1], not {}",
            behaviour.error_ratio
        );
        let now = Instant::now();
        let mut exporter = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Exporter {
            config,
            epoch,
            series: all,
        } = &mut *exporter;
        let hash = series.stable_hash();
        let state = all
            .entry(series)
            .or_insert_with(|| SeriesState::new(now, hash));
        // The time up to now counts at the old behaviour.
        state.advance(config, *epoch, now);
        state.behaviour = behaviour;
    }

    /// What a scrape would get now (and the counters advance as for a scrape).
    pub fn render(&self) -> String {
        render(&self.state)
    }
}

async fn serve_metrics(
    State(state): State<Arc<Mutex<Exporter>>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render(&state),
    )
}

fn render(state: &Mutex<Exporter>) -> String {
    let snapshot = {
        let mut exporter = state.lock().unwrap_or_else(|e| e.into_inner());
        exporter.advance(Instant::now());
        exporter.snapshot()
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Exporter {
    config: ExporterConfig,
    /// Where the jitter intervals start.
    epoch: Instant,
    series: BTreeMap<Series, SeriesState>,
}

impl Exporter {
    fn advance(&mut self, now: Instant) {
        for state in self.series.values_mut() {
            state.advance(&self.config, self.epoch, now);
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.series
                .iter()
                .map(|(series, state)| (series.clone(), state.counts.clone()))
                .collect(),
        )
    }
}

#[derive(Debug)]
struct SeriesState {
    behaviour: Behaviour,
    /// Up to when the counts are integrated.
    advanced_to: Instant,
    hash: u64,
    /// Fractions of a request (and of an error) not counted yet: the rate is kept exactly over
    /// time, whatever the length of the steps.
    request_carry: f64,
    error_carry: f64,
    counts: Counts,
}

#[derive(Clone, Debug)]
struct Counts {
    ok: u64,
    errors: u64,
    /// Requests per bucket of [`bucket_bounds`] (not cumulative), then the `+Inf` one.
    buckets: Vec<u64>,
    /// Total latency, in seconds.
    sum: f64,
}

impl SeriesState {
    fn new(now: Instant, hash: u64) -> SeriesState {
        SeriesState {
            behaviour: Behaviour::new(0.0, Duration::ZERO),
            advanced_to: now,
            hash,
            request_carry: 0.0,
            error_carry: 0.0,
            counts: Counts {
                ok: 0,
                errors: 0,
                buckets: vec![0; bucket_bounds().len() + 1],
                sum: 0.0,
            },
        }
    }

    /// Adds the requests from `advanced_to` to `now`, one jitter interval at a time.
    fn advance(&mut self, config: &ExporterConfig, epoch: Instant, now: Instant) {
        let interval = JITTER_INTERVAL.as_nanos();
        let mut from = self.advanced_to;
        while from < now {
            let index = from.duration_since(epoch).as_nanos() / interval;
            let interval_end = epoch + nanos(interval * (index + 1));
            let to = interval_end.min(now);
            let index = index as u64;

            let rate = self
                .behaviour
                .requests_per_second
                .unwrap_or(config.requests_per_second);
            let requests = rate * (to - from).as_secs_f64() + self.request_carry;
            let whole_requests = requests.floor();
            self.request_carry = requests - whole_requests;

            let draw =
                |kind: u64| 1.0 + config.jitter * uniform(config.seed, self.hash, index, kind);
            let error_ratio = (self.behaviour.error_ratio * draw(1)).clamp(0.0, 1.0);
            let errors = whole_requests * error_ratio + self.error_carry;
            let whole_errors = errors.floor().min(whole_requests);
            self.error_carry = errors - whole_errors;
            let latency = self.behaviour.latency.as_secs_f64() * draw(2);

            let (requests, errors) = (whole_requests as u64, whole_errors as u64);
            let bucket = bucket_bounds().partition_point(|bound| *bound < latency);
            let counts = &mut self.counts;
            counts.ok += requests - errors;
            counts.errors += errors;
            counts.buckets[bucket] += requests;
            counts.sum += requests as f64 * latency;
            from = to;
        }
        self.advanced_to = self.advanced_to.max(now);
    }
}

fn nanos(nanos: u128) -> Duration {
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

/// A number uniform in [-1, 1), a hash of the arguments (splitmix64).
fn uniform(seed: u64, series: u64, interval: u64, kind: u64) -> f64 {
    let mut x = seed
        ^ series.rotate_left(17)
        ^ interval.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ kind.wrapping_mul(0xd1b5_4a32_d192_ed03);
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The counts of every series at one scrape, encoded by prometheus-client.
#[derive(Debug)]
struct Snapshot(Vec<(Series, Counts)>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut requests = encoder.encode_descriptor(
                "http_requests",
                "Requests served, by status code.",
                None,
                MetricType::Counter,
            )?;
            for (series, counts) in &self.0 {
                for (code, count) in [("200", counts.ok), ("500", counts.errors)] {
                    let mut labels = series.labels().to_vec();
                    labels.push(("code", code));
                    requests
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
        let mut latency = encoder.encode_descriptor(
            "http_request_duration",
            "How long requests took.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let bounds = bucket_bounds().iter().copied().chain([f64::INFINITY]);
        for (series, counts) in &self.0 {
            let buckets: Vec<(f64, u64)> = bounds.clone().zip(counts.buckets.clone()).collect();
            let labels = series.labels().to_vec();
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    counts.sum,
                    counts.ok + counts.errors,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}
