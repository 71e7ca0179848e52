//! Where a drain is: what still runs on the cluster, or is still served there, per application,
//! from the Releases' status (pure), and its rendering for a terminal or a log.

use std::collections::BTreeSet;

use kube::{Resource, ResourceExt};
use prism_api::Release;
use prism_api::release::ReleasePhase;
use serde::Serialize;

use super::AppKey;
use prism_ops::cluster::list::application_of;
use prism_ops::text;

/// Where a drain is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub cluster: String,
    /// The rescheduled Applications and those with a version still running on the cluster, in
    /// namespace and name order.
    pub applications: Vec<AppProgress>,
    /// The replicas every version still runs on the cluster.
    pub replicas_left: u32,
    /// Nothing runs on the cluster (no replicas, nothing routes to a version there), and every
    /// rescheduled Application's newest Release is complete elsewhere.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProgress {
    pub namespace: String,
    pub application: String,
    /// Whether this drain rescheduled it.
    pub rescheduled: bool,
    /// Its newest Release; absent when it has none any more (the Application was deleted).
    pub newest: Option<Newest>,
    /// Its versions that still run replicas on the cluster, or that a traffic object there
    /// still routes to, newest first.
    pub on_cluster: Vec<Running>,
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Newest {
    pub release: String,
    pub revision: u32,
    /// `status.phase`, or `Pending` before the controller sets one.
    pub phase: String,
    /// The current step, as `2/3 "half"`.
    pub step: Option<String>,
    /// Whether its schedule still has the drained cluster.
    pub on_drained_cluster: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub release: String,
    pub ready_replicas: u32,
    pub replicas: u32,
    /// The percent of the application's traffic there that its traffic objects (the Service)
    /// still give this version.
    pub weight: u32,
}

/// What `release` still has on `cluster`, as its status says: replicas, or traffic objects that
/// route to it. None once it has neither.
fn running_on(release: &Release, cluster: &str) -> Option<Running> {
    let here = release
        .status
        .as_ref()?
        .clusters
        .iter()
        .find(|c| c.name == cluster)?;
    (here.replicas > 0 || here.weight > 0).then(|| Running {
        release: release.name_any(),
        ready_replicas: here.ready_replicas,
        replicas: here.replicas,
        weight: here.weight,
    })
}

/// The drain of `cluster`, from the Releases of every namespace, `rescheduled` being the
/// Applications this drain rescheduled.
pub fn progress(cluster: &str, rescheduled: &BTreeSet<AppKey>, releases: &[Release]) -> Progress {
    let live: Vec<&Release> = releases
        .iter()
        .filter(|release| release.meta().deletion_timestamp.is_none())
        .collect();
    let mut keys: BTreeSet<AppKey> = rescheduled.clone();
    for release in &live {
        if running_on(release, cluster).is_some() {
            let (namespace, app) = application_of(release);
            keys.insert((namespace.to_owned(), app.to_owned()));
        }
    }
    let applications: Vec<AppProgress> = keys
        .into_iter()
        .map(|(namespace, application)| {
            let mut own: Vec<&Release> = live
                .iter()
                .copied()
                .filter(|r| application_of(r) == (namespace.as_str(), application.as_str()))
                .collect();
            own.sort_by_key(|r| std::cmp::Reverse(r.spec.revision));
            let newest = own.first().map(|release| {
                let status = release.status.clone().unwrap_or_default();
                Newest {
                    release: release.name_any(),
                    revision: release.spec.revision,
                    phase: status
                        .phase
                        .map_or("Pending", ReleasePhase::as_str)
                        .to_owned(),
                    step: status
                        .step
                        .map(|step| release.spec.strategy.step_label(step as usize)),
                    on_drained_cluster: release.spec.clusters.iter().any(|c| c.name == cluster),
                }
            });
            let on_cluster: Vec<Running> = own
                .iter()
                .filter_map(|release| running_on(release, cluster))
                .collect();
            let rescheduled = rescheduled.contains(&(namespace.clone(), application.clone()));
            let moved = newest.as_ref().is_none_or(|newest| {
                !newest.on_drained_cluster && newest.phase == ReleasePhase::Complete.as_str()
            });
            AppProgress {
                done: on_cluster.is_empty() && (!rescheduled || moved),
                namespace,
                application,
                rescheduled,
                newest,
                on_cluster,
            }
        })
        .collect();
    let replicas_left = applications
        .iter()
        .flat_map(|app| &app.on_cluster)
        .map(|running| running.replicas)
        .sum();
    Progress {
        cluster: cluster.to_owned(),
        done: applications.iter().all(|app| app.done),
        applications,
        replicas_left,
    }
}

