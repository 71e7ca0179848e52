//! What the tests of invalid Applications share: templates with one thing changed, and waits on
//! the `Valid` condition, the Warning Event and what was made.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use prism_api::application::ApplicationStatus;
use prism_api::conditions::Condition;
use prism_api::{Application, Release};
use prism_testkit::TestEnv;
use prism_testkit::fixtures::web_template;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{canary_steps, valid_condition, wait_for_event, wait_for_status};

/// The `web` template (a Deployment and a Service) after `change`.
pub fn template_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut template = web_template("web:1", 2);
    change(&mut template);
    template
}

/// A spec with `template` rolled out by the canary.
pub fn spec_of(template: Value) -> Value {
    json!({"template": template, "strategy": {"steps": canary_steps()}})
}

/// Waits until the Application's status describes its current generation and its `Valid`
/// condition passes `check`.
pub async fn wait_for_valid(
    apps: &Api<Application>,
    name: &str,
    what: &str,
    check: impl Fn(&Condition) -> bool,
) -> anyhow::Result<ApplicationStatus> {
    wait_for_status(apps, name, what, |status| {
        valid_condition(status).is_some_and(&check)
    })
    .await
}

/// The names of the objects of kind `K` labelled as the application's, in the test's namespace
/// of every cluster.
pub async fn installed<K>(env: &TestEnv, app: &str) -> anyhow::Result<BTreeSet<String>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut names = BTreeSet::new();
    for cluster in env.clusters() {
        let api: Api<K> = Api::namespaced(cluster.client(), env.namespace());
        let list = api
            .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
            .await?;
        names.extend(list.items.iter().map(|o| {
            format!(
                "{} {}/{}",
                K::kind(&Default::default()),
                cluster.name(),
                o.name_any()
            )
        }));
    }
    Ok(names)
}

/// Everything Prism would have made for `app`: its Releases, and its objects in every cluster.
pub async fn made_for(
    env: &TestEnv,
    client: &Client,
    app: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let releases: Api<Release> = Api::namespaced(client.clone(), env.namespace());
    let mut made: BTreeSet<String> = releases
        .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
        .await?
        .items
        .iter()
        .map(|r| format!("Release {}", r.name_any()))
        .collect();
    made.extend(installed::<Deployment>(env, app).await?);
    made.extend(installed::<Service>(env, app).await?);
    made.extend(installed::<ConfigMap>(env, app).await?);
    Ok(made)
}

/// Waits for the Warning Event that reports `problem` about `app`.
pub async fn wait_for_warning(
    client: &Client,
    namespace: &str,
    app: &str,
    reason: &str,
    problem: &str,
) -> anyhow::Result<Event> {
    wait_for_event(client, namespace, app, reason, |e| {
        e.type_.as_deref() == Some("Warning")
            && e.note.as_deref().is_some_and(|note| note.contains(problem))
    })
    .await
}
