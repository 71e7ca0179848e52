//! `SideVersion`: a version of an Application outside its mainline rollout (the seed's
//! DeploymentVersion), reachable only on routes of its own.
//!
//! It clones the Application's current template with its own parameters (images, env, replicas,
//! ConfigMap data) into a Release of its own, which runs on the Application's clusters at full
//! capacity, never takes the default route, and never joins, blocks or counts in the mainline's
//! steps or `versions.max`. Deleting it, its TTL passing, or changing its parameters retires that
//! Release through the ordinary retirement (routes leave, drain, scale to 0, delete); a change
//! makes a new Release that replaces it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::application::{Manifest, Template};
use crate::conditions::Condition;
use crate::rules;
use crate::strategy::{Duration, Route, RouteMatch, RouteTo};
use crate::validate::ValidationError;

pub mod shadow;

// Each printcolumn(...) repeats `type_`, which the lint takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "SideVersion",
    namespaced,
    status = "SideVersionStatus",
    shortname = "psv",
    category = "prism",
    doc = "A version of an Application outside its mainline rollout: the Application's current template with this object's images, env, replicas and ConfigMap data, on the Application's clusters, reachable only on this object's routes. It never takes the default route and never joins the mainline's steps or counts in versions.max. Deleting it, its ttl passing, or changing it retires its version (routes leave, drain, scale to 0, delete); a change makes a new version that replaces it.",
    printcolumn(
        name = "Application",
        type_ = "string",
        json_path = ".spec.application"
    ),
    printcolumn(name = "Release", type_ = "string", json_path = ".status.release"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SideVersionSpec {
    /// The Application (in this namespace) whose current template this version clones.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = rules::SIDE_APPLICATION_IMMUTABLE)]
    pub application: String,
    /// Images by container name, e.g. `{app: ghcr.io/acme/docs:pr-42}`: each must name a
    /// container (or init container) of the template's Deployment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub images: BTreeMap<String, String>,
    /// Environment variables set (added, or replacing the template's value) in one container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvOverride>,
    /// The version's replicas in each of its clusters. Absent: the template's. Not allowed when
    /// the template has a HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: Option<u32>,
    /// Keys set in the data of the template's ConfigMaps, by ConfigMap name: each must name a
    /// ConfigMap of the template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// The only routes that reach this version (the Application's traffic provider must be
    /// gatewayAPI or istio). `{version}` in a match is this object's name.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = rules::SIDE_ROUTE_NAMES_UNIQUE)]
    pub routes: Vec<SideRoute>,
    /// The version retires this long after this object was made (its parameters changing does
    /// not restart the count). Absent: it lives until this object is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvOverride {
    /// A container of the template's Deployment.
    #[schemars(length(min = 1, max = 253))]
    pub container: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// A route to this version alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideRoute {
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
    #[serde(rename = "match")]
    pub matches: RouteMatch,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideVersionStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Release that runs this version now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// When the ttl ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Valid (the overrides apply to the Application's template) and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The name of a side Release's route: its SideVersion's name and the route's, so that no side
/// route shares a name with a strategy's or another side version's.
pub fn route_name(side_version: &str, route: &str) -> String {
    format!("{side_version}-{route}")
}

impl SideVersionSpec {
    /// The routes as the engine takes them: each to this version alone, named after the object.
    /// `to` is `each` (the one value under which the Release's schema lets a match hold
    /// `{version}`); the engine gives a side version's routes to it alone whatever `to` says.
    pub fn engine_routes(&self, side_version: &str) -> Vec<Route> {
        self.routes
            .iter()
            .map(|route| Route {
                name: route_name(side_version, &route.name),
                to: RouteTo::Each,
                matches: route.matches.clone(),
            })
            .collect()
    }

    /// The template this version runs: `template` with the overrides applied. An override that
    /// does not apply (a container or ConfigMap the template lacks, replicas beside an
    /// autoscaler) is an error naming the field and the fix; every error is collected.
    pub fn apply(&self, template: &Template) -> Result<Template, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut manifests = Vec::with_capacity(template.manifests.len());
        let deployments = template.of_kind("Deployment").count();
        if deployments != 1 {
            errors.push(ValidationError::new(
                "spec.application",
                &self.application,
                "the Application's template has no single Deployment to clone: fix the Application first",
            ));
        }
        let config_maps: Vec<&str> = template
            .of_kind("ConfigMap")
            .filter_map(Manifest::name)
            .collect();
        for name in self.config_maps.keys() {
            if !config_maps.contains(&name.as_str()) {
                errors.push(ValidationError::new(
                    format!("spec.configMaps.{name}"),
                    name,
                    format!(
                        "the Application's template has no ConfigMap named {name:?} (it has {config_maps:?}): name one of them"
                    ),
                ));
            }
        }
        if self.replicas.is_some() && template.of_kind("HorizontalPodAutoscaler").count() > 0 {
            errors.push(ValidationError::new(
                "spec.replicas",
                &self.replicas,
                "the template's HorizontalPodAutoscaler sets the replicas: remove spec.replicas",
            ));
        }
        for manifest in &template.manifests {
            let mut object = manifest.object();
            match manifest.kind() {
                Some("Deployment") => self.apply_to_deployment(&mut object, &mut errors),
                Some("ConfigMap") => {
                    if let Some(data) = manifest.name().and_then(|name| self.config_maps.get(name))
                    {
                        let slot = object
                            .entry("data")
                            .or_insert_with(|| serde_json::Value::Object(Default::default()));
                        if let Some(map) = slot.as_object_mut() {
                            for (key, value) in data {
                                map.insert(key.clone(), value.clone().into());
                            }
                        }
                    }
                }
                _ => {}
            }
            manifests.push(Manifest::from(object));
        }
        if errors.is_empty() {
            Ok(Template {
                manifests,
                chart: template.chart.clone(),
            })
        } else {
            Err(errors)
        }
    }

    fn apply_to_deployment(
        &self,
        object: &mut serde_json::Map<String, serde_json::Value>,
        errors: &mut Vec<ValidationError>,
    ) {
        if let Some(replicas) = self.replicas
            && let Some(spec) = object.get_mut("spec").and_then(|s| s.as_object_mut())
        {
            spec.insert("replicas".into(), replicas.into());
        }
        let pod = object
            .get_mut("spec")
            .and_then(|spec| spec.get_mut("template"))
            .and_then(|template| template.get_mut("spec"))
            .and_then(|spec| spec.as_object_mut());
        let Some(pod) = pod else { return };
        let mut names = Vec::new();
        for list in ["containers", "initContainers"] {
            let containers = pod.get_mut(list).and_then(|c| c.as_array_mut());
            for container in containers.into_iter().flatten() {
                let Some(container) = container.as_object_mut() else {
                    continue;
                };
                let name = container
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_owned();
                if let Some(image) = self.images.get(&name) {
                    container.insert("image".into(), image.clone().into());
                }
                for env in self.env.iter().filter(|env| env.container == name) {
                    set_env(container, &env.name, &env.value);
                }
                names.push(name);
            }
        }
        let unknown = |container: &str| !names.iter().any(|name| name == container);
        for container in self.images.keys().filter(|c| unknown(c)) {
            errors.push(ValidationError::new(
                format!("spec.images.{container}"),
                container,
                format!(
                    "the template's Deployment has no container named {container:?} (it has {names:?}): name one of them"
                ),
            ));
        }
        for (index, env) in self.env.iter().enumerate() {
            if unknown(&env.container) {
                errors.push(ValidationError::new(
                    format!("spec.env[{index}].container"),
                    &env.container,
                    format!(
                        "the template's Deployment has no container named {:?} (it has {names:?}): name one of them",
                        env.container
                    ),
                ));
            }
        }
    }
}

fn set_env(container: &mut serde_json::Map<String, serde_json::Value>, name: &str, value: &str) {
    let slot = container
        .entry("env")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let Some(list) = slot.as_array_mut() else {
        return;
    };
    let entry = serde_json::json!({"name": name, "value": value});
    match list
        .iter_mut()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
    {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

/// What `validate` checks again of the CEL rules on a SideVersion, with the API server's messages.
pub fn validate(spec: &SideVersionSpec) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for (index, route) in spec.routes.iter().enumerate() {
        if spec.routes[..index].iter().any(|r| r.name == route.name) {
            errors.push(ValidationError::new(
                format!("spec.routes[{index}].name"),
                &route.name,
                rules::SIDE_ROUTE_NAMES_UNIQUE.message,
            ));
        }
    }
    if spec.routes.is_empty() {
        errors.push(ValidationError::new(
            "spec.routes",
            &spec.routes,
            "a side version needs at least one route of its own: add a header, pathPrefix or subdomain route",
        ));
    }
    errors
}

#[cfg(test)]
mod tests;
