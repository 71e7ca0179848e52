//! The test exporter and a real Prometheus (Debian's package, installed by scripts/test.sh):
//! the metrics that the analysis will read follow what a test sets, and Prometheus can be taken
//! away and brought back. These tests need no Kubernetes sandbox; each has its own Prometheus.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use prism_testkit::exporter::{Behaviour, ExporterConfig, Series, TestExporter, bucket_bounds};
use prism_testkit::prometheus::Prometheus;
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};

/// The window of the rate queries: ten scrapes.
const WINDOW: &str = "10s";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Waits until the single value of `query` satisfies `ok`, and returns it.
async fn wait_for_value(
    prometheus: &Prometheus,
    query: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    wait_until(format!("{query} is {what}"), DEFAULT_TIMEOUT, || async {
        match prometheus.query_value(query).await? {
            Some(value) if ok(value) => Ok(Some(value)),
            Some(value) => Err(anyhow::anyhow!("it is {value}")),
            None => Err(anyhow::anyhow!("no sample")),
        }
    })
    .await
    .unwrap()
}

/// Starts Prometheus on `exporter` and waits for the first sample of `query`, printing how long
/// each took.
async fn start_prometheus(exporter: &TestExporter, query: &str) -> Prometheus {
    let started = Instant::now();
    let prometheus = Prometheus::start(&[exporter.addr()]).await.unwrap();
    let ready = started.elapsed();
    prometheus.wait_for_sample(query).await.unwrap();
    eprintln!(
        "Prometheus at {}: ready after {ready:?}, first sample of {query} after {:?}",
        prometheus.url(),
        started.elapsed()
    );
    prometheus
}

#[tokio::test]
async fn the_error_ratio_follows_the_behaviour() {
    let exporter = TestExporter::start().await.unwrap();
    let stable = Series::new("web", "shop", "v1", "c1");
    let canary = Series::new("web", "shop", "v2", "c1");
    exporter.set(stable.clone(), Behaviour::new(0.0, ms(50)));
    exporter.set(canary.clone(), Behaviour::new(0.2, ms(50)));
    let canary_query = canary.error_ratio_query(WINDOW);
    let prometheus = start_prometheus(&exporter, &canary_query).await;

    let ratio = wait_for_value(&prometheus, &canary_query, "about 0.2", |ratio| {
        (ratio - 0.2).abs() < 0.015
    })
    .await;
    eprintln!("canary error ratio: {ratio}");
    let stable_ratio = prometheus
        .query_value(&stable.error_ratio_query(WINDOW))
        .await
        .unwrap();
    assert_eq!(stable_ratio, Some(0.0), "the stable version has no errors");

    // Counted from the change on: once the window has passed it, no errors are left in it.
    let fixed = Instant::now();
    exporter.set(canary.clone(), Behaviour::new(0.0, ms(50)));
    wait_for_value(&prometheus, &canary_query, "0", |ratio| ratio == 0.0).await;
    eprintln!("the canary error ratio was 0 after {:?}", fixed.elapsed());
}

#[tokio::test]
async fn the_latency_quantile_follows_the_behaviour() {
    let exporter = TestExporter::start().await.unwrap();
    let series = Series::new("api", "shop", "v1", "c2");
    exporter.set(series.clone(), Behaviour::new(0.01, ms(200)));
    let p99 = series.latency_quantile_query(0.99, WINDOW);
    let prometheus = start_prometheus(&exporter, &p99).await;

    // ±10 % jitter, and up to one bucket (10 %) of interpolation.
    let fast = wait_for_value(&prometheus, &p99, "about 0.2 s", |p99| {
        (0.16..=0.25).contains(&p99)
    })
    .await;
    eprintln!("p99 at 200 ms: {fast}");

    exporter.set(series.clone(), Behaviour::new(0.01, ms(800)));
    let slow = wait_for_value(&prometheus, &p99, "about 0.8 s", |p99| {
        (0.65..=1.0).contains(&p99)
    })
    .await;
    eprintln!("p99 at 800 ms: {slow}");
    // The p99 moves as soon as 1 % of the window is slow, the median only once half of it is:
    // read at once, it is still about 0.2 s, on either side of it by the jitter.
    let median = wait_for_value(
        &prometheus,
        &series.latency_quantile_query(0.5, WINDOW),
        "about 0.8 s too",
        |median| (0.65..=1.0).contains(&median),
    )
    .await;
    eprintln!("median at 800 ms: {median}");
}

