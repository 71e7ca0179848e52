//! Objects that many end-to-end tests need, written once.

use serde_json::{Value, json};

/// An Application template: a Deployment `web` running `image` with `replicas` replicas
/// (pods labelled `app: web`), and a Service `web` in front of it.
pub fn web_template(image: &str, replicas: u32) -> Value {
    json!({
        "manifests": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": image}]}
                    }
                }
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
            }
        ]
    })
}
