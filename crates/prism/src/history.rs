//! `prism history APP`: an Application's Releases, oldest first, as a table or as JSON.
//!
//! [`rows`] and [`table`] are pure; [`read`] reads the Application and its Releases through
//! kube and maps each failure to an exit code a script can rely on ([`HistoryError::exit_code`]).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client, Config, ResourceExt};
use prism_api::{Application, Release};
use prism_controller::application::APP_LABEL;
use serde::Serialize;

/// One Release, as `prism history` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub revision: u32,
    /// The Release's name.
    pub name: String,
    /// `status.phase`, or `Pending` before the controller sets one.
    pub phase: String,
    /// Steps achieved out of the strategy's, e.g. `2/4`; absent before the controller sets it.
    pub progress: Option<String>,
    /// The images of the Deployment in the Release's template, in container order.
    pub images: Vec<String>,
    /// The Release's creation time, RFC 3339.
    pub created: Option<String>,
    /// What the Application's status says of this Release.
    pub role: Option<Role>,
    /// Since creation, the way kubectl prints ages (`5s`, `3m`, `2h`, `4d`); table only.
    #[serde(skip)]
    pub age: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The Release being rolled out.
    Contender,
    /// The newest complete Release.
    Incumbent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Contender => "contender",
            Role::Incumbent => "incumbent",
        }
    }
}

