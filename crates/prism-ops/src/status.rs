//! `prism status APP`: where an Application's rollout is (the newest Release's step and what it
//! waits for) and each live version in each cluster: ready and desired replicas, traffic, step.
//! With `--watch`, redrawn on every change until the newest Release finishes.
//!
//! [`status`], [`outcome`] and [`render`] are pure; [`read`] and [`watch`] talk to the cluster
//! through a [`Connection`].

use std::pin::pin;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use prism_api::application::ApplicationPhase;
use prism_api::conditions::{self, release as condition};
use prism_api::release::{ClusterPhase, ClusterProgress, ReleasePhase};
use prism_api::strategy::{Duration, step_label};
use prism_api::{Application, Release};
use serde::Serialize;

use crate::Error;
use crate::connection::Connection;
use crate::releases::{self, Role};
use crate::text;

/// An Application's rollout, as `prism status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub application: String,
    pub namespace: String,
    /// The strategy in use: a Strategy's name, `ClusterStrategy/<name>`, or `inline`.
    pub strategy: Option<String>,
    /// The Application's `status.phase`.
    pub phase: Option<ApplicationPhase>,
    /// The Release being rolled out, as the Application's status names it.
    pub contender: Option<String>,
    /// The newest complete Release, as the Application's status names it.
    pub incumbent: Option<String>,
    /// The newest Release and where it is; absent before the first Release.
    pub rollout: Option<Rollout>,
    /// Each live version in each cluster, by cluster, then contender, incumbent, and the others
    /// newest first.
    pub rows: Vec<Row>,
}

/// Where the newest Release is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub release: String,
    pub revision: u32,
    /// `status.phase`, or `Pending` before the controller sets one.
    pub phase: String,
    /// The index of the current step, counted from 0: the one the clusters move towards, or
    /// have achieved when `achievedAt` is set.
    pub step: Option<u32>,
    pub step_name: Option<String>,
    /// How many steps the Release's strategy has.
    pub steps: u32,
    pub achieved_at: Option<Time>,
    /// What the rollout waits for: the message of the Release's WaitingForCommand or Blocked
    /// condition while it is true, else of its Progressing condition.
    pub waiting_for: Option<String>,
    /// Why the Release rolls back or was rolled back: its Aborted condition's message, or else
    /// `status.abort`'s.
    pub aborted_because: Option<String>,
    /// The current step's analysis: its counts and its latest result.
    pub analysis: Option<String>,
    /// The writes application clusters refuse: the message of the Release's WritesRefused
    /// condition while it is true (each cluster's row says its own).
    pub writes_refused: Option<String>,
}

/// One version in one cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub cluster: String,
    /// The Release's name.
    pub release: String,
    pub revision: u32,
    pub role: Option<Role>,
    pub ready_replicas: u32,
    /// The replicas this version runs in the cluster now.
    pub replicas: u32,
    /// The percent of the application's traffic this version is set to receive in the cluster.
    pub weight: u32,
    /// The index of the latest step achieved in the cluster, counted from 0.
    pub achieved_step: Option<u32>,
    /// How many steps the Release's strategy has.
    pub steps: u32,
    pub phase: ClusterPhase,
    /// What the cluster waits for, or what failed.
    pub message: Option<String>,
}

/// How the newest Release finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    /// Rolled back; the message says why.
    RolledBack(String),
}

impl Outcome {
    /// `status --watch`'s result: exit 0 for a complete Release, 5 for a rolled-back one.
    pub fn into_result(self) -> Result<(), Error> {
        match self {
            Outcome::Complete => Ok(()),
            Outcome::RolledBack(message) => Err(Error::RolledBack(message)),
        }
    }
}

