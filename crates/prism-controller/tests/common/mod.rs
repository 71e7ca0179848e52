//! What the controller's end-to-end tests share: a controller per test namespace, Applications
//! written the way a user writes them, and waits on Releases.

#![allow(dead_code)] // Each test binary uses its own part.

use anyhow::Context as _;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use prism_api::application::ApplicationStatus;
use prism_api::conditions::{self, Condition};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release, Strategy};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

pub mod gateway;
pub mod invalid;

pub const TEST_MANAGER: &str = "prism-tests";

/// The controller, scoped to one namespace, stopped when dropped.
pub type RunningController = prism_testkit::AbortOnDrop<Result<(), prism_controller::Error>>;

/// The management cluster's client and the test namespace's Applications and Releases, with
/// the CRDs installed and the controller running in the namespace.
pub async fn setup(
    env: &TestEnv,
) -> anyhow::Result<(Client, Api<Application>, Api<Release>, RunningController)> {
    setup_serving_metrics(env, None).await
}

/// As [`setup`], the controller serving `/metrics` on `metrics_address`. It makes its own client
/// of the management cluster, whose requests it counts, as the binary does; the test's own
/// requests go through the returned client, uncounted.
pub async fn setup_serving_metrics(
    env: &TestEnv,
    metrics_address: Option<std::net::SocketAddr>,
) -> anyhow::Result<(Client, Api<Application>, Api<Release>, RunningController)> {
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds()).await?;
    let controller = prism_testkit::spawn_for_test(prism_controller::run(
        env.cluster("c1").config().await,
        prism_controller::Options {
            namespace: Some(env.namespace().to_owned()),
            cluster_selector: Some(env.cluster_selector()),
            global_namespace: Some(global_namespace(env)),
            prometheus_url: None,
            metrics_address,
            leader_election: None,
            helm: Some(prism_testkit::charts::helm_path().await.to_path_buf()),
        },
    ));
    let apps = Api::namespaced(client.clone(), env.namespace());
    let releases = Api::namespaced(client.clone(), env.namespace());
    Ok((client, apps, releases, controller))
}

pub fn application(name: &str, spec: Value) -> anyhow::Result<Application> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

pub async fn apply(apps: &Api<Application>, app: &Application) -> anyhow::Result<Application> {
    apps.patch(
        &app.name_any(),
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(app),
    )
    .await
    .with_context(|| format!("applying Application {}", app.name_any()))
}

/// Waits until Release `name` is in `phase`.
pub async fn wait_for_phase(
    releases: &Api<Release>,
    name: &str,
    phase: ReleasePhase,
) -> anyhow::Result<Release> {
    wait_until(
        format!("Release {name} is {}", phase.as_str()),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            Ok(release.filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(phase)))
        },
    )
    .await
}

/// Waits until Release `name` has achieved step `step` (0-based) and waits there.
pub async fn wait_for_step(
    releases: &Api<Release>,
    name: &str,
    step: u32,
) -> anyhow::Result<Release> {
    wait_until(
        format!("Release {name} achieves step {}", step + 1),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            Ok(release.filter(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.step == Some(step) && s.achieved_at.is_some())
            }))
        },
    )
    .await
}

/// Sets a Release's spec field, as `prism promote` and `prism abort` do, once the Release exists.
pub async fn patch_release_spec(
    releases: &Api<Release>,
    name: &str,
    spec: Value,
) -> anyhow::Result<()> {
    wait_until(
        format!("Release {name} exists"),
        DEFAULT_TIMEOUT,
        || async { Ok(releases.get_opt(name).await?) },
    )
    .await?;
    releases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .with_context(|| format!("patching Release {name}"))?;
    Ok(())
}

/// Waits until the Application's status describes its current generation and passes `check`.
pub async fn wait_for_status(
    apps: &Api<Application>,
    name: &str,
    what: &str,
    check: impl Fn(&ApplicationStatus) -> bool,
) -> anyhow::Result<ApplicationStatus> {
    wait_until(
        format!("Application {name}: {what}"),
        DEFAULT_TIMEOUT,
        || async {
            let app = apps.get(name).await?;
            let status = app.status.unwrap_or_default();
            let caught_up = status.observed_generation == app.metadata.generation;
            Ok((caught_up && check(&status)).then_some(status))
        },
    )
    .await
}

pub fn valid_condition(status: &ApplicationStatus) -> Option<&Condition> {
    conditions::find(&status.conditions, conditions::application::VALID)
}

/// Two steps without gates: half of the capacity and traffic, then all of it.
pub fn canary_steps() -> Value {
    json!([
        {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
    ])
}

/// Creates (or updates) the Strategy `name` with `steps` in the test's namespace.
pub async fn apply_strategy(
    client: &Client,
    namespace: &str,
    name: &str,
    steps: Value,
) -> anyhow::Result<()> {
    let strategy: Strategy = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Strategy",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }))?;
    Api::<Strategy>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(&strategy),
        )
        .await
        .with_context(|| format!("applying Strategy {name}"))?;
    Ok(())
}

/// The namespace whose RolloutBlocks stop every Application of the test's controller (its own,
/// so that a test's global block stops no other test).
pub fn global_namespace(env: &TestEnv) -> String {
    format!("{}-global", env.namespace())
}

/// Waits for an Event with `reason` about the object named `regarding` that also `matches`.
pub async fn wait_for_event(
    client: &Client,
    namespace: &str,
    regarding: &str,
    reason: &str,
    matches: impl Fn(&Event) -> bool,
) -> anyhow::Result<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let matches = &matches;
    wait_until(
        format!("an Event {reason} about {regarding}"),
        DEFAULT_TIMEOUT,
        || async {
            let found = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                        && matches(e)
                });
            Ok(found)
        },
    )
    .await
}
