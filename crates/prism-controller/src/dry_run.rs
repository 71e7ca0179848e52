//! The template as the API server would take it, before a Release exists: a server-side dry run
//! (`dryRun=All`, `fieldValidation=Strict`) of each object the workload and traffic providers
//! would write for the new version, in the Application's namespace of the management cluster.
//! It finds what only a server knows (its own validation, admission policies, a Kubernetes
//! version's rules) beyond `prism_api::validate`'s offline checks.
//!
//! Each object is created under `generateName`, so that it can never meet a live object (a
//! version's leftover Deployment, the application's own Service); nothing is stored. A refusal
//! is the Application's `Valid=False` with reason [`REASON_INVALID_TEMPLATE`]. The verdict is
//! remembered in the `Valid` condition for the Application's generation, so the server is asked
//! once per generation that makes a Release: never at rest, never again for the same spec; and
//! only about the template objects no Release has as they are (a new image: one request).

use kube::api::{DynamicObject, PostParams};
use kube::core::Request;
use kube::{Api, Client, ResourceExt};
use prism_api::application::{Manifest, Template};
use prism_api::conditions;
use prism_api::{Application, Release};
use serde_json::Value;

use prism_api::labels::FIELD_MANAGER;

use crate::application::Invalid;
use crate::error::{Error, ReleasesError};
use crate::rollout::service_manifest;
use crate::traffic::{self, AppView};
use crate::workload;
use crate::write::{Kind, Write};

/// The `Valid` condition's reason when the API server refuses an object of the template.
pub const REASON_INVALID_TEMPLATE: &str = "InvalidTemplate";
/// The `Valid` condition's message once the API server accepted the template for the
/// Application's generation.
pub const ACCEPTED: &str = "the spec and its strategy are valid, and the management cluster's API server accepts the template's objects (dry run)";

/// One object the new version would write, and the template object it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// `spec.template.manifests[1] (Service web)`.
    pub source: String,
    pub kind: Kind,
    /// The object as the provider builds it, named by `generateName` instead of its name.
    pub body: Value,
}

/// The objects the workload and traffic providers would write for `release` (the Release about to
/// be made for `app`) at full capacity, in a cluster where nothing of the application runs yet,
/// but those whose template object one of `earlier` (the templates of the Application's Releases)
/// holds as it is: it was accepted when that Release was installed, and what the providers add to
/// it is theirs. Pure. Allocations that a second copy of a live Service would collide with (its
/// cluster IP, its node ports) are left to the server to choose.
pub fn candidates(
    app: &Application,
    release: &Release,
    earlier: &[&Template],
) -> Result<Vec<Candidate>, Error> {
    let template = &release.spec.template;
    let release_name = release.name_any();
    let capacity = workload::full_capacity(template)
        .ok_or_else(|| ReleasesError::UnreadableCapacity(release_name.clone()))?;
    let provider = traffic::provider(app.spec.traffic.provider);
    let pod_labels = provider.map_or(&[][..], |p| p.pod_template_labels());
    let version = workload::Version {
        release,
        pod_labels,
        owner: None,
        app_owner: None,
        successor: None,
    };
    let mut writes =
        workload::provider(template).install(workload::Workloads::default(), version, capacity);
    if let Some(provider) = provider {
        let view = AppView {
            target: None,
            app: app.metadata.name.as_deref().unwrap_or_default(),
            service: service_manifest(app, release).zip(Some(release_name.as_str())),
            observed_service: None,
            services: &[],
            endpoint_slices: &[],
            pods: &[],
            owner: None,
            policy: &app.spec.traffic,
            releases: &[],
            http_routes: Ok(&[]),
            grpc_routes: Ok(&[]),
            virtual_services: Ok(&[]),
        };
        let weights = [(release_name.clone(), 100)].into();
        writes.extend(provider.writes(&view, &weights, &[]));
    }
    let candidates = writes
        .into_iter()
        .filter_map(|write| match write {
            // A kind only clusters that allow it get (`prism cluster join --allow-kind`) is not
            // the management cluster's to try: it was checked strictly offline.
            Write::Apply { kind, .. } if workload::objects::OPTIONAL.contains(&kind) => None,
            Write::Apply { kind, body } => Some((kind, body)),
            Write::Delete { .. } | Write::Label { .. } => None,
        })
        .filter_map(|(kind, mut body)| {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let found = source(&template.manifests, kind, &name, &release_name);
            if let Some((_, manifest)) = found
                && earlier
                    .iter()
                    .any(|template| template.manifests.contains(manifest))
            {
                return None;
            }
            let kind_name = kind.resource().kind;
            let source = match found {
                Some((i, manifest)) => format!(
                    "spec.template.manifests[{i}] ({kind_name} {})",
                    manifest.name().unwrap_or_default()
                ),
                None => format!("spec.template ({kind_name} {name})"),
            };
            if let Some(metadata) = body["metadata"].as_object_mut() {
                metadata.remove("name");
                metadata.insert("generateName".into(), format!("{name}-").into());
            }
            if kind == Kind::Service
                && let Some(spec) = body["spec"].as_object_mut()
            {
                for allocated in ["clusterIP", "clusterIPs", "healthCheckNodePort"] {
                    spec.remove(allocated);
                }
                for port in spec
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(port) = port.as_object_mut() {
                        port.remove("nodePort");
                    }
                }
            }
            Some(Candidate { source, kind, body })
        })
        .collect();
    Ok(candidates)
}