/// The Application's rollout, from the Application and its Releases (in any order).
pub fn status(app: &Application, releases: &[Release]) -> Status {
    let app_status = app.status.clone().unwrap_or_default();
    let mut rows: Vec<Row> = releases
        .iter()
        .flat_map(|release| {
            let name = release.name_any();
            let role = releases::role(&app_status, &name);
            let steps = step_count(release);
            let progress = release
                .status
                .as_ref()
                .map_or(&[][..], |status| &status.clusters);
            // A version is live in a cluster while it runs replicas there; the contender and
            // the incumbent are shown in every cluster they are scheduled to, running or not.
            release
                .spec
                .clusters
                .iter()
                .map(move |cluster| {
                    let progress = progress
                        .iter()
                        .find(|p| p.name == cluster.name)
                        .cloned()
                        .unwrap_or_else(|| ClusterProgress {
                            name: cluster.name.clone(),
                            ..ClusterProgress::default()
                        });
                    Row {
                        cluster: progress.name,
                        release: name.clone(),
                        revision: release.spec.revision,
                        role,
                        ready_replicas: progress.ready_replicas,
                        replicas: progress.replicas,
                        weight: progress.weight,
                        achieved_step: progress.achieved_step,
                        steps,
                        phase: progress.phase,
                        message: progress.message,
                    }
                })
                .filter(|row| row.role.is_some() || row.replicas > 0)
        })
        .collect();
    let role_order = |role: Option<Role>| match role {
        Some(Role::Contender) => 0,
        Some(Role::Incumbent) => 1,
        None => 2,
    };
    rows.sort_by(|a, b| {
        (
            &a.cluster,
            role_order(a.role),
            std::cmp::Reverse(a.revision),
        )
            .cmp(&(
                &b.cluster,
                role_order(b.role),
                std::cmp::Reverse(b.revision),
            ))
    });
    Status {
        application: app.name_any(),
        namespace: app.namespace().unwrap_or_default(),
        strategy: app_status.strategy,
        phase: app_status.phase,
        contender: app_status.contender,
        incumbent: app_status.incumbent,
        rollout: releases::newest(releases).map(rollout),
        rows,
    }
}

fn step_count(release: &Release) -> u32 {
    u32::try_from(release.spec.strategy.steps.len()).unwrap_or(u32::MAX)
}

pub fn rollout(release: &Release) -> Rollout {
    let status = release.status.clone().unwrap_or_default();
    let message = |type_: &str, only_when_true: bool| {
        conditions::find(&status.conditions, type_)
            .filter(|c| !only_when_true || c.status == "True")
            .map(|c| c.message.clone())
            .filter(|m| !m.is_empty())
    };
    // A finished Release waits for nothing, whatever its last Progressing message said.
    let finished = matches!(
        status.phase,
        Some(ReleasePhase::Complete | ReleasePhase::Aborted | ReleasePhase::Superseded)
    );
    // A gate's or a block's own message says what ends the wait (`run prism promote`); the
    // Progressing condition's says where the rollout is.
    let waiting_for = message(condition::WAITING_FOR_COMMAND, true)
        .or_else(|| message(condition::BLOCKED, true))
        .or_else(|| message(condition::PROGRESSING, false))
        .filter(|_| !finished);
    Rollout {
        release: release.name_any(),
        revision: release.spec.revision,
        phase: status
            .phase
            .map_or("Pending", ReleasePhase::as_str)
            .to_owned(),
        step: status.step,
        step_name: status.step_name.clone(),
        steps: step_count(release),
        achieved_at: status.achieved_at.clone(),
        waiting_for,
        aborted_because: message(condition::ABORTED, true)
            .or_else(|| status.abort.as_ref().map(|abort| abort.message.clone())),
        analysis: status.analysis.as_ref().map(analysis_summary),
        writes_refused: message(condition::WRITES_REFUSED, true),
    }
}

/// `step 2: 3 passed, 1 failed, 0 inconclusive in a row; latest: metric ... in cluster ...`
fn analysis_summary(analysis: &prism_api::release::AnalysisStatus) -> String {
    let latest = analysis
        .results
        .iter()
        .rev()
        .find(|result| result.step == analysis.step)
        .map(|result| format!("; latest: {}", result.describe()))
        .unwrap_or_default();
    format!(
        "step {}: {} passed, {} failed, {} inconclusive in a row{latest}",
        analysis.step + 1,
        analysis.passed,
        analysis.failed,
        analysis.inconclusive
    )
}