#[tokio::test]
async fn prometheus_can_be_taken_away_and_brought_back() {
    let exporter = TestExporter::start().await.unwrap();
    let series = Series::new("web", "shop", "v1", "c3");
    exporter.set(series.clone(), Behaviour::new(0.1, ms(20)));
    let requests = format!("http_requests_total{{{},code=\"200\"}}", series.matchers());
    let mut prometheus = start_prometheus(&exporter, &requests).await;
    // A few scrapes in, note a past value.
    wait_for_value(&prometheus, &requests, "above 200", |count| count > 200.0).await;
    let before = jiff::Timestamp::now();
    // A scrape under way now is stamped with its start but appended only once it ends: read the
    // value at `before` once a later scrape is in (the target's scrapes run one at a time), or a
    // sample older than `before` could come in after the read, and show after the restart.
    let before_seconds = before.as_millisecond() as f64 / 1000.0;
    wait_for_value(
        &prometheus,
        &format!("timestamp({requests})"),
        "after the noted time",
        |scraped_at| scraped_at > before_seconds,
    )
    .await;
    let old = prometheus.query_at(&requests, before).await.unwrap();
    assert_eq!(old.len(), 1, "{old:?}");

    prometheus.stop().await.unwrap();
    let refused = tokio::net::TcpStream::connect(prometheus.addr()).await;
    assert_eq!(
        refused.as_ref().map_err(|error| error.kind()).err(),
        Some(ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    let error = prometheus.query(&requests).await.unwrap_err();
    eprintln!("while stopped: {error:#}");

    let restarted = Instant::now();
    prometheus.restart().await.unwrap();
    eprintln!("restarted in {:?}", restarted.elapsed());
    let again = prometheus.query_at(&requests, before).await.unwrap();
    assert_eq!(again, old, "the data from before the stop is kept");
    // And scraping goes on.
    let old_count = old[0].values[0];
    wait_for_value(&prometheus, &requests, "growing", |count| count > old_count).await;
}

/// The exporter alone: whole requests at the set rate, integrated from each change on.
#[tokio::test]
async fn the_exporter_integrates_its_counters() {
    let exporter = TestExporter::start_with(ExporterConfig {
        jitter: 0.0,
        ..ExporterConfig::default()
    })
    .await
    .unwrap();
    let series = Series::new("web", "shop", "v1", "c1");
    let labels = |code: &str| {
        vec![
            ("version", "v1".to_owned()),
            ("cluster", "c1".to_owned()),
            ("code", code.to_owned()),
        ]
    };
    let read = || {
        let text = exporter.render();
        let ok = value(&text, "http_requests_total", &labels("200"));
        let errors = value(&text, "http_requests_total", &labels("500"));
        (ok, errors, text)
    };
    exporter.set(series.clone(), Behaviour::new(0.5, ms(10)));
    let (ok, errors, text) = wait_until("50 requests are counted", DEFAULT_TIMEOUT, || async {
        let (ok, errors, text) = read();
        Ok((ok + errors >= 50.0).then_some((ok, errors, text)))
    })
    .await
    .unwrap();
    assert!((ok - errors).abs() <= 1.0, "{ok} ok, {errors} errors");
    // 10 ms falls in one bucket: none below it, all at or above it.
    let count = value(
        &text,
        "http_request_duration_seconds_count",
        &labels("")[..2],
    );
    assert_eq!(count, ok + errors);
    let bounds = bucket_bounds();
    let bucket = bounds.partition_point(|bound| *bound < 0.01);
    let le = |bound: f64| [("version", "v1".to_owned()), ("le", bound.to_string())];
    let below = value(
        &text,
        "http_request_duration_seconds_bucket",
        &le(bounds[bucket - 1]),
    );
    let at = value(
        &text,
        "http_request_duration_seconds_bucket",
        &le(bounds[bucket]),
    );
    assert_eq!((below, at), (0.0, count), "{text}");
    let sum = value(&text, "http_request_duration_seconds_sum", &labels("")[..2]);
    assert!(
        (sum - count * 0.01).abs() < 1e-6,
        "sum {sum}, count {count}"
    );

    exporter.set(series.clone(), Behaviour::new(0.0, ms(10)));
    let (frozen_errors, later_ok) =
        wait_until("more requests are counted", DEFAULT_TIMEOUT, || {
            let (later_ok, later_errors, _) = read();
            async move { Ok((later_ok > ok + 20.0).then_some((later_errors, later_ok))) }
        })
        .await
        .unwrap();
    assert!(later_ok > ok);
    // At most the half request under way at the change is counted after it.
    assert!(
        (errors..=errors + 1.0).contains(&frozen_errors),
        "errors went from {errors} to {frozen_errors} after the change to 0"
    );
    let (_, final_errors, _) = read();
    assert_eq!(final_errors, frozen_errors, "no errors after the change");
}

/// The value of the sample of `name` whose labels include `labels`.
fn value(text: &str, name: &str, labels: &[(&str, String)]) -> f64 {
    let matches: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(label, value)| rest.contains(&format!("{label}=\"{value}\""))))
            .then(|| value.parse().unwrap())
        })
        .collect();
    assert_eq!(matches.len(), 1, "{name} {labels:?} in\n{text}");
    matches[0]
}
