//! Running the built `prism` against a test's namespace of the sandbox (c1 is the management
//! cluster), and the Application those tests roll out.
#![allow(dead_code)]

use std::process::Output;

use kube::Api;
use prism_api::{Application, Release};
use prism_testkit::TestEnv;
use prism_testkit::fixtures::web_template;
use serde_json::json;

/// `prism ARGS` with c1's kubeconfig. Awaited, not blocking: a controller running in the test's
/// runtime goes on meanwhile.
pub async fn prism(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .env("KUBECONFIG", env.cluster("c1").kubeconfig())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Application `web` running `image` with 2 replicas, rolled out in two steps: `canary`,
/// which waits for `prism promote` (but for the first Release, which has no incumbent), and
/// `full`.
pub fn application(image: &str) -> Application {
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "template": web_template(image, 2),
            "strategy": {"steps": [
                {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"manual": true}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
            ]},
        },
    }))
    .unwrap()
}

/// The Applications and Releases of the test's namespace, with the CRDs installed and the
/// controller running there (stopped when the last value is dropped). It deploys to the test's
/// own Clusters (`prism_testkit::fleet`), or, with none, to the management cluster.
pub async fn with_controller(
    env: &TestEnv,
) -> (
    Api<Application>,
    Api<Release>,
    prism_testkit::AbortOnDrop<Result<(), prism_controller::Error>>,
) {
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds())
        .await
        .unwrap();
    let controller = prism_testkit::spawn_for_test(prism_controller::run(
        env.cluster("c1").config().await,
        prism_controller::Options {
            namespace: Some(env.namespace().to_owned()),
            cluster_selector: Some(env.cluster_selector()),
            global_namespace: None,
            prometheus_url: None,
            metrics_address: None,
            leader_election: None,
            helm: Some(prism_testkit::charts::helm_path().await.to_path_buf()),
        },
    ));
    (
        Api::namespaced(client.clone(), env.namespace()),
        Api::namespaced(client, env.namespace()),
        controller,
    )
}