/// The template object (and its index) a written object of `kind` named `written` comes from.
fn source<'m>(
    manifests: &'m [Manifest],
    kind: Kind,
    written: &str,
    release: &str,
) -> Option<(usize, &'m Manifest)> {
    let kind_name = kind.resource().kind;
    manifests.iter().enumerate().find(|(_, manifest)| {
        let name = manifest.name().unwrap_or_default();
        manifest.kind() == Some(kind_name.as_str())
            && match kind {
                Kind::ConfigMap => workload::objects::copy_name(release, name) == written,
                // The application's Service, or a version's own (gatewayAPI).
                Kind::Service => name == written || written == release,
                Kind::Deployment
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::HorizontalPodAutoscaler
                | Kind::Pod => true,
                Kind::EndpointSlice
                | Kind::HttpRoute
                | Kind::GrpcRoute
                | Kind::VirtualService
                | Kind::Namespace
                | Kind::ServiceAccount
                | Kind::Role
                | Kind::RoleBinding
                | Kind::PodDisruptionBudget
                | Kind::Ingress
                | Kind::NetworkPolicy
                | Kind::Node => false,
            }
    })
}

/// The verdict remembered for the Application's current generation, if any: the `Valid`
/// condition of this generation either accepted the template or refused it for the server.
pub fn remembered(app: &Application) -> Option<Result<(), Invalid>> {
    let status = app.status.as_ref()?;
    let valid = conditions::find(&status.conditions, conditions::application::VALID)?;
    if valid.observed_generation != app.metadata.generation {
        return None;
    }
    match (valid.status.as_str(), valid.reason.as_str()) {
        ("True", _) if valid.message == ACCEPTED => Some(Ok(())),
        ("False", REASON_INVALID_TEMPLATE) => Some(Err(Invalid {
            reason: REASON_INVALID_TEMPLATE,
            message: valid.message.clone(),
        })),
        _ => None,
    }
}

/// Asks the API server to create each of `candidates` in `namespace`, without storing any:
/// `Ok(Err(invalid))` names every object it refuses, with its message. A failure that says
/// nothing about the template (the server unreachable, the controller not allowed to create) is
/// an error, retried: it never makes a template invalid.
pub async fn check(
    client: &Client,
    namespace: &str,
    candidates: &[Candidate],
) -> Result<Result<(), Invalid>, Error> {
    let mut refusals = Vec::new();
    for candidate in candidates {
        let resource = candidate.kind.resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let mut body = candidate.body.clone();
        body["apiVersion"] = resource.api_version.clone().into();
        body["kind"] = resource.kind.clone().into();
        let what = format!("a dry run of {} in {namespace}", candidate.source);
        let params = PostParams {
            dry_run: true,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        let bytes = serde_json::to_vec(&body).map_err(|source| ReleasesError::Serialize {
            what: what.clone(),
            source,
        })?;
        let mut request = Request::new(api.resource_url())
            .create(&params, bytes)
            .map_err(|error| ReleasesError::DryRun {
                object: what.clone(),
                source: kube::Error::BuildRequest(error),
            })?;
        // As strict as the providers' server-side applies: an unknown field is refused.
        let uri = format!("{}&fieldValidation=Strict", request.uri());
        *request.uri_mut() = uri.parse().map_err(|error| {
            let invalid = kube::core::request::Error::Validation(format!("{uri}: {error}"));
            ReleasesError::DryRun {
                object: what.clone(),
                source: kube::Error::BuildRequest(invalid),
            }
        })?;
        match client.request::<DynamicObject>(request).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422) => {
                refusals.push(format!(
                    "{}: the API server refuses it: {}",
                    candidate.source, status.message
                ));
            }
            Err(error) => {
                return Err(ReleasesError::DryRun {
                    object: what,
                    source: error,
                }
                .into());
            }
        }
    }
    if refusals.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(Invalid {
            reason: REASON_INVALID_TEMPLATE,
            message: format!(
                "{}; fix spec.template (the check runs again when the spec changes)",
                refusals.join("; ")
            ),
        }))
    }
}

