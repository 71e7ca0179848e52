//! `check_pipeline`: the rules that need the state each step leaves in each cluster, on the
//! clusters an application is scheduled to and on any fleet.

mod common;

use prism_api::strategy::Pipeline;
use prism_api::validate::ValidationError;
use prism_engine::{ClusterInfo, Clusters, check_pipeline};
use serde_json::{Value, json};

fn pipeline(steps: Value) -> Pipeline {
    serde_json::from_value(json!({ "steps": steps })).unwrap()
}

/// The errors on any fleet, for an application with a traffic provider.
fn errors(steps: Value) -> Vec<ValidationError> {
    errors_on(steps, Clusters::Any)
}

fn errors_on(steps: Value, clusters: Clusters) -> Vec<ValidationError> {
    check_pipeline(&pipeline(steps), true, clusters)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

fn full() -> Value {
    json!({"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}})
}

/// eu-1 and us-1.
fn two_regions() -> Vec<ClusterInfo> {
    ["eu", "us"]
        .into_iter()
        .map(|region| ClusterInfo {
            name: format!("{region}-1"),
            region: region.into(),
        })
        .collect()
}

#[test]
fn a_canary_that_ends_complete_everywhere_is_valid() {
    let steps = json!([
        {"name": "canary", "clusters": {"first": 1}, "capacity": {"contender": 1}, "traffic": {"contender": 10}},
        full()
    ]);
    assert_eq!(errors(steps.clone()), vec![]);
    let clusters = common::clusters(3);
    assert_eq!(errors_on(steps, Clusters::Scheduled(clusters)), vec![]);
}

#[test]
fn an_empty_pipeline_never_completes() {
    assert_eq!(
        errors(json!([])),
        vec![ValidationError::new(
            "steps",
            &json!([]),
            "the contender never reaches \"100%\" capacity: add a step that sets capacity.contender: \"100%\"",
        )]
    );
}

#[test]
fn the_last_step_applies_to_every_cluster() {
    let mut last = full();
    last["clusters"] = json!({"region": "eu"});
    assert_eq!(
        errors(json!([last])),
        vec![
            ValidationError::new(
                "steps[0].clusters",
                &json!({"region":"eu"}),
                "the last step must apply to every cluster, so that the Release completes everywhere: remove its clusters, or add a last step without them",
            ),
            // Clusters outside eu never get the contender.
            ValidationError::new(
                "steps[0].capacity.contender",
                &json!("0%"),
                "the last step must leave the contender at \"100%\" capacity in every cluster: set capacity.contender: \"100%\" on the last step",
            ),
            ValidationError::new(
                "steps[0].traffic.contender",
                &json!(0),
                "the last step must leave the contender 100% of the traffic in every cluster: set traffic.contender: 100 on the last step",
            ),
        ]
    );
}

#[test]
fn on_scheduled_clusters_the_error_names_the_cluster_left_incomplete() {
    let mut last = full();
    last["clusters"] = json!({"region": "eu"});
    let clusters = two_regions();
    let found = errors_on(json!([last]), Clusters::Scheduled(&clusters));
    assert_eq!(
        found.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        [
            "steps[0].clusters",
            "steps[0].capacity.contender",
            "steps[0].traffic.contender"
        ]
    );
    assert_eq!(
        found[1].message,
        "the last step must leave the contender at \"100%\" capacity in every cluster, and leaves cluster us-1 at 0%: set capacity.contender: \"100%\" on the last step"
    );
    assert_eq!(
        found[2].message,
        "the last step must leave the contender 100% of the traffic in every cluster, and leaves cluster us-1 at 0%: set traffic.contender: 100 on the last step"
    );
}

#[test]
fn the_last_step_leaves_the_contender_all_capacity_and_traffic() {
    let steps = json!([{"name": "half", "capacity": {"contender": "50%", "incumbent": "50%"}, "traffic": {"contender": 50}}]);
    let found: Vec<(String, String)> = errors(steps)
        .into_iter()
        .map(|e| (e.path, e.value))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "steps[0].capacity.contender".to_string(),
                r#""50%""#.to_string()
            ),
            ("steps[0].traffic.contender".to_string(), "50".to_string()),
        ]
    );
}

#[test]
fn an_application_with_traffic_needs_a_strategy_that_moves_it() {
    let steps = json!([{"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}}]);
    let found = errors(steps.clone());
    // The incumbent keeps all traffic with no pods, and the contender never gets any.
    assert_eq!(
        found.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        vec!["steps[0].capacity.incumbent", "steps[0].traffic.contender"]
    );
    assert_eq!(
        found[0].message,
        "step \"all\" sends traffic to the incumbent while it runs no pods in some cluster: give the incumbent capacity in this step or an earlier one, or send it no traffic"
    );
    // Without a traffic provider, the same steps complete.
    assert_eq!(
        check_pipeline(&pipeline(steps), false, Clusters::Any),
        Ok(())
    );
}

#[test]
fn traffic_to_a_contender_without_pods() {
    let steps = json!([{"name": "dark", "traffic": {"contender": 10}}, full()]);
    assert_eq!(
        errors(steps.clone()),
        vec![ValidationError::new(
            "steps[0].traffic.contender",
            &json!({"capacity":"0%","weight":10}),
            "step \"dark\" sends traffic to the contender while it runs no pods in some cluster: give the contender capacity in this step or an earlier one, or send it no traffic",
        )]
    );
    let clusters = common::clusters(2);
    assert_eq!(
        errors_on(steps, Clusters::Scheduled(clusters))[0].message,
        "step \"dark\" sends traffic to the contender while it runs no pods in cluster c0: give the contender capacity in this step or an earlier one, or send it no traffic"
    );
}

#[test]
fn a_route_to_a_contender_without_pods() {
    let steps = json!([
        {"name": "beta", "traffic": {"routes": [{"name": "beta", "to": "contender", "match": {"pathPrefix": "/beta"}}]}},
        full()
    ]);
    let paths: Vec<String> = errors(steps).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, vec!["steps[0].traffic.contender"]);
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
    let paths: Vec<String> = errors(unsafe_steps.clone())
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, vec!["steps[1].traffic.contender"]);
    // A fleet whose only eu cluster is the first is safe; one with a second eu cluster is not.
    let first_in_eu = two_regions();
    assert_eq!(
        errors_on(unsafe_steps.clone(), Clusters::Scheduled(&first_in_eu)),
        vec![]
    );
    let clusters = common::clusters(3);
    let found = errors_on(unsafe_steps, Clusters::Scheduled(clusters));
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("in cluster c2"), "{found:?}");

    let safe_steps = json!([
        {"name": "pods", "clusters": {"first": 1}, "capacity": {"contender": 1}},
        {"name": "traffic", "clusters": {"first": 1}, "traffic": {"contender": 10}},
        full()
    ]);
    assert_eq!(errors(safe_steps), vec![]);
}

#[test]
fn a_pipeline_of_many_scopes_is_checked_without_panicking() {
    // More kinds of cluster than are walked one by one, and scopes that field-level validation
    // rejects (two fields, first: 0).
    let steps: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "name": format!("s{i}"),
                "clusters": {"first": i, "names": [format!("c{i}")], "region": format!("r{i}")},
                "capacity": {"contender": 1}
            })
        })
        .chain([full()])
        .collect();
    assert_eq!(errors(Value::Array(steps)), vec![]);
}
