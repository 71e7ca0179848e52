//! A valid Application spec, shared by the validation tests.

use serde_json::{Value, json};

/// An Application's spec with a Deployment and a Service, traffic shifted by Gateway API, and
/// the inline strategy `steps`.
pub fn spec(steps: Value) -> Value {
    json!({
        "template": {"manifests": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 4,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web", "tier": "front"}},
                        "spec": {"containers": [{"name": "web", "image": "web:2"}]}
                    }
                }
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        ]},
        "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
        "strategy": {"steps": steps}
    })
}

/// The last step of most strategies: everything to the contender.
pub fn full() -> Value {
    json!({"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}})
}