/// How the newest Release finished, once it has: `None` while it is under way, and while the
/// Application controller has not caught up with the Application's latest spec (a Release for
/// it may be on its way, e.g. just after `prism rollback`).
pub fn outcome(app: &Application, releases: &[Release]) -> Option<Outcome> {
    let observed = app.status.as_ref().and_then(|s| s.observed_generation);
    if observed.is_none() || observed != app.metadata.generation {
        return None;
    }
    let newest = releases::newest(releases)?;
    // The last frame should show the Application as it ends too (its incumbent, its phase), and
    // the Application's status follows its newest Release's one reconcile later.
    let app_phase = app.status.as_ref().and_then(|s| s.phase);
    match releases::phase(newest)? {
        ReleasePhase::Complete if app_phase == Some(ApplicationPhase::Complete) => {
            Some(Outcome::Complete)
        }
        ReleasePhase::Aborted if app_phase == Some(ApplicationPhase::Aborted) => {
            let why = rollout(newest)
                .aborted_because
                .unwrap_or_else(|| "aborted".to_owned());
            Some(Outcome::RolledBack(format!(
                "{} was rolled back: {why}",
                newest.name_any()
            )))
        }
        _ => None,
    }
}

/// The newest Release in one line: `web-3 (revision 3): WaitingForCommand at step 2/3 "half",
/// achieved 45s ago`.
fn summary(rollout: &Rollout, now: Timestamp) -> String {
    let mut line = format!(
        "{} (revision {}): {}",
        rollout.release, rollout.revision, rollout.phase
    );
    if let Some(step) = rollout.step {
        let label = step_label(
            step as usize,
            rollout.steps as usize,
            rollout.step_name.as_deref(),
        );
        match &rollout.achieved_at {
            Some(achieved) => line.push_str(&format!(
                " at step {label}, achieved {} ago",
                text::age(now.duration_since(achieved.0))
            )),
            None => line.push_str(&format!(" towards step {label}")),
        }
    }
    line
}

/// The status as people read it: a header on the rollout, then one line per version and
/// cluster.
pub fn render(status: &Status, now: Timestamp) -> String {
    let mut header: Vec<(&str, String)> = vec![
        (
            "Application",
            format!("{}/{}", status.namespace, status.application),
        ),
        ("Strategy", status.strategy.clone().unwrap_or_default()),
        (
            "Phase",
            status
                .phase
                .as_ref()
                .map(text::api_name)
                .unwrap_or_default(),
        ),
    ];
    // The controller's contender is the newest Release; the line says where it is.
    match &status.rollout {
        Some(rollout) => {
            header.push(("Contender", summary(rollout, now)));
            if let Some(waiting_for) = &rollout.waiting_for {
                header.push(("Waiting for", waiting_for.clone()));
            }
            if let Some(why) = &rollout.aborted_because {
                header.push(("Aborted", why.clone()));
            }
            if let Some(analysis) = &rollout.analysis {
                header.push(("Analysis", analysis.clone()));
            }
            if let Some(refused) = &rollout.writes_refused {
                header.push(("Writes refused", refused.clone()));
            }
        }
        None => header.push(("Contender", "no Release yet".to_owned())),
    }
    header.push(("Incumbent", status.incumbent.clone().unwrap_or_default()));
    let width = header
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (label, value) in header {
        let label = format!("{label}:");
        out.push_str(format!("{label:width$}  {value}").trim_end());
        out.push('\n');
    }
    out.push('\n');
    let lines: Vec<[String; 6]> = status
        .rows
        .iter()
        .map(|row| {
            let state = match &row.message {
                Some(message) => format!("{}: {message}", text::api_name(&row.phase)),
                None => text::api_name(&row.phase),
            };
            [
                row.cluster.clone(),
                match row.role {
                    Some(role) => format!("{} ({})", row.release, role.as_str()),
                    None => row.release.clone(),
                },
                format!("{}/{}", row.ready_replicas, row.replicas),
                format!("{}%", row.weight),
                row.achieved_step.map_or_else(
                    || "-".to_owned(),
                    |step| step_label(step as usize, row.steps as usize, None),
                ),
                state,
            ]
        })
        .collect();
    out.push_str(&text::table(
        [
            "CLUSTER",
            "VERSION",
            "READY/DESIRED",
            "WEIGHT",
            "STEP",
            "STATE",
        ],
        &lines,
    ));
    out
}

