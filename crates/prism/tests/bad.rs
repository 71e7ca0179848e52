//! Malformed application files under `tests/bad/` get precise errors: the document, the field's
//! path, the value and the fix.

use std::path::Path;

use prism::input::{self, InputError};

fn errors_of(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    match input::read(&text) {
        Ok(_) => vec![],
        Err(errors) => errors.0.iter().map(InputError::to_string).collect(),
    }
}

#[test]
fn an_unknown_field() {
    assert_eq!(
        errors_of("unknown-field.yaml"),
        [
            "Application/web: spec.strategy.steps[0].traffic.contendr: unknown field `contendr`: remove it, or fix its spelling; expected one of: contender, incumbent, routes"
        ]
    );
}

#[test]
fn a_weight_of_140() {
    assert_eq!(
        errors_of("weight-140.yaml"),
        [
            "Application/web: spec.strategy.steps[0].traffic.contender: a weight is a percentage of the default route, from 0 to 100 (value: 140)"
        ]
    );
}

#[test]
fn a_duplicate_step() {
    assert_eq!(
        errors_of("duplicate-step.yaml"),
        [
            "Application/web: spec.strategy.steps[1].name: step names must be unique within a strategy: rename one of the steps that share a name (value: \"canary\")"
        ]
    );
}

#[test]
fn empty_steps() {
    assert_eq!(
        errors_of("empty-steps.yaml"),
        [
            "Application/web: spec.strategy.steps: a strategy needs at least one step: add a step whose capacity.contender is \"100%\" (value: [])"
        ]
    );
}

#[test]
fn a_route_to_a_missing_version() {
    assert_eq!(
        errors_of("route-to-missing-version.yaml"),
        [
            "Application/web: spec.strategy.steps[0].traffic.routes[0].to: unknown variant `canary`, expected one of `contender`, `incumbent`, `each`"
        ]
    );
}

#[test]
fn a_route_without_a_version() {
    assert_eq!(
        errors_of("route-without-to.yaml"),
        ["Application/web: spec.strategy.steps[0].traffic.routes[0]: missing field `to`"]
    );
}

#[test]
fn traffic_without_a_traffic_provider() {
    assert_eq!(
        errors_of("traffic-without-provider.yaml"),
        [
            "Application/worker: spec.strategy.steps[0].traffic: spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider (value: {\"contender\":50})"
        ]
    );
}

#[test]
fn traffic_without_a_service() {
    assert_eq!(
        errors_of("traffic-without-service.yaml"),
        [
            "Application/web: spec.template.manifests: a traffic provider shifts the traffic of a Service: add the application's Service to spec.template.manifests, or set spec.traffic.provider: none for a workload that serves no requests (value: [\"Deployment\"])"
        ]
    );
}

#[test]
fn a_deployment_without_a_selector() {
    assert_eq!(
        errors_of("deployment-without-selector.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.selector: a Deployment needs spec.selector, the labels that pick its pods: e.g. matchLabels: {app: web}, with the same labels in spec.template.metadata.labels (value: {})"
        ]
    );
}

#[test]
fn manifests_that_do_not_parse_as_their_kind() {
    assert_eq!(
        errors_of("manifests-that-do-not-parse.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.replicas: invalid type: string \"three\", expected i32: give the field the type a Deployment (apps/v1) has there (see `kubectl explain deployment.spec.replicas`) (value: \"three\")",
            "Application/web: spec.template.manifests[1].spec.ports: invalid type: string \"x\", expected a sequence: give the field the type a Service (v1) has there (see `kubectl explain service.spec.ports`) (value: \"x\")",
            "Application/web: spec.template.manifests[2].data: invalid type: sequence, expected a map: give the field the type a ConfigMap (v1) has there (see `kubectl explain configmap.data`) (value: [1])",
        ]
    );
}

#[test]
fn fields_a_template_object_does_not_have() {
    assert_eq!(
        errors_of("unknown-template-field.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.replica: a Deployment (apps/v1) has no field replica: remove it, or fix its spelling (see `kubectl explain deployment.spec`) (value: 4)",
            "Application/web: spec.template.manifests[0].spec.template.spec.containers[0].imagePullPolcy: a Deployment (apps/v1) has no field imagePullPolcy: remove it, or fix its spelling (see `kubectl explain deployment.spec.template.spec.containers`) (value: \"Always\")",
            "Application/web: spec.template.manifests[1].spec.prots: a Service (v1) has no field prots: remove it, or fix its spelling (see `kubectl explain service.spec`) (value: [{\"port\":80}])",
        ]
    );
}

#[test]
fn negative_replicas() {
    assert_eq!(
        errors_of("negative-replicas.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.replicas: replicas is the number of pods to run: 0 or more (value: -3)"
        ]
    );
}