/// Marks the `Valid` condition of `status` as the API server's acceptance of the template.
pub fn mark_accepted(status: &mut prism_api::application::ApplicationStatus) {
    if let Some(valid) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == conditions::application::VALID && c.status == "True")
    {
        valid.message = ACCEPTED.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_api::application::ApplicationStatus;
    use prism_api::conditions::Condition;
    use serde_json::json;

    fn app(spec: Value) -> Application {
        let mut app: Application = serde_json::from_value(json!({
            "apiVersion": "prism.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "ns", "generation": 3},
            "spec": spec,
        }))
        .unwrap();
        app.metadata.generation = Some(3);
        app
    }

    fn release_of(app: &Application) -> Release {
        crate::workload::test_release("web-2", "web", 2, app.spec.template.clone())
    }

    fn spec(traffic: &str) -> Value {
        json!({
            "template": {"manifests": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {
                    "type": "NodePort", "clusterIP": "10.0.0.9",
                    "ports": [{"port": 80, "nodePort": 30080}]}}
            ]},
            "traffic": {"provider": traffic},
            "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"}}]}
        })
    }

    #[test]
    fn every_object_the_providers_would_write_under_a_generated_name() {
        let app = app(spec("podLabels"));
        let candidates = candidates(&app, &release_of(&app), &[]).unwrap();
        let found: Vec<(&str, Kind, &Value)> = candidates
            .iter()
            .map(|c| {
                (
                    c.source.as_str(),
                    c.kind,
                    &c.body["metadata"]["generateName"],
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "spec.template.manifests[0] (ConfigMap settings)",
                    Kind::ConfigMap,
                    &json!("web-2-settings-")
                ),
                (
                    "spec.template.manifests[1] (Deployment web)",
                    Kind::Deployment,
                    &json!("web-2-")
                ),
                (
                    "spec.template.manifests[2] (Service web)",
                    Kind::Service,
                    &json!("web-")
                ),
            ]
        );
        for candidate in &candidates {
            assert_eq!(candidate.body["metadata"].get("name"), None);
        }
        // As the workload provider writes it: at full capacity, labelled as the version's.
        let deployment = &candidates[1].body;
        assert_eq!(deployment["spec"]["replicas"], 3);
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["prism.dev/release"],
            "web-2"
        );
        // A live Service holds these: a second copy would collide on them.
        let service = &candidates[2].body["spec"];
        assert_eq!(service.get("clusterIP"), None);
        assert_eq!(service["ports"], json!([{"port": 80}]));
        assert_eq!(service["type"], "NodePort");
    }

    #[test]
    fn only_template_objects_no_release_has_are_asked_about() {
        let before = app(spec("podLabels"));
        let mut changed = spec("podLabels");
        changed["template"]["manifests"][1]["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("web:3");
        let app = app(changed);
        let sources: Vec<String> = candidates(&app, &release_of(&app), &[&before.spec.template])
            .unwrap()
            .into_iter()
            .map(|c| c.source)
            .collect();
        assert_eq!(sources, ["spec.template.manifests[1] (Deployment web)"]);
    }

    #[test]
    fn a_workload_without_traffic_writes_no_service() {
        let mut spec = spec("none");
        spec["template"]["manifests"].as_array_mut().unwrap().pop();
        let app = app(spec);
        let kinds: Vec<Kind> = candidates(&app, &release_of(&app), &[])
            .unwrap()
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(kinds, [Kind::ConfigMap, Kind::Deployment]);
    }

    #[test]
    fn the_verdict_is_remembered_for_the_generation_it_was_given() {
        let mut app = app(spec("podLabels"));
        assert_eq!(remembered(&app), None);
        let valid = |generation: i64, status: &str, reason: &str, message: &str| Condition {
            type_: conditions::application::VALID.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(generation),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        let mut with = |condition: Condition| {
            app.status = Some(ApplicationStatus {
                conditions: vec![condition],
                ..ApplicationStatus::default()
            });
            remembered(&app)
        };
        assert_eq!(with(valid(3, "True", "Valid", ACCEPTED)), Some(Ok(())));
        let refused = "spec.template.manifests[1] (Deployment web): the API server refuses it: no";
        assert_eq!(
            with(valid(3, "False", REASON_INVALID_TEMPLATE, refused)),
            Some(Err(Invalid {
                reason: REASON_INVALID_TEMPLATE,
                message: refused.into()
            }))
        );
        // A verdict on another generation's spec, or no verdict of the server's.
        assert_eq!(
            with(valid(2, "False", REASON_INVALID_TEMPLATE, refused)),
            None
        );
        assert_eq!(with(valid(2, "True", "Valid", ACCEPTED)), None);
        assert_eq!(with(valid(3, "True", "Valid", "the spec is valid")), None);
        assert_eq!(with(valid(3, "False", "InvalidSpec", "x: y")), None);
    }
}
