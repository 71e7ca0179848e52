//! The Application reconciler: each change of an Application's template becomes a new Release,
//! a change of its resolved strategy alone applies to the Release rolling out
//! ([`crate::strategy_update`]), and old Releases beyond `revisionHistoryLimit` are pruned.
//!
//! One reconcile is a pipeline: [`dereference`] (read what the Application names) → [`validate`]
//! (pure) → [`desired_release`], [`releases_to_prune`] and [`desired_status`] (pure, no client)
//! → apply (server-side apply, field manager [`FIELD_MANAGER`]) → status. Nothing is written
//! when nothing changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prism_api::application::{ApplicationPhase, ApplicationStatus, PreRolloutHold};
use prism_api::application::{Manifest, RESCHEDULE_ANNOTATION, Target};
use prism_api::conditions::{self, Condition};
use prism_api::labels::{APP_LABEL, FIELD_MANAGER, RELEASE_LABEL};
use prism_api::release::{ReleasePhase, ScheduledCluster, VersionState, newest};
use prism_api::validate::{self, AppTraffic, ValidationErrors};
use prism_api::{Application, ApplicationSpec, Cluster, Pipeline, Release, ReleaseSpec};
use prism_engine::{Candidate, Clusters, check_pipeline};
use tracing::{info, warn};

use crate::Context;
use crate::blocks::Blocks;
use crate::chart;
use crate::dry_run;
use crate::error::{Error, ReleasesError};
use crate::expectations::ObjectKey;
use crate::fleet::MANAGEMENT_CLUSTER;
use crate::service_target;
use crate::strategy_update::{self, REASON_STRATEGY_UPDATED};
use crate::webhooks::{self, REASK};
use crate::workload;
use crate::write::apply_status;

/// `Valid` condition reasons.
pub const REASON_VALID: &str = "Valid";
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
pub const REASON_STRATEGY_NOT_FOUND: &str = "StrategyNotFound";
/// Why an Application has no new Release: a RolloutBlock stops it.
pub const REASON_ROLLOUT_BLOCKED: &str = "RolloutBlocked";
/// Why an Application has no new Release: no set of clusters meets its schedule.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// A pre-rollout webhook holds the next Release back.
pub const REASON_PRE_ROLLOUT_HELD: &str = "PreRolloutHeld";
/// The Event emitted when a Release is created.
pub const REASON_RELEASE_CREATED: &str = "ReleaseCreated";
/// The template's workload is not the one the running versions share (`workload::refuses_to_follow`).
pub const REASON_WORKLOAD_CHANGED: &str = "WorkloadChanged";

/// The strategy an Application names, as found in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategySource {
    /// `spec.strategy.steps`.
    Inline(Pipeline),
    /// A Strategy of the Application's namespace.
    Strategy {
        name: String,
        found: Option<Pipeline>,
    },
    /// A ClusterStrategy.
    ClusterStrategy {
        name: String,
        found: Option<Pipeline>,
    },
    /// The spec names none (the schema forbids it; `validate` reports it).
    None,
}

impl StrategySource {
    /// How `status.strategy` names it: a Strategy's name, `ClusterStrategy/<name>`, or `inline`.
    pub fn label(&self) -> Option<String> {
        match self {
            StrategySource::Inline(_) => Some("inline".into()),
            StrategySource::Strategy { name, .. } => Some(name.clone()),
            StrategySource::ClusterStrategy { name, .. } => Some(format!("ClusterStrategy/{name}")),
            StrategySource::None => None,
        }
    }
}

/// Everything one reconcile reads.
pub struct Observed {
    pub strategy: StrategySource,
    /// The Service the Application targets, as a Release snapshots it, or why it has none
    /// (it does not exist); None when the Application has a template.
    pub target: Option<Result<Manifest, Invalid>>,
    /// The Application's Releases, by revision, but its side versions'.
    pub releases: Vec<Release>,
    /// Its side versions' Releases.
    pub sides: Vec<Release>,
    /// The RolloutBlocks that apply to it.
    pub blocks: Blocks,
    /// The Clusters a new Release may be scheduled on.
    pub clusters: Vec<Arc<Cluster>>,
}

/// What the Application stage leaves the Release stage: the Releases after its writes, by
/// revision, and the block that stops the rollout, if any.
pub struct Outcome {
    pub releases: Vec<Release>,
    /// The side versions' Releases, as read.
    pub sides: Vec<Release>,
    pub blocked: Option<String>,
    /// When to ask the pre-rollout webhooks again, while they hold a Release back.
    pub recheck_after: Option<std::time::Duration>,
}

/// Why an Application is not valid: the `Valid` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

