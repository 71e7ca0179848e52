//! Owner references do not cross API servers, so what Prism installed in an application cluster
//! is not garbage-collected there when its Release or Application is deleted (in the management
//! cluster, it is). The sweep deletes such orphans: a version whose Release is gone, and an
//! application's Service and what its versions shared, whose Application is gone. The caches
//! only suggest an orphan; the management cluster's API server confirms it before anything is
//! deleted. It also deletes the Service of an application that left the cluster (no version of
//! it here, no Release of it scheduled here), which a reconcile deletes with its last version but
//! cannot see once the Releases scheduled here are pruned or deleted: a Service that routes to
//! nothing. A StatefulSet, which outlives each version it holds, goes only with its Application.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use prism_api::{Application, Release};
use tracing::{info, warn};

use crate::Context;
use crate::fleet::Member;
use crate::touches;
use crate::workload;
use crate::write::Kind;

/// An object younger than this is never an orphan: its Release may be on its way to the cache
/// (the management cluster's watch and the application cluster's are not ordered).
const GRACE: Duration = Duration::from_secs(30);

/// Deletes the orphans of `member`, an application cluster whose caches are current.
pub async fn sweep(ctx: &Context, member: &Member) {
    let now = jiff::Timestamp::now();
    let settled = |meta: &ObjectMeta| {
        meta.deletion_timestamp.is_none()
            && meta
                .creation_timestamp
                .as_ref()
                .is_some_and(|created| now.duration_since(created.0).unsigned_abs() > GRACE)
    };
    // The workloads name the versions: a Deployment its own, a DaemonSet the one it holds (the
    // API server confirms that one gone before anything of it is deleted, the DaemonSet with it).
    let workloads: Vec<ObjectMeta> = member
        .deployments
        .state()
        .iter()
        .map(|deployment| deployment.metadata.clone())
        .chain(
            member
                .daemon_sets
                .state()
                .iter()
                .map(|daemon_set| daemon_set.metadata.clone()),
        )
        .collect();
    let mut versions: Vec<(String, String, String)> = workloads
        .iter()
        .filter(|workload| settled(workload))
        .filter_map(|workload| {
            let namespace = workload.namespace.clone()?;
            let labels = workload.labels.as_ref()?;
            let release = labels.get(RELEASE_LABEL)?.clone();
            let app = labels.get(APP_LABEL)?.clone();
            let known = ctx
                .releases
                .get(&ObjectRef::<Release>::new(&release).within(&namespace))
                .is_some();
            (!known).then_some((namespace, release, app))
        })
        .collect();
    versions.dedup();
    let mut orphaned_apps = BTreeSet::new();
    for (namespace, release, app) in versions {
        if !is_gone::<Release>(&ctx.client, &namespace, &release).await {
            continue;
        }
        orphaned_apps.insert((namespace.clone(), app));
        info!(cluster = %member.name, %namespace, %release, "deleting what a deleted Release left");
        let selector = format!("{RELEASE_LABEL}={release}");
        let client = &member.client;
        let outcome = async {
            for kind in touches::deleted_by_release() {
                delete_all(client, kind, &namespace, &selector).await?;
            }
            Ok::<(), kube::Error>(())
        };
        if let Err(error) = outcome.await {
            warn!(cluster = %member.name, %namespace, %release, %error, "could not delete an orphaned version");
        }
    }

    // What the versions of an application that is gone shared (an application without a Service
    // leaves nothing else behind to find them by).
    for (namespace, app) in orphaned_apps {
        if is_gone::<Application>(&ctx.client, &namespace, &app).await {
            delete_shared(member, &namespace, &app).await;
        }
    }

    sweep_stateful_sets(ctx, member, &settled).await;

    // The applications that are here, or may come: those with a version here, and those with a
    // Release scheduled here.
    let mut present: BTreeSet<(String, String)> = workloads
        .iter()
        .filter_map(|workload| {
            Some((
                workload.namespace.clone()?,
                workload.labels.as_ref()?.get(APP_LABEL)?.clone(),
            ))
        })
        .collect();
    present.extend(
        member
            .stateful_sets
            .state()
            .iter()
            .filter_map(|stateful_set| {
                Some((
                    stateful_set.namespace()?,
                    stateful_set.labels().get(APP_LABEL)?.clone(),
                ))
            }),
    );
    present.extend(
        ctx.releases
            .state()
            .iter()
            .filter(|release| release.spec.clusters.iter().any(|c| c.name == member.name))
            .filter_map(|release| Some((release.namespace()?, release.spec.application.clone()))),
    );
    let services: Vec<(String, String, String, bool)> = member
        .services
        .state()
        .iter()
        .filter(|service| settled(&service.metadata))
        .filter_map(|service| {
            let namespace = service.namespace()?;
            let app = service.labels().get(APP_LABEL)?.clone();
            let known = ctx
                .applications
                .get(&ObjectRef::<Application>::new(&app).within(&namespace))
                .is_some();
            let key = (namespace, app);
            if known && present.contains(&key) {
                return None;
            }
            let (namespace, app) = key;
            Some((namespace, service.name_any(), app, known))
        })
        .collect();
    for (namespace, name, app, known) in services {
        if known {
            // Normally gone with its last version (`rollout/apply.rs`); this catches what a failed
            // write or a deleted Release left.
            info!(cluster = %member.name, %namespace, service = %name, %app, "deleting the Service of an application that left the cluster");
        } else if is_gone::<Application>(&ctx.client, &namespace, &app).await {
            info!(cluster = %member.name, %namespace, service = %name, "deleting what a deleted Application left");
        } else {
            continue;
        }
        let deleted = Api::<Service>::namespaced(member.client.clone(), &namespace)
            .delete(&name, &DeleteParams::background())
            .await;
        if let Err(error) = deleted {
            warn!(cluster = %member.name, %namespace, service = %name, %error, "could not delete an orphaned Service");
        }
        delete_shared(member, &namespace, &app).await;
    }
}

