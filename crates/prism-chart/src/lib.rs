//! Renders a Helm chart (an Application's `spec.template.chart`) into the objects it makes, with
//! Helm itself: `helm template`, so that a chart renders as `helm install` would render it.
//!
//! Helm runs as a child process with its cache, configuration and data in a temporary directory
//! of `$TMPDIR` (the controller runs as non-root on a read-only root filesystem), under a timeout,
//! and is killed when the render is dropped. What it prints is parsed into
//! [`Manifest`]s; its failures are told apart in [`RenderError`].

mod error;
mod output;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use prism_api::application::Manifest;
use prism_api::chart::Chart;
use tokio::process::Command;

pub use error::RenderError;

/// How long a render may take by default, telling a failure apart included: a repository that
/// does not answer must not hold a Release's creation for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The helm binary, and how long one render may take.
#[derive(Clone, Debug)]
pub struct Helm {
    path: PathBuf,
    timeout: Duration,
}

/// A chart's objects, as `helm template` rendered them, and how long that took.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub took: Duration,
}

impl Helm {
    pub fn new(path: impl Into<PathBuf>) -> Helm {
        Helm {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(self, timeout: Duration) -> Helm {
        Helm { timeout, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renders `chart` as the release `release_name` in `namespace`: its defaults, then each of
    /// `values_files` (YAML documents, in order), then the chart's inline values.
    pub async fn render(
        &self,
        chart: &Chart,
        values_files: &[String],
        release_name: &str,
        namespace: &str,
    ) -> Result<Rendered, RenderError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let home = tempfile::Builder::new()
            .prefix("prism-helm-")
            .tempdir()
            .map_err(|source| RenderError::Workspace { source })?;
        let mut layers: Vec<&str> = values_files.iter().map(String::as_str).collect();
        let inline = match &chart.values {
            Some(values) if !values.is_null() => Some(values.to_string()),
            _ => None,
        };
        layers.extend(inline.as_deref());
        let mut command = self.command(home.path());
        command.args(["template", release_name]);
        match chart.oci_reference() {
            Some(reference) => command.arg(reference),
            None => command.args([&chart.name, "--repo", &chart.repository]),
        };
        command.args(["--version", &chart.version, "--namespace", namespace]);
        // A chart's tests are pods for `helm test`, not part of what it installs.
        command.arg("--skip-tests");
        for (layer, values) in layers.iter().enumerate() {
            let file = home.path().join(output::values_file_name(layer));
            tokio::fs::write(&file, values)
                .await
                .map_err(|source| RenderError::Workspace { source })?;
            command.arg("--values").arg(file);
        }
        let child = command.spawn().map_err(|source| RenderError::Helm {
            path: self.path.clone(),
            source,
        })?;
        let finished = tokio::time::timeout_at(deadline, child.wait_with_output()).await;
        let outcome = match finished {
            Err(_) => Err(RenderError::TimedOut {
                chart: chart.name.clone(),
                version: chart.version.clone(),
                repository: chart.repository.clone(),
                timeout: self.timeout,
            }),
            Ok(Err(source)) => Err(RenderError::Helm {
                path: self.path.clone(),
                source,
            }),
            Ok(Ok(out)) if out.status.success() => {
                output::manifests(&String::from_utf8_lossy(&out.stdout))
                    .map_err(|message| RenderError::Output {
                        chart: chart.name.clone(),
                        version: chart.version.clone(),
                        message,
                    })
                    .map(|manifests| Rendered {
                        manifests,
                        took: started.elapsed(),
                    })
            }
            Ok(Ok(out)) => Err(self
                .failure(chart, &out.stderr, layers.len(), deadline)
                .await),
        };
        match &outcome {
            Ok(rendered) => tracing::debug!(
                chart = %chart.name, version = %chart.version, objects = rendered.manifests.len(),
                took_ms = rendered.took.as_millis() as u64, "rendered chart"
            ),
            Err(error) => {
                tracing::debug!(chart = %chart.name, version = %chart.version, %error, "chart did not render")
            }
        }
        outcome
    }

    /// Helm's failure, told apart. "Not found" is the same message for a chart missing from
    /// the repository and for a missing version of one that is there, so the chart's newest
    /// version is asked for to tell which.
    async fn failure(
        &self,
        chart: &Chart,
        stderr: &[u8],
        layers: usize,
        deadline: tokio::time::Instant,
    ) -> RenderError {
        let message = error::helm_message(&String::from_utf8_lossy(stderr));
        match error::classify(chart, &message, layers) {
            RenderError::ChartNotFound { .. } if !chart.is_oci() => {
                match self.newest_version(chart, deadline).await {
                    Some(newest) => RenderError::VersionNotFound {
                        chart: chart.name.clone(),
                        version: chart.version.clone(),
                        repository: chart.repository.clone(),
                        newest,
                    },
                    None => error::classify(chart, &message, layers),
                }
            }
            classified => classified,
        }
    }

    /// The newest version of the chart in its repository, if the repository has the chart and
    /// answers by `deadline`.
    async fn newest_version(
        &self,
        chart: &Chart,
        deadline: tokio::time::Instant,
    ) -> Option<String> {
        let home = tempfile::Builder::new()
            .prefix("prism-helm-")
            .tempdir()
            .ok()?;
        let show = self
            .command(home.path())
            .args(["show", "chart", &chart.name, "--repo", &chart.repository])
            .output();
        let out = tokio::time::timeout_at(deadline, show).await.ok()?.ok()?;
        if !out.status.success() {
            return None;
        }
        output::chart_version(&String::from_utf8_lossy(&out.stdout))
    }

    /// helm, with everything it writes under `home` and killed when dropped.
    fn command(&self, home: &Path) -> Command {
        let mut command = Command::new(&self.path);
        for (variable, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(variable, home.join(dir));
        }
        command
            .current_dir(home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}