/// The Application's Releases as rows, oldest (lowest revision) first.
pub fn rows(app: &Application, releases: Vec<Release>, now: Timestamp) -> Vec<Row> {
    let status = app.status.clone().unwrap_or_default();
    let mut rows: Vec<Row> = releases
        .into_iter()
        .map(|release| {
            let name = release.name_any();
            let role = if status.contender.as_deref() == Some(name.as_str()) {
                Some(Role::Contender)
            } else if status.incumbent.as_deref() == Some(name.as_str()) {
                Some(Role::Incumbent)
            } else {
                None
            };
            let created = release.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let release_status = release.status.unwrap_or_default();
            Row {
                revision: release.spec.revision,
                phase: release_status
                    .phase
                    .map_or("Pending", |phase| phase.as_str())
                    .to_owned(),
                progress: release_status.progress,
                images: images(&release.spec.template),
                created: created.map(|t| t.to_string()),
                age: created.map_or_else(|| "<unknown>".to_owned(), |t| age(now.duration_since(t))),
                role,
                name,
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.revision, &a.name).cmp(&(b.revision, &b.name)));
    rows
}

fn images(template: &prism_api::application::Template) -> Vec<String> {
    template
        .deployment()
        .and_then(|deployment| deployment.spec)
        .and_then(|spec| spec.template.spec)
        .map(|pod| pod.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default()
}

/// A duration the way kubectl prints an age (`HumanDuration` in k8s.io/apimachinery): `45s`,
/// `3m20s` under 10 minutes, `42m`, `2h5m` under 8 hours, `30h`, `4d6h` under 8 days, `120d`,
/// `2y45d` under 8 years, `9y`.
pub fn age(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    let days = hours / 24;
    if days < 365 * 2 {
        return format!("{days}d");
    }
    if days < 365 * 8 {
        return match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        };
    }
    format!("{}y", days / 365)
}

/// The rows as a table, columns separated by three spaces like kubectl's.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "REVISION", "RELEASE", "PHASE", "STEP", "IMAGE", "AGE", "ROLE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                row.revision.to_string(),
                row.name.clone(),
                row.phase.clone(),
                row.progress.clone().unwrap_or_else(|| "-".to_owned()),
                if row.images.is_empty() {
                    "-".to_owned()
                } else {
                    row.images.join(",")
                },
                row.age.clone(),
                row.role.map_or("", Role::as_str).to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |line: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("   ");
            }
            text.push_str(&format!("{cell:width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    push(&header);
    for line in &cells {
        push(&line.each_ref().map(String::as_str));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Api(String),
    #[error("application {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
}

impl HistoryError {
    /// 3 when the Application does not exist, 1 for anything else (configuration, connection,
    /// CRDs not installed, access denied).
    pub fn exit_code(&self) -> u8 {
        match self {
            HistoryError::Api(_) => 1,
            HistoryError::NotFound { .. } => 3,
        }
    }
}

/// Reads the Application `name` and its Releases from the cluster of the current kubeconfig, in
/// `namespace` or the context's namespace, and builds the rows.
pub async fn read(name: &str, namespace: Option<String>) -> Result<Vec<Row>, HistoryError> {
    let config = Config::infer()
        .await
        .map_err(|e| HistoryError::Api(format!("no Kubernetes configuration: {e}")))?;
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)
        .map_err(|e| HistoryError::Api(format!("no Kubernetes client: {e}")))?;
    let explain = |what: &str, error: kube::Error| match error {
        kube::Error::Api(status) if status.is_not_found() => HistoryError::Api(
            "Prism's CRDs are not installed: run `prism crds | kubectl apply --server-side -f -`"
                .to_owned(),
        ),
        kube::Error::Api(status) => HistoryError::Api(format!("{what}: {}", status.message)),
        error => HistoryError::Api(format!("cannot reach the cluster at {url}: {error}")),
    };
    // Listing first: a missing resource type is a 404 on a list, where a get could not tell it
    // from a missing Application.
    let releases = Api::<Release>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("{APP_LABEL}={name}")))
        .await
        .map_err(|e| explain(&format!("listing Releases in {namespace}"), e))?;
    let app = Api::<Application>::namespaced(client, &namespace)
        .get_opt(name)
        .await
        .map_err(|e| explain(&format!("reading Application {namespace}/{name}"), e))?
        .ok_or_else(|| HistoryError::NotFound {
            namespace: namespace.clone(),
            name: name.to_owned(),
        })?;
    Ok(rows(&app, releases.items, Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn release(revision: u32, image: &str, created: &str, status: serde_json::Value) -> Release {
        let mut release: Release = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": format!("web-{revision}")},
            "spec": {
                "application": "web",
                "revision": revision,
                "template": {"manifests": [{
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [
                                {"name": "web", "image": image},
                                {"name": "proxy", "image": "envoy:1.30"}
                            ]}
                        }
                    }
                }]},
                "strategy": {"steps": []},
                "clusters": [{"name": "local", "region": ""}],
            },
            "status": status,
        }))
        .unwrap();
        release.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        release
    }

    fn app() -> Application {
        serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "web"},
            "spec": {"template": {"manifests": []}, "strategy": {"steps": []}},
            "status": {"contender": "web-3", "incumbent": "web-2"},
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn history() -> Vec<Row> {
        rows(
            &app(),
            vec![
                release(
                    3,
                    "web:3",
                    "2026-11-22T11:59:55Z",
                    json!({"phase": "Progressing", "progress": "2/4"}),
                ),
                release(
                    1,
                    "web:1",
                    "2026-11-18T09:00:00Z",
                    json!({"phase": "Superseded", "progress": "1/4"}),
                ),
                release(
                    2,
                    "web:2",
                    "2026-11-22T09:57:00Z",
                    json!({"phase": "Complete", "progress": "4/4"}),
                ),
                release(4, "web:4", "2026-11-22T11:57:00Z", json!(null)),
            ],
            now(),
        )
    }

    #[test]
    fn rows_are_oldest_first_with_roles_phases_and_images() {
        let rows = history();
        let revisions: Vec<u32> = rows.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, [1, 2, 3, 4]);
        assert_eq!(rows[1].role, Some(Role::Incumbent));
        assert_eq!(rows[2].role, Some(Role::Contender));
        assert_eq!(rows[0].role, None);
        assert_eq!(rows[3].phase, "Pending");
        assert_eq!(rows[3].progress, None);
        assert_eq!(rows[0].images, ["web:1", "envoy:1.30"]);
        assert_eq!(rows[2].age, "5s");
        assert_eq!(rows[0].created.as_deref(), Some("2026-11-18T09:00:00Z"));
    }

    #[test]
    fn the_table() {
        insta::assert_snapshot!(table(&history()));
    }

    #[test]
    fn the_json_is_stable() {
        let json = serde_json::to_value(&history()[2]).unwrap();
        assert_eq!(
            json,
            json!({
                "revision": 3,
                "name": "web-3",
                "phase": "Progressing",
                "progress": "2/4",
                "images": ["web:3", "envoy:1.30"],
                "created": "2026-11-22T11:59:55Z",
                "role": "contender",
            })
        );
        let pending = serde_json::to_value(&history()[3]).unwrap();
        assert_eq!(pending["progress"], json!(null));
        assert_eq!(pending["role"], json!(null));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (42 * 60, "42m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (30 * 3600, "30h"),
            (4 * 86400 + 6 * 3600, "4d6h"),
            (4 * 86400, "4d"),
            (120 * 86400, "120d"),
            (3 * 365 * 86400 + 45 * 86400, "3y45d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                age(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}s"
            );
        }
    }
}
