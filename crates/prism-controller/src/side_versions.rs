//! Side versions: each SideVersion of an Application becomes a Release of its own (labelled
//! `prism.dev/side-version`, revision 0, `spec.side` set), the Application's current template with
//! the SideVersion's overrides, on the clusters of the mainline's newest Release. The engine gives
//! such a Release the role `Side` (full capacity, weight 0, its own routes only).
//!
//! A SideVersion deleted, changed or past its ttl: its Release gets the `prism.dev/retire`
//! annotation, and retires in order like any version (routes leave, drain, scale to 0, delete);
//! a change makes a new Release (`<app>-<sideVersion>-<n>`) that replaces it. A Retired side
//! Release is deleted. Overrides that do not apply to the template, an Application that routes
//! nothing, or more side versions than `versions.sideMax` install nothing: the SideVersion's
//! `Valid` condition names the field and the fix, with a Warning Event.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prism_api::application::TrafficProvider;
use prism_api::conditions::keep_transition_times;
use prism_api::labels::{
    APP_LABEL, FIELD_MANAGER, RELEASE_LABEL, RETIRE_ANNOTATION, SIDE_VERSION_LABEL,
};
use prism_api::release::{ReleasePhase, SideRelease, VersionState};
use prism_api::side_version::shadow::{self, MainlineNames};
use prism_api::side_version::{SideVersion, SideVersionStatus};
use prism_api::{Application, Pipeline, Release, ReleaseSpec};

use crate::Context;
use crate::application::publish;
use crate::error::{Error, ReleasesError};
use crate::expectations::ObjectKey;
use crate::fleet::MANAGEMENT_CLUSTER;

/// The SideVersion's condition types.
pub const VALID: &str = "Valid";
pub const READY: &str = "Ready";

/// What to do about an Application's side versions.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<Release>,
    /// Side Releases to retire (their SideVersion went, changed or expired).
    pub retire: Vec<String>,
    /// Retired side Releases, deleted.
    pub delete: Vec<String>,
    /// Each SideVersion's status, and a Warning to publish when it turns invalid.
    pub statuses: Vec<(SideVersion, SideVersionStatus, Option<String>)>,
    /// When the next ttl ends.
    pub requeue_after: Option<std::time::Duration>,
}

/// Pure: the side Releases an Application should have, given its mainline Releases (by revision),
/// its side Releases and its SideVersions.
pub fn plan(
    app: &Application,
    mainline: &[Release],
    sides: &[Release],
    side_versions: &[&SideVersion],
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut ordered = side_versions.to_vec();
    ordered.sort_by_key(|sv| (sv.creation_timestamp().map(|t| t.0), sv.name_any()));
    let newest = mainline.last();
    let mut wanted: Vec<String> = Vec::new();
    for (index, sv) in ordered.iter().enumerate() {
        let name = sv.name_any();
        let expires_at = sv
            .spec
            .ttl
            .zip(sv.creation_timestamp())
            .and_then(|(ttl, made)| made.0.checked_add(ttl.0).ok());
        if let Some(expires_at) = expires_at.filter(|at| *at > now) {
            let left = now.duration_until(expires_at).unsigned_abs();
            plan.requeue_after = Some(plan.requeue_after.map_or(left, |after| after.min(left)));
        }
        let current = sides
            .iter()
            .filter(|r| r.labels().get(SIDE_VERSION_LABEL) == Some(&name))
            .filter(|r| !r.annotations().contains_key(RETIRE_ANNOTATION));
        let outcome = desired(app, newest, sv, &ordered[..index], now, expires_at);
        let applies = (
            true,
            "Valid",
            "the overrides apply to the Application's template".to_owned(),
        );
        let (valid, ready, release) = match outcome {
            Err((reason, message)) => ((false, reason, message), None, None),
            Ok(None) => (
                applies,
                Some((
                    false,
                    "Expired",
                    "its ttl passed: the version retires".to_owned(),
                )),
                None,
            ),
            Ok(Some(release)) => {
                let same = current.clone().find(|r| {
                    r.spec.template == release.spec.template && r.spec.side == release.spec.side
                });
                let running = match same {
                    Some(existing) => existing.clone(),
                    None => {
                        let release = named(release, sides, &name);
                        plan.create.push(release.clone());
                        release
                    }
                };
                let running_name = running.name_any();
                wanted.push(running_name.clone());
                let complete =
                    running.status.as_ref().and_then(|s| s.phase) == Some(ReleasePhase::Complete);
                let ready = if complete {
                    (
                        true,
                        "Running",
                        format!("Release {running_name} runs it on its own routes"),
                    )
                } else {
                    (
                        false,
                        "Installing",
                        format!("Release {running_name} is being installed"),
                    )
                };
                (applies, Some(ready), Some(running_name))
            }
        };
        let status = status_of(sv, valid.clone(), ready, release, expires_at);
        let turned_invalid = (!valid.0
            && sv
                .status
                .as_ref()
                .and_then(|s| prism_api::conditions::find(&s.conditions, VALID))
                .is_none_or(|c| c.status != "False" || c.message != valid.2))
        .then(|| valid.2.clone());
        plan.statuses.push(((*sv).clone(), status, turned_invalid));
    }
    for release in sides {
        let name = release.name_any();
        let retired = release.status.as_ref().and_then(|s| s.state) == Some(VersionState::Retired);
        if retired {
            plan.delete.push(name);
        } else if !wanted.contains(&name) && !release.annotations().contains_key(RETIRE_ANNOTATION)
        {
            plan.retire.push(name);
        }
    }
    plan
}

