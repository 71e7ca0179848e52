//! A chart as a template: the Application's side (exactly one of manifests and a chart), what a
//! Release keeps of a render, and the check of the rendered objects the controller makes before
//! a Release of them (`validate::rendered`).

use prism_api::ApplicationSpec;
use prism_api::application::{Manifest, Template};
use prism_api::validate;
use serde_json::{Value, json};

fn spec(chart: Value) -> ApplicationSpec {
    serde_json::from_value(json!({
        "template": {"chart": chart},
        "strategy": {"steps": [{"name": "all", "capacity": {"contender": "100%"}}]},
        "traffic": {"provider": "none"},
    }))
    .unwrap()
}

fn chart() -> Value {
    json!({"repository": "http://127.0.0.1:8879", "name": "pair", "version": "1.0.0"})
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    })
}

fn manifests(objects: Value) -> Vec<Manifest> {
    serde_json::from_value(objects).unwrap()
}

fn messages(spec: &ApplicationSpec, objects: Value) -> Vec<(String, String)> {
    validate::rendered(spec, &manifests(objects))
        .err()
        .map(|errors| {
            errors
                .0
                .into_iter()
                .map(|error| (error.path, error.message))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_application_of_a_chart_is_valid_before_its_render() {
    assert_eq!(validate::application(&spec(chart())).err(), None);
}

#[test]
fn a_template_has_manifests_or_a_chart_not_both() {
    let mut both = spec(chart());
    both.template.manifests = manifests(json!([deployment("web")]));
    let errors = validate::application(&both).unwrap_err().0;
    assert!(
        errors.iter().any(|e| e
            .message
            .starts_with("give exactly one of spec.template.manifests")),
        "{errors:?}"
    );
}

#[test]
fn a_chart_with_two_workloads_and_none_named_names_the_field_and_the_candidates() {
    let errors = messages(
        &spec(chart()),
        json!([deployment("pair-api"), deployment("pair-worker")]),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "spec.template.chart.workload");
    assert!(
        errors[0]
            .1
            .contains("Deployment pair-api, Deployment pair-worker"),
        "{}",
        errors[0].1
    );
}

#[test]
fn a_named_workload_is_found_or_its_absence_named() {
    let mut named = chart();
    named["workload"] = json!({"kind": "StatefulSet", "name": "pair-api"});
    let errors = messages(&spec(named), json!([deployment("pair-api")]));
    assert_eq!(errors[0].0, "spec.template.chart.workload");
    assert!(
        errors[0]
            .1
            .contains("renders no StatefulSet named pair-api; it renders Deployment pair-api")
    );

    let mut named = chart();
    named["workload"] = json!({"kind": "Deployment", "name": "pair-api"});
    let spec = spec(named);
    let objects = json!([deployment("pair-api")]);
    assert_eq!(messages(&spec, objects.clone()), Vec::new());
    let template = Template {
        manifests: manifests(objects),
        chart: spec.template.chart.clone(),
    };
    assert_eq!(
        template.workload().and_then(Manifest::name),
        Some("pair-api")
    );
}

#[test]
fn a_rendered_object_is_checked_as_an_inline_one_at_the_chart() {
    let mut bad = deployment("web");
    bad["spec"]["replicas"] = json!(-1);
    let errors = messages(&spec(chart()), json!([bad]));
    assert_eq!(
        errors[0].0, "spec.template.chart[0].spec.replicas",
        "{errors:?}"
    );
}

#[test]
fn a_release_keeps_its_render_compressed_and_reads_it_back() {
    let template = Template {
        manifests: manifests(json!([deployment("web")])),
        chart: spec(chart()).template.chart,
    };
    let wire = serde_json::to_value(&template).unwrap();
    assert_eq!(wire.get("manifests"), None);
    assert!(wire["rendered"].is_string());
    let read: Template = serde_json::from_value(wire).unwrap();
    assert_eq!(read, template);
    let rendered = Template {
        chart: None,
        ..template
    };
    assert!(rendered.is_made_from(&rendered.clone()));
}