/// Reads the Application `name` and its Releases once.
pub async fn read(connection: &Connection, name: &str) -> Result<Status, Error> {
    let (app, releases) = connection.read(name).await?;
    Ok(status(&app, &releases))
}

/// Draws the status, then again on every change seen by watches of the Application and its
/// Releases, until the newest Release finishes: `Ok` when it is complete, `RolledBack` when it
/// was rolled back, `Timeout` when `timeout` passes first.
pub async fn watch(
    connection: &Connection,
    name: &str,
    timeout: Option<Duration>,
    mut draw: impl FnMut(&Status),
) -> Result<(), Error> {
    let deadline = timeout.map(|t| (tokio::time::Instant::now() + t.0.unsigned_abs(), t));
    // The first read reports a missing Application or CRDs at once, where the watches would
    // retry.
    let (app, releases) = connection.read(name).await?;
    let mut shown = status(&app, &releases);
    draw(&shown);
    if let Some(outcome) = outcome(&app, &releases) {
        return outcome.into_result();
    }

    let (app_store, app_writer) = reflector::store::<Application>();
    let (release_store, release_writer) = reflector::store::<Release>();
    let app_events = watcher(
        connection.applications(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .reflect(app_writer)
    .map(|event| (0, event.map(|e| matches!(e, watcher::Event::InitDone))));
    let release_events = watcher(
        connection.releases(),
        watcher::Config::default().labels(&Connection::releases_of(name)),
    )
    .default_backoff()
    .reflect(release_writer)
    .map(|event| (1, event.map(|e| matches!(e, watcher::Event::InitDone))));
    let mut events = pin!(futures::stream::select(app_events, release_events));
    // Each store holds a whole list once its watch has sent InitDone; before both do, a status
    // would lack the Application or some of its Releases.
    let mut listed = [false, false];
    loop {
        let event = match deadline {
            Some((deadline, timeout)) => tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| {
                    let now = Timestamp::now();
                    let where_it_is = shown
                        .rollout
                        .as_ref()
                        .map_or_else(|| "no Release yet".to_owned(), |r| summary(r, now));
                    Error::Timeout(format!(
                        "the newest Release did not finish within {timeout}: {where_it_is}"
                    ))
                })?,
            None => events.next().await,
        };
        let (source, listed_now) = match event {
            Some((source, Ok(listed_now))) => (source, listed_now),
            Some((_, Err(error))) => {
                eprintln!(
                    "prism: watching {}/{name}: {error}; retrying",
                    connection.namespace()
                );
                continue;
            }
            None => return Err(Error::Api("the watch ended".to_owned())),
        };
        listed[source] |= listed_now;
        if !listed.iter().all(|l| *l) {
            continue;
        }
        let Some(app) = app_store.state().into_iter().next() else {
            return Err(Error::NotFound(format!(
                "application {}/{name} was deleted",
                connection.namespace()
            )));
        };
        let releases: Vec<Release> = release_store
            .state()
            .iter()
            .map(|release| (**release).clone())
            .collect();
        let current = status(&app, &releases);
        if current != shown {
            draw(&current);
            shown = current;
        }
        if let Some(outcome) = outcome(&app, &releases) {
            return outcome.into_result();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::{application, release};
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    /// A true condition of `type_`.
    fn condition(type_: &str, message: &str) -> prism_api::conditions::Condition {
        prism_api::conditions::Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: type_.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time("2026-11-22T11:59:40Z".parse().unwrap()),
        }
    }

    fn app() -> Application {
        application(
            "web:3",
            json!({
                "observedGeneration": 4,
                "strategy": "canary",
                "phase": "Progressing",
                "contender": "web-3",
                "incumbent": "web-2",
                "currentRevision": 3,
            }),
        )
    }

    /// web-1 finished scaling down in eu-1 but still runs in us-1; web-2 serves; web-3 is half
    /// way.
    fn releases() -> Vec<Release> {
        vec![
            release(
                1,
                "web:1",
                json!({"phase": "Complete", "step": 2, "clusters": [
                    {"name": "eu-1", "phase": "Achieved", "achievedStep": 2, "replicas": 0, "readyReplicas": 0, "weight": 0},
                    {"name": "us-1", "phase": "Achieved", "achievedStep": 2, "replicas": 1, "readyReplicas": 1, "weight": 0},
                ]}),
            ),
            release(
                3,
                "web:3",
                json!({
                    "phase": "Progressing",
                    "step": 1,
                    "stepName": "half",
                    "progress": "1/3",
                    "clusters": [
                        {"name": "eu-1", "phase": "Achieved", "achievedStep": 1, "replicas": 2, "readyReplicas": 2, "weight": 50},
                        {"name": "us-1", "phase": "Progressing", "achievedStep": 0, "replicas": 2, "readyReplicas": 1, "weight": 10,
                         "message": "scaling up (waiting for ready pods)"},
                    ],
                    "conditions": [{
                        "type": "Progressing", "status": "True", "reason": "StepInProgress",
                        "lastTransitionTime": "2026-11-22T11:58:00Z",
                        "message": "step 2/3 \"half\": cluster us-1 is scaling up (waiting for ready pods)",
                    }],
                }),
            ),
            release(
                2,
                "web:2",
                json!({"phase": "Complete", "step": 2, "stepName": "full", "clusters": [
                    {"name": "eu-1", "phase": "Achieved", "achievedStep": 2, "replicas": 2, "readyReplicas": 2, "weight": 50},
                    {"name": "us-1", "phase": "Achieved", "achievedStep": 2, "replicas": 4, "readyReplicas": 4, "weight": 90},
                ]}),
            ),
        ]
    }

    #[test]
    fn rows_are_the_live_versions_of_each_cluster_contender_first() {
        let rows = status(&app(), &releases()).rows;
        let summary: Vec<(&str, &str, Option<Role>, u32)> = rows
            .iter()
            .map(|r| (r.cluster.as_str(), r.release.as_str(), r.role, r.weight))
            .collect();
        assert_eq!(
            summary,
            [
                ("eu-1", "web-3", Some(Role::Contender), 50),
                ("eu-1", "web-2", Some(Role::Incumbent), 50),
                ("us-1", "web-3", Some(Role::Contender), 10),
                ("us-1", "web-2", Some(Role::Incumbent), 90),
                ("us-1", "web-1", None, 0),
            ]
        );
    }

    #[test]
    fn a_release_the_controller_has_not_picked_up_is_pending_everywhere() {
        let status = status(&app(), &[release(3, "web:3", json!(null))]);
        let rollout = status.rollout.unwrap();
        assert_eq!(rollout.phase, "Pending");
        assert_eq!(rollout.step, None);
        let phases: Vec<(&str, ClusterPhase, u32)> = status
            .rows
            .iter()
            .map(|r| (r.cluster.as_str(), r.phase, r.replicas))
            .collect();
        assert_eq!(
            phases,
            [
                ("eu-1", ClusterPhase::Pending, 0),
                ("us-1", ClusterPhase::Pending, 0)
            ]
        );
    }

    #[test]
    fn the_table() {
        insta::assert_snapshot!(render(&status(&app(), &releases()), now()));
    }

    #[test]
    fn the_table_of_an_achieved_step_and_of_a_rollback() {
        let mut releases = releases();
        let web_3 = releases[1].status.as_mut().unwrap();
        web_3.achieved_at = Some(Time("2026-11-22T11:59:15Z".parse().unwrap()));
        web_3.phase = Some(ReleasePhase::WaitingForCommand);
        web_3.conditions[0].message = "step 2/3 \"half\" is achieved".into();
        web_3.conditions.push(condition(
            "WaitingForCommand",
            "step 2/3 \"half\" is achieved; run `prism promote` to go on",
        ));
        let waiting = render(&status(&app(), &releases), now());
        insta::assert_snapshot!("waiting", waiting);

        let web_3 = releases[1].status.as_mut().unwrap();
        web_3.phase = Some(ReleasePhase::RollingBack);
        web_3.conditions.retain(|c| c.type_ != "WaitingForCommand");
        web_3.achieved_at = None;
        web_3.step = Some(0);
        web_3.step_name = Some("canary".into());
        web_3.conditions[0].message = "restoring web-2 before shifting its traffic back".into();
        web_3
            .conditions
            .push(condition("Aborted", "error-rate in us-1: 7.2 > 5"));
        let rolling_back = render(&status(&app(), &releases), now());
        insta::assert_snapshot!("rolling_back", rolling_back);
    }

    #[test]
    fn the_table_of_a_cluster_refusing_writes() {
        let mut releases = releases();
        let refusal = "apply of Deployment web-3 refused (422 Invalid): deployments.apps \"web-3\" \
                       is forbidden: ValidatingAdmissionPolicy 'no-web-3' denied request";
        let web_3 = releases[1].status.as_mut().unwrap();
        web_3.clusters[1].message = Some(format!("writes refused: {refusal}"));
        web_3.conditions.push(condition(
            condition::WRITES_REFUSED,
            &format!("cluster us-1: {refusal}"),
        ));
        let status = status(&app(), &releases);
        assert_eq!(
            status.rollout.as_ref().unwrap().writes_refused,
            Some(format!("cluster us-1: {refusal}"))
        );
        insta::assert_snapshot!(render(&status, now()));
    }

    #[test]
    fn the_json_is_stable() {
        let json = serde_json::to_value(status(&app(), &releases())).unwrap();
        assert_eq!(json["application"], "web");
        assert_eq!(json["namespace"], "team");
        assert_eq!(json["phase"], "Progressing");
        assert_eq!(
            json["rollout"],
            json!({
                "release": "web-3",
                "revision": 3,
                "phase": "Progressing",
                "step": 1,
                "stepName": "half",
                "steps": 3,
                "achievedAt": null,
                "waitingFor": "step 2/3 \"half\": cluster us-1 is scaling up (waiting for ready pods)",
                "abortedBecause": null,
                "analysis": null,
                "writesRefused": null,
            })
        );
        assert_eq!(
            json["rows"][2],
            json!({
                "cluster": "us-1",
                "release": "web-3",
                "revision": 3,
                "role": "contender",
                "readyReplicas": 1,
                "replicas": 2,
                "weight": 10,
                "achievedStep": 0,
                "steps": 3,
                "phase": "Progressing",
                "message": "scaling up (waiting for ready pods)",
            })
        );
    }

    #[test]
    fn the_watch_ends_when_the_newest_release_is_complete_or_rolled_back() {
        let mut releases = releases();
        assert_eq!(outcome(&app(), &releases), None);

        releases[1].status.as_mut().unwrap().phase = Some(ReleasePhase::Complete);
        assert_eq!(
            outcome(&app(), &releases),
            None,
            "the Application's status has not caught up"
        );
        let finished = |phase| {
            let mut app = app();
            app.status.as_mut().unwrap().phase = Some(phase);
            app
        };
        assert_eq!(
            outcome(&finished(ApplicationPhase::Complete), &releases),
            Some(Outcome::Complete)
        );

        let web_3 = releases[1].status.as_mut().unwrap();
        web_3.phase = Some(ReleasePhase::Aborted);
        web_3.abort = Some(prism_api::release::Abort {
            cause: prism_api::release::AbortCause::Command,
            message: "aborted by prism abort".into(),
        });
        assert_eq!(
            outcome(&finished(ApplicationPhase::Aborted), &releases),
            Some(Outcome::RolledBack(
                "web-3 was rolled back: aborted by prism abort".into()
            ))
        );
    }

    #[test]
    fn the_watch_goes_on_while_the_controller_has_not_seen_the_latest_spec() {
        let mut releases = releases();
        releases[1].status.as_mut().unwrap().phase = Some(ReleasePhase::Complete);
        let mut app = app();
        app.metadata.generation = Some(5);
        assert_eq!(outcome(&app, &releases), None);
    }
}
