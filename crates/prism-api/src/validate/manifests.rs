//! The template's objects, checked as Kubernetes would check them, offline: each object parses
//! strictly as the typed object of its kind (a field the kind does not have is an error, as is a
//! value of the wrong type), then the values that Kubernetes' own validation refuses and a type
//! cannot tell (a negative count, a port out of range, a label of the wrong syntax, a selector
//! that misses its pods). Every error's path is the field's full path in the Application, e.g.
//! `spec.template.manifests[0].spec.replicas`.
//!
//! The controller also asks the management cluster's API server (a dry run) before a Release
//! exists, for what only the server knows; see `prism-controller`'s `dry_run.rs`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Checker, MAX_MANIFESTS, TEMPLATE_KINDS, rule_without_field, syntax};
use crate::application::{ApplicationSpec, Manifest};
use crate::chart::{Chart, WorkloadKind};
use crate::rules;

const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const MAX_PORT: i32 = 65535;

impl Checker {
    /// The objects of a template at `path`: its inline manifests, or what its chart rendered
    /// (`spec.template.chart`, which may render more than a template may inline).
    pub(super) fn manifests(&mut self, manifests: &[Manifest], spec: &ApplicationSpec, path: &str) {
        let chart = spec.template.chart.as_ref();
        if chart.is_none() && manifests.len() > MAX_MANIFESTS {
            self.fail(
                path,
                &manifests.len(),
                format!("a template has at most {MAX_MANIFESTS} objects"),
            );
        }
        let kinds: Vec<Option<&str>> = manifests.iter().map(Manifest::kind).collect();
        let mut autoscalers = Vec::new();
        for (i, manifest) in manifests.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let object = manifest.object();
            if manifest.api_version().is_none() {
                self.fail(
                    format!("{path}.apiVersion"),
                    &object.get("apiVersion"),
                    "every object needs an apiVersion, e.g. apps/v1",
                );
            }
            if manifest.kind().is_none() {
                self.fail(
                    format!("{path}.kind"),
                    &object.get("kind"),
                    "every object needs a kind, e.g. Deployment",
                );
            }
            if manifest.name().is_none() {
                self.fail(
                    format!("{path}.metadata.name"),
                    &object.get("metadata"),
                    "every object needs a metadata.name",
                );
            }
            self.rule(
                manifest.kind() != Some("Secret"),
                &format!("{path}.kind"),
                &"Secret",
                rule_without_field(rules::NO_INLINE_SECRETS),
            );
            self.rule(
                manifest
                    .kind()
                    .is_none_or(|kind| TEMPLATE_KINDS.contains(&kind) || kind == "Secret"),
                &format!("{path}.kind"),
                &manifest.kind(),
                rule_without_field(rules::TEMPLATE_KINDS),
            );
            // A missing apiVersion is reported above; `typed` would report it a second time.
            if manifest.api_version().is_none() {
                continue;
            }
            match manifest.kind() {
                Some("Deployment") => {
                    self.deployment(manifest, &path);
                }
                Some("StatefulSet") => self.stateful_set(manifest, &path),
                Some("DaemonSet") => self.named::<DaemonSet>(manifest, &path),
                Some("ServiceAccount") => self.named::<ServiceAccount>(manifest, &path),
                Some("Role") => self.named::<Role>(manifest, &path),
                Some("RoleBinding") => self.named::<RoleBinding>(manifest, &path),
                Some("PodDisruptionBudget") => self.named::<PodDisruptionBudget>(manifest, &path),
                Some("Ingress") => self.named::<Ingress>(manifest, &path),
                Some("NetworkPolicy") => self.named::<NetworkPolicy>(manifest, &path),
                Some("HorizontalPodAutoscaler") => {
                    let hpa = self.typed(manifest, &path);
                    if let Some(hpa) = &hpa {
                        self.autoscaler(hpa, &path);
                    }
                    autoscalers.push((path, hpa));
                }
                Some("Service") => self.service(manifest, &path),
                Some("ConfigMap") => self.config_map(manifest, &path),
                _ => {}
            }
        }

        let count = |kind: &str| kinds.iter().filter(|k| **k == Some(kind)).count();
        let workload = self.workload(manifests, chart, path);
        self.rule(
            count("HorizontalPodAutoscaler") <= 1,
            "spec.template",
            &kinds,
            rules::AT_MOST_ONE_HPA,
        );
        if let ([(path, Some(hpa))], Some(workload)) = (autoscalers.as_slice(), workload) {
            self.hpa_target(hpa, path, workload);
            self.stateful_set_not_autoscaled(path, workload);
        }

