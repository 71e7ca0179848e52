//! The `podLabels` provider measured: requests through the sandbox's gateway to the application's
//! Service, whose endpoints are the labelled ready pods, so that each version's real share is its
//! share of them (the table in docs/traffic.md).

mod common;

use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::gateway::{Gateway, Request};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::json;

use common::gateway::{apply_object, measure};
use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};

/// Each row of docs/traffic.md's table: the step's capacities and weight, and the contender's
/// real share that the pods give.
const ROWS: &[(&str, &str, u32, f64)] = &[
    ("25%", "50%", 25, 100.0 / 3.0),
    ("25%", "100%", 25, 25.0),
    ("50%", "100%", 50, 50.0),
    ("25%", "100%", 10, 20.0),
];

#[tokio::test]
async fn the_gateway_delivers_the_shares_the_labelled_pods_give() {
    let env = TestEnv::new("pod-labels-measured").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let cluster = env.cluster("c1");
    let gateway = Gateway::of(cluster).unwrap();
    let host = format!("{}.example.test", env.namespace());
    apply_object(
        &client,
        env.namespace(),
        gateway.route("web", &host, &[("web", 1)]),
    )
    .await;
    let mut steps: Vec<_> = ROWS
        .iter()
        .enumerate()
        .map(|(i, (contender, incumbent, weight, _))| {
            json!({
                "name": format!("row-{}", i + 1),
                "capacity": {"contender": contender, "incumbent": incumbent},
                "traffic": {"contender": weight},
                "gate": {"manual": true},
            })
        })
        .collect();
    steps.push(json!({"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}));
    let spec = |image: &str| {
        json!({
            "template": web_template(image, 4),
            "strategy": {"steps": steps},
        })
    };
    apply(
        &apps,
        &application("web", spec("example.test/web:1")).unwrap(),
    )
    .await
    .unwrap();
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    let request = Request::new(&host);
    wait_until("the gateway serves web-1", DEFAULT_TIMEOUT, || async {
        Ok(gateway
            .request(&request)
            .await
            .ok()
            .filter(|served| served.release == "web-1"))
    })
    .await
    .unwrap();

    apply(
        &apps,
        &application("web", spec("example.test/web:2")).unwrap(),
    )
    .await
    .unwrap();
    let mut measured = Vec::new();
    for (step, (_, _, weight, share)) in ROWS.iter().enumerate() {
        wait_for_step(&releases, "web-2", step as u32)
            .await
            .unwrap();
        let tally = measure(
            &gateway,
            &request,
            &[("web-2", *share), ("web-1", 100.0 - share)],
        )
        .await;
        measured.push((weight, tally.share("web-2") * 100.0));
        patch_release_spec(&releases, "web-2", json!({"targetStep": step as u32 + 1}))
            .await
            .unwrap();
    }
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    measure(&gateway, &request, &[("web-2", 100.0)]).await;
    eprintln!("podLabels, measured shares of the contender: {measured:?}");
}
