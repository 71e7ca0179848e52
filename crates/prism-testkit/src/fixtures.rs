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

/// Application `web` running `image` on 2 replicas (a [`web_template`]), in two steps without a
/// gate: half, then all.
pub fn web_in_two_steps(image: &str) -> Value {
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "template": web_template(image, 2),
            "strategy": {"steps": [
                {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
            ]},
        },
    })
}

/// The documents of `examples/<name>.yaml`, as written in the repository.
pub fn example(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()))
}