        self.rule(
            !spec.has_traffic() || count("Service") > 0,
            "spec",
            &kinds,
            rules::TRAFFIC_NEEDS_SERVICE,
        );
    }

    /// The workload Prism scales: the only Deployment, StatefulSet or DaemonSet, or the one the
    /// chart names. A chart that renders others is refused: Prism rolls one workload out per
    /// Application.
    fn workload<'m>(
        &mut self,
        manifests: &'m [Manifest],
        chart: Option<&Chart>,
        path: &str,
    ) -> Option<&'m Manifest> {
        let workloads: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| m.kind().and_then(WorkloadKind::of).is_some())
            .collect();
        let listed = || {
            workloads
                .iter()
                .map(|m| {
                    format!(
                        "{} {}",
                        m.kind().unwrap_or_default(),
                        m.name().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(chart) = chart else {
            let kinds: Vec<Option<&str>> = manifests.iter().map(Manifest::kind).collect();
            self.rule(
                workloads.len() == 1,
                "spec.template",
                &kinds,
                rules::ONE_WORKLOAD,
            );
            return workloads.first().copied().filter(|_| workloads.len() == 1);
        };
        match (&chart.workload, workloads.as_slice()) {
            (_, []) => {
                self.fail(
                    path,
                    &chart.name,
                    format!("chart {} {} renders no Deployment, StatefulSet or DaemonSet: Prism rolls out a workload, so pick a chart (or values) that renders one", chart.name, chart.version),
                );
                None
            }
            (None, [only]) => Some(*only),
            (None, _) => {
                self.fail(
                    format!("{path}.workload"),
                    &Value::Null,
                    format!("chart {} {} renders {} workloads ({}): name the one Prism scales in spec.template.chart.workload (kind and name), and turn the others off in its values or give them an Application of their own", chart.name, chart.version, workloads.len(), listed()),
                );
                None
            }
            (Some(named), _) => {
                let found = workloads.iter().copied().find(|m| {
                    m.kind() == Some(named.kind.as_str()) && m.name() == Some(named.name.as_str())
                });
                match found {
                    None => self.fail(
                        format!("{path}.workload"),
                        named,
                        format!("chart {} {} renders no {} named {}; it renders {}", chart.name, chart.version, named.kind.as_str(), named.name, listed()),
                    ),
                    Some(_) if workloads.len() > 1 => self.fail(
                        format!("{path}.workload"),
                        named,
                        format!("chart {} {} renders other workloads besides {} {} ({}): Prism rolls out one workload per Application, so turn the others off in the chart's values or give them an Application of their own", chart.name, chart.version, named.kind.as_str(), named.name, listed()),
                    ),
                    Some(_) => {}
                }
                found
            }
        }
    }

    /// An object parsed strictly as its kind, with its name and labels checked.
    fn named<K: Resource + DeserializeOwned + k8s_openapi::Metadata<Ty = ObjectMeta>>(
        &mut self,
        manifest: &Manifest,
        path: &str,
    ) {
        if let Some(object) = self.typed::<K>(manifest, path) {
            self.metadata(object.metadata(), path, syntax::dns_subdomain);
        }
    }

    /// The manifest at `path` as the typed object of its kind, parsed strictly: each field the
    /// kind does not have, and a field of the wrong type, is an error at its full path. The object
    /// is returned when it parses, unknown fields or not, so that its values are checked too.
    pub(super) fn typed<K: Resource + DeserializeOwned>(
        &mut self,
        manifest: &Manifest,
        path: &str,
    ) -> Option<K> {
        if manifest.api_version() != Some(K::API_VERSION) {
            self.fail(
                format!("{path}.apiVersion"),
                &manifest.api_version(),
                rules::TEMPLATE_API_VERSIONS.message,
            );
            return None;
        }
        let object = Value::Object(manifest.object());
        let mut unknown = Vec::new();
        let parsed: Result<K, _> = {
            let mut record = |field: serde_ignored::Path| unknown.push(ignored_path(&field));
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
                object.clone(),
                &mut record,
            ))
        };
        let kind = format!("a {} ({})", K::KIND, K::API_VERSION);
        for field in unknown {
            let name = field.last().map(Part::to_string).unwrap_or_default();
            self.fail(
                format!("{path}{}", format_path(&field)),
                &value_at(&object, &field),
                format!(
                    "{kind} has no field {name}: remove it, or fix its spelling (see `kubectl explain {}`)",
                    explain_path(K::KIND, field.split_last().map_or(&[][..], |(_, parent)| parent))
                ),
            );
        }
        match parsed {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let field: Vec<Part> = error.path().iter().filter_map(Part::of).collect();
                self.fail(
                    format!("{path}{}", format_path(&field)),
                    &value_at(&object, &field),
                    format!(
                        "{}: give the field the type {kind} has there (see `kubectl explain {}`)",
                        error.inner(),
                        explain_path(K::KIND, &field)
                    ),
                );
                None
            }
        }
    }

    /// The name, labels and annotation keys of an object, its name checked by `name_rule`.
    pub(super) fn metadata(
        &mut self,
        metadata: &ObjectMeta,
        path: &str,
        name_rule: fn(&str) -> Option<String>,
    ) {
        if let Some(name) = &metadata.name
            && let Some(problem) = name_rule(name)
        {
            self.fail(
                format!("{path}.metadata.name"),
                name,
                format!("not a valid name: {problem}"),
            );
        }
        self.labels(metadata.labels.as_ref(), &format!("{path}.metadata.labels"));
        // Kubernetes checks annotation keys without regard to case.
        for key in metadata.annotations.iter().flatten().map(|(key, _)| key) {
            if let Some(problem) = syntax::qualified_name(&key.to_lowercase()) {
                self.fail(
                    format!("{path}.metadata.annotations"),
                    key,
                    format!("not a valid annotation key: {problem}"),
                );
            }
        }
    }

    pub(super) fn labels(&mut self, labels: Option<&BTreeMap<String, String>>, path: &str) {
        for (key, value) in labels.into_iter().flatten() {
            if let Some(problem) = syntax::qualified_name(key) {
                self.fail(path, key, format!("not a valid label key: {problem}"));
            }
            if let Some(problem) = syntax::label_value(value) {
                self.fail(
                    path,
                    value,
                    format!("the value of label {key} is not valid: {problem}"),
                );
            }
        }
    }

    pub(super) fn port(&mut self, path: &str, port: i32) {
        if !(1..=MAX_PORT).contains(&port) {
            self.fail(
                path,
                &port,
                format!("a port number is from 1 to {MAX_PORT}"),
            );
        }
    }

    pub(super) fn protocol(&mut self, protocol: Option<&str>, path: &str) {
        if let Some(protocol) = protocol.filter(|p| !PROTOCOLS.contains(p)) {
            self.fail(
                format!("{path}.protocol"),
                &protocol,
                "the protocol is TCP (the default), UDP or SCTP",
            );
        }
    }

    /// A port's name, by `rule` (a container's port has an IANA service name, a Service's port a
    /// DNS label), unique among its siblings.
    pub(super) fn port_name(
        &mut self,
        name: &str,
        rule: fn(&str) -> Option<String>,
        seen: &mut BTreeSet<String>,
        path: &str,
    ) {
        if let Some(problem) = rule(name) {
            self.fail(format!("{path}.name"), &name, problem);
        } else if !seen.insert(name.to_owned()) {
            self.fail(
                format!("{path}.name"),
                &name,
                "ports' names are unique: rename one",
            );
        }
    }

    fn service(&mut self, manifest: &Manifest, path: &str) {
        let Some(service) = self.typed::<Service>(manifest, path) else {
            return;
        };
        self.metadata(&service.metadata, path, syntax::service_name);
        let ports = service.spec.and_then(|spec| spec.ports).unwrap_or_default();
        let mut names = BTreeSet::new();
        for (p, port) in ports.iter().enumerate() {
            let path = format!("{path}.spec.ports[{p}]");
            self.port(&format!("{path}.port"), port.port);
            match &port.target_port {
                Some(IntOrString::Int(target)) => self.port(&format!("{path}.targetPort"), *target),
                Some(IntOrString::String(name)) => {
                    if let Some(problem) = syntax::port_name(name) {
                        self.fail(
                            format!("{path}.targetPort"),
                            name,
                            format!("a named targetPort names a container's port: {problem}"),
                        );
                    }
                }
                None => {}
            }
            if let Some(node_port) = port.node_port.filter(|port| *port != 0) {
                self.port(&format!("{path}.nodePort"), node_port);
            }
            self.protocol(port.protocol.as_deref(), &path);
            match &port.name {
                Some(name) => self.port_name(name, service_port_name, &mut names, &path),
                None if ports.len() > 1 => self.fail(
                    format!("{path}.name"),
                    &None::<()>,
                    "a Service with several ports names each of them: add a name",
                ),
                None => {}
            }
        }
    }

    fn config_map(&mut self, manifest: &Manifest, path: &str) {
        let Some(config_map) = self.typed::<ConfigMap>(manifest, path) else {
            return;
        };
        self.metadata(&config_map.metadata, path, syntax::dns_subdomain);
        let data = config_map.data.unwrap_or_default();
        let binary = config_map.binary_data.unwrap_or_default();
        let keys = data
            .keys()
            .map(|key| ("data", key))
            .chain(binary.keys().map(|key| ("binaryData", key)));
        for (field, key) in keys {
            if let Some(problem) = syntax::config_key(key) {
                self.fail(format!("{path}.{field}"), key, problem);
            }
            if field == "binaryData" && data.contains_key(key) {
                self.fail(
                    format!("{path}.binaryData"),
                    key,
                    "a key is in data or in binaryData, not in both: remove one",
                );
            }
        }
    }

    /// An autoscaler's name and bounds: Kubernetes needs at least 1 pod at either bound.
    fn autoscaler(&mut self, hpa: &HorizontalPodAutoscaler, path: &str) {
        self.metadata(&hpa.metadata, path, syntax::dns_subdomain);
        let spec = &hpa.spec;
        if let Some(min) = spec.min_replicas.filter(|min| *min < 1) {
            self.fail(
                format!("{path}.spec.minReplicas"),
                &min,
                "minReplicas is at least 1: the fewest pods the HorizontalPodAutoscaler keeps (Prism removes the autoscaler of a version it scales to zero)",
            );
        }
        if spec.max_replicas < 1 {
            self.fail(
                format!("{path}.spec.maxReplicas"),
                &spec.max_replicas,
                "maxReplicas is at least 1: the most pods the HorizontalPodAutoscaler may run",
            );
        } else if spec.min_replicas.unwrap_or(1) > spec.max_replicas {
            self.fail(
                format!("{path}.spec.minReplicas"),
                &spec.min_replicas,
                "minReplicas must not be greater than maxReplicas",
            );
        }
    }

    fn hpa_target(&mut self, hpa: &HorizontalPodAutoscaler, path: &str, workload: &Manifest) {
        let target = &hpa.spec.scale_target_ref;
        let (kind, name) = (
            workload.kind().unwrap_or_default(),
            workload.name().unwrap_or_default(),
        );
        if target.kind != kind || target.name != name {
            self.fail(
                format!("{path}.spec.scaleTargetRef"),
                target,
                format!("the HorizontalPodAutoscaler must scale the template's {kind}: set kind: {kind} and name: {name}"),
            );
        }
    }
}

