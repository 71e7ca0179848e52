//! The template's Deployment, checked as Kubernetes checks one: counts that can be, a selector
//! of the right syntax that selects its own pods, and containers with a name, an image and
//! possible ports. Part of [`super::manifests`]' checks.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Checker, syntax};
use crate::application::Manifest;

impl Checker {
    /// Checks the workload: it parses, its counts are possible, its selector selects its own
    /// pods, and it runs containers.
    pub(super) fn deployment(&mut self, manifest: &Manifest, path: &str) -> Option<Deployment> {
        let deployment: Deployment = self.typed(manifest, path)?;
        self.metadata(&deployment.metadata, path, syntax::dns_subdomain);
        let spec = deployment.spec.clone().unwrap_or_default();
        let spec_path = format!("{path}.spec");
        for (field, value, what) in [
            ("replicas", spec.replicas, "the number of pods to run"),
            (
                "minReadySeconds",
                spec.min_ready_seconds,
                "how long a new pod must be ready before it counts as available",
            ),
            (
                "revisionHistoryLimit",
                spec.revision_history_limit,
                "how many old ReplicaSets to keep",
            ),
        ] {
            if let Some(value) = value.filter(|value| *value < 0) {
                self.fail(
                    format!("{spec_path}.{field}"),
                    &value,
                    format!("{field} is {what}: 0 or more"),
                );
            }
        }
        if let Some(deadline) = spec.progress_deadline_seconds
            && deadline <= spec.min_ready_seconds.unwrap_or(0)
        {
            self.fail(
                format!("{spec_path}.progressDeadlineSeconds"),
                &deadline,
                "progressDeadlineSeconds must be greater than minReadySeconds",
            );
        }
        let selector = &spec.selector;
        let selector_path = format!("{spec_path}.selector");
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !has_terms(selector) {
            self.fail(
                &selector_path,
                selector,
                "a Deployment needs spec.selector, the labels that pick its pods: e.g. matchLabels: {app: web}, with the same labels in spec.template.metadata.labels",
            );
        } else if self.selector(selector, &selector_path) && !selects(selector, &labels) {
            self.fail(
                &selector_path,
                selector,
                "the Deployment's selector must match its pod template's labels: add the selector's labels to spec.template.metadata.labels",
            );
        }
        self.pod(&spec.template, &format!("{spec_path}.template"));
        Some(deployment)
    }

    /// Checks a selector's syntax; whether it is well formed.
    fn selector(&mut self, selector: &LabelSelector, path: &str) -> bool {
        let before = self.errors.len();
        self.labels(
            selector.match_labels.as_ref(),
            &format!("{path}.matchLabels"),
        );
        for (k, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let path = format!("{path}.matchExpressions[{k}]");
            if let Some(problem) = syntax::qualified_name(&expression.key) {
                self.fail(
                    format!("{path}.key"),
                    &expression.key,
                    format!("not a valid label key: {problem}"),
                );
            }
            let values = expression.values.as_deref().unwrap_or_default();
            match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => self.fail(
                    format!("{path}.values"),
                    &expression.values,
                    "the operators In and NotIn need at least one value",
                ),
                "Exists" | "DoesNotExist" if !values.is_empty() => self.fail(
                    format!("{path}.values"),
                    &expression.values,
                    "the operators Exists and DoesNotExist take no values: remove them",
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => self.fail(
                    format!("{path}.operator"),
                    &other,
                    "the operator is one of In, NotIn, Exists and DoesNotExist",
                ),
            }
        }
        self.errors.len() == before
    }

    /// The pod template: its labels, and containers with a name, an image and possible ports.
    fn pod(&mut self, pod: &PodTemplateSpec, path: &str) {
        self.labels(
            pod.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            &format!("{path}.metadata.labels"),
        );
        let spec = pod.spec.clone().unwrap_or_default();
        let containers_path = format!("{path}.spec.containers");
        if spec.containers.is_empty() {
            self.fail(
                &containers_path,
                &spec.containers,
                "a Deployment runs at least one container: add one with a name and an image",
            );
        }
        let mut names = BTreeSet::new();
        let init = spec.init_containers.iter().flatten();
        let all = spec
            .containers
            .iter()
            .enumerate()
            .map(|(j, c)| (format!("{containers_path}[{j}]"), c))
            .chain(
                init.enumerate()
                    .map(|(j, c)| (format!("{path}.spec.initContainers[{j}]"), c)),
            );
        for (path, container) in all {
            if !container.name.is_empty() && !names.insert(container.name.clone()) {
                self.fail(
                    format!("{path}.name"),
                    &container.name,
                    "containers' names are unique within a pod: rename one",
                );
            }
            self.container(container, &path);
        }
    }

    fn container(&mut self, container: &Container, path: &str) {
        if container.name.is_empty() {
            self.fail(
                format!("{path}.name"),
                &container.name,
                "every container needs a name",
            );
        } else if let Some(problem) = syntax::dns_label(&container.name) {
            self.fail(
                format!("{path}.name"),
                &container.name,
                format!("not a valid container name: {problem}"),
            );
        }
        if container
            .image
            .as_deref()
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            self.fail(
                format!("{path}.image"),
                &container.image,
                "every container needs an image: the images are what a new version changes",
            );
        }
        let mut names = BTreeSet::new();
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let path = format!("{path}.ports[{p}]");
            self.port(&format!("{path}.containerPort"), port.container_port);
            if let Some(host_port) = port.host_port.filter(|port| *port != 0) {
                self.port(&format!("{path}.hostPort"), host_port);
            }
            self.protocol(port.protocol.as_deref(), &path);
            if let Some(name) = &port.name {
                self.port_name(name, syntax::port_name, &mut names, &path);
            }
        }
    }
}

/// Whether a selector names any label: an empty one would select every pod of the namespace,
/// other applications' included.
fn has_terms(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
}

/// Whether a Deployment's selector selects its own pods.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let listed = || value.is_some_and(|v| e.values.iter().flatten().any(|x| x == v));
        match e.operator.as_str() {
            "In" => listed(),
            "NotIn" => !listed(),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}
