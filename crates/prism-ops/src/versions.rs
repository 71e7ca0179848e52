//! `prism versions APP`: every version of an Application that still runs (live, draining or
//! drained), with its role, routes as URLs, age, TTL left, ready/desired per cluster and pin; and
//! `prism pin`, `prism unpin`, `prism retire` of one of them.
//!
//! [`rows`], [`table`] and [`find`] are pure; the commands read through a [`Connection`].

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use prism_api::labels::{PINNED_ANNOTATION, RETIRE_ANNOTATION};
use prism_api::release::VersionState;
use prism_api::strategy::{Route, RouteMatch, RouteTo};
use prism_api::{Application, Release};
use serde::Serialize;
use serde_json::json;

use crate::Error;
use crate::connection::Connection;
use crate::releases::{self, Role as AppRole};
use crate::text;

/// What a version is to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Rolling out.
    Contender,
    /// The newest complete version: the default route's.
    Default,
    /// An older complete version kept live on its own routes.
    Retained,
    /// Retiring: its routes left, its capacity stays for the drain period.
    Draining,
    /// Retiring: scaled to 0, its objects kept until `versions.deleteAfter`.
    Drained,
    /// A SideVersion's: outside the mainline, on its own routes only.
    Side,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Contender => "contender",
            Role::Default => "default",
            Role::Retained => "retained",
            Role::Draining => "draining",
            Role::Drained => "drained",
            Role::Side => "side",
        }
    }
}

/// One version, as `prism versions` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The name it goes by in its routes (`versions.name` filled in, else the Release's name).
    pub version: String,
    pub release: String,
    pub revision: u32,
    pub role: Role,
    /// Its routes, as URLs (a header match as ` -H 'name: value'`).
    pub routes: Vec<String>,
    /// The Release's creation time, RFC 3339.
    pub created: Option<String>,
    /// Seconds until `versions.ttl` retires it; absent without a TTL, for a pinned version, and
    /// for the contender, the default and retiring ones.
    pub ttl_left_seconds: Option<i64>,
    pub clusters: Vec<ClusterCount>,
    pub pinned: bool,
    #[serde(skip)]
    pub age: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCount {
    pub name: String,
    pub ready: u32,
    pub desired: u32,
}

/// The state the Release's status says, Live before the controller set one.
fn state(release: &Release) -> VersionState {
    release
        .status
        .as_ref()
        .and_then(|status| status.state)
        .unwrap_or_default()
}

fn pinned(release: &Release) -> bool {
    release
        .annotations()
        .get(PINNED_ANNOTATION)
        .is_some_and(|value| value != "false")
}

/// The name `release` goes by in its routes.
pub fn version_name(app: &Application, release: &Release) -> String {
    if let Some(side) = &release.spec.side {
        return side.side_version.clone();
    }
    app.spec
        .versions
        .version_name(&app.name_any(), release.spec.revision)
        .unwrap_or_else(|| release.name_any())
}

/// What a version is, or None when it runs no more (retired, superseded, rolled back).
fn role(app: &Application, release: &Release) -> Option<Role> {
    let status = app.status.clone().unwrap_or_default();
    match (state(release), releases::role(&status, &release.name_any())) {
        (VersionState::Draining, _) => Some(Role::Draining),
        (VersionState::Drained, _) => Some(Role::Drained),
        (VersionState::Retired, _) => None,
        (VersionState::Live, _) if release.spec.side.is_some() => Some(Role::Side),
        (VersionState::Live, Some(AppRole::Contender)) => Some(Role::Contender),
        (VersionState::Live, Some(AppRole::Incumbent)) => Some(Role::Default),
        (VersionState::Live, None) => {
            let complete =
                releases::phase(release) == Some(prism_api::release::ReleasePhase::Complete);
            complete.then_some(Role::Retained)
        }
    }
}

/// The routes of the newest Release's strategy at its current step (the ones set last on the way
/// there): the routes every live version is given.
fn current_routes(newest: &Release) -> Vec<Route> {
    let step = newest
        .status
        .as_ref()
        .and_then(|status| status.step)
        .unwrap_or(0) as usize;
    let steps = &newest.spec.strategy.steps;
    steps[..steps.len().min(step + 1)]
        .iter()
        .rev()
        .find_map(|step| step.traffic.as_ref()?.routes.clone())
        .unwrap_or_default()
}

