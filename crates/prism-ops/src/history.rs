//! `prism history APP`: an Application's Releases, oldest first, as a table or as JSON.
//!
//! [`rows`] and [`table`] are pure; [`read`] reads the Application and its Releases through a
//! [`Connection`], which maps each failure to an exit code a script can rely on.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prism_api::{Application, Release};
use serde::Serialize;

use crate::Error;
use crate::connection::Connection;
use crate::releases::{self, Role};
use crate::text;

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

/// The Application's Releases as rows, oldest (lowest revision) first.
pub fn rows(app: &Application, releases: Vec<Release>, now: Timestamp) -> Vec<Row> {
    let status = app.status.clone().unwrap_or_default();
    let mut rows: Vec<Row> = releases
        .into_iter()
        .map(|release| {
            let name = release.name_any();
            let role = releases::role(&status, &name);
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
                age: created.map_or_else(
                    || "<unknown>".to_owned(),
                    |t| text::age(now.duration_since(t)),
                ),
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
        .pod_template()
        .and_then(|pod| pod.spec)
        .map(|pod| pod.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default()
}

/// The rows as a table, columns separated by three spaces like kubectl's.
pub fn table(rows: &[Row]) -> String {
    let lines: Vec<[String; 7]> = rows
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
    text::table(
        [
            "REVISION", "RELEASE", "PHASE", "STEP", "IMAGE", "AGE", "ROLE",
        ],
        &lines,
    )
}

/// Reads the Application `name` and its Releases and builds the rows.
pub async fn read(connection: &Connection, name: &str) -> Result<Vec<Row>, Error> {
    let (app, releases) = connection.read(name).await?;
    Ok(rows(&app, releases, Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn release(revision: u32, image: &str, created: &str, status: serde_json::Value) -> Release {
        let mut release = fixtures::release(revision, image, status);
        release.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        release
    }

    fn app() -> Application {
        fixtures::application("web:3", json!({"contender": "web-3", "incumbent": "web-2"}))
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
}
