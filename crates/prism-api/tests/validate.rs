//! What `validate` checks beyond the CRDs' CEL rules: the template's objects, every error at once,
//! and a named strategy against its application. (The state each step leaves in each cluster is
//! the engine's to check: `prism-engine/tests/check_pipeline.rs`.)

mod common;

use common::{full, spec};
use prism_api::validate::{self, AppTraffic, ValidationError};
use prism_api::{ApplicationSpec, Pipeline};
use serde_json::{Value, json};

fn errors(spec: Value) -> Vec<ValidationError> {
    let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
    validate::application(&spec)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

#[test]
fn a_deployment_whose_selector_misses_its_pods() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"][0]["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    assert_eq!(
        errors(spec),
        vec![ValidationError::new(
            "spec.template.manifests[0].spec.selector",
            &json!({"matchLabels":{"app":"api"}}),
            "the Deployment's selector must match its pod template's labels: add the selector's labels to spec.template.metadata.labels",
        )]
    );
}

const NEEDS_SELECTOR: &str = "a Deployment needs spec.selector, the labels that pick its pods: e.g. matchLabels: {app: web}, with the same labels in spec.template.metadata.labels";

#[test]
fn a_deployment_without_a_selector() {
    let mut spec = spec(json!([full()]));
    let deployment = &mut spec["template"]["manifests"][0];
    deployment["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let at_selector = |value: Value| {
        ValidationError::new(
            "spec.template.manifests[0].spec.selector",
            &value,
            NEEDS_SELECTOR,
        )
    };
    assert_eq!(errors(spec.clone()), vec![at_selector(json!({}))]);
    // An empty selector would pick every pod of the namespace.
    spec["template"]["manifests"][0]["spec"]["selector"] = json!({"matchLabels": {}});
    assert_eq!(errors(spec), vec![at_selector(json!({"matchLabels": {}}))]);
}

#[test]
fn a_deployment_without_containers() {
    let mut spec = spec(json!([full()]));
    let pod = &mut spec["template"]["manifests"][0]["spec"]["template"]["spec"];
    pod["containers"] = json!([]);
    assert_eq!(
        errors(spec.clone()),
        vec![ValidationError::new(
            "spec.template.manifests[0].spec.template.spec.containers",
            &json!([]),
            "a Deployment runs at least one container: add one with a name and an image",
        )]
    );
    spec["template"]["manifests"][0]["spec"]["template"]["spec"]["containers"] =
        json!([{"ports": [{"containerPort": 80}]}]);
    assert_eq!(
        errors(spec),
        vec![
            ValidationError::new(
                "spec.template.manifests[0].spec.template.spec.containers[0].name",
                &"",
                "every container needs a name",
            ),
            ValidationError::new(
                "spec.template.manifests[0].spec.template.spec.containers[0].image",
                &None::<String>,
                "every container needs an image: the images are what a new version changes",
            ),
        ]
    );
}

/// The errors of `spec` once `manifest` is added to its template.
fn errors_with(manifest: Value) -> Vec<ValidationError> {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"]
        .as_array_mut()
        .unwrap()
        .push(manifest);
    errors(spec)
}

/// The message of a field of the wrong type in an object of `kind` (`kubectl explain` `explain`).
fn wrong_type(problem: &str, kind: &str, explain: &str) -> String {
    format!(
        "{problem}: give the field the type a {kind} has there (see `kubectl explain {explain}`)"
    )
}