/// One step of a field's path within an object.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Field(String),
    Index(usize),
}

impl Part {
    fn of(segment: &serde_path_to_error::Segment) -> Option<Part> {
        match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Part::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Part::Field(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                None
            }
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Field(field) => write!(f, "{field}"),
            Part::Index(index) => write!(f, "[{index}]"),
        }
    }
}

fn ignored_path(path: &serde_ignored::Path) -> Vec<Part> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut parts = ignored_path(parent);
            parts.push(Part::Index(*index));
            parts
        }
        Path::Map { parent, key } => {
            let mut parts = ignored_path(parent);
            parts.push(Part::Field(key.clone()));
            parts
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `.spec.template.spec.containers[0].name`: to append to the object's own path.
fn format_path(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Part::Field(field) => format!(".{field}"),
            Part::Index(_) => part.to_string(),
        })
        .collect()
}

/// `deployment.spec.template.spec.containers`: the argument of `kubectl explain` for the field
/// (or, for a field the kind lacks, its parent).
fn explain_path(kind: &str, parts: &[Part]) -> String {
    let fields = parts.iter().filter_map(|part| match part {
        Part::Field(field) => Some(field.as_str()),
        Part::Index(_) => None,
    });
    std::iter::once(kind.to_lowercase().as_str())
        .chain(fields)
        .collect::<Vec<_>>()
        .join(".")
}

/// The value at `path` in `object`, or as near to it as the path leads (a missing field's
/// path ends at the object that lacks it).
fn value_at<'a>(object: &'a Value, path: &[Part]) -> &'a Value {
    let mut node = object;
    for part in path {
        let child = match part {
            Part::Index(index) => node.get(*index),
            Part::Field(key) => node.get(key),
        };
        match child {
            Some(child) => node = child,
            None => break,
        }
    }
    node
}

/// A Service's port name: a DNS label.
fn service_port_name(name: &str) -> Option<String> {
    syntax::dns_label(name)
        .map(|problem| format!("a Service's port name is a DNS label: {problem}"))
}
