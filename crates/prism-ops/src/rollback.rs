//! `prism rollback APP [--to REVISION] [--when-unblocked]`: makes the Application's template
//! that of an earlier Release; the Application controller then makes a new revision of it,
//! rolled out under the Application's strategy like any other. Under a RolloutBlock no new
//! revision is made until the block is lifted, so the rollback is refused, unless
//! `--when-unblocked` asks for exactly that ([`crate::blocks`]); `prism abort` rolls the
//! contender back under a block too.
//!
//! When the target is still live (a rainbow's retained version, its pods running), no revision is
//! made: every live Release newer than it is aborted, so that the target is the newest complete
//! one again and takes the default route back at once, on the pods it runs ([`live_rollback`]).
//! Like `prism abort`, that is final for the aborted Releases, goes on under a RolloutBlock, and
//! leaves the Application's template as it is (a new one rolls forward again).
//!
//! [`target`] and [`live_rollback`] are pure; [`rollback`] reads and writes through a
//! [`Connection`].

use kube::ResourceExt;
use prism_api::application::Template;
use prism_api::chart::Chart;
use prism_api::release::{ReleasePhase, VersionState};
use prism_api::{Application, Release};
use serde_json::{Value, json};

use crate::Error;
use crate::blocks;
use crate::connection::Connection;
use crate::releases;

/// The Release whose template `app` rolls back to: revision `to`, or else the previous good
/// version (the newest complete Release older than the incumbent). Not found (exit 3) when
/// revision `to` does not exist; refused (exit 4) when there is no previous good version, or when
/// the target's template is the Application's already.
pub fn target<'a>(
    app: &Application,
    releases: &'a [Release],
    to: Option<u32>,
) -> Result<&'a Release, Error> {
    let name = app.name_any();
    let revisions = match releases::revisions(releases) {
        list if list.is_empty() => "none".to_owned(),
        list => list,
    };
    let target = match to {
        Some(revision) => releases
            .iter()
            .find(|r| r.spec.revision == revision)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{name} has no revision {revision}; its revisions: {revisions} \
                     (older ones are pruned beyond spec.revisionHistoryLimit)"
                ))
            })?,
        None => previous_good(releases).map_err(|why| {
            Error::Refused(format!(
                "{why}; name one with --to REVISION (revisions of {name}: {revisions})"
            ))
        })?,
    };
    if target.spec.template.is_made_from(&app.spec.template) {
        return Err(Error::Refused(format!(
            "the template of revision {} ({}) is {name}'s current template already: nothing to roll back",
            target.spec.revision,
            target.name_any()
        )));
    }
    Ok(target)
}

/// The newest complete Release older than the incumbent (the newest complete one), or why there
/// is none.
fn previous_good(releases: &[Release]) -> Result<&Release, String> {
    let mut complete: Vec<&Release> = releases
        .iter()
        .filter(|r| releases::phase(r) == Some(ReleasePhase::Complete))
        .collect();
    complete.sort_by_key(|r| std::cmp::Reverse(r.spec.revision));
    match complete[..] {
        [] => Err("no Release is complete, so there is no good version to go back to".to_owned()),
        [incumbent] => Err(format!(
            "{} is the only complete Release: there is no earlier good version",
            incumbent.name_any()
        )),
        [_, previous, ..] => Ok(previous),
    }
}

/// When `target` is live (retained: complete, its state Live, neither contender nor incumbent),
/// the Releases to abort so that it takes the default route back: every live one newer than it.
pub fn live_rollback<'a>(
    app: &Application,
    releases: &'a [Release],
    target: &Release,
) -> Option<Vec<&'a Release>> {
    let live = |release: &Release| {
        !release.is_rolled_back()
            && release.status.as_ref().and_then(|status| status.state) == Some(VersionState::Live)
    };
    let status = app.status.clone().unwrap_or_default();
    let retained = live(target)
        && releases::phase(target) == Some(ReleasePhase::Complete)
        && releases::role(&status, &target.name_any()).is_none();
    if !retained {
        return None;
    }
    let mut newer: Vec<&Release> = releases
        .iter()
        .filter(|release| release.spec.revision > target.spec.revision && live(release))
        .collect();
    newer.sort_by_key(|release| std::cmp::Reverse(release.spec.revision));
    Some(newer)
}

