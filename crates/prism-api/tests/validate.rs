//! What `validate` checks beyond the CRDs' CEL rules: the state each step leaves in each cluster,
//! and the template's objects.

use prism_api::validate::{self, AppTraffic, ValidationError};
use prism_api::{ApplicationSpec, Pipeline};
use serde_json::{Value, json};

fn spec(steps: Value) -> Value {
    json!({
        "template": {"manifests": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 4,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"containers": []}}
                }
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}
        ]},
        "traffic": {"provider": "gatewayAPI", "httpRoute": "web"},
        "strategy": {"steps": steps}
    })
}

fn errors(spec: Value) -> Vec<ValidationError> {
    let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
    validate::application(&spec)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

fn error(path: &str, value: &str, message: &str) -> ValidationError {
    ValidationError {
        path: path.into(),
        value: value.into(),
        message: message.into(),
    }
}

fn full() -> Value {
    json!({"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}})
}

#[test]
fn a_canary_that_ends_complete_everywhere_is_valid() {
    let steps = json!([
        {"name": "canary", "clusters": {"first": 1}, "capacity": {"contender": 1}, "traffic": {"contender": 10}},
        full()
    ]);
    assert_eq!(errors(spec(steps)), vec![]);
}

#[test]
fn the_last_step_applies_to_every_cluster() {
    let mut last = full();
    last["clusters"] = json!({"region": "eu"});
    assert_eq!(
        errors(spec(json!([last]))),
        vec![
            error(
                "spec.strategy.steps[0].clusters",
                r#"{"region":"eu"}"#,
                "the last step must apply to every cluster, so that the Release completes everywhere: remove its clusters, or add a last step without them",
            ),
            // Clusters outside eu never get the contender.
            error(
                "spec.strategy.steps[0].capacity.contender",
                r#""0%""#,
                "the last step must leave the contender at \"100%\" capacity in every cluster: set capacity.contender: \"100%\" on the last step",
            ),
            error(
                "spec.strategy.steps[0].traffic.contender",
                "0",
                "the last step must leave the contender 100% of the traffic in every cluster: set traffic.contender: 100 on the last step",
            ),
        ]
    );
}

#[test]
fn the_last_step_leaves_the_contender_all_capacity_and_traffic() {
    let steps = json!([{"name": "half", "capacity": {"contender": "50%", "incumbent": "50%"}, "traffic": {"contender": 50}}]);
    let found: Vec<(String, String)> = errors(spec(steps))
        .into_iter()
        .map(|e| (e.path, e.value))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "spec.strategy.steps[0].capacity.contender".to_string(),
                r#""50%""#.to_string()
            ),
            (
                "spec.strategy.steps[0].traffic.contender".to_string(),
                "50".to_string()
            ),
        ]
    );
}

#[test]
fn an_application_with_traffic_needs_a_strategy_that_moves_it() {
    let steps = json!([{"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}]);
    let found = errors(spec(steps));
    // The incumbent keeps all traffic with no pods, and the contender never gets any.
    assert_eq!(
        found.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        vec![
            "spec.strategy.steps[0].capacity.incumbent",
            "spec.strategy.steps[0].traffic.contender"
        ]
    );
    assert_eq!(
        found[0].message,
        "step \"all\" sends traffic to the incumbent while it runs no pods in some cluster: give the incumbent capacity in this step or an earlier one, or send it no traffic"
    );
}

#[test]
fn traffic_to_a_contender_without_pods() {
    let steps = json!([{"name": "dark", "traffic": {"contender": 10}}, full()]);
    assert_eq!(
        errors(spec(steps)),
        vec![error(
            "spec.strategy.steps[0].traffic.contender",
            r#"{"capacity":"0%","weight":10}"#,
            "step \"dark\" sends traffic to the contender while it runs no pods in some cluster: give the contender capacity in this step or an earlier one, or send it no traffic",
        )]
    );
}

#[test]
fn a_route_to_a_contender_without_pods() {
    let steps = json!([
        {"name": "beta", "traffic": {"routes": [{"name": "beta", "to": "contender", "match": {"pathPrefix": "/beta"}}]}},
        full()
    ]);
    let paths: Vec<String> = errors(spec(steps)).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, vec!["spec.strategy.steps[0].traffic.contender"]);
}

#[test]
fn scopes_that_leave_some_cluster_with_traffic_but_no_pods() {
    // Capacity in the first cluster, traffic in region eu: an eu cluster that is not the first
    // gets traffic without pods.
    let unsafe_steps = json!([
        {"name": "pods", "clusters": {"first": 1}, "capacity": {"contender": 1}},
        {"name": "traffic", "clusters": {"region": "eu"}, "traffic": {"contender": 10}},
        full()
    ]);
    let paths: Vec<String> = errors(spec(unsafe_steps))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, vec!["spec.strategy.steps[1].traffic.contender"]);

    let safe_steps = json!([
        {"name": "pods", "clusters": {"first": 1}, "capacity": {"contender": 1}},
        {"name": "traffic", "clusters": {"first": 1}, "traffic": {"contender": 10}},
        full()
    ]);
    assert_eq!(errors(spec(safe_steps)), vec![]);
}

#[test]
fn a_deployment_whose_selector_misses_its_pods() {
    let mut spec = spec(json!([full()]));
    spec["template"]["manifests"][0]["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    assert_eq!(
        errors(spec),
        vec![error(
            "spec.template.manifests[0].spec.selector",
            r#"{"matchLabels":{"app":"api"}}"#,
            "the Deployment's selector must match its pod template's labels: add the selector's labels to spec.template.metadata.labels",
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
        vec![error(
            "spec.versions.max",
            "1",
            "max counts the contender and the incumbent, so it is at least 2 (above 2 for a rainbow deployment), and at most 16",
        )]
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
            // The contender gets 100% of the traffic in step 0 with no pods.
            "spec.strategy.steps[0].traffic.contender",
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