#[test]
fn objects_that_do_not_parse_as_their_kind_name_the_field_by_its_full_path() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"][0]["spec"]["replicas"] = json!("three");
    assert_eq!(
        errors(spec.clone()),
        vec![ValidationError::new(
            "spec.template.manifests[0].spec.replicas",
            &"three",
            wrong_type(
                r#"invalid type: string "three", expected i32"#,
                "Deployment (apps/v1)",
                "deployment.spec.replicas"
            ),
        )]
    );
    spec["template"]["manifests"][0]["spec"]["replicas"] = json!(4);
    spec["template"]["manifests"][0]["spec"]["template"]["spec"]["containers"] = json!(5);
    spec["template"]["manifests"][1]["spec"]["ports"] = json!("x");
    assert_eq!(
        errors(spec),
        vec![
            ValidationError::new(
                "spec.template.manifests[0].spec.template.spec.containers",
                &5,
                wrong_type(
                    "invalid type: integer `5`, expected a sequence",
                    "Deployment (apps/v1)",
                    "deployment.spec.template.spec.containers"
                ),
            ),
            ValidationError::new(
                "spec.template.manifests[1].spec.ports",
                &"x",
                wrong_type(
                    r#"invalid type: string "x", expected a sequence"#,
                    "Service (v1)",
                    "service.spec.ports"
                ),
            ),
        ]
    );
    assert_eq!(
        errors_with(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": [1]})
        ),
        vec![ValidationError::new(
            "spec.template.manifests[2].data",
            &json!([1]),
            wrong_type(
                "invalid type: sequence, expected a map",
                "ConfigMap (v1)",
                "configmap.data"
            ),
        )]
    );
    assert_eq!(
        errors_with(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"level": 3}})),
        vec![
            ValidationError::new(
                "spec.template.manifests[2].metadata.name",
                &None::<()>,
                "every object needs a metadata.name",
            ),
            ValidationError::new(
                "spec.template.manifests[2].data.level",
                &3,
                wrong_type(
                    "invalid type: integer `3`, expected a string",
                    "ConfigMap (v1)",
                    "configmap.data.level"
                ),
            ),
        ]
    );
}

#[test]
fn an_object_of_a_kind_a_template_does_not_hold() {
    let found =
        errors_with(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"}}));
    assert_eq!(
        found,
        vec![ValidationError::new(
            "spec.template.manifests[2].kind",
            &"Pod",
            "a template holds one workload (Deployment, StatefulSet or DaemonSet), its Service, ConfigMaps, a HorizontalPodAutoscaler, and ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress and NetworkPolicy objects: create other kinds in each cluster outside the Application",
        )]
    );
}

#[test]
fn an_object_whose_api_version_is_not_its_kinds() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"][1]["apiVersion"] = json!("apps/v1");
    assert_eq!(
        errors(spec),
        vec![ValidationError::new(
            "spec.template.manifests[1].apiVersion",
            &"apps/v1",
            "set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, StatefulSet or DaemonSet, v1 for a Service, ConfigMap or ServiceAccount, autoscaling/v2 for a HorizontalPodAutoscaler, rbac.authorization.k8s.io/v1 for a Role or RoleBinding, policy/v1 for a PodDisruptionBudget, networking.k8s.io/v1 for an Ingress or NetworkPolicy",
        )]
    );
}

#[test]
fn an_autoscaler_without_max_replicas() {
    let found = errors_with(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2}
    }));
    assert_eq!(
        found,
        vec![ValidationError::new(
            "spec.template.manifests[2].spec.maxReplicas",
            &0,
            "maxReplicas is at least 1: the most pods the HorizontalPodAutoscaler may run",
        )]
    );
}

#[test]
fn selector_expressions_are_evaluated() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"][0]["spec"]["selector"] = json!({
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}, {"key": "canary", "operator": "DoesNotExist"}]
    });
    assert_eq!(errors(spec.clone()), vec![]);
    spec["template"]["manifests"][0]["spec"]["selector"]["matchExpressions"][0]["operator"] =
        json!("NotIn");
    assert_eq!(errors(spec).len(), 1);
}

#[test]
fn an_autoscaler_of_another_workload() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"].as_array_mut().unwrap().push(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "minReplicas": 2, "maxReplicas": 8}
    }));
    let found = errors(spec);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].path,
        "spec.template.manifests[2].spec.scaleTargetRef"
    );
    assert_eq!(
        found[0].message,
        "the HorizontalPodAutoscaler must scale the template's Deployment: set kind: Deployment and name: web"
    );
}

