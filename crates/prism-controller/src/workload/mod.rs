//! The workload providers: what each kind of workload does to run a version in a cluster
//! (install it, set its capacity, observe what runs, remove it), one module per kind behind
//! [`WorkloadProvider`], each declaring the kinds it watches and writes (see [`crate::touches`]).
//! The engine decides capacities the same way for every kind; a provider turns a version's
//! capacity into writes, and what a cluster runs back into the engine's observations.
//!
//! Building is pure: a Release, a capacity and what the caches hold in, server-side apply bodies
//! out. What every kind installs beside its workload (a version's own ConfigMaps) is
//! [`objects`]'.

mod daemon_set;
mod deployment;
pub mod objects;
mod stateful_set;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use prism_api::Release;
use prism_api::application::Template;
use prism_api::chart::WorkloadKind;
use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use prism_api::strategy::Pipeline;
use prism_engine::{Capacity, VersionObservation};
use serde_json::{Map, Value, json};

use crate::cached;
use crate::touches::Touch;
use crate::write::Write;

pub use deployment::pod_template_labels;

/// What a cluster's caches hold of one application's workloads.
#[derive(Clone, Copy, Default)]
pub struct Workloads<'a> {
    pub deployments: &'a [Arc<cached::Deployment>],
    pub stateful_sets: &'a [Arc<cached::StatefulSet>],
    pub daemon_sets: &'a [Arc<cached::DaemonSet>],
    pub pods: &'a [Arc<cached::Pod>],
    /// Every node of the cluster, for its zone.
    pub nodes: &'a [Arc<cached::Node>],
}

/// One version as a provider writes it.
#[derive(Clone, Copy)]
pub struct Version<'a> {
    pub release: &'a Release,
    /// The labels the traffic provider wants on every pod of the version from its start.
    pub pod_labels: &'a [(&'a str, &'a str)],
    /// The Release's reference, when the cluster is the management cluster (owner references
    /// do not cross API servers).
    pub owner: Option<&'a OwnerReference>,
    /// The Application's reference, when the cluster is the management cluster: the owner of
    /// the objects its versions share, which go with the Application there.
    pub app_owner: Option<&'a OwnerReference>,
    /// The newest other version the cluster's step keeps running: where one workload holds
    /// one version at a time (a DaemonSet), the one it goes back to when this one leaves.
    pub successor: Option<&'a Release>,
}

/// What a kind of workload does.
pub trait WorkloadProvider: Sync {
    fn kind(&self) -> WorkloadKind;

    /// What it watches and writes in a cluster.
    fn touches(&self) -> &'static [Touch];

    /// What the cluster runs of each version, by release.
    fn observe(&self, cluster: Workloads<'_>) -> BTreeMap<String, VersionObservation>;

    /// The writes that make the cluster run `capacity` of the version: none of it at zero.
    fn install(
        &self,
        cluster: Workloads<'_>,
        version: Version<'_>,
        capacity: Capacity,
    ) -> Vec<Write>;

    /// The writes that run none of an installed version while keeping its objects (a Drained
    /// version, `Change::Idle`).
    fn idle(&self, cluster: Workloads<'_>, version: Version<'_>) -> Vec<Write>;

    /// The writes that take every object of `release` out of the cluster.
    fn remove(&self, cluster: Workloads<'_>, release: &Release) -> Vec<Write>;
}

/// Every workload provider, one per kind.
pub const PROVIDERS: &[&dyn WorkloadProvider] = &[
    &deployment::Deployments,
    &stateful_set::StatefulSets,
    &daemon_set::DaemonSets,
];

/// The provider of the template's workload.
pub fn provider(template: &Template) -> &'static dyn WorkloadProvider {
    let kind = template.workload_kind();
    PROVIDERS
        .iter()
        .copied()
        .find(|provider| provider.kind() == kind)
        .unwrap_or(&deployment::Deployments)
}

/// The providers of the templates' workloads, each once.
pub fn providers_of<'t>(
    templates: impl IntoIterator<Item = &'t Template>,
) -> Vec<&'static dyn WorkloadProvider> {
    let mut providers: Vec<&'static dyn WorkloadProvider> = Vec::new();
    for template in templates {
        let provider = provider(template);
        if !providers
            .iter()
            .any(|known| known.kind() == provider.kind())
        {
            providers.push(provider);
        }
    }
    providers
}

/// The pipeline the engine runs for a Release of `template`: a StatefulSet's, rolled out in
/// place, gives the incumbent the rest of the contender's share at each step
/// ([`stateful_set::in_place_pipeline`]); every other kind's is the pipeline as written.
pub fn engine_pipeline<'p>(template: &Template, pipeline: &'p Pipeline) -> Cow<'p, Pipeline> {
    match template.workload_kind() {
        WorkloadKind::StatefulSet => {
            stateful_set::in_place_pipeline(pipeline, template.replicas().unwrap_or(1))
        }
        WorkloadKind::Deployment | WorkloadKind::DaemonSet => Cow::Borrowed(pipeline),
    }
}