#[test]
fn a_selector_that_misses_the_deployments_pods() {
    assert_eq!(
        errors_of("selector-misses-pods.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.selector: the Deployment's selector must match its pod template's labels: add the selector's labels to spec.template.metadata.labels (value: {\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}})"
        ]
    );
}

#[test]
fn values_kubernetes_refuses() {
    assert_eq!(
        errors_of("values-kubernetes-refuses.yaml"),
        [
            "Application/web: spec.template.manifests[0].spec.template.metadata.labels: the value of label team is not valid: a label value is empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (value: \"-core\")",
            "Application/web: spec.template.manifests[0].spec.template.spec.containers[0].name: not a valid container name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (value: \"Web\")",
            "Application/web: spec.template.manifests[0].spec.template.spec.containers[0].ports[0].containerPort: a port number is from 1 to 65535 (value: 80800)",
            "Application/web: spec.template.manifests[1].spec.ports[0].name: a Service with several ports names each of them: add a name (value: null)",
            "Application/web: spec.template.manifests[1].spec.ports[1].name: a Service with several ports names each of them: add a name (value: null)",
        ]
    );
}

#[test]
fn objects_a_template_does_not_hold() {
    assert_eq!(
        errors_of("objects-a-template-does-not-hold.yaml"),
        [
            "Application/web: spec.template.manifests[0].apiVersion: set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, StatefulSet or DaemonSet, v1 for a Service, ConfigMap or ServiceAccount, autoscaling/v2 for a HorizontalPodAutoscaler, rbac.authorization.k8s.io/v1 for a Role or RoleBinding, policy/v1 for a PodDisruptionBudget, networking.k8s.io/v1 for an Ingress or NetworkPolicy (value: \"apps/v1beta1\")",
            "Application/web: spec.template.manifests[2].kind: a template holds one workload (Deployment, StatefulSet or DaemonSet), its Service, ConfigMaps, a HorizontalPodAutoscaler, and ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress and NetworkPolicy objects: create other kinds in each cluster outside the Application (value: \"Pod\")",
            "Application/web: spec.template.manifests[3].kind: a template never inlines a Secret, since every Release keeps a copy of its template: create the Secret in each cluster and reference it by name (value: \"Secret\")",
        ]
    );
}

#[test]
fn a_strategy_the_file_lacks() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vanguard.yaml"),
    )
    .unwrap();
    let application_only = text.split("\n---\n").next().unwrap();
    assert_eq!(
        input::read(application_only).unwrap_err().to_string(),
        "Application/web: spec.strategy.name: no Strategy named \"vanguard\" in this file: add it as a YAML document after the Application (prism plan reads no cluster) (value: \"vanguard\")"
    );
}

#[test]
fn documents_prism_plan_does_not_read() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: prism.dev/v1beta1\nkind: Application\n";
    assert_eq!(
        input::read(text).unwrap_err().to_string(),
        [
            "ConfigMap/x: apiVersion: expected prism.dev/v1alpha1 (value: \"v1\")",
            "document 2: apiVersion: expected prism.dev/v1alpha1 (value: \"prism.dev/v1beta1\")",
            "file: expected exactly one Application document, found 0",
        ]
        .join("\n")
    );
}

#[test]
fn yaml_that_does_not_parse() {
    let error = input::read("spec: [unclosed").unwrap_err().to_string();
    assert!(error.starts_with("file: not valid YAML: "), "{error}");
}

#[test]
fn every_error_at_once_field_rules_first_then_the_state_each_step_leaves() {
    let paths: Vec<String> = errors_of("every-error.yaml")
        .iter()
        .map(|error| error.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": "))
        .collect();
    assert_eq!(
        paths,
        [
            "Application/web: spec.strategy.steps[0].name",
            "Application/web: spec.strategy.steps[0].traffic.contender",
            "Application/web: spec.strategy.steps[0].gate",
            "Application/web: spec.strategy.steps[1].name",
            "Application/web: spec.strategy.steps[1].name",
            // The contender gets 100% of the traffic in step 0 with no pods.
            "Application/web: spec.strategy.steps[0].traffic.contender",
        ]
    );
}

#[test]
fn a_strategy_document_the_application_does_not_name_is_checked_on_its_own() {
    assert_eq!(
        errors_of("unsafe-strategy.yaml"),
        [
            "ClusterStrategy/dark: spec.steps[0].traffic.contender: step \"dark\" sends traffic to the contender while it runs no pods in some cluster: give the contender capacity in this step or an earlier one, or send it no traffic (value: {\"capacity\":\"0%\",\"weight\":10})"
        ]
    );
}