type Refusal = (&'static str, String);

/// The Release a SideVersion asks for; None once its ttl passed.
fn desired(
    app: &Application,
    newest: Option<&Release>,
    sv: &SideVersion,
    earlier: &[&SideVersion],
    now: jiff::Timestamp,
    expires_at: Option<jiff::Timestamp>,
) -> Result<Option<Release>, Refusal> {
    let app_name = app.name_any();
    let max = app.spec.versions.side_max;
    if earlier.len() as u32 >= max {
        return Err((
            "TooMany",
            format!(
                "spec.application: Application {app_name} has versions.sideMax ({max}) side versions already: delete one, or raise its spec.versions.sideMax"
            ),
        ));
    }
    if !matches!(
        app.spec.traffic.provider,
        TrafficProvider::GatewayApi | TrafficProvider::Istio
    ) {
        return Err((
            "NoRoutes",
            format!(
                "spec.routes: Application {app_name}'s traffic provider cannot route to one version alone: set its spec.traffic.provider to gatewayAPI or istio"
            ),
        ));
    }
    if app.spec.target.is_some() {
        return Err((
            "NoTemplate",
            format!(
                "spec.application: Application {app_name} targets a Service (spec.target), so it has no template to clone: a side version needs an Application with spec.template"
            ),
        ));
    }
    // A chart's objects are what its newest Release rendered: a side version clones those.
    let base = match (&app.spec.template.chart, newest) {
        (Some(_), Some(newest)) => &newest.spec.template,
        _ => &app.spec.template,
    };
    let template = sv.spec.apply(base).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ("InvalidOverride", lines.join("; "))
    })?;
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let Some(newest) = newest else {
        return Err((
            "NoMainline",
            format!(
                "spec.application: Application {app_name} has no Release yet, so no clusters: it runs once the Application's first Release is made"
            ),
        ));
    };
    shadowing(app, &newest.spec.strategy, sv, earlier)?;
    let owner = app.controller_owner_ref(&());
    let name = sv.name_any();
    let mut release = Release::new(
        "",
        ReleaseSpec {
            application: app_name.clone(),
            revision: 0,
            template,
            target: None,
            strategy: newest.spec.strategy.clone(),
            clusters: newest.spec.clusters.clone(),
            target_step: None,
            aborted: false,
            side: Some(SideRelease {
                side_version: name.clone(),
                routes: sv.spec.engine_routes(&name),
            }),
        },
    );
    release.metadata = ObjectMeta {
        namespace: app.namespace(),
        labels: Some(BTreeMap::from([
            (APP_LABEL.to_owned(), app_name),
            (SIDE_VERSION_LABEL.to_owned(), name),
        ])),
        owner_references: owner.map(|owner| vec![owner]),
        ..ObjectMeta::default()
    };
    Ok(Some(release))
}

/// A route of `sv` that takes the requests of a route of the mainline's strategy, or of a side
/// version made before it: only one of the two would get them.
fn shadowing(
    app: &Application,
    strategy: &Pipeline,
    sv: &SideVersion,
    earlier: &[&SideVersion],
) -> Result<(), Refusal> {
    let names = MainlineNames::new(&app.name_any(), app.spec.versions.name.as_deref());
    let mainline = strategy
        .steps
        .iter()
        .filter_map(|step| step.traffic.as_ref()?.routes.as_ref())
        .flatten();
    let name = sv.name_any();
    for (i, route) in sv.spec.routes.iter().enumerate() {
        let mine = shadow::filled(&route.matches, &name);
        let taken = shadow::mainline_route(&mine, mainline.clone(), &names)
            .map(|theirs| format!("the strategy's route {:?}", theirs.name))
            .or_else(|| {
                earlier.iter().find_map(|other| {
                    let other_name = other.name_any();
                    other
                        .spec
                        .routes
                        .iter()
                        .find(|r| {
                            shadow::same_requests(
                                &mine,
                                &shadow::filled(&r.matches, &other_name),
                                None,
                            )
                        })
                        .map(|r| {
                            format!(
                                "route {:?} of SideVersion {other_name}, made before this one,",
                                r.name
                            )
                        })
                })
            });
        if let Some(taken) = taken {
            return Err((
                "Shadowed",
                format!(
                    "spec.routes[{i}].match: {taken} takes the same requests, and only one of the two would get them: choose another header, value, path or subdomain"
                ),
            ));
        }
    }
    Ok(())
}