/// `route`'s match, for a version named `version`, as URLs on each of `hosts`.
fn urls(matches: &RouteMatch, version: &str, hosts: &[String]) -> Vec<String> {
    let fill = |text: &str| text.replace("{version}", version);
    hosts
        .iter()
        .map(|host| {
            let host = match &matches.subdomain {
                Some(subdomain) => format!("{}.{host}", fill(subdomain)),
                None => host.clone(),
            };
            let mut url = format!(
                "http://{host}{}",
                matches.path_prefix.as_deref().map_or("/".into(), fill)
            );
            if let Some(query) = &matches.query_param {
                url.push_str(&format!("?{}={}", fill(&query.name), fill(&query.value)));
            }
            if let Some(header) = &matches.header {
                url.push_str(&format!(
                    " -H '{}: {}'",
                    fill(&header.name),
                    fill(&header.value)
                ));
            }
            url
        })
        .collect()
}

/// The versions that still run, oldest first. `hosts` are the hostnames of the application's
/// routes (its HTTPRoutes'); without any, `<host>` stands for them.
pub fn rows(app: &Application, releases: &[Release], hosts: &[String], now: Timestamp) -> Vec<Row> {
    let hosts = if hosts.is_empty() {
        vec!["<host>".to_owned()]
    } else {
        hosts.to_vec()
    };
    let routes = releases::newest(releases)
        .map(current_routes)
        .unwrap_or_default();
    let mut sorted: Vec<&Release> = releases.iter().collect();
    sorted.sort_by_key(|release| release.spec.revision);
    sorted
        .into_iter()
        .filter_map(|release| {
            let role = role(app, release)?;
            let version = version_name(app, release);
            let mut urls_of: Vec<String> = Vec::new();
            if role == Role::Default {
                urls_of.extend(urls(&RouteMatch::default(), &version, &hosts));
            }
            let own_routes = release.spec.side.as_ref().map(|side| &side.routes);
            for route in own_routes
                .filter(|_| role == Role::Side)
                .into_iter()
                .flatten()
            {
                urls_of.extend(urls(&route.matches, &version, &hosts));
            }
            for route in &routes {
                let reaches = match route.to {
                    RouteTo::Each => {
                        matches!(role, Role::Contender | Role::Default | Role::Retained)
                    }
                    RouteTo::Contender => role == Role::Contender,
                    RouteTo::Incumbent => role == Role::Default,
                };
                if reaches {
                    urls_of.extend(urls(&route.matches, &version, &hosts));
                }
            }
            let created = release.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let age = created.map(|created| now.duration_since(created));
            let ttl_left_seconds = app
                .spec
                .versions
                .ttl
                .filter(|_| role == Role::Retained && !pinned(release))
                .zip(age)
                .map(|(ttl, age)| (ttl.0 - age).as_secs().max(0));
            let clusters = release
                .status
                .as_ref()
                .map(|status| {
                    status
                        .clusters
                        .iter()
                        .map(|cluster| ClusterCount {
                            name: cluster.name.clone(),
                            ready: cluster.ready_replicas,
                            desired: cluster.replicas,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Row {
                version,
                release: release.name_any(),
                revision: release.spec.revision,
                role,
                routes: urls_of,
                created: created.map(|t| t.to_string()),
                ttl_left_seconds,
                clusters,
                pinned: pinned(release),
                age: age.map_or_else(|| "<unknown>".to_owned(), text::age),
            })
        })
        .collect()
}

/// The rows as a table, columns separated by three spaces like kubectl's.
pub fn table(rows: &[Row]) -> String {
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            [
                row.version.clone(),
                row.release.clone(),
                row.role.as_str().to_owned(),
                if row.routes.is_empty() {
                    "-".to_owned()
                } else {
                    row.routes.join(",")
                },
                row.age.clone(),
                row.ttl_left_seconds.map_or("-".to_owned(), |left| {
                    text::age(SignedDuration::from_secs(left))
                }),
                if row.clusters.is_empty() {
                    "-".to_owned()
                } else {
                    row.clusters
                        .iter()
                        .map(|c| format!("{} {}/{}", c.name, c.ready, c.desired))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                if row.pinned { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect();
    text::table(
        [
            "VERSION", "RELEASE", "ROLE", "ROUTES", "AGE", "TTL-LEFT", "READY", "PINNED",
        ],
        &lines,
    )
}

/// The Release that `version` names: a Release's name, or the name it goes by in its routes
/// (`v3`).
pub fn find<'a>(
    app: &Application,
    releases: &'a [Release],
    version: &str,
) -> Result<&'a Release, Error> {
    releases
        .iter()
        .find(|release| release.name_any() == version || version_name(app, release) == version)
        .ok_or_else(|| {
            let mut known: Vec<&Release> = releases.iter().collect();
            known.sort_by_key(|release| release.spec.revision);
            let names: Vec<String> = known
                .iter()
                .filter(|release| role(app, release).is_some())
                .map(|release| version_name(app, release))
                .collect();
            Error::NotFound(format!(
                "{} has no version {version}: its versions are {} (see `prism versions {}`)",
                app.name_any(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
                app.name_any()
            ))
        })
}

/// Why `release` may not retire at a person's command, if it may not.
pub fn refuses_retire(app: &Application, release: &Release) -> Option<String> {
    let name = version_name(app, release);
    match role(app, release) {
        None => Some(format!("{name} runs no more: nothing to retire")),
        Some(Role::Default) => Some(format!(
            "{name} takes the default route: roll out a newer version, or `prism rollback`, before retiring it"
        )),
        Some(Role::Contender) => Some(format!(
            "{name} is rolling out: `prism abort {}` rolls it back",
            app.name_any()
        )),
        Some(Role::Draining | Role::Drained) => Some(format!(
            "{name} is already retiring ({})",
            state(release).as_str()
        )),
        Some(Role::Side) => Some(format!(
            "{name} is a side version: delete its SideVersion (`kubectl delete sideversion {name}`), which retires it in order"
        )),
        Some(Role::Retained) => None,
    }
}

/// Why `release` may not be pinned, if it may not: a retirement that started goes on.
pub fn refuses_pin(app: &Application, release: &Release) -> Option<String> {
    let name = version_name(app, release);
    match role(app, release) {
        None => Some(format!(
            "{name} runs no more: make it live again with `prism rollback --to {}`",
            release.spec.revision
        )),
        Some(Role::Draining | Role::Drained) => Some(format!(
            "{name} is already retiring ({}): a pin does not stop a retirement that started; `prism rollback --to {}` brings it back",
            state(release).as_str(),
            release.spec.revision
        )),
        Some(Role::Side) => Some(format!(
            "{name} is a side version: it never retires by versions.max or versions.ttl, only when its SideVersion goes or its own ttl passes"
        )),
        _ => None,
    }
}

/// The hostnames of the HTTPRoutes the Application routes through, where the connection's
/// cluster has them (a single-cluster install, or a management cluster that is also an
/// application cluster); none elsewhere.
async fn hosts(connection: &Connection, app: &Application) -> Vec<String> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let api = connection.dynamic(&ApiResource::from_gvk(&gvk));
    let mut hosts = Vec::new();
    for name in &app.spec.traffic.http_routes {
        let Ok(Some(route)) = api.get_opt(name).await else {
            continue;
        };
        let route: DynamicObject = route;
        if let Some(names) = route
            .data
            .pointer("/spec/hostnames")
            .and_then(|h| h.as_array())
        {
            hosts.extend(names.iter().filter_map(|h| h.as_str().map(str::to_owned)));
        }
    }
    hosts
}

/// Reads the Application `name` and its versions.
pub async fn read(connection: &Connection, name: &str) -> Result<Vec<Row>, Error> {
    let (app, releases) = connection.read(name).await?;
    let hosts = hosts(connection, &app).await;
    Ok(rows(&app, &releases, &hosts, Timestamp::now()))
}

/// `prism pin` (`pin` true) or `prism unpin` of `version`.
pub async fn pin(
    connection: &Connection,
    app: &str,
    version: &str,
    pin: bool,
) -> Result<String, Error> {
    let (application, releases) = connection.read(app).await?;
    let release = find(&application, &releases, version)?;
    let name = version_name(&application, release);
    if pin && let Some(refusal) = refuses_pin(&application, release) {
        return Err(Error::Refused(refusal));
    }
    let value = if pin { json!("true") } else { json!(null) };
    connection
        .merge_patch(
            &connection.releases(),
            &release.name_any(),
            json!({"metadata": {"annotations": {PINNED_ANNOTATION: value}}}),
        )
        .await?;
    Ok(if pin {
        format!(
            "pinned {name} ({}): it never retires by versions.max or versions.ttl",
            release.name_any()
        )
    } else {
        format!(
            "unpinned {name} ({}): versions.max and versions.ttl apply to it again",
            release.name_any()
        )
    })
}

/// `prism retire`: the retained `version` drains, then goes.
pub async fn retire(connection: &Connection, app: &str, version: &str) -> Result<String, Error> {
    let (application, releases) = connection.read(app).await?;
    let release = find(&application, &releases, version)?;
    if let Some(refusal) = refuses_retire(&application, release) {
        return Err(Error::Refused(refusal));
    }
    connection
        .merge_patch(
            &connection.releases(),
            &release.name_any(),
            json!({"metadata": {"annotations": {RETIRE_ANNOTATION: Timestamp::now().to_string()}}}),
        )
        .await?;
    Ok(format!(
        "retiring {} ({}): its routes leave first, then it drains; follow it with `prism versions {app}`",
        version_name(&application, release),
        release.name_any()
    ))
}

#[cfg(test)]
#[path = "versions/tests.rs"]
mod tests;
