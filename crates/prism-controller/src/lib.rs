//! Prism's controllers. Each reconciles one kind as a pipeline: dereference → validate → build
//! (pure, no client) → apply → status. So far: the Application controller, which turns each
//! change of an Application's template or strategy into a Release (see [`application`]).

pub mod application;
pub mod error;

use std::sync::Arc;

use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use prism_api::{Application, ClusterStrategy, Release, Strategy};
use tracing::{debug, info, warn};

pub use application::FIELD_MANAGER;
pub use error::Error;

/// Runs the Application controller until a signal (SIGINT, SIGTERM) stops it. With a
/// `namespace`, every namespaced watch is scoped to it (tests run one controller per test
/// namespace); ClusterStrategies are watched cluster-wide either way.
pub async fn run(client: Client, namespace: Option<String>) -> Result<(), Error> {
    let scoped = |client: &Client| match &namespace {
        Some(ns) => (
            Api::<Application>::namespaced(client.clone(), ns),
            Api::<Release>::namespaced(client.clone(), ns),
            Api::<Strategy>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let (applications, releases, strategies) = scoped(&client);
    let cluster_strategies = Api::<ClusterStrategy>::all(client.clone());

    // Fail at once, with a message, when the CRDs are missing or access is denied, rather than
    // have the watchers retry forever.
    applications
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::kube(
            "listing Applications (are the CRDs installed?)",
        ))?;

    let context = Arc::new(application::Context {
        recorder: Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER)),
        client,
    });
    let controller = Controller::new(applications, watcher::Config::default());
    // A Strategy or ClusterStrategy change requeues the Applications that name it, found in
    // the controller's own cache of Applications.
    let by_strategy = controller.store();
    let by_cluster_strategy = controller.store();
    info!(
        namespace = namespace.as_deref().unwrap_or("*"),
        "starting the Application controller"
    );
    controller
        .owns(releases, watcher::Config::default())
        .watches(strategies, watcher::Config::default(), move |strategy| {
            let namespace = strategy.namespace().unwrap_or_default();
            let apps = by_strategy.state();
            application::naming_strategy(
                apps.iter().map(|a| &**a),
                &namespace,
                &strategy.name_any(),
            )
            .into_iter()
            .map(ObjectRef::from_obj)
            .collect::<Vec<_>>()
        })
        .watches(
            cluster_strategies,
            watcher::Config::default(),
            move |strategy| {
                let apps = by_cluster_strategy.state();
                application::naming_cluster_strategy(
                    apps.iter().map(|a| &**a),
                    &strategy.name_any(),
                )
                .into_iter()
                .map(ObjectRef::from_obj)
                .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(application::reconcile, application::error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((app, _)) => debug!(application = %app, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
    info!("the Application controller stopped");
    Ok(())
}
