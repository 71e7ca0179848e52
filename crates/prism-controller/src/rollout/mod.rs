//! The Release stage of a reconcile: an Application's Releases rolled out across their clusters.
//! One decision covers all of an application's live Releases, because their roles (contender,
//! incumbent, retained) depend on each other.
//!
//! The pipeline: dereference (the Releases, and what each scheduled cluster runs, from the
//! caches) → decide (`prism_engine::decide`, pure) → apply (each change through the workload or
//! traffic provider, server-side apply with one field manager; no change, no write) → status
//! (each Release's, written only when it differs) → Events (the engine's transitions). Before
//! deciding, the current steps' analyses and webhook gates are judged (`analysis.rs`,
//! `webhooks.rs`): their verdicts are the engine's input, their records part of the status.

mod apply;
mod events;
mod view;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use prism_api::application::{DEFAULT_DRAIN_PERIOD, DrainMetric};
use prism_api::labels::{PINNED_ANNOTATION, RETIRE_ANNOTATION};
use prism_api::release::ReleaseStatus;
use prism_api::{Application, Pipeline, Release};
use prism_engine::{
    AppPolicy, Change, ClusterInfo, ClusterObservation, ClusterPhase, Drain, Input, ReleaseInput,
    Side, decide, scheduled_clusters,
};
use tracing::info;

use crate::Context;
use crate::analysis::{self, Analysis};
use crate::calls;
use crate::error::{Error, ReleasesError};
use crate::fleet::{Connection, Member};
use crate::refusals::Refused;
use crate::service_target::{self, Copies};
use crate::status::{differ_only_in_counters, progress, release_status};
use crate::traffic::{self, Weights};
use crate::webhooks::{self, Gate};
use crate::workload;
use crate::write::{apply_status, execute};
use apply::{Writer, count_as_made, leaves};
use events::publish_events;
use view::ClusterView;