/// The Application stage of a reconcile.
pub async fn reconcile(app: &Application, ctx: &Context) -> Result<Outcome, Error> {
    let namespace = app.namespace().ok_or_else(|| ReleasesError::MissingField {
        object: app.name_any(),
        field: "metadata.namespace",
    })?;
    let name = app.name_any();
    let releases_api: Api<Release> = Api::namespaced(ctx.client.clone(), &namespace);

    // 1. Dereference; a chart's values files are read by name, and their digest is part of
    // its version.
    let observed = dereference(app, ctx, &namespace);
    let (values_files, with_digest) = match &app.spec.template.chart {
        Some(chart) => {
            let files = chart::values_files(&ctx.client, &namespace, chart).await?;
            let app = files.as_ref().ok().map(|files| {
                let mut app = app.clone();
                app.spec.template.chart = Some(chart::with_values_digest(chart, files));
                app
            });
            (Some(files), app)
        }
        None => (None, None),
    };
    let app = with_digest.as_ref().unwrap_or(app);

    // 2. Validate: offline, then what the API server said of this generation's template, and
    // the Service it targets, if it targets one.
    let mut verdict = validate(&app.spec, &observed.strategy)
        .and_then(|pipeline| match &values_files {
            Some(Err(missing)) => Err(missing.clone()),
            _ => Ok(pipeline),
        })
        .and_then(|pipeline| match dry_run::remembered(app) {
            Some(Err(refused)) => Err(refused),
            _ => Ok(pipeline),
        })
        .and_then(|pipeline| match &observed.target {
            Some(Err(missing)) => Err(missing.clone()),
            _ => Ok(pipeline),
        });
    let target = observed
        .target
        .as_ref()
        .and_then(|target| target.as_ref().ok());

    // 3. Build.
    let blocked = observed.blocks.stopping();
    let mut unschedulable = verdict
        .as_ref()
        .ok()
        .and_then(|_| refused_reschedule(app, target, &observed.releases));
    let wanted = verdict.is_ok()
        && blocked.is_none()
        && unschedulable.is_none()
        && needs_release(app, target, &observed.releases);
    // A chart is rendered only for a Release about to be made; what it renders is the
    // Release's template.
    let rendered = match (&app.spec.template.chart, &values_files) {
        (Some(chart), Some(Ok(files))) if wanted => {
            match ctx.charts.render(app, chart, files).await? {
                Ok(manifests) => {
                    let mut app = app.clone();
                    app.spec.template.manifests = manifests.to_vec();
                    Some(app)
                }
                Err(invalid) => {
                    verdict = Err(invalid);
                    None
                }
            }
        }
        _ => None,
    };
    let app = rendered.as_ref().unwrap_or(app);
    if wanted && verdict.is_ok() {
        let running = still_running(&observed.releases).map(|release| {
            (
                release.metadata.name.as_deref().unwrap_or_default(),
                &release.spec.template,
            )
        });
        if let Some(message) = workload::refuses_to_follow(&app.spec.template, running) {
            verdict = Err(Invalid {
                reason: REASON_WORKLOAD_CHANGED,
                message,
            });
        }
    }
    let mut created = match &verdict {
        Ok(pipeline) if wanted => match schedule(app, &observed.clusters) {
            Ok(clusters) => Some(desired_release(
                app,
                target,
                pipeline,
                &observed.releases,
                clusters,
            )?),
            Err(why) => {
                unschedulable = Some(why);
                None
            }
        },
        _ => None,
    };
    // Only a Release about to be made asks the API server, once per generation, and only of a
    // template no Release has yet (a Release's template was accepted when it was installed).
    // A Service target has no template to try: its Service is the API server's already.
    let mut accepted = app.spec.target.is_some()
        || matches!(dry_run::remembered(app), Some(Ok(())))
        || observed
            .releases
            .iter()
            .any(|release| release.spec.template.is_made_from(&app.spec.template));
    if let Some(release) = created.as_ref().filter(|_| !accepted) {
        let earlier: Vec<_> = observed.releases.iter().map(|r| &r.spec.template).collect();
        let candidates = dry_run::candidates(app, release, &earlier)?;
        match dry_run::check(&ctx.client, &namespace, &candidates).await? {
            Ok(()) => accepted = true,
            Err(refused) => {
                verdict = Err(refused);
                created = None;
            }
        }
    }
    let current = app.status.clone().unwrap_or_default();
    let mut pre_rollout = None;
    let mut recheck_after = None;
    let pre_rollout_hooks = verdict
        .as_ref()
        .ok()
        .and_then(|pipeline| pipeline.webhooks.as_ref())
        .map(|webhooks| webhooks.pre_rollout.as_slice())
        .unwrap_or_default();
    if let Some(candidate) = created.as_ref().filter(|_| !pre_rollout_hooks.is_empty()) {
        let held = current.pre_rollout.as_ref();
        if let Err((hold, after)) =
            webhooks::pre_rollout(ctx, candidate, pre_rollout_hooks, held, crate::now())
        {
            created = None;
            pre_rollout = hold;
            recheck_after = Some(after);
        }
    }
    // A RolloutBlock holds a strategy update as it holds a new Release.
    let strategy_update = match &verdict {
        Ok(pipeline) if created.is_none() && blocked.is_none() => {
            strategy_update::desired(pipeline, &observed.releases)
        }
        _ => None,
    };
    let mut releases = observed.releases;
    if let Some(release) = &created {
        releases.push(release.clone());
    }
    let prune = match &verdict {
        Ok(_) => releases_to_prune(&releases, app.spec.revision_history_limit),
        Err(_) => Vec::new(),
    };
    releases.retain(|r| !prune.contains(&r.name_any()));
    let mut status = desired_status(
        app,
        &current,
        observed.strategy.label(),
        verdict.as_ref().err(),
        &Holds {
            blocked: blocked.as_deref(),
            unschedulable: unschedulable.as_deref(),
            pre_rollout: pre_rollout.as_ref(),
        },
        &releases,
        Time(crate::now()),
    );
    if accepted && verdict.is_ok() {
        dry_run::mark_accepted(&mut status);
    }

    // 4. Apply.
    let app_ref = ObjectRef::from_obj(app);
    let release_key = |name: &str| ObjectKey::new::<Release>(MANAGEMENT_CLUSTER, &namespace, name);
    if let Some(release) = &created {
        let release_name = release.name_any();
        let params = PatchParams::apply(FIELD_MANAGER);
        let written = ctx
            .expectations
            .track(
                &app_ref,
                release_key(&release_name),
                releases_api.patch(&release_name, &params, &Patch::Apply(release)),
                ResourceExt::resource_version,
            )
            .await
            .map_err(|source| ReleasesError::Create {
                release: format!("{namespace}/{release_name}"),
                source,
            })?;
        info!(application = %name, release = %release_name, "created a Release");
        // The Release stage needs its uid (it owns its objects).
        if let Some(last) = releases.last_mut() {
            *last = written;
        }
        publish(
            ctx,
            &app.object_ref(&()),
            EventType::Normal,
            REASON_RELEASE_CREATED,
            format!(
                "created Release {release_name} (revision {})",
                release.spec.revision
            ),
            "CreateRelease",
        )
        .await;
    }
    if let Some(update) = &strategy_update {
        let release_name = update.release.name_any();
        let written = ctx
            .expectations
            .track(
                &app_ref,
                release_key(&release_name),
                releases_api.patch(
                    &release_name,
                    &PatchParams::default(),
                    &Patch::Merge(&update.patch),
                ),
                ResourceExt::resource_version,
            )
            .await
            .map_err(|source| ReleasesError::UpdateStrategy {
                release: format!("{namespace}/{release_name}"),
                source,
            })?;
        info!(application = %name, release = %release_name, "{}", update.message);
        if let Some(release) = releases.iter_mut().find(|r| r.name_any() == release_name) {
            *release = written;
        }
        publish(
            ctx,
            &update.release.object_ref(&()),
            EventType::Normal,
            REASON_STRATEGY_UPDATED,
            update.message.clone(),
            "UpdateStrategy",
        )
        .await;
    }
    for old in &prune {
        let deleted = ctx
            .expectations
            .track(
                &app_ref,
                release_key(old),
                releases_api.delete(old, &DeleteParams::default()),
                |_| None,
            )
            .await;
        match deleted {
            Ok(_) => info!(application = %name, release = %old, "pruned a Release"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(ReleasesError::Prune {
                    release: format!("{namespace}/{old}"),
                    source: error,
                }
                .into());
            }
        }
    }

    let rolling_out = releases
        .last()
        .filter(|newest| phase(newest).is_none_or(|phase| phase.is_rolling_out()));
    if let Some(newest) = rolling_out {
        observed
            .blocks
            .record_overrides(&ctx.client, app, &newest.name_any())
            .await?;
    }

    // 5. Status.
    if let Some(hold) = pre_rollout.as_ref().filter(|hold| {
        current
            .pre_rollout
            .as_ref()
            .is_none_or(|before| before.message != hold.message)
    }) {
        warn!(application = %name, "pre-rollout: {}", hold.message);
        publish(
            ctx,
            &app.object_ref(&()),
            EventType::Warning,
            REASON_PRE_ROLLOUT_HELD,
            format!("revision {} held: {}", hold.revision, hold.message),
            "PreRollout",
        )
        .await;
    }
    if let Some(why) = unschedulable.as_ref().filter(|why| {
        conditions::find(&current.conditions, conditions::application::SCHEDULED)
            .is_none_or(|before| &before.message != *why)
    }) {
        warn!(application = %name, "{why}");
        publish(
            ctx,
            &app.object_ref(&()),
            EventType::Warning,
            REASON_UNSCHEDULABLE,
            why.clone(),
            "Schedule",
        )
        .await;
    }
    if let Err(invalid) = &verdict {
        let valid_before = conditions::find(&current.conditions, conditions::application::VALID);
        let same = valid_before
            .is_some_and(|c| c.reason == invalid.reason && c.message == invalid.message);
        if !same {
            warn!(application = %name, reason = invalid.reason, "{}", invalid.message);
            publish(
                ctx,
                &app.object_ref(&()),
                EventType::Warning,
                invalid.reason,
                invalid.message.clone(),
                "Validate",
            )
            .await;
        }
    }
    if app.status.as_ref() != Some(&status) {
        apply_status::<Application>(ctx, &app_ref, &namespace, &name, &status).await?;
    }
    Ok(Outcome {
        releases,
        sides: observed.sides,
        blocked,
        recheck_after,
    })
}

