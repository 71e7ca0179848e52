//! The template's objects checked as Kubernetes would check them, offline: strictly typed (a field
//! the kind lacks is an error), and the values its own validation refuses. Every error names the
//! field by its full path in the Application.

mod common;

use common::{full, spec};
use prism_api::ApplicationSpec;
use prism_api::validate::{self, ValidationError};
use serde_json::{Value, json};

/// The errors of the common spec after `change`, as `path: message`.
fn errors_after(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut spec = spec(json!([full()]));
    change(&mut spec["template"]["manifests"]);
    let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
    validate::application(&spec)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
        .iter()
        .map(|ValidationError { path, message, .. }| format!("{path}: {message}"))
        .collect()
}

fn push(manifests: &mut Value, manifest: Value) {
    manifests.as_array_mut().unwrap().push(manifest);
}

#[test]
fn a_complete_template_with_every_kind_passes() {
    let found = errors_after(|manifests| {
        let deployment = &mut manifests[0];
        deployment["metadata"]["labels"] = json!({"app.kubernetes.io/name": "web"});
        // Kubernetes reads annotation keys without regard to case.
        deployment["metadata"]["annotations"] = json!({"Example.com/Owner": "team-a"});
        deployment["metadata"]["creationTimestamp"] = Value::Null;
        deployment["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}});
        deployment["spec"]["selector"]["matchExpressions"] =
            json!([{"key": "tier", "operator": "In", "values": ["front"]}]);
        deployment["spec"]["template"]["spec"] = json!({
            "initContainers": [{"name": "migrate", "image": "web:2", "command": ["migrate"]}],
            "containers": [{
                "name": "web", "image": "web:2", "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": "settings"}}]
            }],
            "volumes": [{"name": "conf", "configMap": {"name": "settings"}}]
        });
        manifests[1]["spec"] = json!({"type": "ClusterIP", "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            // A Service's port name is a DNS label, longer than a container port's may be.
            {"name": "admin-metrics-endpoint", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
        ]});
        push(
            manifests,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"LOG_LEVEL": "info", "app.properties": "a=1"}}),
        );
        push(
            manifests,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 10,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                  "target": {"type": "Utilization", "averageUtilization": 70}}}]}}),
        );
    });
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn a_field_the_kind_does_not_have_is_an_error_at_any_depth() {
    let found = errors_after(|manifests| {
        manifests[0]["spec"]["replica"] = json!(3);
        manifests[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] =
            json!("Always");
        manifests[1]["spec"]["prots"] = json!([]);
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[0].spec.replica: a Deployment (apps/v1) has no field replica: remove it, or fix its spelling (see `kubectl explain deployment.spec`)",
            "spec.template.manifests[0].spec.template.spec.containers[0].imagePullPolcy: a Deployment (apps/v1) has no field imagePullPolcy: remove it, or fix its spelling (see `kubectl explain deployment.spec.template.spec.containers`)",
            "spec.template.manifests[1].spec.prots: a Service (v1) has no field prots: remove it, or fix its spelling (see `kubectl explain service.spec`)",
        ]
    );
}

#[test]
fn counts_that_cannot_be() {
    let found = errors_after(|manifests| {
        manifests[0]["spec"]["replicas"] = json!(-1);
        manifests[0]["spec"]["revisionHistoryLimit"] = json!(-2);
        manifests[0]["spec"]["progressDeadlineSeconds"] = json!(0);
        push(
            manifests,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 0, "maxReplicas": 3}}),
        );
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[0].spec.replicas: replicas is the number of pods to run: 0 or more",
            "spec.template.manifests[0].spec.revisionHistoryLimit: revisionHistoryLimit is how many old ReplicaSets to keep: 0 or more",
            "spec.template.manifests[0].spec.progressDeadlineSeconds: progressDeadlineSeconds must be greater than minReadySeconds",
            "spec.template.manifests[2].spec.minReplicas: minReplicas is at least 1: the fewest pods the HorizontalPodAutoscaler keeps (Prism removes the autoscaler of a version it scales to zero)",
        ]
    );
}