/// Why a Release of `template` cannot follow the versions that still run (`running`, by
/// release name), if it cannot: a provider moves capacity only between versions of its own kind
/// (a StatefulSet created for a contender would start all of its pods at once, and a DaemonSet
/// rolled back would take a Deployment's pod template), and a StatefulSet or DaemonSet, rolled
/// out in place, keeps its name (a renamed one would be a second one, started whole).
pub fn refuses_to_follow<'t>(
    template: &Template,
    running: impl IntoIterator<Item = (&'t str, &'t Template)>,
) -> Option<String> {
    let kind = template.workload_kind();
    let name = template.workload().and_then(|workload| workload.name());
    for (release, earlier) in running {
        let earlier_kind = earlier.workload_kind();
        if earlier_kind != kind {
            return Some(format!(
                "spec.template: the workload is a {new} where version {release} runs a {old}; \
                 the versions of one application share a kind of workload. Roll the {new} out \
                 as an Application of its own (and delete this one once it serves), or put the \
                 {old} back",
                new = kind.as_str(),
                old = earlier_kind.as_str(),
            ));
        }
        let earlier_name = earlier.workload().and_then(|workload| workload.name());
        let in_place = matches!(kind, WorkloadKind::StatefulSet | WorkloadKind::DaemonSet);
        if in_place && earlier_name != name {
            return Some(format!(
                "spec.template: the {kind} is named {new:?} where version {release} runs \
                 {old:?}; a {kind} is rolled out in place and keeps its name. Name it {old:?} \
                 again",
                kind = kind.as_str(),
                new = name.unwrap_or_default(),
                old = earlier_name.unwrap_or_default(),
            ));
        }
    }
    None
}

/// What a Release runs at 100%: its autoscaler's bounds, or its workload's replicas. None for
/// a template whose count cannot be read, which validation refuses before a Release is made: a
/// count is never guessed.
pub fn full_capacity(template: &Template) -> Option<Capacity> {
    template.full_capacity().map(Capacity::from)
}

/// The labels of every object and pod of a version.
fn version_labels(release: &Release) -> Map<String, Value> {
    Map::from_iter([
        (
            APP_LABEL.to_owned(),
            release.spec.application.clone().into(),
        ),
        (RELEASE_LABEL.to_owned(), release.name_any().into()),
    ])
}

/// Names the object, puts it in the version's labels, and makes the Release its owner when
/// they share an API server. The namespace is the Api's.
fn set_metadata(
    body: &mut Map<String, Value>,
    name: &str,
    release: &Release,
    owner: Option<&OwnerReference>,
) {
    let metadata = object(body, "metadata");
    metadata.insert("name".into(), name.into());
    metadata.remove("namespace");
    object(metadata, "labels").extend(version_labels(release));
    if let Some(owner) = owner {
        metadata.insert(
            "ownerReferences".into(),
            json!([serde_json::to_value(owner).unwrap_or_default()]),
        );
    }
}

/// `body[key]` as an object, created when missing.
pub(crate) fn object<'b>(
    body: &'b mut Map<String, Value>,
    key: &str,
) -> &'b mut Map<String, Value> {
    let entry = body.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// A Release `name` of `application` in namespace `ns` holding `template`, as the providers'
/// tests make versions.
#[cfg(test)]
pub(crate) fn test_release(
    name: &str,
    application: &str,
    revision: u32,
    template: Template,
) -> Release {
    let mut release = Release::new(
        name,
        prism_api::ReleaseSpec {
            application: application.into(),
            revision,
            template,
            target: None,
            strategy: Default::default(),
            clusters: Vec::new(),
            target_step: None,
            aborted: false,
            side: None,
        },
    );
    release.metadata.namespace = Some("ns".into());
    release
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template whose only workload is a `kind` named `name`.
    fn template(kind: &str, name: &str) -> Template {
        serde_json::from_value(json!({"manifests": [{
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }]}))
        .unwrap()
    }

    #[test]
    fn a_version_of_the_running_kind_follows_them() {
        let deployment = template("Deployment", "web");
        let renamed = template("Deployment", "web-v2");
        let stateful_set = template("StatefulSet", "db");
        assert_eq!(
            refuses_to_follow(&renamed, [("web-1", &deployment)]),
            None,
            "a Deployment per version may be named anew"
        );
        assert_eq!(
            refuses_to_follow(&stateful_set, [("db-1", &stateful_set)]),
            None
        );
        assert_eq!(refuses_to_follow(&stateful_set, []), None);
    }

    #[test]
    fn a_new_kind_of_workload_is_refused_naming_the_running_version() {
        let deployment = template("Deployment", "web");
        let daemon_set = template("DaemonSet", "web");
        let message = refuses_to_follow(&daemon_set, [("web-3", &deployment)]).unwrap();
        assert!(message.starts_with("spec.template: "), "{message}");
        assert!(
            message.contains("a DaemonSet where version web-3 runs a Deployment"),
            "{message}"
        );
    }

    #[test]
    fn a_renamed_stateful_set_or_daemon_set_is_refused() {
        for kind in ["StatefulSet", "DaemonSet"] {
            let message =
                refuses_to_follow(&template(kind, "db2"), [("db-1", &template(kind, "db"))])
                    .unwrap();
            assert!(
                message.contains(&format!(
                    "the {kind} is named \"db2\" where version db-1 runs \"db\""
                )),
                "{message}"
            );
        }
    }
}