/// Rolls `releases` (the Application's, by revision) on; returns when to decide again at the
/// latest (a pause ending), if ever.
pub async fn reconcile(
    app: &Application,
    releases: &[Release],
    blocked: Option<&str>,
    ctx: &Arc<Context>,
) -> Result<Option<Duration>, Error> {
    let Some(newest) = releases.last() else {
        return Ok(None);
    };
    let namespace = app.namespace().unwrap_or_default();
    let app_name = app.name_any();
    let app_ref = ObjectRef::from_obj(app);
    let provider = traffic::provider(app.spec.traffic.provider);
    let target = app.spec.target_service();
    // Each Release's workload is its template's kind; what a cluster runs is observed by each
    // kind the live Releases have.
    let workload_kinds = workload::providers_of(releases.iter().map(|r| &r.spec.template));

    // Statuses keep whole seconds; the engine gets the time itself, and rounds up each moment it
    // records, so that no wait counted from one ends early.
    let precise_now = jiff::Timestamp::now();
    let now = crate::now();

    // 1. Dereference, and judge the current steps' analyses and webhook gates.
    let mut judged = Vec::with_capacity(releases.len());
    for release in releases {
        let incumbent = analysis::incumbent_of(release, releases);
        judged.push(Judged {
            analysis: analysis::analyse(release, incumbent, ctx, now),
            gate: webhooks::gate(release, ctx, now),
        });
    }
    let schedules: Vec<Vec<ClusterInfo>> = releases.iter().map(schedule).collect();
    // A side version goes by its SideVersion's name.
    let version_names: Vec<Option<String>> = releases
        .iter()
        .map(|release| match &release.spec.side {
            Some(side) => Some(side.side_version.clone()),
            None => app
                .spec
                .versions
                .version_name(&app_name, release.spec.revision),
        })
        .collect();
    let pipelines: Vec<_> = releases
        .iter()
        .map(|release| {
            match service_target::engine_pipeline(target.is_some(), &release.spec.strategy) {
                Cow::Borrowed(pipeline) => {
                    workload::engine_pipeline(&release.spec.template, pipeline)
                }
                given => given,
            }
        })
        .collect();
    let drain_metric = app.spec.versions.drain_metric.as_ref();
    let quiet_window = drain_metric.map(DrainMetric::window);
    let side_drain = Drain {
        period: app
            .spec
            .versions
            .drain_period()
            .unwrap_or(DEFAULT_DRAIN_PERIOD),
        delete_after: app.spec.versions.delete_after(),
        quiet_window,
    };
    let mut read_again = None;
    let inputs: Vec<ReleaseInput> = releases
        .iter()
        .zip(&schedules)
        .zip(&judged)
        .zip(&version_names)
        .zip(&pipelines)
        .map(
            |((((release, schedule), judged), version_name), pipeline)| {
                let mut input =
                    release_input(release, schedule, judged, version_name.as_deref(), pipeline)?;
                input.side = release.spec.side.as_ref().map(|side| Side {
                    routes: &side.routes,
                    drain: side_drain,
                });
                if let Some(metric) = drain_metric {
                    let (reading, again) = ctx.drain_readings.reading(
                        &ctx.prometheus,
                        ctx.prometheus_url.as_deref(),
                        metric,
                        release,
                        now,
                    );
                    input.drain_reading = reading;
                    read_again = [read_again, again].into_iter().flatten().min();
                }
                Ok(input)
            },
        )
        .collect::<Result<_, Error>>()?;
    let app_owner = app.controller_owner_ref(&());
    let names: Vec<String> = releases.iter().map(ResourceExt::name_any).collect();
    let release_names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut views = BTreeMap::new();
    let mut observed = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    for cluster in scheduled_clusters(&inputs) {
        let Some(member) = ctx.fleet.get(&cluster.name) else {
            unreachable.insert(
                cluster.name.clone(),
                "not in the fleet: no Cluster of this name, or its credentials do not work (see its status)".to_owned(),
            );
            continue;
        };
        if let Connection::Unreachable(error) = member.connection() {
            unreachable.insert(
                cluster.name.clone(),
                format!("the API server does not answer: {error}"),
            );
            continue;
        }
        if !member.is_observed() {
            continue;
        }
        let view = ClusterView::read(&member, &namespace, &app_name, app);
        let mut versions = match target {
            Some(service) => service_target::observe(
                &Copies::read(&view.services, service),
                &view.endpoint_slices,
            ),
            None => workload_kinds
                .iter()
                .flat_map(|workloads| workloads.observe(view.workloads()))
                .collect(),
        };
        let (mut routes, mut traffic_pending) = (Vec::new(), None);
        if let Some(provider) = provider {
            let app_view = view.app_view(app, newest, &release_names, app_owner.as_ref());
            let weights = provider.observe(&app_view);
            for (release, version) in &mut versions {
                version.weight = weights.get(release).copied().unwrap_or(0);
            }
            routes = provider.routes(&app_view);
            // A person who promoted the step passes what only a person can judge.
            let promoted = newest
                .spec
                .target_step
                .is_some_and(|target| Some(target) > newest.status.as_ref().and_then(|s| s.step));
            traffic_pending = provider
                .pending(&app_view)
                .filter(|pending| !(pending.promotable && promoted))
                .map(|pending| pending.message);
        }
        let refused = ctx.refusals.get(&namespace, &app_name, &cluster.name);
        observed.insert(
            cluster.name.clone(),
            ClusterObservation {
                reachable: true,
                versions,
                routes,
                refused: refused.as_ref().map(Refused::describe),
                traffic_pending,
            },
        );
        views.insert(cluster.name.clone(), (member.clone(), view));
    }

    // 2. Decide.
    let policy = AppPolicy {
        traffic: app.spec.has_traffic(),
        max_versions: app.spec.versions.max,
        version_ttl: app.spec.versions.ttl,
        // A Service target's old version has no pods of Prism's to drain: its copy takes the new
        // spec (the promotion) as soon as it has no traffic.
        drain: app
            .spec
            .versions
            .drain_period()
            .filter(|_| target.is_none())
            .map(|period| Drain {
                period,
                delete_after: app.spec.versions.delete_after(),
                quiet_window,
            }),
    };
    let decision = decide(&Input {
        now: precise_now,
        app: &policy,
        releases: &inputs,
        observed: &observed,
        blocked,
    });

    let phased: Vec<_> = releases
        .iter()
        .zip(&decision.releases)
        .map(|(release, decided)| (release, decided.progress.phase))
        .collect();
    let roles = service_target::roles(&phased);

    // 3. Apply. A cluster that refuses a write makes no more of this reconcile's (the engine's
    // order within a cluster is the safe one); the other clusters go on, and so does the status.
    let by_name: BTreeMap<String, &Release> = releases.iter().map(|r| (r.name_any(), r)).collect();
    let mut writer = Writer {
        ctx,
        app: &app_ref,
        namespace: &namespace,
        now,
        stopped: BTreeSet::new(),
    };
    let mut traffic_changed = Vec::new();
    let mut made = Vec::new();
    for change in &decision.changes {
        let cluster = change.cluster();
        let release = match change {
            Change::Capacity { release, .. }
            | Change::Remove { release, .. }
            | Change::Idle { release, .. } => by_name[*release],
            Change::Traffic { .. } => newest,
        };
        let Some((member, view)) = views.get(cluster) else {
            continue;
        };
        let writes = match change {
            // A Service target's version is its copy of the Service (`service_target`).
            Change::Capacity {
                release, capacity, ..
            } if let Some(service) = target => {
                let owner = app_owner.as_ref().filter(|_| member.is_management);
                if capacity.is_zero() {
                    let copies = Copies::read(&view.services, service);
                    service_target::remove(&app_name, release, &copies, &roles, owner)
                } else {
                    service_target::install(&app_name, by_name[*release], &roles, owner)
                }
            }
            Change::Remove { release, .. } | Change::Idle { release, .. }
                if let Some(service) = target =>
            {
                let owner = app_owner.as_ref().filter(|_| member.is_management);
                let copies = Copies::read(&view.services, service);
                service_target::remove(&app_name, release, &copies, &roles, owner)
            }
            Change::Capacity {
                release, capacity, ..
            } => {
                let release = by_name[*release];
                let owner = release_owner(member, release);
                let version = workload::Version {
                    release,
                    pod_labels: provider.map_or(&[][..], |p| p.pod_template_labels()),
                    owner: owner.as_ref(),
                    app_owner: app_owner.as_ref().filter(|_| member.is_management),
                    successor: successor(&decision, cluster, release, &by_name),
                };
                let workloads = workload::provider(&release.spec.template);
                let mut writes = workloads.install(view.workloads(), version, *capacity);
                // At zero capacity the version's objects go (`WorkloadProvider::install`), and what its
                // traffic provider made for it alone with them.
                if let Some(provider) = provider.filter(|_| capacity.is_zero()) {
                    let app_view = view.app_view(app, newest, &release_names, app_owner.as_ref());
                    writes.extend(provider.remove_version(&app_view, &release.name_any()));
                }
                writes
            }
            Change::Traffic { traffic, .. } => {
                traffic_changed.push(cluster);
                let weights: Weights = traffic
                    .weights
                    .iter()
                    .map(|weight| (weight.release.to_owned(), weight.percent))
                    .collect();
                let Some(provider) = provider else {
                    continue;
                };
                let app_view = view.app_view(app, newest, &release_names, app_owner.as_ref());
                if let Some(refusal) = provider.refuses(&app_view, &weights, &traffic.routes) {
                    writer.refuse(cluster, newest, refusal).await;
                    continue;
                }
                provider.writes(&app_view, &weights, &traffic.routes)
            }
            Change::Idle { release, .. } => {
                let release = by_name[*release];
                let owner = release_owner(member, release);
                let version = workload::Version {
                    release,
                    pod_labels: provider.map_or(&[][..], |p| p.pod_template_labels()),
                    owner: owner.as_ref(),
                    app_owner: app_owner.as_ref().filter(|_| member.is_management),
                    successor: successor(&decision, cluster, release, &by_name),
                };
                workload::provider(&release.spec.template).idle(view.workloads(), version)
            }
            Change::Remove { release, .. } => {
                let release = by_name[*release];
                let mut writes =
                    workload::provider(&release.spec.template).remove(view.workloads(), release);
                // The application leaves the cluster with it: what its versions shared goes too.
                if observed
                    .get(cluster)
                    .is_some_and(|here| leaves(&decision, cluster, here))
                {
                    writes.extend(workload::objects::remove_shared(release));
                }
                if let Some(provider) = provider {
                    let view = view.app_view(app, newest, &release_names, app_owner.as_ref());
                    writes.extend(provider.remove_version(&view, &release.name_any()));
                }
                writes
            }
        };
        if writer.write(cluster, member, release, writes).await? {
            made.push(change);
        }
    }
    // Keep each cluster at rest serving the weights it is set to (a pod that became ready, or
    // went away), and take what serves the application out of the clusters it leaves. A cluster
    // on its way to a step is left to the step's own traffic change: mending the split of pods
    // that are still starting or stopping would undo itself.
    if let Some(provider) = provider {
        let at_rest = |name: &str| {
            decision.clusters.iter().any(|cluster| {
                cluster.cluster == name
                    && matches!(cluster.phase, ClusterPhase::Achieved | ClusterPhase::Queued)
            })
        };
        for (cluster, (member, view)) in &views {
            let view = view.app_view(app, newest, &release_names, app_owner.as_ref());
            if leaves(&decision, cluster, &observed[cluster]) {
                let removals = provider.remove(&view);
                if !removals.is_empty() {
                    info!(application = %app_name, cluster, "the application left the cluster: deleting its traffic objects");
                    execute(member, &namespace, &app_ref, removals, &ctx.expectations).await?;
                }
                continue;
            }
            if traffic_changed.contains(&cluster.as_str()) || !at_rest(cluster) {
                continue;
            }
            let weights = provider.observe(&view);
            let repairs = if weights.is_empty() {
                Vec::new()
            } else {
                provider.writes(&view, &weights, &provider.routes(&view))
            };
            if !repairs.is_empty() {
                info!(application = %app_name, cluster, writes = repairs.len(), "repairing traffic");
                writer.write(cluster, member, newest, repairs).await?;
            }
        }
    }
    // A Service target of type ExternalName: each copy's EndpointSlice, ready as its probe says.
    let mut probe_again = None;
    if target.is_some() {
        let unix_seconds = now.as_second().unsigned_abs();
        let probe = app
            .spec
            .target
            .as_ref()
            .and_then(|t| t.service.probe.as_ref());
        for (cluster, (member, view)) in &views {
            let slices = service_target::external::keep(
                &app_name,
                &view.services,
                &view.endpoint_slices,
                |address, port| {
                    probe.is_none_or(|probe| {
                        probe_again = Some(calls::until_next_round(unix_seconds, probe.period()));
                        ctx.probes
                            .ready(&app_ref, probe, address, port, unix_seconds)
                    })
                },
            );
            writer.write(cluster, member, newest, slices).await?;
        }
    }
    // A cluster that made every write asked of it, or was asked none of those it refused,
    // no longer refuses; one not reached says nothing new.
    for cluster in views.keys() {
        if !writer.stopped.contains(cluster) {
            ctx.refusals.accepted(&namespace, &app_name, cluster);
        }
    }
    ctx.refusals.retain_apps(|namespace, name| {
        ctx.applications
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    });
    let refusals = ctx.refusals.of_app(&namespace, &app_name);

    // 4. Status, then the Events of the transitions it records. It counts what this reconcile
    // installed, scaled and removed as done: the next observation would only say so one write
    // later.
    let mut shown = observed.clone();
    for change in &made {
        if let Some(observation) = shown.get_mut(change.cluster()) {
            count_as_made(observation, change);
        }
    }
    let retry_after = refusals
        .values()
        .map(|refused| now.duration_until(refused.retry_at).unsigned_abs())
        .min();
    let now = Time(now);
    // Before the statuses that record the transitions: see events.rs.
    publish_events(&decision, &by_name, ctx).await;
    let mut write_counters_after = None;
    for ((release, release_decision), judged) in
        releases.iter().zip(&decision.releases).zip(&judged)
    {
        let name = release.name_any();
        let refused: BTreeMap<String, String> = refusals
            .iter()
            .filter(|(_, refused)| refused.release == name)
            .map(|(cluster, refused)| (cluster.clone(), refused.describe()))
            .collect();
        let status = ReleaseStatus {
            analysis: judged.analysis.status.clone(),
            gate: judged.gate.status.clone(),
            ..release_status(
                release,
                release_decision,
                &decision.clusters,
                &shown,
                &unreachable,
                &refused,
                &now,
            )
        };
        if release.status.as_ref() == Some(&status) {
            continue;
        }
        let lag_key = format!("{namespace}/{name}/{}", release.uid().unwrap_or_default());
        let counters_only = release
            .status
            .as_ref()
            .is_some_and(|current| differ_only_in_counters(current, &status));
        if counters_only && let Err(wait) = ctx.counter_lag.due(&lag_key, Instant::now()) {
            write_counters_after =
                Some(write_counters_after.map_or(wait, |after: Duration| after.min(wait)));
            continue;
        }
        ctx.counter_lag.written(&lag_key);
        apply_status::<Release>(ctx, &app_ref, &namespace, &name, &status).await?;
        ctx.metrics.steps_ended(release, &status, now.0);
        let was = release.status.as_ref().and_then(|status| status.phase);
        if let Some(phase) = status.phase.filter(|phase| Some(*phase) != was)
            && let Some(created) = release.creation_timestamp()
        {
            let took = created.0.duration_until(now.0).unsigned_abs();
            ctx.metrics.rollout_ended(release, phase, took);
        }
    }
    let judge_again = judged
        .iter()
        .flat_map(|judged| [judged.analysis.next, judged.gate.next]);
    Ok(judge_again
        .chain([
            decision.requeue_after.map(|after| after.0.unsigned_abs()),
            retry_after,
            write_counters_after,
            probe_again,
            read_again,
        ])
        .flatten()
        .min())
}