/// Deletes the objects an application's versions shared (an Ingress, a PodDisruptionBudget).
async fn delete_shared(member: &Member, namespace: &str, app: &str) {
    let selector = format!("{APP_LABEL}={app},!{RELEASE_LABEL}");
    for kind in workload::objects::shared_kinds() {
        if let Err(error) = delete_all(&member.client, kind, namespace, &selector).await {
            warn!(cluster = %member.name, %namespace, %app, %error, "could not delete an application's shared objects");
        }
    }
}

/// Deletes the StatefulSets of deleted Applications. A StatefulSet outlives each of its
/// application's versions (it is rolled out in place), so it is never deleted by a Release's
/// label: only once the API server confirms that its Application is gone. Its pods' claims stay.
async fn sweep_stateful_sets(
    ctx: &Context,
    member: &Member,
    settled: &impl Fn(&ObjectMeta) -> bool,
) {
    let orphans: Vec<(String, String, String, Option<String>)> = member
        .stateful_sets
        .state()
        .iter()
        .filter(|stateful_set| settled(&stateful_set.metadata))
        .filter_map(|stateful_set| {
            let namespace = stateful_set.namespace()?;
            let app = stateful_set.labels().get(APP_LABEL)?.clone();
            let known = ctx
                .applications
                .get(&ObjectRef::<Application>::new(&app).within(&namespace))
                .is_some();
            let held = stateful_set.labels().get(RELEASE_LABEL).cloned();
            (!known).then(|| (namespace, stateful_set.name_any(), app, held))
        })
        .collect();
    for (namespace, name, app, held) in orphans {
        if !is_gone::<Application>(&ctx.client, &namespace, &app).await {
            continue;
        }
        info!(cluster = %member.name, %namespace, stateful_set = %name, "deleting the StatefulSet of a deleted Application");
        let deleted = Api::<StatefulSet>::namespaced(member.client.clone(), &namespace)
            .delete(&name, &DeleteParams::background())
            .await;
        if let Err(error) = deleted {
            warn!(cluster = %member.name, %namespace, stateful_set = %name, %error, "could not delete an orphaned StatefulSet");
            continue;
        }
        // The held release's own objects (its ConfigMaps), which its pods read until now.
        let Some(release) = held else { continue };
        if !is_gone::<Release>(&ctx.client, &namespace, &release).await {
            continue;
        }
        let selector = format!("{RELEASE_LABEL}={release}");
        for kind in touches::deleted_by_release() {
            if let Err(error) = delete_all(&member.client, kind, &namespace, &selector).await {
                warn!(cluster = %member.name, %namespace, %release, %error, "could not delete an orphaned version");
            }
        }
    }
}

/// Whether the management cluster's API server says `name` is gone: the cache alone is not
/// enough, since under load a new object can take longer than the grace period to reach it,
/// and a version deleted by mistake is an outage. One read per suspected orphan.
async fn is_gone<K>(client: &Client, namespace: &str, name: &str) -> bool
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    matches!(
        Api::<K>::namespaced(client.clone(), namespace)
            .get_metadata_opt(name)
            .await,
        Ok(None)
    )
}

async fn delete_all(
    client: &Client,
    kind: Kind,
    namespace: &str,
    selector: &str,
) -> kube::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.resource());
    match api
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(selector),
        )
        .await
    {
        // A kind whose CRD the cluster does not have (no Gateway API there): nothing to delete.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        // A kind the cluster's join did not allow (`--allow-kind`): nothing of it was written.
        Err(kube::Error::Api(status))
            if status.code == 403 && workload::objects::OPTIONAL.contains(&kind) =>
        {
            Ok(())
        }
        outcome => outcome.map(|_| ()),
    }
}