/// Records an Event about `object`.
pub(crate) async fn publish(
    ctx: &Context,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    action: &str,
) {
    // An Event's note is at most 1 kB.
    let note = truncate(note, 1000);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // An Event is a courtesy: failing to record one does not fail the reconcile.
    // A Recorder per Event: a Recorder folds Events of the same reason about the same object into
    // one series, and each Event here is its own transition (a step achieved is not the last one).
    let recorder = Recorder::new(ctx.client.clone(), Reporter::from(FIELD_MANAGER));
    if let Err(error) = recorder.publish(&event, object).await {
        warn!(object = ?object.name, %error, "could not publish an Event");
    }
}

pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Stage 1: the Application's Releases and the strategy it names, from the caches.
pub fn dereference(app: &Application, ctx: &Context, namespace: &str) -> Observed {
    let name = app.name_any();
    let mut releases: Vec<Release> = ctx
        .releases
        .state()
        .iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace) && r.labels().get(APP_LABEL) == Some(&name)
        })
        .map(|r| Release::clone(r))
        .collect();
    releases.sort_by_key(|r| r.spec.revision);
    // Side versions' Releases are outside the mainline: never its newest, incumbent or history.
    let (sides, releases) = releases.into_iter().partition(|r| r.spec.side.is_some());

    let strategy = &app.spec.strategy;
    let strategy = if let Some(inline) = strategy.inline() {
        StrategySource::Inline(inline)
    } else if let Some(strategy_name) = &strategy.name {
        let found = ctx
            .strategies
            .get(&ObjectRef::new(strategy_name).within(namespace));
        StrategySource::Strategy {
            name: strategy_name.clone(),
            found: found.map(|s| s.pipeline().clone()),
        }
    } else if let Some(strategy_name) = &strategy.cluster_strategy_name {
        let found = ctx.cluster_strategies.get(&ObjectRef::new(strategy_name));
        StrategySource::ClusterStrategy {
            name: strategy_name.clone(),
            found: found.map(|s| s.pipeline().clone()),
        }
    } else {
        StrategySource::None
    };
    Observed {
        strategy,
        target: app
            .spec
            .target_service()
            .map(|name| service_target::snapshot_of(&ctx.target_services, namespace, name)),
        releases,
        sides,
        blocks: Blocks::of(app, &ctx.blocks, &ctx.global_namespace),
        clusters: ctx.clusters.state(),
    }
}