/// Rolls the Application `app` back, and says what was done. Under a RolloutBlock, refused
/// unless `when_unblocked`, but for a rollback to a live version.
pub async fn rollback(
    connection: &Connection,
    app: &str,
    to: Option<u32>,
    when_unblocked: bool,
) -> Result<String, Error> {
    let (application, releases) = connection.read(app).await?;
    let target = target(&application, &releases, to)?;
    if let Some(newer) = live_rollback(&application, &releases, target) {
        for release in &newer {
            connection
                .merge_patch(
                    &connection.releases(),
                    &release.name_any(),
                    json!({"spec": {"aborted": true}}),
                )
                .await?;
        }
        let aborted: Vec<String> = newer.iter().map(|release| release.name_any()).collect();
        return Ok(format!(
            "rolled {app} back to revision {} ({}), which is live: aborted {}; the default route moves to its running pods, no new revision and no new pod (the Application's template is unchanged: a new one rolls forward)",
            target.spec.revision,
            target.name_any(),
            aborted.join(", ")
        ));
    }
    let stopping = blocks::stopping(&application, &blocks::read(connection).await?);
    let retry = format!(
        "prism rollback {app} -n {} --to {}",
        connection.namespace(),
        target.spec.revision
    );
    let holds = format!("no new revision of {app} (the rollback) is made");
    let waits = blocks::held(&stopping, when_unblocked, &holds, &retry)?;
    let patch = merge_patch_between(
        &serde_json::to_value(&application.spec.template).unwrap_or_default(),
        &serde_json::to_value(source_template(&target.spec.template)).unwrap_or_default(),
    );
    connection
        .merge_patch(
            &connection.applications(),
            app,
            json!({"spec": {"template": patch}}),
        )
        .await?;
    let done = format!(
        "rolled {app} back to the template of revision {} ({})",
        target.spec.revision,
        target.name_any()
    );
    Ok(match waits {
        Some(note) => format!("{done}, but {note}"),
        None => {
            format!("{done}: the controller rolls it out as a new revision, under {app}'s strategy")
        }
    })
}