/// The clusters chosen for `release`, as the engine reads them.
fn schedule(release: &Release) -> Vec<ClusterInfo> {
    release
        .spec
        .clusters
        .iter()
        .map(|cluster| ClusterInfo {
            name: cluster.name.clone(),
            region: cluster.region.clone(),
        })
        .collect()
}

/// A release's current step as the analysis and the webhook gate judged it.
struct Judged {
    analysis: Analysis,
    gate: Gate,
}

/// `version_name`: the name it goes by in its routes, when the Application names its versions.
fn release_input<'a>(
    release: &'a Release,
    clusters: &'a [ClusterInfo],
    judged: &Judged,
    version_name: Option<&'a str>,
    pipeline: &'a Pipeline,
) -> Result<ReleaseInput<'a>, Error> {
    let capacity = match release.spec.target {
        Some(_) => service_target::CAPACITY,
        None => workload::full_capacity(&release.spec.template)
            .ok_or_else(|| ReleasesError::UnreadableCapacity(release.name_any()))?,
    };
    let name = release.metadata.name.as_deref().unwrap_or_default();
    Ok(ReleaseInput {
        name,
        version_name: version_name.unwrap_or(name),
        created_at: release
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |time| time.0),
        clusters,
        pipeline,
        capacity,
        progress: progress(release),
        target_step: release.spec.target_step,
        aborted: release.spec.aborted,
        analysis: judged.analysis.verdict.clone(),
        webhook: judged.gate.verdict.clone(),
        pinned: annotated(release, PINNED_ANNOTATION),
        retire_requested: annotated(release, RETIRE_ANNOTATION),
        side: None,
        drain_reading: None,
    })
}