/// Stage 2: the pipeline a new Release would snapshot, or why there is none. Every error is
/// listed as `path: message`; the paths of a named strategy's errors start with its kind and name.
pub fn validate(spec: &ApplicationSpec, strategy: &StrategySource) -> Result<Pipeline, Invalid> {
    let mut errors = Vec::new();
    collect(&mut errors, "", validate::application(spec));
    let (pipeline, prefix) = match strategy {
        StrategySource::Inline(pipeline) => (pipeline.clone(), "spec.strategy.".to_owned()),
        StrategySource::Strategy {
            name,
            found: Some(pipeline),
        } => (pipeline.clone(), format!("Strategy/{name} spec.")),
        StrategySource::ClusterStrategy {
            name,
            found: Some(pipeline),
        } => (pipeline.clone(), format!("ClusterStrategy/{name} spec.")),
        StrategySource::Strategy { name, found: None } => {
            return Err(Invalid {
                reason: REASON_STRATEGY_NOT_FOUND,
                message: format!(
                    "spec.strategy.name: no Strategy named {name:?} in the Application's namespace"
                ),
            });
        }
        StrategySource::ClusterStrategy { name, found: None } => {
            return Err(Invalid {
                reason: REASON_STRATEGY_NOT_FOUND,
                message: format!(
                    "spec.strategy.clusterStrategyName: no ClusterStrategy named {name:?}"
                ),
            });
        }
        // `validate::application` has reported it.
        StrategySource::None => (Pipeline::default(), String::new()),
    };
    if !matches!(strategy, StrategySource::Inline(_)) && !pipeline.steps.is_empty() {
        // An inline strategy is part of the spec, which `validate::application` checked.
        collect(
            &mut errors,
            &prefix,
            validate::pipeline(&pipeline, "steps", AppTraffic::of(spec)),
        );
        collect(
            &mut errors,
            &prefix,
            validate::workload_steps(&pipeline.steps, "steps", spec.template.workload_kind()),
        );
    }
    if spec.target.is_some() {
        errors.extend(service_target::capacity_steps(&pipeline, &prefix));
    }
    // `validate` reports a pipeline without steps.
    if !pipeline.steps.is_empty() {
        // A Service target's versions have their capacity given (`Target::pipeline`).
        let checked = match spec.target {
            Some(_) => Target::pipeline(&pipeline),
            None => pipeline.clone(),
        };
        collect(
            &mut errors,
            &prefix,
            check_pipeline(&checked, spec.has_traffic(), Clusters::Any),
        );
    }
    if errors.is_empty() {
        Ok(pipeline)
    } else {
        Err(Invalid {
            reason: REASON_INVALID_SPEC,
            message: errors.join("; "),
        })
    }
}

fn collect(errors: &mut Vec<String>, prefix: &str, result: Result<(), ValidationErrors>) {
    if let Err(found) = result {
        errors.extend(
            found
                .0
                .into_iter()
                .map(|e| format!("{prefix}{}: {}", e.path, e.message)),
        );
    }
}

/// Where a new Release runs: the clusters the Application's schedule chooses among `clusters`
/// (stable from one Release to the next: see `prism_engine::schedule`), or, in a fleet without
/// Cluster objects, the management cluster alone under the name `local`.
pub fn schedule(
    app: &Application,
    clusters: &[Arc<Cluster>],
) -> Result<Vec<ScheduledCluster>, String> {
    if clusters.is_empty() {
        return Ok(vec![ScheduledCluster {
            name: MANAGEMENT_CLUSTER.into(),
            region: MANAGEMENT_CLUSTER.into(),
        }]);
    }
    let candidates: Vec<Candidate> = clusters
        .iter()
        .filter(|cluster| cluster.name_any() != MANAGEMENT_CLUSTER)
        .map(|cluster| Candidate::new(&cluster.name_any(), &cluster.spec))
        .collect();
    let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    prism_engine::schedule(&key, &app.spec.schedule, &candidates)
        .map_err(|error| format!("spec.schedule cannot be met: {error}"))
}

/// The value of the reschedule annotation on an object, if any.
fn reschedule_request<K: Resource>(object: &K) -> Option<&String> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(RESCHEDULE_ANNOTATION)
}

/// Whether `release` is of the Application's template: a version is its template, and a
/// strategy change alone is no new version (it applies to the Release in flight).
fn is_version_of(release: &Release, app: &Application, target: Option<&Manifest>) -> bool {
    release.spec.template.is_made_from(&app.spec.template) && release.spec.target.as_ref() == target
}

/// Whether `release` is of this template, made for the Application's latest reschedule request.
fn is_snapshot_of(release: &Release, app: &Application, target: Option<&Manifest>) -> bool {
    is_version_of(release, app, target) && reschedule_request(release) == reschedule_request(app)
}

/// Whether the Application needs a new Release: its newest one (by revision) is not of its
/// template (or not made for its latest reschedule request), or it has none. `releases` are in
/// any order.
pub fn needs_release(app: &Application, target: Option<&Manifest>, releases: &[Release]) -> bool {
    !newest(releases).is_some_and(|r| is_snapshot_of(r, app, target))
}

/// Why a reschedule request is not carried out, if it is not: the newest Release, whose template
/// the Application still has, was rolled back, and a Release of it on a new schedule would roll
/// that version out again.
pub fn refused_reschedule(
    app: &Application,
    target: Option<&Manifest>,
    releases: &[Release],
) -> Option<String> {
    let newest = newest(releases)?;
    let request = reschedule_request(app)?;
    (is_version_of(newest, app, target)
        && newest.is_rolled_back() && reschedule_request(newest) != Some(request)).then(
        || {
            format!(
                "the reschedule request {request} is not carried out: {} was rolled back, and a Release of its template would roll it out again; change the template, or run `prism rollback {}`, which rolls the running version out on a new schedule",
                newest.name_any(),
                app.name_any()
            )
        },
    )
}

