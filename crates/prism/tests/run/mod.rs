//! Running the built `prism` against a test's namespace of the sandbox (c1 is the management
//! cluster), and the Application those tests roll out.
#![allow(dead_code)]

use std::process::Output;

use prism_api::Application;
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
