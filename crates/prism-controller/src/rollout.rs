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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use prism_api::release::ReleaseStatus;
use prism_api::{Application, Release};
use prism_engine::{
    AppPolicy, Change, ClusterInfo, ClusterObservation, Decision, EventKind, Input, ReleaseInput,
    decide, scheduled_clusters,
};
use tracing::info;

use crate::Context;
use crate::analysis::{self, Analysis};
use crate::application::{FIELD_MANAGER, publish};
use crate::error::Error;
use crate::expectations::ObjectKey;
use crate::fleet::{Connection, MANAGEMENT_CLUSTER, Member, of_app};
use crate::status::{progress, release_status};
use crate::traffic::{self, AppView, Weights};
use crate::webhooks::{self, Gate};
use crate::workload;
use crate::write::execute;

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
    let inputs: Vec<ReleaseInput> = releases
        .iter()
        .zip(&schedules)
        .zip(&judged)
        .map(|((release, schedule), judged)| release_input(release, schedule, judged))
        .collect::<Result<_, _>>()?;
    let app_owner = app.controller_owner_ref(&());
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
        let view = ClusterView::read(&member, &namespace, &app_name);
        let mut versions = workload::observe(view.deployments.iter().map(|d| d.as_ref()));
        let routes = Vec::new();
        if let Some(provider) = provider {
            let weights = provider.observe(&view.app_view(app, newest, app_owner.as_ref()));
            for (release, version) in &mut versions {
                version.weight = weights.get(release).copied().unwrap_or(0);
            }
        }
        observed.insert(
            cluster.name.clone(),
            ClusterObservation {
                reachable: true,
                versions,
                routes,
            },
        );
        views.insert(cluster.name.clone(), (member.clone(), view));
    }

    // 2. Decide.
    let policy = AppPolicy {
        traffic: app.spec.has_traffic(),
        max_versions: app.spec.versions.max,
        version_ttl: app.spec.versions.ttl,
    };
    let decision = decide(&Input {
        now,
        app: &policy,
        releases: &inputs,
        observed: &observed,
        blocked,
    });

    // 3. Apply.
    let by_name: BTreeMap<String, &Release> = releases.iter().map(|r| (r.name_any(), r)).collect();
    let mut traffic_changed = Vec::new();
    for change in &decision.changes {
        let cluster = match change {
            Change::Capacity { cluster, .. }
            | Change::Traffic { cluster, .. }
            | Change::Remove { cluster, .. } => *cluster,
        };
        let Some((member, view)) = views.get(cluster) else {
            continue;
        };
        let writes = match change {
            Change::Capacity {
                release, capacity, ..
            } => {
                let release = by_name[*release];
                let installed = observed[cluster].versions.contains_key(&release.name_any());
                let owner = release_owner(member, release);
                workload::install(release, *capacity, installed, owner.as_ref())
            }
            Change::Traffic { traffic, .. } => {
                traffic_changed.push(cluster);
                let weights: Weights = traffic
                    .weights
                    .iter()
                    .map(|weight| (weight.release.to_owned(), weight.percent))
                    .collect();
                match provider {
                    Some(provider) => {
                        provider.writes(&view.app_view(app, newest, app_owner.as_ref()), &weights)
                    }
                    None => Vec::new(),
                }
            }
            Change::Remove { release, .. } => workload::remove(by_name[*release]),
        };
        execute(member, &namespace, &app_ref, writes, &ctx.expectations).await?;
    }
    // Keep each cluster serving the weights it is set to (a pod that became ready, or went away).
    if let Some(provider) = provider {
        for (cluster, (member, view)) in &views {
            if traffic_changed.contains(&cluster.as_str()) {
                continue;
            }
            let view = view.app_view(app, newest, app_owner.as_ref());
            let weights = provider.observe(&view);
            let repairs = if weights.is_empty() {
                Vec::new()
            } else {
                provider.writes(&view, &weights)
            };
            if !repairs.is_empty() {
                info!(application = %app_name, cluster, writes = repairs.len(), "repairing traffic");
                execute(member, &namespace, &app_ref, repairs, &ctx.expectations).await?;
            }
        }
    }

    // 4. Status, then the Events of the transitions it records.
    let now = Time(now);
    for ((release, release_decision), judged) in
        releases.iter().zip(&decision.releases).zip(&judged)
    {
        let status = ReleaseStatus {
            analysis: judged.analysis.status.clone(),
            gate: judged.gate.status.clone(),
            ..release_status(
                release,
                release_decision,
                &decision.clusters,
                &observed,
                &unreachable,
                &now,
            )
        };
        if release.status.as_ref() == Some(&status) {
            continue;
        }
        let name = release.name_any();
        let patch = serde_json::json!({
            "apiVersion": Release::api_version(&()),
            "kind": Release::kind(&()),
            "status": status,
        });
        let key = ObjectKey::new::<Release>(MANAGEMENT_CLUSTER, &namespace, &name);
        let api = Api::<Release>::namespaced(ctx.client.clone(), &namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        ctx.expectations
            .track(
                &app_ref,
                key,
                api.patch_status(&name, &params, &Patch::Apply(&patch)),
                ResourceExt::resource_version,
            )
            .await
            .map_err(Error::kube(format!(
                "updating the status of Release {namespace}/{name}"
            )))?;
    }
    publish_events(&decision, &by_name, ctx).await;
    let judge_again = judged
        .iter()
        .flat_map(|judged| [judged.analysis.next, judged.gate.next]);
    Ok(judge_again
        .chain([decision.requeue_after.map(|after| after.0.unsigned_abs())])
        .flatten()
        .min())
}

