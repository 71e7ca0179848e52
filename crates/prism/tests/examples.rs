//! Every example under `examples/` passes the CRD schemas (structure and CEL rules, evaluated
//! locally), `prism plan`'s checks, and a simulated rollout that completes; the plans are
//! snapshots, shown in docs/strategies.md.

mod common;

use std::path::Path;

use common::{documents, example, examples};
use kube::CustomResourceExt;
use prism::plan::{PlanError, table};
use prism_api::{Application, ClusterStrategy, Strategy};
use prism_engine::{Outcome, Timeline};
use serde_json::Value;

#[test]
fn there_is_an_example_for_each_kind_of_rollout() {
    let names: Vec<String> = examples().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "autoscaled",
            "blue-green",
            "canary",
            "chart-canary",
            "chart-worker",
            "daemon-set",
            "gateway-api-canary",
            "quickstart",
            "rainbow",
            "rolling",
            "service-target",
            "stateful-set",
            "vanguard",
            "worker"
        ]
    );
}

fn schema_of(kind: &str) -> Value {
    let crd = match kind {
        "Application" => Application::crd(),
        "Strategy" => Strategy::crd(),
        "ClusterStrategy" => ClusterStrategy::crd(),
        other => panic!("no CRD for {other}"),
    };
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The errors the API server's schema validation would report, but for unknown fields (which it
/// prunes): the OpenAPI structure, then the CEL rules.
fn schema_errors(document: &Value) -> Vec<String> {
    let schema = schema_of(document["kind"].as_str().unwrap());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(cel) = kube_cel::Validator::new().validate(&schema, document, None) {
        errors.extend(
            cel.iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}

#[test]
fn every_example_passes_the_crd_schemas() {
    for (name, _) in examples() {
        for document in documents(&name) {
            assert_eq!(
                schema_errors(&document),
                Vec::<String>::new(),
                "{name}: {}",
                document["kind"]
            );
        }
    }
}

#[test]
fn the_schema_check_rejects_what_the_api_server_would() {
    let mut strategy = documents("vanguard").remove(1);
    strategy["spec"]["steps"][1]["traffic"]["contender"] = Value::from(140);
    strategy["spec"]["steps"][2]["capacity"]["contender"] = Value::from("140%");
    strategy["spec"]["steps"][3]["name"] = Value::from("half");
    assert_eq!(
        schema_errors(&strategy),
        [
            "/spec/steps/1/traffic/contender: 140 is greater than the maximum of 100.0",
            "/spec/steps/2/capacity/contender: \"140%\" does not match \"^(100|[1-9]?[0-9])%$\"",
            "spec.steps: step names must be unique within a strategy: rename one of the steps that share a name",
        ]
    );
}

/// `prism plan` of an example's text; the chart examples render with the sandbox's helm from its
/// chart repository (`http://127.0.0.1:8879`).
fn plan(text: &str, clusters: u32, fail_at: Option<&str>) -> Result<Timeline, PlanError> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let helm = if text.contains("chart:") {
            prism_testkit::charts::repository_url().await;
            prism_chart::Helm::new(prism_testkit::charts::helm_path().await)
        } else {
            prism_chart::Helm::new("helm")
        };
        prism::plan::plan(text, clusters, fail_at, &helm).await
    })
}

#[test]
fn every_example_plans_to_completion() {
    for (name, text) in examples() {
        let timeline = plan(&text, 3, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(timeline.outcome, Outcome::Complete, "{name}");
        insta::assert_snapshot!(name.clone(), table(&timeline));
    }
}

#[test]
fn a_failed_analysis_rolls_the_canary_back() {
    let text = example("canary");
    let timeline = plan(&text, 3, Some("weight-30")).unwrap();
    assert_eq!(timeline.outcome, Outcome::RolledBack);
    insta::assert_snapshot!("canary-fail-at-weight-30", table(&timeline));
}

#[test]
fn the_vanguard_over_five_clusters() {
    let text = example("vanguard");
    let timeline = plan(&text, 5, None).unwrap();
    insta::assert_snapshot!("vanguard-5-clusters", table(&timeline));
}

#[test]
fn the_strategy_guide_shows_every_plan_as_it_is() {
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/strategies.md");
    let guide = std::fs::read_to_string(guide_path).unwrap();
    let mut plans: Vec<(String, String)> = examples()
        .into_iter()
        .map(|(name, text)| (name, table(&plan(&text, 3, None).unwrap())))
        .collect();
    let canary = example("canary");
    plans.push((
        "canary --fail-at weight-30".into(),
        table(&plan(&canary, 3, Some("weight-30")).unwrap()),
    ));
    for (name, table) in plans {
        assert!(
            guide.contains(&format!("```text\n{table}```")),
            "docs/strategies.md does not show the plan of {name} as prism plan prints it:\n{table}"
        );
    }
}

/// `examples/side-versions/`: SideVersions of the examples' Applications, which pass the
/// SideVersion CRD's schema and whose overrides apply to their Application's template.
#[test]
fn every_side_version_example_passes_its_schema_and_applies_to_its_application() {
    use prism_api::side_version::{SideVersion, SideVersionSpec};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/side-versions");
    let crd = SideVersion::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let document: Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert_eq!(errors, Vec::<String>::new());
        kube_cel::Validator::new()
            .validate(&schema, &document, None)
            .unwrap();
        let spec: SideVersionSpec = serde_json::from_value(document["spec"].clone()).unwrap();
        assert!(prism_api::side_version::validate(&spec).is_empty());
        let app: Application = serde_json::from_value(
            documents(&spec.application.replace("docs", "rainbow")).remove(0),
        )
        .unwrap();
        spec.apply(&app.spec.template).unwrap();
        seen += 1;
    }
    assert_eq!(seen, 1);
}
