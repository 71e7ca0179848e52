//! The fleet follows the Cluster objects: a member joins for each Cluster (a client made from
//! its Secret's kubeconfig, and watches), is made anew when the Cluster's credentials change, and
//! leaves with its Cluster. Each Cluster's status says whether its API server answers.
//!
//! Each sync also sweeps the orphans of every application cluster ([`cleanup`]).
//!
//! Members reconnect by themselves: a member's watches retry with backoff for as long as it is
//! in the fleet, and the Applications with objects there are reconciled when it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Config, Resource, ResourceExt};
use prism_api::cluster::ClusterStatus;
use prism_api::conditions::{self, Condition};
use prism_api::labels::FIELD_MANAGER;
use prism_api::{Application, Cluster};
use tracing::{info, warn};

use crate::Context;
use crate::fleet::{Connection, MANAGEMENT_CLUSTER, Member};
use crate::{cleanup, client};

/// How often membership and Cluster statuses are checked without a change to wake them: a
/// member that never connects turns unreachable, and a Cluster whose Secret was missing is
/// tried again.
const RECHECK: Duration = Duration::from_secs(10);

/// A request to an application cluster's API server that takes longer fails: a cluster that does
/// not answer must not hold a reconcile for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the fleet's members in step with the Cluster objects, and each Cluster's status in step
/// with its member, until the controller stops. `cluster_changes` ticks on each change of a
/// Cluster (it also fills `ctx.clusters`).
pub async fn keep_in_step(ctx: Arc<Context>, cluster_changes: impl Stream<Item = ()> + Send) {
    let mut cluster_changes = std::pin::pin!(cluster_changes);
    let mut recheck = tokio::time::interval(RECHECK);
    let mut state = State::default();
    loop {
        tokio::select! {
            change = cluster_changes.next() => {
                if change.is_none() {
                    return;
                }
                // A Cluster may make an Application schedulable that was not.
                for app in unscheduled(&ctx) {
                    ctx.fleet.request(app);
                }
            }
            () = ctx.fleet.changed.notified() => {}
            _ = recheck.tick() => {}
        }
        // The Cluster watch fills the cache only while this loop polls it.
        if !matches!(ctx.clusters.wait_until_ready().now_or_never(), Some(Ok(()))) {
            continue;
        }
        state.sync(&ctx).await;
        ctx.fleet.mark_synced();
    }
}

/// What the loop remembers between syncs.
#[derive(Default)]
struct State {
    /// Why a Cluster has no member: its credentials could not be made into a client.
    failures: BTreeMap<String, String>,
    /// Each member's Kubernetes version, read once per member.
    versions: BTreeMap<String, String>,
    /// The status last written per Cluster: the cache may not show it yet when the next sync
    /// comes, and writing it again would change nothing.
    written: BTreeMap<String, ClusterStatus>,
}

impl State {
    async fn sync(&mut self, ctx: &Context) {
        let clusters = ctx.clusters.state();
        for cluster in &clusters {
            let name = cluster.name_any();
            if name == MANAGEMENT_CLUSTER {
                self.failures.insert(
                    name,
                    format!("the name {MANAGEMENT_CLUSTER:?} is reserved for the management cluster: rename the Cluster"),
                );
                continue;
            }
            let source = source(cluster);
            if ctx.fleet.get(&name).is_some_and(|m| m.source == source) {
                continue;
            }
            match connect(ctx, cluster).await {
                Ok(client) => {
                    self.failures.remove(&name);
                    self.versions.remove(&name);
                    ctx.fleet.join(&name, client, false, source);
                }
                Err(error) => {
                    if self.failures.get(&name) != Some(&error) {
                        warn!(cluster = %name, %error, "cannot connect to the cluster");
                    }
                    ctx.fleet.leave(&name);
                    self.failures.insert(name, error);
                }
            }
        }
        let local_needed = clusters.is_empty()
            || ctx.releases.state().iter().any(|release| {
                release
                    .spec
                    .clusters
                    .iter()
                    .any(|c| c.name == MANAGEMENT_CLUSTER)
            });
        for member in ctx.fleet.members() {
            let wanted = if member.name == MANAGEMENT_CLUSTER {
                local_needed
            } else {
                clusters.iter().any(|c| c.name_any() == member.name)
            };
            if !wanted {
                ctx.fleet.leave(&member.name);
                self.versions.remove(&member.name);
            }
        }
        if local_needed && ctx.fleet.get(MANAGEMENT_CLUSTER).is_none() {
            ctx.fleet.join(
                MANAGEMENT_CLUSTER,
                ctx.client.clone(),
                true,
                MANAGEMENT_CLUSTER.to_owned(),
            );
        }
        self.failures
            .retain(|name, _| clusters.iter().any(|c| &c.name_any() == name));
        self.written
            .retain(|name, _| clusters.iter().any(|c| &c.name_any() == name));
        // The fleet's writes are the first shard's leader's; the other replicas only connect.
        if !ctx.leadership.leads_fleet() {
            return;
        }
        for member in ctx.fleet.members() {
            if !member.is_management && member.is_observed() {
                cleanup::sweep(ctx, &member).await;
            }
        }

        for cluster in &clusters {
            let name = cluster.name_any();
            let member = ctx.fleet.get(&name);
            if let Some(member) = &member
                && member.connection() == Connection::Connected
                && !self.versions.contains_key(&name)
                && let Ok(info) = member.client.apiserver_version().await
            {
                self.versions.insert(name.clone(), info.git_version);
            }
            let health = match (&member, self.failures.get(&name)) {
                (_, Some(failure)) => Health::Failed(failure.clone()),
                (Some(member), None) => Health::Member(member),
                (None, None) => Health::Failed("not connected yet".into()),
            };
            let status = desired_status(
                cluster,
                &health,
                self.versions.get(&name),
                Time(crate::now()),
            );
            if cluster.status.as_ref() == Some(&status) || self.written.get(&name) == Some(&status)
            {
                continue;
            }
            match write_status(&ctx.client, &name, &status).await {
                Ok(()) => {
                    self.written.insert(name, status);
                }
                Err(error) => {
                    warn!(cluster = %name, %error, "could not update the Cluster's status")
                }
            }
        }
    }
}