/// Names a new side Release `<app>-<sideVersion>-<n>`, one more than any of its Releases left.
fn named(mut release: Release, sides: &[Release], side_version: &str) -> Release {
    let prefix = format!("{}-{side_version}-", release.spec.application);
    let serial = sides
        .iter()
        .filter_map(|r| r.name_any().strip_prefix(&prefix)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let name = format!("{prefix}{serial}");
    if let Some(labels) = release.metadata.labels.as_mut() {
        labels.insert(RELEASE_LABEL.to_owned(), name.clone());
    }
    release.metadata.name = Some(name);
    release
}

fn status_of(
    sv: &SideVersion,
    valid: (bool, &'static str, String),
    ready: Option<(bool, &'static str, String)>,
    release: Option<String>,
    expires_at: Option<jiff::Timestamp>,
) -> SideVersionStatus {
    let now = Time(crate::now());
    let condition = |type_: &str, (status, reason, message): (bool, &str, String)| Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: sv.metadata.generation,
        last_transition_time: now.clone(),
    };
    let ready = ready.unwrap_or((
        false,
        "Invalid",
        "nothing is installed while it is not valid".into(),
    ));
    let mut conditions = vec![condition(VALID, valid), condition(READY, ready)];
    let current = sv.status.clone().unwrap_or_default();
    keep_transition_times(&mut conditions, &current.conditions);
    SideVersionStatus {
        observed_generation: sv.metadata.generation,
        release,
        expires_at: expires_at.map(Time),
        conditions,
    }
}

/// Carries out the plan for `app`; returns its side Releases after the writes, for the rollout.
pub async fn reconcile(
    app: &Application,
    mainline: &[Release],
    sides: Vec<Release>,
    ctx: &Context,
) -> Result<(Vec<Release>, Option<std::time::Duration>), Error> {
    let namespace = app.namespace().unwrap_or_default();
    let app_name = app.name_any();
    let side_versions = ctx.side_versions.state();
    let mine: Vec<&SideVersion> = side_versions
        .iter()
        .map(AsRef::as_ref)
        .filter(|sv| sv.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|sv| sv.spec.application == app_name)
        .collect();
    let plan = plan(app, mainline, &sides, &mine, crate::now());
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &namespace);
    let app_ref = ObjectRef::from_obj(app);
    let side_api: Api<SideVersion> = Api::namespaced(ctx.client.clone(), &namespace);
    let release_key = |name: &str| ObjectKey::new::<Release>(MANAGEMENT_CLUSTER, &namespace, name);
    let mut sides = sides;
    for release in &plan.create {
        let name = release.name_any();
        let written = ctx
            .expectations
            .track(
                &app_ref,
                release_key(&name),
                api.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(release),
                ),
                ResourceExt::resource_version,
            )
            .await
            .map_err(|source| ReleasesError::Create {
                release: format!("{namespace}/{name}"),
                source,
            })?;
        sides.push(written);
    }
    for name in &plan.retire {
        let patch = serde_json::json!({"metadata": {"annotations": {
            RETIRE_ANNOTATION: crate::now().to_string()
        }}});
        let written = ctx
            .expectations
            .track(
                &app_ref,
                release_key(name),
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
                ResourceExt::resource_version,
            )
            .await
            .map_err(|source| ReleasesError::Retire {
                release: format!("{namespace}/{name}"),
                source,
            })?;
        if let Some(release) = sides.iter_mut().find(|r| r.name_any() == *name) {
            *release = written;
        }
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(ReleasesError::Prune {
                    release: format!("{namespace}/{name}"),
                    source: error,
                }
                .into());
            }
        }
        sides.retain(|r| r.name_any() != *name);
    }
    for (sv, status, turned_invalid) in &plan.statuses {
        if sv.status.as_ref() != Some(status) {
            // Not tracked as an expectation: the SideVersion cache does not report what it sees.
            let patch = serde_json::json!({
                "apiVersion": "prism.dev/v1alpha1",
                "kind": "SideVersion",
                "status": status,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let name = sv.name_any();
            side_api
                .patch_status(&name, &params, &Patch::Apply(&patch))
                .await
                .map_err(|source| ReleasesError::SideVersionStatus {
                    side_version: format!("{namespace}/{name}"),
                    source,
                })?;
        }
        if let Some(message) = turned_invalid {
            publish(
                ctx,
                &sv.object_ref(&()),
                EventType::Warning,
                "InvalidSideVersion",
                message.clone(),
                "Validate",
            )
            .await;
        }
    }
    for release in &plan.create {
        if let Some(sv) = mine.iter().find(|sv| {
            release
                .spec
                .side
                .as_ref()
                .is_some_and(|s| s.side_version == sv.name_any())
        }) {
            publish(
                ctx,
                &sv.object_ref(&()),
                EventType::Normal,
                "ReleaseCreated",
                format!(
                    "created Release {} for this side version",
                    release.name_any()
                ),
                "CreateRelease",
            )
            .await;
        }
    }
    sides.sort_by_key(|r| (r.creation_timestamp().map(|t| t.0), r.name_any()));
    Ok((sides, plan.requeue_after))
}

#[cfg(test)]
mod tests;
