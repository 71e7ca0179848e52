//! A real Prometheus server for one test: Debian's `prometheus` package (`/usr/bin/prometheus`,
//! which `scripts/test.sh` installs), with its own config, data and loopback port, so tests run
//! in parallel without sharing anything.
//!
//! It scrapes its targets (usually a [`crate::exporter::TestExporter`]) every second. It is ready
//! (`/-/ready`) within a fraction of a second, but the first samples come 5 to 7 s after the
//! start, also after a [`restart`](Prometheus::restart): Prometheus 2.42 hands the targets from
//! its discovery to its scraper only every 5 s, and no flag of that version changes it. So start
//! it early (before creating the rollout, say), and wait for the first samples with
//! [`Prometheus::wait_for_sample`] rather than sleeping.
//!
//! [`Prometheus::stop`] takes it away (connections to its port are refused) and
//! [`Prometheus::restart`] brings it back on the same port with the same data, so tests can check
//! what Prism does when its metric source is down. Dropping it kills the server and removes its
//! directory; the server is also killed if the test's process drops it while unwinding a panic.
//!
//! ```no_run
//! use prism_testkit::exporter::{Behaviour, Series, TestExporter};
//! use prism_testkit::prometheus::Prometheus;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let exporter = TestExporter::start().await?;
//! let series = Series::new("web", "shop", "v1", "c1");
//! exporter.set(series.clone(), Behaviour::new(0.0, std::time::Duration::from_millis(20)));
//! let mut prometheus = Prometheus::start(&[exporter.addr()]).await?;
//! prometheus.wait_for_sample(&series.error_ratio_query("10s")).await?;
//! let url = prometheus.url(); // give it to the analysis under test
//! prometheus.stop().await?; // the metric source is down
//! prometheus.restart().await?; // and up again, with its data
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::Timestamp;
use prism_analysis::prometheus::{self, Series};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::{DEFAULT_TIMEOUT, wait_until};

/// The Prometheus binary, from Debian's `prometheus` package.
pub const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";

/// How often Prometheus scrapes its targets.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// How long Prometheus may take to become ready: generous, the machine is shared.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the harness asks whether Prometheus is ready.
const READY_POLL: Duration = Duration::from_millis(50);

/// How many lines of Prometheus's log an error shows.
const LOG_TAIL_LINES: usize = 30;

/// A Prometheus server of one test; see the [module](self) documentation.
#[derive(Debug)]
pub struct Prometheus {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
    client: prometheus::Prometheus,
}

impl Prometheus {
    /// Starts a server that scrapes `targets` (job `test`) every second and waits until it is
    /// ready. Its config, data and log (`prometheus.log`) are in a new temporary directory.
    pub async fn start(targets: &[SocketAddr]) -> anyhow::Result<Prometheus> {
        anyhow::ensure!(
            Path::new(PROMETHEUS_BINARY).exists(),
            "{PROMETHEUS_BINARY} is missing: install Debian's prometheus package \
             (scripts/test.sh does: apt-get install prometheus)"
        );
        let dir = crate::unique_temp_dir("prometheus")?;
        let mut prometheus = Prometheus {
            dir,
            port: 0,
            child: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .build()
                .context("building an HTTP client")?,
            client: prometheus::Prometheus::default(),
        };
        std::fs::write(prometheus.config_path(), config(targets))
            .context("writing prometheus.yml")?;
        // The port is free when picked, but another process may take it before Prometheus binds
        // it; then Prometheus exits at once, and another port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            prometheus.port = crate::free_port()?;
            match prometheus.launch().await {
                Ok(()) => return Ok(prometheus),
                Err(error)
                    if attempts < 5 && prometheus.log_tail().contains("address already in use") =>
                {
                    eprintln!(
                        "prism-testkit: Prometheus could not bind port {}, trying another: {error:#}",
                        prometheus.port
                    );
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// `http://127.0.0.1:PORT`, the base of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address it listens on (also while stopped: the one it will listen on again).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its directory: `prometheus.yml`, `data/`, `prometheus.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server runs (it was started and neither stopped nor dead).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL, as in a crash): from now on connections to its port are
    /// refused. Its data stays for [`restart`](Prometheus::restart). Stopping a stopped server
    /// does nothing.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing Prometheus")?;
        }
        Ok(())
    }

    /// Starts the server again (stopping it first if it runs), on the same port with the same
    /// data, and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// The result of the instant query `promql` now, through Prism's own client: one series
    /// per sample of a vector, or one without labels for a scalar.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Series>> {
        Ok(self.client.instant(&self.url(), promql).await?)
    }

    /// The result of the instant query `promql` evaluated at `at`.
    pub async fn query_at(&self, promql: &str, at: Timestamp) -> anyhow::Result<Vec<Series>> {
        Ok(self.client.instant_at(&self.url(), promql, at).await?)
    }

    /// The value of the instant query `promql` now: `None` when the result is empty, an error
    /// when it has more than one series. It may be NaN (0/0, say).
    pub async fn query_value(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let series = self.query(promql).await?;
        match series.as_slice() {
            [] => Ok(None),
            [one] => Ok(one.values.first().copied()),
            _ => bail!(
                "{promql} returned {} series, not one: {series:?}",
                series.len()
            ),
        }
    }

    /// Waits (up to [`DEFAULT_TIMEOUT`]) until the instant query `promql` returns at least one
    /// sample, and returns them: tests use it to know that scraping has begun.
    pub async fn wait_for_sample(&self, promql: &str) -> anyhow::Result<Vec<Series>> {
        wait_until(
            format_args!("Prometheus at {} has a sample for {promql}", self.url()),
            DEFAULT_TIMEOUT,
            || async {
                let samples = self.query(promql).await?;
                Ok((!samples.is_empty()).then_some(samples))
            },
        )
        .await
    }

    /// The last lines of its log (stdout and stderr of every run).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("prometheus.yml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// Starts the process on `self.port` and waits until it is ready.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening prometheus.log")?;
        let child = Command::new(PROMETHEUS_BINARY)
            .arg(format!("--config.file={}", self.config_path().display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {PROMETHEUS_BINARY}"))?;
        self.child = Some(child);
        let ready = self.wait_until_ready().await;
        if ready.is_err() {
            // Leave nothing half-started behind.
            let _ = self.stop().await;
        }
        ready.with_context(|| {
            format!(
                "Prometheus in {} did not start; the end of its log:\n{}",
                self.dir.display(),
                self.log_tail()
            )
        })
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/-/ready", self.url());
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("Prometheus exited ({status})");
            }
            let last = match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("/-/ready answered {}", response.status()),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!("not ready after {START_TIMEOUT:?}; last: {last}");
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Reap it, so no zombie stays; SIGKILL takes effect at once.
            for _ in 0..100 {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("prism-testkit: removing {}: {error}", self.dir.display());
        }
    }
}

/// The config: every `SCRAPE_INTERVAL`, one job `test` with `targets`.
fn config(targets: &[SocketAddr]) -> String {
    let targets = targets
        .iter()
        .map(|target| format!("'{target}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: {interval}ms\n  scrape_timeout: {timeout}ms\n  \
         evaluation_interval: {interval}ms\n\
         scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{targets}]\n",
        interval = SCRAPE_INTERVAL.as_millis(),
        timeout = SCRAPE_INTERVAL.as_millis() * 8 / 10,
    )
}
