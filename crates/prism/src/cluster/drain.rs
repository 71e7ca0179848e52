//! `prism cluster drain NAME`: moves every application off a cluster. The cluster is cordoned,
//! then each Application whose newest Release is scheduled there gets a new value of its
//! `prism.dev/reschedule` annotation; the controller answers with a new Release of the same
//! template on a schedule without the cordoned cluster, rolled out under the Application's own
//! strategy, and the older Releases retire from the cluster as usual. The command follows the
//! Releases until nothing runs there any more: no replicas, and no traffic object (the
//! application's Service) that routes to a version there, which the controller deletes with
//! the application's last version on the cluster.
//!
//! An Application whose newest Release was rolled back cannot move that way (a Release of its
//! template would roll the bad version out again; the controller refuses such a request), so
//! the drain is refused, before anything changes, naming each one and the fix.
//!
//! [`to_reschedule`], [`progress`] (where a drain is, and its rendering) are pure; [`drain`] makes
//! the requests.

use std::collections::BTreeSet;
use std::pin::pin;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use prism_api::application::RESCHEDULE_ANNOTATION;
use prism_api::strategy::Duration;
use prism_api::{Application, Release, RolloutBlock};
use serde_json::json;

mod progress;

pub use progress::{AppProgress, Newest, Progress, Running, frame, line, progress, summary, table};

use prism_ops::Error;
use prism_ops::cluster::list::{application_of, newest_revisions};
use prism_ops::cluster::{Management, set_unschedulable};
use prism_ops::connection::FIELD_MANAGER;

/// An Application: namespace and name.
pub type AppKey = (String, String);

/// The Applications to reschedule off `cluster`: those, not being deleted, whose newest Release
/// (the highest revision) is scheduled there. In namespace and name order. `Err` says why the
/// drain cannot be done: some of them have a newest Release that was rolled back, or a
/// RolloutBlock (of `blocks`, or named by their Blocked condition) stops their new Release, so
/// the drain would wait for the block without saying so.
pub fn to_reschedule(
    cluster: &str,
    apps: &[Application],
    releases: &[Release],
    blocks: &[RolloutBlock],
) -> Result<Vec<AppKey>, String> {
    let newest = newest_revisions(releases);
    let mut scheduled: Vec<(AppKey, &Release)> = apps
        .iter()
        .filter(|app| app.meta().deletion_timestamp.is_none())
        .filter_map(|app| {
            let namespace = app.namespace().unwrap_or_default();
            let name = app.name_any();
            let revision = *newest.get(&(namespace.as_str(), name.as_str()))?;
            let release = releases.iter().find(|release| {
                application_of(release) == (namespace.as_str(), name.as_str())
                    && release.spec.revision == revision
                    && release.spec.clusters.iter().any(|c| c.name == cluster)
            })?;
            Some(((namespace, name), release))
        })
        .collect();
    scheduled.sort_by(|a, b| a.0.cmp(&b.0));
    let rolled_back: Vec<String> = scheduled
        .iter()
        .filter(|(_, release)| release.is_rolled_back())
        .map(|((namespace, app), release)| {
            format!(
                "  {namespace}/{app}: {} was rolled back; run `prism rollback {app} -n {namespace}` \
                 (or change its template) first",
                release.name_any()
            )
        })
        .collect();
    if !rolled_back.is_empty() {
        return Err(format!(
            "cannot drain {cluster}: moving these applications would roll a rolled-back version \
             out again, so nothing was changed:\n{}",
            rolled_back.join("\n")
        ));
    }
    let blocked: Vec<String> = scheduled
        .iter()
        .filter_map(|((namespace, name), _)| {
            let app = apps.iter().find(|app| {
                app.namespace().as_ref() == Some(namespace) && &app.name_any() == name
            })?;
            let stopping = prism_ops::blocks::stopping(app, blocks);
            (!stopping.is_empty()).then(|| format!("  {namespace}/{name}: {}", stopping.join("; ")))
        })
        .collect();
    if !blocked.is_empty() {
        return Err(format!(
            "cannot drain {cluster}: a RolloutBlock stops the new Release that would move these \
             applications, so nothing was changed:\n{}\nLift the blocks, or pass them as each \
             line says (each pass is recorded on the block), then drain again",
            blocked.join("\n")
        ));
    }
    Ok(scheduled.into_iter().map(|(key, _)| key).collect())
}