/// Stage 3: the next Release of the Application, on `clusters`. `releases` are the
/// Application's, in any order.
pub fn desired_release(
    app: &Application,
    target: Option<&Manifest>,
    pipeline: &Pipeline,
    releases: &[Release],
    clusters: Vec<ScheduledCluster>,
) -> Result<Release, Error> {
    let newest = newest(releases);
    let app_name = app.name_any();
    let owner = app
        .controller_owner_ref(&())
        .ok_or_else(|| ReleasesError::MissingField {
            object: app_name.clone(),
            field: "metadata.uid",
        })?;
    let revision = newest.map_or(1, |r| r.spec.revision + 1);
    let name = release_name(&app_name, revision);
    let labels = BTreeMap::from([
        (APP_LABEL.to_owned(), app_name.clone()),
        (RELEASE_LABEL.to_owned(), name.clone()),
    ]);
    let annotations = reschedule_request(app)
        .map(|request| BTreeMap::from([(RESCHEDULE_ANNOTATION.to_owned(), request.clone())]));
    let mut release = Release::new(
        &name,
        ReleaseSpec {
            application: app_name,
            revision,
            template: app.spec.template.clone(),
            target: target.cloned(),
            strategy: pipeline.clone(),
            clusters,
            target_step: None,
            aborted: false,
            side: None,
        },
    );
    release.metadata = ObjectMeta {
        name: Some(name),
        namespace: app.namespace(),
        labels: Some(labels),
        annotations,
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    Ok(release)
}

/// `<app>-<revision>`.
pub fn release_name(app: &str, revision: u32) -> String {
    format!("{app}-{revision}")
}

/// The newest Release and the newest complete one (the incumbent), which are never pruned.
fn live(releases: &[Release]) -> (Option<&Release>, Option<&Release>) {
    let newest = newest(releases);
    let incumbent = releases
        .iter()
        .filter(|r| phase(r) == Some(ReleasePhase::Complete))
        .max_by_key(|r| r.spec.revision);
    (newest, incumbent)
}

/// The Releases whose versions still run somewhere, or are on their way: rolling out or back,
/// complete and not retired, or draining. An aborted or superseded version has gone back to
/// zero.
fn still_running(releases: &[Release]) -> impl Iterator<Item = &Release> {
    releases.iter().filter(|release| {
        let state = release.status.as_ref().and_then(|status| status.state);
        match phase(release) {
            None => true,
            Some(ReleasePhase::Aborted | ReleasePhase::Superseded) => false,
            Some(ReleasePhase::Complete) => state != Some(VersionState::Retired),
            Some(_) => true,
        }
    })
}

fn phase(release: &Release) -> Option<ReleasePhase> {
    release.status.as_ref()?.phase
}

/// Stage 3: the names of the Releases to delete: of those that are neither the newest, nor the
/// incumbent, nor still running somewhere (a retained, draining or drained version: pruning it
/// would delete its objects at once, past its drain), all but the `limit` newest.
pub fn releases_to_prune(releases: &[Release], limit: u32) -> Vec<String> {
    let (newest, incumbent) = live(releases);
    let is_live = |r: &Release| {
        [newest, incumbent]
            .into_iter()
            .flatten()
            .any(|l| l.spec.revision == r.spec.revision)
            || r.status
                .as_ref()
                .and_then(|status| status.state)
                .is_some_and(|state| {
                    matches!(
                        state,
                        VersionState::Live | VersionState::Draining | VersionState::Drained
                    )
                })
    };
    let mut history: Vec<&Release> = releases.iter().filter(|r| !is_live(r)).collect();
    history.sort_by_key(|r| std::cmp::Reverse(r.spec.revision));
    history
        .into_iter()
        .skip(limit as usize)
        .map(|r| r.name_any())
        .collect()
}

/// What keeps a valid Application from its next Release.
#[derive(Clone, Copy, Debug, Default)]
pub struct Holds<'a> {
    /// The RolloutBlock that stops it, as people read it.
    pub blocked: Option<&'a str>,
    /// Why no set of clusters meets its schedule.
    pub unschedulable: Option<&'a str>,
    /// The pre-rollout webhook that holds its next Release back.
    pub pre_rollout: Option<&'a PreRolloutHold>,
}

/// Stage 3: the Application's status, given its `current` one, the outcome of validation, what
/// holds it, and its Releases (after this reconcile's writes). Conditions keep their
/// lastTransitionTime unless their status flips; `now` is the time of a flip.
pub fn desired_status(
    app: &Application,
    current: &ApplicationStatus,
    strategy: Option<String>,
    invalid: Option<&Invalid>,
    holds: &Holds,
    releases: &[Release],
    now: Time,
) -> ApplicationStatus {
    let generation = app.metadata.generation;
    let (status, reason, message) = match invalid {
        Some(invalid) => ("False", invalid.reason, invalid.message.clone()),
        None => (
            "True",
            REASON_VALID,
            "the spec and its strategy are valid".to_owned(),
        ),
    };
    let (newest, incumbent) = live(releases);
    let condition = |type_: &str, status: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let mut desired = vec![Condition {
        status: status.into(),
        ..condition(conditions::application::VALID, true, reason, message)
    }];
    desired.push(match holds.blocked {
        Some(message) => condition(
            conditions::application::BLOCKED,
            true,
            REASON_ROLLOUT_BLOCKED,
            message.to_owned(),
        ),
        None => condition(
            conditions::application::BLOCKED,
            false,
            "NotBlocked",
            "no RolloutBlock stops this Application".into(),
        ),
    });
    let pre_rollout_held_before = conditions::find(
        &current.conditions,
        conditions::application::PRE_ROLLOUT_PASSED,
    )
    .is_some_and(|c| c.status == "False");
    match holds.pre_rollout {
        Some(hold) => desired.push(condition(
            conditions::application::PRE_ROLLOUT_PASSED,
            false,
            REASON_PRE_ROLLOUT_HELD,
            format!(
                "revision {} waits for a pre-rollout webhook, asked again every {}s: {}",
                hold.revision,
                REASK.as_secs(),
                hold.message
            ),
        )),
        None if pre_rollout_held_before => desired.push(condition(
            conditions::application::PRE_ROLLOUT_PASSED,
            true,
            "Accepted",
            "the pre-rollout webhooks accepted the newest Release".into(),
        )),
        None => {}
    }
    if let Some(why) = holds.unschedulable {
        desired.push(condition(
            conditions::application::SCHEDULED,
            false,
            REASON_UNSCHEDULABLE,
            why.to_owned(),
        ));
    } else if let Some(newest) = newest {
        let names: Vec<&str> = newest
            .spec
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        desired.push(condition(
            conditions::application::SCHEDULED,
            true,
            "Scheduled",
            format!("{} is scheduled on {}", newest.name_any(), names.join(", ")),
        ));
    }
    conditions::keep_transition_times(&mut desired, &current.conditions);
    // Conditions of other types are left as they are.
    let conditions: Vec<Condition> = desired
        .iter()
        .cloned()
        .chain(
            current
                .conditions
                .iter()
                .filter(|c| desired.iter().all(|d| d.type_ != c.type_))
                .cloned(),
        )
        .collect();
    ApplicationStatus {
        observed_generation: generation,
        conditions,
        strategy,
        workload: newest.and_then(|r| r.spec.template.workload_name()),
        contender: newest
            .filter(|r| phase(r) != Some(ReleasePhase::Complete))
            .map(ResourceExt::name_any),
        incumbent: incumbent.map(ResourceExt::name_any),
        phase: match invalid {
            Some(_) => Some(ApplicationPhase::Invalid),
            None => newest.map(|r| application_phase(phase(r).unwrap_or_default())),
        },
        current_revision: newest.map(|r| r.spec.revision),
        pre_rollout: holds.pre_rollout.cloned(),
    }
}