#[test]
fn objects_without_a_name_and_an_ambiguous_service() {
    let mut spec = spec(json!([full()]));
    let manifests = spec["template"]["manifests"].as_array_mut().unwrap();
    manifests
        .push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-admin"}}));
    manifests.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}));
    assert_eq!(
        errors(spec.clone())
            .into_iter()
            .map(|e| e.path)
            .collect::<Vec<_>>(),
        vec![
            "spec.template.manifests[3].metadata.name",
            "spec.traffic.service"
        ]
    );
    spec["traffic"]["service"] = json!("web-api");
    let found = errors(spec);
    assert_eq!(
        found[1].message,
        r#"names no Service of spec.template.manifests: choose one of ["web", "web-admin"]"#
    );
}

#[test]
fn versions_max_counts_contender_and_incumbent() {
    let mut spec = spec(json!([full()]));
    spec["versions"] = json!({"max": 1});
    assert_eq!(
        errors(spec),
        vec![ValidationError::new(
            "spec.versions.max",
            &json!(1),
            "max counts the contender and the incumbent, so it is at least 2 (above 2 for a rainbow deployment), and at most 16",
        )]
    );
}

#[test]
fn a_regular_expression_route_that_does_not_parse() {
    let route =
        |name: &str, to: &str, matches: Value| json!({"name": name, "to": to, "match": matches});
    let steps = json!([
        {"name": "canary", "capacity": {"contender": "25%"}, "traffic": {"contender": 25, "routes": [
            route("beta", "contender", json!({"header": {"name": "x-beta", "value": "^(1|yes$", "type": "RegularExpression"}})),
            route("exact", "contender", json!({"header": {"name": "x-exact", "value": "^(1|yes$"}})),
            route("each", "each", json!({"queryParam": {"name": "v", "value": "^{version}$", "type": "RegularExpression"}})),
        ]}},
        full()
    ]);
    let found = errors(spec(steps));
    assert_eq!(
        found,
        vec![ValidationError::new(
            "spec.strategy.steps[0].traffic.routes[0].match.header.value",
            &json!("^(1|yes$"),
            "not a regular expression (unclosed group): write one in RE2 syntax, as the gateways read it, or set type: Exact",
        )],
        "an exact value is no regular expression, and {{version}} is filled in first"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let steps = json!([
        {"name": "Canary", "traffic": {"contender": 140}, "gate": {"manual": true, "pause": "5m"}},
        {"name": "Canary", "capacity": {"contender": "100%"}, "traffic": {"contender": 100}}
    ]);
    let paths: Vec<String> = errors(spec(steps)).into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        vec![
            "spec.strategy.steps[0].name",
            "spec.strategy.steps[0].traffic.contender",
            "spec.strategy.steps[0].gate",
            "spec.strategy.steps[1].name",
            "spec.strategy.steps[1].name",
        ]
    );
}

fn pipeline(steps: Value) -> Pipeline {
    serde_json::from_value(json!({"steps": steps})).unwrap()
}

#[test]
fn a_named_strategy_is_checked_against_the_application() {
    let with_traffic = pipeline(json!([full()]));
    let found = validate::pipeline(&with_traffic, "spec.steps", AppTraffic::None)
        .unwrap_err()
        .0;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.steps[0].traffic");

    let capacity_only =
        pipeline(json!([{"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}]));
    assert!(validate::pipeline(&capacity_only, "spec.steps", AppTraffic::None).is_ok());
    // On its own, a strategy without traffic steps may serve headless workloads.
    assert!(validate::pipeline(&capacity_only, "spec.steps", AppTraffic::Unknown).is_ok());
}

#[test]
fn waves_move_at_least_one_cluster_at_once() {
    let mut waves = pipeline(json!([full()]));
    waves.waves = serde_json::from_value(json!({"maxConcurrency": 0, "soak": "2m"})).unwrap();
    let found = validate::pipeline(&waves, "spec.steps", AppTraffic::Unknown)
        .unwrap_err()
        .0;
    assert_eq!(
        (found[0].path.as_str(), found[0].message.as_str()),
        (
            "spec.waves.maxConcurrency",
            "maxConcurrency is at least 1: the number of clusters that move towards a step at once"
        )
    );
}
