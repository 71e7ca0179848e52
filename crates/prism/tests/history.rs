//! `prism history` against the sandbox (c1 is the management cluster): the binary lists an
//! Application's Releases, oldest first, and exits 3 for an Application that does not exist.

mod run;

use kube::api::{Patch, PatchParams};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use run::{application, prism, text, with_controller};
use serde_json::{Value, json};

#[tokio::test]
async fn history_lists_the_releases_oldest_first() {
    let env = TestEnv::new("history").await;
    let (apps, releases, _controller) = with_controller(&env).await;

    for (revision, image) in [(1, "web:1"), (2, "web:2")] {
        apps.patch(
            "web",
            &PatchParams::apply("prism-tests").force(),
            &Patch::Apply(&application(image)),
        )
        .await
        .unwrap();
        let name = format!("web-{revision}");
        wait_until(
            format!("Release {name} exists"),
            DEFAULT_TIMEOUT,
            || async { Ok(releases.get_opt(&name).await?) },
        )
        .await
        .unwrap();
    }

    let output = prism(
        &env,
        &["history", "web", "-n", env.namespace(), "-o", "json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let summary: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|row| {
            (
                row["revision"].clone(),
                row["name"].clone(),
                row["images"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(1), json!("web-1"), json!(["web:1"])),
            (json!(2), json!("web-2"), json!(["web:2"])),
        ],
        "{}",
        text(&output.stdout)
    );
    for row in &rows {
        assert!(row["phase"].is_string(), "{row}");
        assert!(row["created"].is_string(), "{row}");
    }

    let table = prism(&env, &["history", "web", "-n", env.namespace()]).await;
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let lines: Vec<String> = text(&table.stdout).lines().map(str::to_owned).collect();
    assert!(lines[0].starts_with("REVISION"), "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");

    let missing = prism(&env, &["history", "nope", "-n", env.namespace()]).await;
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
    assert_eq!(
        text(&missing.stderr),
        format!("prism: application {}/nope not found\n", env.namespace())
    );
}