/// Whether a person set `annotation` on the Release (to anything but "false").
fn annotated(release: &Release, annotation: &str) -> bool {
    release
        .annotations()
        .get(annotation)
        .is_some_and(|value| value != "false")
}

/// The Release as owner of its objects, where it can be: in its own API server.
fn release_owner(member: &Member, release: &Release) -> Option<OwnerReference> {
    member
        .is_management
        .then(|| release.controller_owner_ref(&()))
        .flatten()
}

/// The template Service that carries the application's traffic: the one `spec.traffic.service`
/// names, or the only one.
pub(crate) fn service_manifest<'a>(
    app: &Application,
    release: &'a Release,
) -> Option<&'a prism_api::application::Manifest> {
    let mut services = release.spec.template.of_kind("Service");
    match &app.spec.traffic.service {
        Some(name) => services.find(|s| s.name() == Some(name.as_str())),
        None => services.next(),
    }
}

/// The newest version other than `release` that the decision keeps running in `cluster`.
fn successor<'r>(
    decision: &prism_engine::Decision<'_>,
    cluster: &str,
    release: &Release,
    by_name: &BTreeMap<String, &'r Release>,
) -> Option<&'r Release> {
    let name = release.name_any();
    decision
        .clusters
        .iter()
        .find(|decided| decided.cluster == cluster)?
        .versions
        .iter()
        .rev()
        .find(|version| version.release != name && !version.target.is_zero())
        .and_then(|version| by_name.get(version.release).copied())
}