/// The template an Application writes to make again what a Release's template was made from:
/// its objects, or its chart with the values it names, without what the controller added to the
/// Release (the chart's render and the digest of its values files).
fn source_template(release: &Template) -> Template {
    match &release.chart {
        Some(chart) => Template {
            manifests: Vec::new(),
            chart: Some(Chart {
                values_digest: None,
                ..chart.clone()
            }),
        },
        None => release.clone(),
    }
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: what `to` sets, and null for each
/// key of an object that `from` has and `to` lacks (a chart's values, an object, would else keep
/// the keys of the current values).
fn merge_patch_between(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(from), Value::Object(to)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in to {
                let before = from.get(key).unwrap_or(&Value::Null);
                patch.insert(key.clone(), merge_patch_between(before, value));
            }
            for key in from.keys().filter(|key| !to.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        (_, to) => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::{application, release};
    use serde_json::json;

    #[test]
    fn a_chart_rolls_back_to_its_chart_and_values_without_the_render_nor_newer_values() {
        let chart = |values: Value, digest: Option<&str>| Chart {
            repository: "http://127.0.0.1:8879".into(),
            name: "web".into(),
            version: "1.0.0".into(),
            values: Some(values),
            values_digest: digest.map(str::to_owned),
            ..Chart::default()
        };
        let release = Template {
            manifests: vec![
                serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}),
                )
                .unwrap(),
            ],
            chart: Some(chart(json!({"replicaCount": 4}), Some("sha256:00"))),
        };
        let current = Template {
            manifests: Vec::new(),
            chart: Some(chart(
                json!({"replicaCount": 4, "podAnnotations": {"build": "3"}}),
                None,
            )),
        };
        let patch = merge_patch_between(
            &serde_json::to_value(&current).unwrap(),
            &serde_json::to_value(source_template(&release)).unwrap(),
        );
        assert_eq!(
            patch["chart"]["values"],
            json!({"replicaCount": 4, "podAnnotations": null})
        );
        assert!(patch.get("rendered").is_none(), "{patch}");
        assert!(patch["chart"].get("valuesDigest").is_none(), "{patch}");
    }

    /// web-1 and web-3 completed, web-2 was rolled back, web-4 rolls out.
    fn releases() -> Vec<Release> {
        vec![
            release(1, "web:1", json!({"phase": "Complete"})),
            release(2, "web:2", json!({"phase": "Aborted"})),
            release(3, "web:3", json!({"phase": "Complete"})),
            release(4, "web:4", json!({"phase": "Progressing"})),
        ]
    }

    fn app() -> Application {
        application("web:4", json!({"contender": "web-4", "incumbent": "web-3"}))
    }

    #[test]
    fn by_default_the_target_is_the_complete_release_before_the_incumbent() {
        let releases = releases();
        assert_eq!(target(&app(), &releases, None).unwrap().name_any(), "web-1");
    }

    #[test]
    fn to_picks_a_revision_whatever_its_phase() {
        let releases = releases();
        assert_eq!(
            target(&app(), &releases, Some(2)).unwrap().name_any(),
            "web-2"
        );
    }

    #[test]
    fn a_missing_revision_is_not_found_and_the_message_lists_the_others() {
        let error = target(&app(), &releases(), Some(9)).unwrap_err();
        assert!(matches!(error, crate::Error::NotFound(_)));
        assert_eq!(
            error.to_string(),
            "web has no revision 9; its revisions: 1, 2, 3, 4 (older ones are pruned beyond spec.revisionHistoryLimit)"
        );
    }

    #[test]
    fn without_an_earlier_good_version_rollback_is_refused() {
        let releases = [
            release(1, "web:1", json!({"phase": "Aborted"})),
            release(2, "web:2", json!({"phase": "Complete"})),
        ];
        let error = target(&application("web:2", json!({})), &releases, None).unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "web-2 is the only complete Release: there is no earlier good version; name one with --to REVISION (revisions of web: 1, 2)"
        );
    }

    #[test]
    fn a_live_target_aborts_every_live_release_newer_than_it() {
        let live = |revision, phase| {
            release(
                revision,
                &format!("web:{revision}"),
                json!({"phase": phase, "state": "Live"}),
            )
        };
        let releases = [
            live(1, "Complete"),
            live(2, "Complete"),
            release(
                3,
                "web:3",
                json!({"phase": "Complete", "state": "Draining"}),
            ),
            live(4, "Complete"),
            live(5, "Progressing"),
        ];
        let app = application("web:5", json!({"contender": "web-5", "incumbent": "web-4"}));
        let newer = live_rollback(&app, &releases, &releases[1]).unwrap();
        let names: Vec<String> = newer.iter().map(|r| r.name_any()).collect();
        assert_eq!(names, ["web-5", "web-4"]);
        // The incumbent, a draining version or one that runs no more: a new revision as before.
        assert!(live_rollback(&app, &releases, &releases[3]).is_none());
        assert!(live_rollback(&app, &releases, &releases[2]).is_none());
        let gone = release(1, "web:1", json!({"phase": "Complete", "state": "Retired"}));
        assert!(live_rollback(&app, std::slice::from_ref(&gone), &gone).is_none());
    }

    #[test]
    fn rolling_back_to_the_current_template_is_refused() {
        let error = target(&app(), &releases(), Some(4)).unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "the template of revision 4 (web-4) is web's current template already: nothing to roll back"
        );
    }
}
