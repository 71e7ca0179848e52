//! `prism plan` of an Application whose template is a Helm chart: the binary renders it with
//! `--helm` (the sandbox's helm, from the sandbox's chart repository) and plans the render as it
//! plans inline manifests; what it cannot render, or cannot read offline, exits 2 naming the
//! field.

use std::path::Path;
use std::process::{Command, Output};

async fn prism(args: &[&str]) -> Output {
    prism_testkit::charts::repository_url().await;
    let helm = prism_testkit::charts::helm_path().await;
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .arg("--helm")
        .arg(helm)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `examples/chart-canary.yaml` with `change` applied to its chart, written to a file of its own.
fn chart_canary_with(name: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut application = prism_testkit::fixtures::example("chart-canary").remove(0);
    change(&mut application["spec"]["template"]["chart"]);
    let dir = prism_testkit::unique_temp_dir(name).unwrap();
    let path = dir.join("app.yaml");
    std::fs::write(&path, serde_json::to_string(&application).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_chart_is_rendered_and_planned_with_the_replicas_it_renders() {
    let output = prism(&["plan", "-f", "examples/chart-canary.yaml", "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let timeline: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(timeline["outcome"], "Complete");
    // The chart's replicaCount (4), from its values: one pod at the canary, then all 4.
    let contender = |row: usize| timeline["rows"][row]["clusters"][0]["contender"].clone();
    assert_eq!(contender(1)["capacity"]["replicas"], 1, "{}", contender(1));
    assert_eq!(contender(2)["capacity"]["replicas"], 4, "{}", contender(2));

    let replicas_6 = chart_canary_with("plan-chart-replicas", |chart| {
        chart["values"]["replicaCount"] = 6.into();
    });
    let output = prism(&["plan", "-f", &replicas_6, "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let timeline: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        timeline["rows"][2]["clusters"][0]["contender"]["capacity"]["replicas"],
        6
    );
}

/// A change of the example's chart.
type Change = fn(&mut serde_json::Value);

#[tokio::test]
async fn what_cannot_be_rendered_offline_exits_2_naming_its_field() {
    let cases: [(&str, Change, &str); 3] = [
        (
            "plan-chart-version",
            |chart| chart["version"] = "9.9.9".into(),
            "Application/web: spec.template.chart.version: version 9.9.9 of chart web was not found",
        ),
        (
            "plan-chart-values",
            |chart| chart["values"]["replicaCount"] = "3".into(),
            "replicaCount must be a number",
        ),
        (
            "plan-chart-values-from",
            |chart| {
                chart["valuesFrom"] =
                    serde_json::json!([{"kind": "ConfigMap", "name": "web-values"}])
            },
            "Application/web: spec.template.chart.valuesFrom: prism plan reads no cluster, so it cannot read these values files",
        ),
    ];
    for (name, change, says) in cases {
        let file = chart_canary_with(name, change);
        let output = prism(&["plan", "-f", &file]).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}