#[test]
fn ports_out_of_range_and_names_of_the_wrong_syntax() {
    let found = errors_after(|manifests| {
        let container = &mut manifests[0]["spec"]["template"]["spec"]["containers"][0];
        container["ports"] = json!([
            {"name": "http", "containerPort": 70000},
            {"name": "http", "containerPort": 8081, "protocol": "HTTP"}
        ]);
        manifests[1]["spec"]["ports"] = json!([
            {"port": 0, "targetPort": "not_a_port_name"},
            {"port": 443}
        ]);
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[0].spec.template.spec.containers[0].ports[0].containerPort: a port number is from 1 to 65535",
            "spec.template.manifests[0].spec.template.spec.containers[0].ports[1].protocol: the protocol is TCP (the default), UDP or SCTP",
            "spec.template.manifests[0].spec.template.spec.containers[0].ports[1].name: ports' names are unique: rename one",
            "spec.template.manifests[1].spec.ports[0].port: a port number is from 1 to 65535",
            "spec.template.manifests[1].spec.ports[0].targetPort: a named targetPort names a container's port: a port's name is at most 15 lowercase letters, digits and '-', with at least one letter, no '--', starting and ending with a letter or digit",
            "spec.template.manifests[1].spec.ports[0].name: a Service with several ports names each of them: add a name",
            "spec.template.manifests[1].spec.ports[1].name: a Service with several ports names each of them: add a name",
        ]
    );
}

#[test]
fn names_and_labels_of_the_wrong_syntax() {
    let found = errors_after(|manifests| {
        manifests[0]["metadata"]["name"] = json!("Web_App");
        manifests[0]["metadata"]["labels"] = json!({"-team": "a", "tier": "front end"});
        let pod = &mut manifests[0]["spec"]["template"];
        pod["spec"]["containers"] =
            json!([{"name": "Web", "image": "web:2"}, {"name": "Web", "image": "log:1"}]);
        manifests[1]["metadata"]["name"] = json!("1web");
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[0].metadata.name: not a valid name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            "spec.template.manifests[0].metadata.labels: not a valid label key: a key is an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            "spec.template.manifests[0].metadata.labels: the value of label tier is not valid: a label value is empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            "spec.template.manifests[0].spec.template.spec.containers[0].name: not a valid container name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            "spec.template.manifests[0].spec.template.spec.containers[1].name: containers' names are unique within a pod: rename one",
            "spec.template.manifests[0].spec.template.spec.containers[1].name: not a valid container name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            "spec.template.manifests[1].metadata.name: not a valid name: a Service's name is at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
        ]
    );
}

#[test]
fn a_selector_of_the_wrong_syntax_is_reported_before_whether_it_matches() {
    let found = errors_after(|manifests| {
        manifests[0]["spec"]["selector"] = json!({"matchExpressions": [
            {"key": "app", "operator": "Is", "values": ["web"]},
            {"key": "tier", "operator": "Exists", "values": ["front"]}
        ]});
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[0].spec.selector.matchExpressions[0].operator: the operator is one of In, NotIn, Exists and DoesNotExist",
            "spec.template.manifests[0].spec.selector.matchExpressions[1].values: the operators Exists and DoesNotExist take no values: remove them",
        ]
    );
}

#[test]
fn config_map_keys() {
    let found = errors_after(|manifests| {
        push(
            manifests,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"a/b": "1", "c": "2"}, "binaryData": {"c": "Mw=="}}),
        );
    });
    assert_eq!(
        found,
        [
            "spec.template.manifests[2].data: a ConfigMap's key is at most 253 letters, digits, '-', '_' and '.', and neither . nor starts with ..",
            "spec.template.manifests[2].binaryData: a key is in data or in binaryData, not in both: remove one",
        ]
    );
}