/// The Application's phase while its newest Release is in `phase`.
fn application_phase(phase: ReleasePhase) -> ApplicationPhase {
    match phase {
        ReleasePhase::Progressing | ReleasePhase::Paused | ReleasePhase::Superseded => {
            ApplicationPhase::Progressing
        }
        ReleasePhase::WaitingForCommand => ApplicationPhase::WaitingForCommand,
        ReleasePhase::RollingBack => ApplicationPhase::RollingBack,
        ReleasePhase::Aborted => ApplicationPhase::Aborted,
        ReleasePhase::Complete => ApplicationPhase::Complete,
    }
}

/// The Applications among `apps` that name the Strategy `name` of `namespace`: those to
/// reconcile when it changes.
pub fn naming_strategy<'a>(
    apps: impl IntoIterator<Item = &'a Application>,
    namespace: &str,
    name: &str,
) -> Vec<&'a Application> {
    apps.into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| a.spec.strategy.name.as_deref() == Some(name))
        .collect()
}

/// The Applications among `apps` that target the Service `name` of `namespace`.
pub fn targeting<'a>(
    apps: impl IntoIterator<Item = &'a Application>,
    namespace: &str,
    name: &str,
) -> Vec<&'a Application> {
    apps.into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| a.spec.target_service() == Some(name))
        .collect()
}

