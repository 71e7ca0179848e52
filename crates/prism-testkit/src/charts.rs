//! The sandbox's chart repository (`sandbox/charts/repo`, served by `sandbox/sandbox chart-repo`
//! and `up`) and the helm that renders its charts, for the tests of charts as templates.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use tokio::sync::OnceCell;

use crate::check_output;
use crate::helm::repository;

/// The charts the repository holds: `web` (1.0.0 and 1.1.0), `worker`, `pair`, `store` and
/// `dashboards` (1.0.0); their sources are under `sandbox/charts/src`.
pub const WEB: &str = "web";
pub const WORKER: &str = "worker";
pub const PAIR: &str = "pair";
pub const STORE: &str = "store";
/// Megabytes of dashboards as ConfigMaps: a render that fits a Release only compressed.
pub const DASHBOARDS: &str = "dashboards";

static REPOSITORY_URL: OnceCell<Result<String, String>> = OnceCell::const_new();
static HELM_PATH: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The chart repository's URL, `http://127.0.0.1:8879`, once it serves this checkout's charts.
///
/// # Panics
/// When the repository cannot be served; the message holds the sandbox's output.
pub async fn repository_url() -> &'static str {
    let url = REPOSITORY_URL
        .get_or_init(|| run_once(&["chart-repo"], |stdout| stdout.trim().to_owned()))
        .await;
    match url {
        Ok(url) => url,
        Err(message) => panic!("the chart repository could not be served:\n{message}"),
    }
}

/// The helm binary the sandbox builds (`sandbox/sandbox helm-path`; a first run builds it, which
/// takes minutes).
///
/// # Panics
/// When helm cannot be built; the message holds the sandbox's output.
pub async fn helm_path() -> &'static Path {
    let path = HELM_PATH
        .get_or_init(|| run_once(&["helm-path"], |stdout| PathBuf::from(stdout.trim())))
        .await;
    match path {
        Ok(path) => path,
        Err(message) => panic!("helm could not be built:\n{message}"),
    }
}

async fn run_once<T: Send + 'static>(
    args: &'static [&'static str],
    parse: fn(&str) -> T,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<T> {
        let script = repository().join("sandbox/sandbox");
        let output = Command::new(&script)
            .args(args)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        check_output(&format!("sandbox/sandbox {}", args.join(" ")), &output)?;
        Ok(parse(&String::from_utf8_lossy(&output.stdout)))
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| format!("{error:#}"))
}