/// What a member is made from: a change of the credentials makes a new member.
fn source(cluster: &Cluster) -> String {
    let credentials = &cluster.spec.credentials;
    format!(
        "{}/{}#{}",
        credentials.secret_ref.namespace, credentials.secret_ref.name, credentials.key
    )
}

/// A client for the cluster, from the kubeconfig in its Secret, its requests counted.
async fn connect(ctx: &Context, cluster: &Cluster) -> Result<Client, String> {
    let management = &ctx.client;
    let credentials = &cluster.spec.credentials;
    let secret_ref = &credentials.secret_ref;
    let secret_name = format!("Secret {}/{}", secret_ref.namespace, secret_ref.name);
    let secret = Api::<Secret>::namespaced(management.clone(), &secret_ref.namespace)
        .get_opt(&secret_ref.name)
        .await
        .map_err(|error| format!("reading {secret_name}: {error}"))?;
    let kubeconfig = cluster.kubeconfig(secret.as_ref())?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| format!("{secret_name}: unusable kubeconfig: {error}"))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    client::build(config, &cluster.name_any(), &ctx.metrics, &ctx.leadership)
        .map_err(|error| format!("{secret_name}: {error}"))
}

enum Health<'a> {
    Member(&'a Member),
    Failed(String),
}

/// The Cluster's status: Reachable and Ready, when the controller last heard from it, and its
/// version. Conditions keep their transition time while their status holds.
fn desired_status(
    cluster: &Cluster,
    health: &Health,
    version: Option<&String>,
    now: Time,
) -> ClusterStatus {
    let current = cluster.status.clone().unwrap_or_default();
    let (reachable, reason, message) = match health {
        Health::Failed(failure) => (false, "CredentialsInvalid", failure.clone()),
        Health::Member(member) => match member.connection() {
            Connection::Connected => (true, "Connected", "the API server answers".to_owned()),
            Connection::Connecting => (
                false,
                "Connecting",
                "listing what Prism installed there".to_owned(),
            ),
            Connection::Unreachable(error) => (false, "Unreachable", error),
        },
    };
    let heard = match health {
        Health::Member(member) => member.last_seen().map(Time),
        Health::Failed(_) => None,
    };
    // Written only when Reachable flips: a heartbeat would write every Cluster all the time.
    let flipped = current.conditions.is_empty()
        || conditions::is_true(&current.conditions, conditions::cluster::REACHABLE) != reachable;
    let last_seen = if flipped {
        heard.or(current.last_seen)
    } else {
        current.last_seen
    };
    let generation = cluster.metadata.generation;
    let condition = |type_: &str| Condition {
        type_: type_.to_owned(),
        status: if reachable { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let mut desired = vec![
        condition(conditions::cluster::REACHABLE),
        condition(conditions::cluster::READY),
    ];
    conditions::keep_transition_times(&mut desired, &current.conditions);
    ClusterStatus {
        conditions: desired,
        last_seen,
        version: version.cloned().or(current.version),
    }
}

async fn write_status(client: &Client, name: &str, status: &ClusterStatus) -> kube::Result<()> {
    let patch = serde_json::json!({
        "apiVersion": Cluster::api_version(&()),
        "kind": Cluster::kind(&()),
        "status": status,
    });
    Api::<Cluster>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    info!(cluster = name, "updated the Cluster's status");
    Ok(())
}

/// The Applications whose Scheduled condition is False: a new Cluster may fit them.
fn unscheduled(ctx: &Context) -> Vec<ObjectRef<Application>> {
    ctx.applications
        .state()
        .iter()
        .filter(|app| {
            app.status.as_ref().is_some_and(|status| {
                conditions::find(&status.conditions, conditions::application::SCHEDULED)
                    .is_some_and(|c| c.status == "False")
            })
        })
        .map(|app| ObjectRef::from_obj(app.as_ref()))
        .collect()
}