/// The Applications among `apps` that name the ClusterStrategy `name`.
pub fn naming_cluster_strategy<'a>(
    apps: impl IntoIterator<Item = &'a Application>,
    name: &str,
) -> Vec<&'a Application> {
    apps.into_iter()
        .filter(|a| a.spec.strategy.cluster_strategy_name.as_deref() == Some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_api::application::{StrategyRef, Template};
    use prism_api::release::{Abort, AbortCause, ReleaseStatus};
    use prism_api::strategy::{CapacityStep, Share, Step, TrafficStep};
    use prism_testkit::fixtures::web_template;

    fn template(image: &str) -> Template {
        serde_json::from_value(web_template(image, 4)).unwrap()
    }

    fn full_step() -> Step {
        Step {
            name: "full".into(),
            capacity: Some(CapacityStep {
                contender: Some(Share::Percent(100)),
                incumbent: Some(Share::Percent(0)),
                max_surge: None,
            }),
            traffic: Some(TrafficStep {
                contender: Some(100),
                ..TrafficStep::default()
            }),
            ..Step::default()
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline {
            steps: vec![full_step()],
            ..Pipeline::default()
        }
    }

    fn app(image: &str) -> Application {
        let mut app = Application::new(
            "web",
            ApplicationSpec {
                template: template(image),
                target: None,
                strategy: StrategyRef {
                    steps: Some(pipeline().steps),
                    ..StrategyRef::default()
                },
                traffic: Default::default(),
                schedule: Default::default(),
                versions: Default::default(),
                revision_history_limit: 10,
            },
        );
        app.metadata.namespace = Some("ns".into());
        app.metadata.uid = Some("uid-1".into());
        app.metadata.generation = Some(3);
        app
    }

    fn release(app: &Application, revision: u32, phase: Option<ReleasePhase>) -> Release {
        let mut r = Release::new(
            &release_name(&app.name_any(), revision),
            ReleaseSpec {
                application: app.name_any(),
                revision,
                template: app.spec.template.clone(),
                target: None,
                strategy: pipeline(),
                clusters: schedule(app, &[]).unwrap(),
                target_step: None,
                aborted: false,
                side: None,
            },
        );
        r.status = phase.map(|phase| ReleaseStatus {
            phase: Some(phase),
            ..ReleaseStatus::default()
        });
        r
    }

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_first_release_is_revision_1_owned_and_labelled() {
        let app = app("web:1");
        let r = desired_release(&app, None, &pipeline(), &[], local()).unwrap();
        assert_eq!(r.name_any(), "web-1");
        assert_eq!(r.spec.revision, 1);
        assert_eq!(r.namespace().as_deref(), Some("ns"));
        assert_eq!(r.labels()[APP_LABEL], "web");
        assert_eq!(r.labels()[RELEASE_LABEL], "web-1");
        let owner = &r.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Application", "uid-1", Some(true))
        );
        assert_eq!(r.spec.template, app.spec.template);
        assert_eq!(r.spec.strategy, pipeline());
        assert_eq!(r.spec.clusters, local());
        assert_eq!(r.annotations().get(RESCHEDULE_ANNOTATION), None);
    }

    fn local() -> Vec<ScheduledCluster> {
        vec![ScheduledCluster {
            name: MANAGEMENT_CLUSTER.into(),
            region: MANAGEMENT_CLUSTER.into(),
        }]
    }

    fn cluster(name: &str, region: &str) -> Arc<Cluster> {
        let spec: prism_api::ClusterSpec = serde_json::from_value(serde_json::json!({
            "region": region,
            "credentials": {"secretRef": {"name": name, "namespace": "prism-system"}},
        }))
        .unwrap();
        Arc::new(Cluster::new(name, spec))
    }

    #[test]
    fn without_clusters_the_management_cluster_runs_everything() {
        assert_eq!(schedule(&app("web:1"), &[]).unwrap(), local());
    }

    #[test]
    fn the_schedule_picks_from_the_clusters_and_says_what_is_missing() {
        let mut app = app("web:1");
        app.spec.schedule.clusters = Some(2);
        let fleet = [cluster("a", "eu"), cluster("b", "us"), cluster("c", "eu")];
        let chosen = schedule(&app, &fleet).unwrap();
        assert_eq!(chosen.len(), 2);
        assert_eq!(schedule(&app, &fleet).unwrap(), chosen, "stable");

        app.spec.schedule.clusters = Some(4);
        let why = schedule(&app, &fleet).unwrap_err();
        assert!(why.starts_with("spec.schedule cannot be met: "), "{why}");
    }

    #[test]
    fn a_reschedule_request_makes_a_release_of_the_same_template() {
        let mut app = app("web:1");
        let releases = [release(&app, 1, Some(ReleasePhase::Complete))];
        assert!(!needs_release(&app, None, &releases));
        app.annotations_mut()
            .insert(RESCHEDULE_ANNOTATION.into(), "drain-a-1".into());
        assert!(needs_release(&app, None, &releases));
        let r = desired_release(&app, None, &pipeline(), &releases, local()).unwrap();
        assert_eq!(r.spec.revision, 2);
        assert_eq!(r.spec.template, app.spec.template);
        assert_eq!(
            r.annotations()
                .get(RESCHEDULE_ANNOTATION)
                .map(String::as_str),
            Some("drain-a-1")
        );
        assert!(!needs_release(&app, None, &[r]), "one Release per request");
    }

    #[test]
    fn a_reschedule_request_does_not_roll_a_rolled_back_version_out_again() {
        let mut web = app("web:2");
        let mut rolled_back = release(&web, 2, Some(ReleasePhase::Aborted));
        rolled_back.status.as_mut().unwrap().abort = Some(Abort {
            cause: AbortCause::AnalysisFailed,
            message: "error-rate 0.2 > 0.05".into(),
        });
        let releases = [
            release(&app("web:1"), 1, Some(ReleasePhase::Complete)),
            rolled_back,
        ];
        assert_eq!(refused_reschedule(&web, None, &releases), None);
        web.annotations_mut()
            .insert(RESCHEDULE_ANNOTATION.into(), "drain-a-1".into());
        let why = refused_reschedule(&web, None, &releases).unwrap();
        assert!(
            why.contains("drain-a-1") && why.contains("web-2 was rolled back"),
            "{why}"
        );
        // A new template is a new version: rolled out as usual.
        web.spec = app("web:3").spec;
        assert_eq!(refused_reschedule(&web, None, &releases), None);
        assert!(needs_release(&web, None, &releases));
    }

    #[test]
    fn an_unchanged_snapshot_makes_no_release() {
        let app = app("web:1");
        let releases = [release(&app, 1, None)];
        assert!(!needs_release(&app, None, &releases));
    }

    #[test]
    fn a_changed_template_makes_the_next_revision_and_a_changed_strategy_does_not() {
        let old = app("web:1");
        let releases = [release(&old, 2, None), release(&old, 1, None)];
        let new = app("web:2");
        assert!(needs_release(&new, None, &releases));
        let r = desired_release(&new, None, &pipeline(), &releases, local()).unwrap();
        assert_eq!((r.name_any(), r.spec.revision), ("web-3".into(), 3));

        // A new step, a pause or a weight: the Release in flight takes it, no new Release.
        let mut other = old.clone();
        other.spec.strategy.steps.as_mut().unwrap().insert(
            0,
            Step {
                name: "canary".into(),
                gate: Some(prism_api::strategy::Gate {
                    pause: Some(prism_api::strategy::Duration::from_secs(30)),
                    ..Default::default()
                }),
                ..Step::default()
            },
        );
        assert!(!needs_release(&other, None, &releases));
        assert_eq!(refused_reschedule(&other, None, &releases), None);
    }

    #[test]
    fn only_the_newest_release_counts_as_the_snapshot() {
        let old = app("web:1");
        let new = app("web:2");
        // Revision 2 was web:2, revision 3 went back to web:1: web:2 again is a new release.
        let releases = [release(&new, 2, None), release(&old, 3, None)];
        assert!(needs_release(&new, None, &releases));
        let r = desired_release(&new, None, &pipeline(), &releases, local()).unwrap();
        assert_eq!(r.spec.revision, 4);
    }

    #[test]
    fn an_application_without_uid_cannot_own_a_release() {
        let mut app = app("web:1");
        app.metadata.uid = None;
        assert!(matches!(
            desired_release(&app, None, &pipeline(), &[], local()),
            Err(Error::Releases(ReleasesError::MissingField { .. }))
        ));
    }

    #[test]
    fn pruning_keeps_the_newest_the_incumbent_and_the_history_limit() {
        let app = app("web:1");
        let releases: Vec<Release> = (1..=5)
            .map(|rev| {
                let phase = (rev == 2).then_some(ReleasePhase::Complete);
                release(&app, rev, phase)
            })
            .collect();
        // Newest 5 and incumbent 2 stay; of 4, 3, 1 the limit keeps the newest.
        assert_eq!(releases_to_prune(&releases, 1), vec!["web-3", "web-1"]);
        assert_eq!(
            releases_to_prune(&releases, 0),
            vec!["web-4", "web-3", "web-1"]
        );
        assert_eq!(releases_to_prune(&releases, 3), Vec::<String>::new());
        assert_eq!(releases_to_prune(&[], 0), Vec::<String>::new());
    }

    #[test]
    fn pruning_keeps_every_version_that_still_runs_whatever_the_history_limit() {
        let app = app("web:1");
        let states = [
            VersionState::Retired,
            VersionState::Drained,
            VersionState::Draining,
            VersionState::Live,
            VersionState::Live,
        ];
        let releases: Vec<Release> = (1..=5)
            .zip(states)
            .map(|(rev, state)| {
                let mut release = release(&app, rev, Some(ReleasePhase::Complete));
                release.status.as_mut().unwrap().state = Some(state);
                release
            })
            .collect();
        assert_eq!(releases_to_prune(&releases, 0), vec!["web-1"]);
    }

    #[test]
    fn still_running_leaves_out_rolled_back_superseded_and_retired_versions() {
        let app = app("web:1");
        let mut retired = release(&app, 1, Some(ReleasePhase::Complete));
        retired.status.as_mut().unwrap().state = Some(VersionState::Retired);
        let releases = [
            retired,
            release(&app, 2, Some(ReleasePhase::Aborted)),
            release(&app, 3, Some(ReleasePhase::Superseded)),
            release(&app, 4, Some(ReleasePhase::Complete)),
            release(&app, 5, Some(ReleasePhase::RollingBack)),
            release(&app, 6, None),
        ];
        let running: Vec<String> = still_running(&releases).map(|r| r.name_any()).collect();
        assert_eq!(running, ["web-4", "web-5", "web-6"]);
    }

    #[test]
    fn the_status_names_the_newest_release_and_keeps_transition_times() {
        let app = app("web:1");
        let releases = [
            release(&app, 1, Some(ReleasePhase::Complete)),
            release(&app, 2, None),
        ];
        let first = desired_status(
            &app,
            &ApplicationStatus::default(),
            Some("inline".into()),
            None,
            &Holds::default(),
            &releases,
            time(100),
        );
        assert_eq!(first.observed_generation, Some(3));
        assert_eq!(first.current_revision, Some(2));
        assert_eq!(first.contender.as_deref(), Some("web-2"));
        assert_eq!(first.incumbent.as_deref(), Some("web-1"));
        assert_eq!(first.phase, Some(ApplicationPhase::Progressing));
        assert_eq!(first.workload.as_deref(), Some("Deployment/web"));

        let done = [
            release(&app, 1, Some(ReleasePhase::Complete)),
            release(&app, 2, Some(ReleasePhase::Complete)),
        ];
        let complete = desired_status(
            &app,
            &first,
            None,
            None,
            &Holds::default(),
            &done,
            time(100),
        );
        assert_eq!(complete.contender, None, "no rollout under way");
        assert_eq!(complete.incumbent.as_deref(), Some("web-2"));
        assert_eq!(complete.phase, Some(ApplicationPhase::Complete));
        let valid = &first.conditions[0];
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("True", "Valid")
        );
        assert_eq!(valid.last_transition_time, time(100));

        // Nothing changed: the same status, so nothing is written.
        let again = desired_status(
            &app,
            &first,
            Some("inline".into()),
            None,
            &Holds::default(),
            &releases,
            time(200),
        );
        assert_eq!(again, first);

        // The status flips: a new transition time.
        let invalid = Invalid {
            reason: REASON_STRATEGY_NOT_FOUND,
            message: "spec.strategy.name: gone".into(),
        };
        let flipped = desired_status(
            &app,
            &first,
            None,
            Some(&invalid),
            &Holds::default(),
            &releases,
            time(300),
        );
        let valid = &flipped.conditions[0];
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", REASON_STRATEGY_NOT_FOUND)
        );
        assert_eq!(valid.last_transition_time, time(300));
        assert_eq!(flipped.phase, Some(ApplicationPhase::Invalid));
    }

    #[test]
    fn a_missing_strategy_is_strategy_not_found() {
        let app = app("web:1");
        let source = StrategySource::Strategy {
            name: "canary".into(),
            found: None,
        };
        let invalid = validate(&app.spec, &source).unwrap_err();
        assert_eq!(invalid.reason, REASON_STRATEGY_NOT_FOUND);
        assert!(invalid.message.starts_with("spec.strategy.name: "));
    }

    #[test]
    fn a_pipeline_that_sends_traffic_to_no_pods_is_invalid_with_its_path() {
        let app = app("web:1");
        let dark = Pipeline {
            steps: vec![
                Step {
                    name: "dark".into(),
                    traffic: Some(TrafficStep {
                        contender: Some(10),
                        ..TrafficStep::default()
                    }),
                    ..Step::default()
                },
                full_step(),
            ],
            ..Pipeline::default()
        };
        let source = StrategySource::ClusterStrategy {
            name: "dark".into(),
            found: Some(dark),
        };
        let invalid = validate(&app.spec, &source).unwrap_err();
        assert_eq!(invalid.reason, REASON_INVALID_SPEC);
        assert!(
            invalid
                .message
                .starts_with("ClusterStrategy/dark spec.steps[0]"),
            "{}",
            invalid.message
        );
    }

    #[test]
    fn a_valid_application_resolves_its_pipeline() {
        let app = app("web:1");
        let source = StrategySource::Inline(pipeline());
        assert_eq!(validate(&app.spec, &source), Ok(pipeline()));
    }

    #[test]
    fn strategy_watches_map_to_the_applications_naming_them() {
        let mut named = app("web:1");
        named.spec.strategy = StrategyRef {
            name: Some("canary".into()),
            ..StrategyRef::default()
        };
        let inline = app("web:1");
        let apps = [named.clone(), inline];
        assert_eq!(naming_strategy(&apps, "ns", "canary").len(), 1);
        assert_eq!(naming_strategy(&apps, "other", "canary").len(), 0);
        assert_eq!(naming_cluster_strategy(&apps, "canary").len(), 0);
    }
}