async fn publish_events(
    decision: &Decision<'_>,
    releases: &BTreeMap<String, &Release>,
    ctx: &Context,
) {
    for event in &decision.events {
        let Some(release) = releases.get(event.release) else {
            continue;
        };
        let type_ = match event.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        };
        info!(
            release = event.release,
            reason = event.reason,
            "{}",
            event.message
        );
        publish(
            ctx,
            &release.object_ref(&()),
            type_,
            event.reason,
            event.message.clone(),
            "Rollout",
        )
        .await;
        webhooks::notify(ctx, release, event);
    }
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

fn release_input<'a>(
    release: &'a Release,
    clusters: &'a [ClusterInfo],
    judged: &Judged,
) -> Result<ReleaseInput<'a>, Error> {
    let capacity = workload::full_capacity(&release.spec.template)
        .ok_or_else(|| Error::UnreadableCapacity(release.name_any()))?;
    Ok(ReleaseInput {
        name: release.metadata.name.as_deref().unwrap_or_default(),
        created_at: release
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |time| time.0),
        clusters,
        pipeline: &release.spec.strategy,
        capacity,
        progress: progress(release),
        target_step: release.spec.target_step,
        aborted: release.spec.aborted,
        analysis: judged.analysis.verdict.clone(),
        webhook: judged.gate.verdict.clone(),
    })
}

/// The Release as owner of its objects, where it can be: in its own API server.
fn release_owner(member: &Member, release: &Release) -> Option<OwnerReference> {
    member
        .is_management
        .then(|| release.controller_owner_ref(&()))
        .flatten()
}

/// What the caches hold of one application in one cluster.
struct ClusterView {
    deployments: Vec<std::sync::Arc<k8s_openapi::api::apps::v1::Deployment>>,
    pods: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Pod>>,
    services: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Service>>,
    is_management: bool,
}

impl ClusterView {
    fn read(member: &Member, namespace: &str, app: &str) -> ClusterView {
        ClusterView {
            deployments: of_app(&member.deployments, namespace, app),
            pods: of_app(&member.pods, namespace, app),
            services: of_app(&member.services, namespace, app),
            is_management: member.is_management,
        }
    }

    /// The traffic provider's view: the Service of the newest Release's template.
    fn app_view<'a>(
        &'a self,
        app: &'a Application,
        newest: &'a Release,
        owner: Option<&'a OwnerReference>,
    ) -> AppView<'a> {
        let service = service_manifest(app, newest);
        let service_name = service.and_then(|manifest| manifest.name());
        AppView {
            app: app.metadata.name.as_deref().unwrap_or_default(),
            service: service.zip(newest.metadata.name.as_deref()),
            observed_service: self
                .services
                .iter()
                .find(|s| s.metadata.name.as_deref() == service_name)
                .map(|s| s.as_ref()),
            pods: &self.pods,
            owner: owner.filter(|_| self.is_management),
        }
    }
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