/// One line on where the drain is: `draining c3: 2 of 3 applications left, 5 replicas still run
/// there`.
pub fn summary(progress: &Progress) -> String {
    let cluster = &progress.cluster;
    if progress.done {
        return format!(
            "cluster {cluster} is drained: nothing runs or is served there; it stays cordoned \
             (`prism cluster uncordon {cluster}` opens it to new Releases again)"
        );
    }
    let left = progress.applications.iter().filter(|a| !a.done).count();
    format!(
        "draining {cluster}: {left} of {} applications left, {} replicas still run there",
        progress.applications.len(),
        progress.replicas_left
    )
}

fn running_text(app: &AppProgress) -> String {
    if app.on_cluster.is_empty() {
        return "-".to_owned();
    }
    app.on_cluster
        .iter()
        .map(|r| match (r.replicas, r.weight) {
            (0, weight) if weight > 0 => format!(
                "{} 0/0, still routed {weight}% of the traffic there",
                r.release
            ),
            _ => format!("{} {}/{}", r.release, r.ready_replicas, r.replicas),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The drain as a table, for a terminal: the summary, then one line per application.
pub fn table(progress: &Progress) -> String {
    let lines: Vec<[String; 6]> = progress
        .applications
        .iter()
        .map(|app| {
            let newest = app.newest.as_ref();
            [
                format!("{}/{}", app.namespace, app.application),
                newest.map_or_else(|| "-".to_owned(), |n| n.release.clone()),
                newest.map_or_else(|| "-".to_owned(), |n| n.phase.clone()),
                newest
                    .and_then(|n| n.step.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                running_text(app),
                if app.done { "done" } else { "moving" }.to_owned(),
            ]
        })
        .collect();
    let on = format!("ON {}", progress.cluster);
    let mut out = summary(progress);
    out.push_str("\n\n");
    out.push_str(&text::table(
        ["APPLICATION", "NEWEST", "PHASE", "STEP", &on, "STATE"],
        &lines,
    ));
    out
}

/// One application's line, for a log: `team/web: web-4 Progressing at step 1/3 "half"; on c3:
/// web-3 2/2`.
pub fn line(app: &AppProgress, cluster: &str) -> String {
    let name = format!("{}/{}", app.namespace, app.application);
    let newest = match &app.newest {
        Some(newest) => {
            let mut text = format!("{} {}", newest.release, newest.phase);
            if let Some(step) = &newest.step {
                text.push_str(&format!(" at step {step}"));
            }
            if newest.on_drained_cluster {
                text.push_str(&format!(" (scheduled to {cluster})"));
            }
            text
        }
        None => "no Release".to_owned(),
    };
    let state = if app.done { "done: " } else { "" };
    format!(
        "{name}: {state}{newest}; on {cluster}: {}",
        running_text(app)
    )
}

/// What to print for `progress`, given the last progress printed (`shown`): on a terminal the
/// whole table after a clear-screen; elsewhere a line per application that changed, and the
/// summary when it did.
pub fn frame(progress: &Progress, shown: Option<&Progress>, terminal: bool) -> String {
    if terminal {
        return format!("\x1b[H\x1b[2J{}", table(progress));
    }
    let mut out = String::new();
    for app in &progress.applications {
        let before = shown.and_then(|shown| {
            shown
                .applications
                .iter()
                .find(|a| a.namespace == app.namespace && a.application == app.application)
        });
        if before != Some(app) {
            out.push_str(&line(app, &progress.cluster));
            out.push('\n');
        }
    }
    if shown.is_none_or(|shown| summary(shown) != summary(progress)) {
        out.push_str(&summary(progress));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_ops::cluster::list::fixtures::release;

    fn key(namespace: &str, name: &str) -> AppKey {
        (namespace.to_owned(), name.to_owned())
    }

    /// team/web rescheduled: web-3 (on c3) still runs 2 replicas there while web-4 rolls out
    /// elsewhere; team/api: an old version still runs on c3; team/idle: rescheduled, done.
    fn midway() -> (BTreeSet<AppKey>, Vec<Release>) {
        let rescheduled = [key("team", "web"), key("team", "idle")].into();
        let releases = vec![
            release(
                "team",
                "web",
                3,
                &["c1", "c3"],
                "Superseded",
                &[("c1", 2, 2), ("c3", 2, 2)],
            ),
            release(
                "team",
                "web",
                4,
                &["c1", "c2"],
                "Progressing",
                &[("c1", 1, 2), ("c2", 0, 2)],
            ),
            release("team", "api", 1, &["c3"], "Superseded", &[("c3", 1, 1)]),
            release("team", "api", 2, &["c1"], "Complete", &[("c1", 1, 1)]),
            release("team", "idle", 2, &["c3"], "Complete", &[("c3", 0, 0)]),
            release("team", "idle", 3, &["c1"], "Complete", &[("c1", 1, 1)]),
            release("team", "elsewhere", 1, &["c1"], "Complete", &[("c1", 1, 1)]),
        ];
        (rescheduled, releases)
    }

    #[test]
    fn progress_lists_what_still_runs_there_and_what_moved() {
        let (rescheduled, releases) = midway();
        let progress = progress("c3", &rescheduled, &releases);
        let summary: Vec<(String, bool, Vec<&str>)> = progress
            .applications
            .iter()
            .map(|a| {
                (
                    format!("{}/{}", a.namespace, a.application),
                    a.done,
                    a.on_cluster.iter().map(|r| r.release.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("team/api".to_owned(), false, vec!["api-1"]),
                ("team/idle".to_owned(), true, vec![]),
                ("team/web".to_owned(), false, vec!["web-3"]),
            ]
        );
        assert_eq!(progress.replicas_left, 3);
        assert!(!progress.done);
        insta::assert_snapshot!(table(&progress));
    }

    #[test]
    fn the_drain_is_done_once_nothing_runs_there_and_the_new_releases_are_complete() {
        let (rescheduled, mut releases) = midway();
        // The old versions scaled down on c3; web-4 is still rolling out.
        for release in &mut releases {
            for cluster in &mut release.status.as_mut().unwrap().clusters {
                if cluster.name == "c3" {
                    cluster.replicas = 0;
                    cluster.ready_replicas = 0;
                }
            }
        }
        let web = |releases: &[Release]| {
            progress("c3", &rescheduled, releases)
                .applications
                .into_iter()
                .find(|a| a.application == "web")
                .unwrap()
        };
        assert!(!web(&releases).done, "web-4 is not complete yet");
        assert!(!progress("c3", &rescheduled, &releases).done);

        releases[1].status.as_mut().unwrap().phase = Some(ReleasePhase::Complete);
        let progress = progress("c3", &rescheduled, &releases);
        assert!(progress.done, "{progress:#?}");
        assert_eq!(progress.replicas_left, 0);
        assert!(summary(&progress).starts_with("cluster c3 is drained"));
    }

    #[test]
    fn a_version_without_replicas_that_traffic_still_routes_to_is_not_gone() {
        let rescheduled = [key("team", "web")].into();
        let mut releases = vec![
            release(
                "team",
                "web",
                3,
                &["c1", "c3"],
                "Superseded",
                &[("c3", 0, 0)],
            ),
            release("team", "web", 4, &["c1", "c2"], "Complete", &[("c1", 2, 2)]),
        ];
        // Scaled down on c3, but its Service there still gives it the traffic.
        releases[0].status.as_mut().unwrap().clusters[0].weight = 100;
        let draining = progress("c3", &rescheduled, &releases);
        assert!(!draining.done, "{draining:#?}");
        assert_eq!(
            line(&draining.applications[0], "c3"),
            "team/web: web-4 Complete at step 3/3 \"full\"; on c3: web-3 0/0, still routed 100% of the traffic there"
        );

        // The controller deleted the Service with the version: the status lists nothing there.
        releases[0].status.as_mut().unwrap().clusters.clear();
        assert!(progress("c3", &rescheduled, &releases).done);
    }

    #[test]
    fn a_rescheduled_application_is_not_done_before_its_new_release_exists() {
        let rescheduled = [key("team", "web")].into();
        // The controller has not made the new Release yet: the newest is still on c3, which
        // runs nothing yet (say, a Release that has not reached it).
        let releases = [release(
            "team",
            "web",
            3,
            &["c1", "c3"],
            "Complete",
            &[("c3", 0, 0)],
        )];
        assert!(!progress("c3", &rescheduled, &releases).done);
    }

    #[test]
    fn a_cluster_without_applications_is_drained_at_once() {
        let progress = progress("c3", &BTreeSet::new(), &[]);
        assert!(progress.done);
        assert!(progress.applications.is_empty());
    }

    #[test]
    fn releases_being_deleted_do_not_count() {
        let mut gone = release("team", "web", 3, &["c3"], "Complete", &[("c3", 2, 2)]);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-22T11:00:00Z".parse().unwrap(),
            ));
        assert!(progress("c3", &BTreeSet::new(), &[gone]).done);
    }

    #[test]
    fn a_log_gets_one_line_per_change() {
        let (rescheduled, releases) = midway();
        let first = progress("c3", &rescheduled, &releases);
        let text = frame(&first, None, false);
        insta::assert_snapshot!("first_frame", text);

        let mut later = releases.clone();
        later[1].status.as_mut().unwrap().step = Some(1);
        let second = progress("c3", &rescheduled, &later);
        assert_eq!(
            frame(&second, Some(&first), false),
            "team/web: web-4 Progressing at step 2/3 \"half\"; on c3: web-3 2/2\n",
            "only what changed"
        );
        assert!(frame(&second, Some(&first), true).starts_with("\x1b[H\x1b[2Jdraining c3"));
    }
}