/// The value that asks for one more rescheduling, unique per drain.
pub fn reschedule_value(cluster: &str, now: Timestamp) -> String {
    format!("drain-{cluster}-{}", now.as_second())
}

/// Drains the cluster `name`: cordons it, reschedules the Applications scheduled there, then
/// follows the Releases of every namespace, printing with `print`, until nothing runs there
/// (`Ok`) or `timeout` passes (`Timeout`).
pub async fn drain(
    management: &Management,
    name: &str,
    timeout: Option<Duration>,
    terminal: bool,
    mut print: impl FnMut(&str),
) -> Result<(), Error> {
    let deadline = timeout.map(|t| (tokio::time::Instant::now() + t.0.unsigned_abs(), t));
    let apps_api: Api<Application> = Api::all(management.client());
    let releases_api: Api<Release> = Api::all(management.client());
    let apps = apps_api
        .list(&ListParams::default())
        .await
        .map_err(|e| management.explain_list("listing Applications in every namespace", e))?;
    let releases = releases_api
        .list(&ListParams::default())
        .await
        .map_err(|e| management.explain_list("listing Releases in every namespace", e))?;
    let blocks = match Api::<RolloutBlock>::all(management.client())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        // Who may not list them still gets each Application's Blocked condition.
        Err(kube::Error::Api(status)) if status.is_forbidden() => Vec::new(),
        Err(error) => {
            return Err(management.explain_list("listing RolloutBlocks in every namespace", error));
        }
    };
    let keys =
        to_reschedule(name, &apps.items, &releases.items, &blocks).map_err(Error::Refused)?;
    print(&format!(
        "{}\n",
        set_unschedulable(management, name, true).await?
    ));
    let value = reschedule_value(name, Timestamp::now());
    for (namespace, app) in &keys {
        Api::<Application>::namespaced(management.client(), namespace)
            .patch(
                app,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"metadata": {"annotations": {RESCHEDULE_ANNOTATION: value}}})),
            )
            .await
            .map_err(|e| {
                management.explain(&format!("patching Application {namespace}/{app}"), e)
            })?;
        print(&format!(
            "{namespace}/{app}: rescheduled ({RESCHEDULE_ANNOTATION}={value})\n"
        ));
    }
    let rescheduled: BTreeSet<AppKey> = keys.into_iter().collect();

    let mut shown = progress(name, &rescheduled, &releases.items);
    print(&frame(&shown, None, terminal));
    if shown.done {
        return Ok(());
    }

    let (store, writer) = reflector::store::<Release>();
    let mut events = pin!(
        watcher(releases_api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
    );
    let mut listed = false;
    loop {
        let event = match deadline {
            Some((deadline, timeout)) => tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| {
                    let stuck: Vec<String> = shown
                        .applications
                        .iter()
                        .filter(|app| !app.done)
                        .map(|app| format!("{}/{}", app.namespace, app.application))
                        .collect();
                    Error::Timeout(format!(
                        "cluster {name} was not drained within {timeout}: {} replicas still run \
                         there; waiting for {}",
                        shown.replicas_left,
                        stuck.join(", ")
                    ))
                })?,
            None => events.next().await,
        };
        match event {
            Some(Ok(event)) => listed |= matches!(event, watcher::Event::InitDone),
            Some(Err(error)) => {
                eprintln!("prism: watching Releases: {error}; retrying");
                continue;
            }
            None => return Err(Error::Api("the watch ended".to_owned())),
        }
        // Before the first list is complete, the store lacks some Releases.
        if !listed {
            continue;
        }
        let releases: Vec<Release> = store.state().iter().map(|r| (**r).clone()).collect();
        let current = progress(name, &rescheduled, &releases);
        if current != shown {
            print(&frame(&current, Some(&shown), terminal));
            shown = current;
        }
        if shown.done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_ops::cluster::list::fixtures::release;
    use prism_ops::releases::fixtures::application;

    fn app(namespace: &str, name: &str) -> Application {
        let mut app = application("web:1", json!(null));
        app.metadata.namespace = Some(namespace.into());
        app.metadata.name = Some(name.into());
        app
    }

    fn key(namespace: &str, name: &str) -> AppKey {
        (namespace.to_owned(), name.to_owned())
    }

    #[test]
    fn the_applications_whose_newest_release_is_scheduled_there_are_rescheduled() {
        let apps = [
            app("team", "web"),
            app("team", "api"),
            app("team", "new"),
            app("other", "web"),
        ];
        let releases = [
            // team/web: its newest Release is on c3.
            release("team", "web", 1, &["c1"], "Complete", &[]),
            release("team", "web", 2, &["c1", "c3"], "Complete", &[]),
            // team/api: an old Release was on c3, the newest is not.
            release("team", "api", 1, &["c3"], "Complete", &[("c3", 0, 0)]),
            release("team", "api", 2, &["c1"], "Complete", &[]),
            // other/web (same name, other namespace): on c3.
            release("other", "web", 7, &["c3"], "Progressing", &[]),
        ];
        assert_eq!(
            to_reschedule("c3", &apps, &releases, &[]).unwrap(),
            [key("other", "web"), key("team", "web")]
        );
    }

    #[test]
    fn a_drain_that_would_roll_a_rolled_back_version_out_again_is_refused() {
        let apps = [app("team", "web"), app("team", "api")];
        let mut rolled_back = release("team", "web", 2, &["c3"], "Aborted", &[]);
        rolled_back.spec.aborted = true;
        let releases = [
            release("team", "web", 1, &["c3"], "Complete", &[("c3", 2, 2)]),
            rolled_back,
            release("team", "api", 1, &["c3"], "Complete", &[("c3", 1, 1)]),
        ];
        let why = to_reschedule("c3", &apps, &releases, &[]).unwrap_err();
        assert!(why.starts_with("cannot drain c3: "), "{why}");
        assert!(
            why.contains("team/web: web-2 was rolled back; run `prism rollback web -n team`"),
            "{why}"
        );
        assert!(!why.contains("team/api"), "{why}");
        // Elsewhere, the same Applications move.
        assert!(
            to_reschedule("c1", &apps, &releases, &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_drain_that_a_block_would_hold_is_refused_naming_the_block() {
        let apps = [app("team", "web"), app("team", "api")];
        let releases = [
            release("team", "web", 1, &["c3"], "Complete", &[("c3", 2, 2)]),
            release("team", "api", 1, &["c1"], "Complete", &[("c1", 1, 1)]),
        ];
        let freeze: RolloutBlock = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "RolloutBlock",
            "metadata": {"name": "freeze", "namespace": "team"},
            "spec": {"message": "release freeze"},
        }))
        .unwrap();
        let why = to_reschedule("c3", &apps, &releases, std::slice::from_ref(&freeze)).unwrap_err();
        assert!(
            why.starts_with("cannot drain c3: a RolloutBlock stops the new Release"),
            "{why}"
        );
        assert!(
            why.contains(
                "  team/web: RolloutBlock team/freeze: release freeze (to pass it, annotate the \
                 Application with prism.dev/override-rollout-block: freeze)"
            ),
            "{why}"
        );
        assert!(!why.contains("team/api"), "not on c3: {why}");
        // A cluster none of them needs a new Release to leave drains under the block.
        assert!(
            to_reschedule("c2", &apps, &releases, &[freeze])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_value_is_new_for_each_drain() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(reschedule_value("c3", now), "drain-c3-1795348800");
    }
}
