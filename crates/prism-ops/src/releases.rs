//! What the commands know of an Application's Releases, purely: roles, the newest Release, the
//! one being rolled out, and how a step is named to people.

use kube::ResourceExt;
use prism_api::Release;
use prism_api::application::ApplicationStatus;
use prism_api::release::ReleasePhase;
use serde::Serialize;

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

/// What the Application's status says of the Release `name`.
pub fn role(status: &ApplicationStatus, name: &str) -> Option<Role> {
    if status.contender.as_deref() == Some(name) {
        Some(Role::Contender)
    } else if status.incumbent.as_deref() == Some(name) {
        Some(Role::Incumbent)
    } else {
        None
    }
}

pub use prism_api::release::newest;

/// `status.phase`, absent until the controller first sets it.
pub fn phase(release: &Release) -> Option<ReleasePhase> {
    release.status.as_ref()?.phase
}

/// The newest Release, while it is on its way through its steps (a Release the controller has
/// not picked up yet counts: its rollout is about to start) and not aborted. Otherwise why
/// nothing is rolling out, for a message.
pub fn rolling_out<'a>(app: &str, releases: &'a [Release]) -> Result<&'a Release, String> {
    let release = newest(releases).ok_or_else(|| format!("{app} has no Release yet"))?;
    let name = release.name_any();
    let phase = phase(release).unwrap_or_default();
    if release.spec.aborted {
        Err(format!(
            "{name}, the newest Release of {app}, is aborted ({})",
            phase.as_str()
        ))
    } else if phase.is_rolling_out() {
        Ok(release)
    } else {
        Err(format!(
            "{name}, the newest Release of {app}, is {}",
            phase.as_str()
        ))
    }
}

/// The revisions of `releases`, ascending, for messages: `1, 2, 4`.
pub fn revisions(releases: &[Release]) -> String {
    let mut revisions: Vec<u32> = releases.iter().map(|r| r.spec.revision).collect();
    revisions.sort_unstable();
    revisions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Releases made up for unit tests, here and in the CLI's.
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use prism_api::{Application, Release};
    use serde_json::{Value, json};

    /// The Release `web-<revision>` running `image`, under a three-step canary, with `status`.
    pub fn release(revision: u32, image: &str, status: Value) -> Release {
        let mut release: Release = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": format!("web-{revision}"), "namespace": "team"},
            "spec": {
                "application": "web",
                "revision": revision,
                "template": template(image),
                "strategy": {"steps": [
                    {"name": "canary", "capacity": {"contender": "34%"}, "traffic": {"contender": 10}},
                    {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
                    {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
                ]},
                "clusters": [{"name": "eu-1", "region": "eu"}, {"name": "us-1", "region": "us"}],
            },
            "status": status,
        }))
        .unwrap();
        release.metadata.creation_timestamp = Some(Time("2026-11-22T11:00:00Z".parse().unwrap()));
        release
    }

    /// A template whose Deployment runs `image` beside an envoy proxy.
    pub fn template(image: &str) -> Value {
        json!({"manifests": [{
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
        }]})
    }

    /// The Application `web` in namespace `team`, running `image`, with `status`.
    pub fn application(image: &str, status: Value) -> Application {
        serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "web", "namespace": "team", "generation": 4},
            "spec": {"template": template(image), "strategy": {"steps": []}},
            "status": status,
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::release;
    use super::*;
    use serde_json::json;

    #[test]
    fn the_newest_release_is_rolling_out_while_it_is_progressing_waiting_or_paused() {
        for phase in ["Progressing", "WaitingForCommand", "Paused"] {
            let releases = [
                release(2, "web:2", json!({"phase": "Complete"})),
                release(3, "web:3", json!({"phase": phase})),
            ];
            assert_eq!(
                rolling_out("web", &releases).unwrap().name_any(),
                "web-3",
                "{phase}"
            );
        }
    }

    #[test]
    fn a_release_the_controller_has_not_picked_up_is_about_to_roll_out() {
        let releases = [release(1, "web:1", json!(null))];
        assert_eq!(rolling_out("web", &releases).unwrap().name_any(), "web-1");
    }

    #[test]
    fn nothing_rolls_out_when_the_newest_release_finished_or_was_aborted() {
        let complete = [
            release(3, "web:3", json!({"phase": "Complete"})),
            release(2, "web:2", json!({"phase": "Progressing"})),
        ];
        assert_eq!(
            rolling_out("web", &complete).unwrap_err(),
            "web-3, the newest Release of web, is Complete"
        );
        let mut aborted = release(3, "web:3", json!({"phase": "Progressing"}));
        aborted.spec.aborted = true;
        assert_eq!(
            rolling_out("web", &[aborted]).unwrap_err(),
            "web-3, the newest Release of web, is aborted (Progressing)"
        );
        assert_eq!(
            rolling_out("web", &[]).unwrap_err(),
            "web has no Release yet"
        );
    }

    #[test]
    fn roles_come_from_the_application_status() {
        let status = ApplicationStatus {
            contender: Some("web-3".into()),
            incumbent: Some("web-2".into()),
            ..ApplicationStatus::default()
        };
        assert_eq!(role(&status, "web-3"), Some(Role::Contender));
        assert_eq!(role(&status, "web-2"), Some(Role::Incumbent));
        assert_eq!(role(&status, "web-1"), None);
    }
}
