//! `prism controller --log-format json`: one JSON object per line, and each line a reconcile
//! writes carries its Application in the reconcile's span, so that the lines of concurrent
//! reconciles can be told apart.

mod process;

use process::*;
use serde_json::Value;

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_reconciles_application() {
    let fixture = Fixture::new("logs-json").await;
    let controller = ControllerProcess::start_as(
        &fixture.env,
        "json",
        fixture.env.cluster("c1").kubeconfig(),
        &["--log-format", "json"],
    );
    deploy_revision_1(&fixture).await;

    let log = controller.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    let created = lines
        .iter()
        .find(|line| line["fields"]["message"] == "created a Release")
        .unwrap_or_else(|| panic!("a line saying the Release was created in:\n{log}"));
    assert_eq!(created["span"]["name"], "reconcile", "{created}");
    assert_eq!(created["span"]["application"], "web", "{created}");
    assert_eq!(
        created["span"]["namespace"],
        fixture.env.namespace(),
        "{created}"
    );
}
