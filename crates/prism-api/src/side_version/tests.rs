use serde_json::json;

use super::*;

fn template() -> Template {
    serde_json::from_value(json!({"manifests": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "docs"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "docs"}},
          "template": {"metadata": {"labels": {"app": "docs"}}, "spec": {"containers": [
            {"name": "app", "image": "docs:1", "env": [{"name": "MODE", "value": "prod"}]},
            {"name": "proxy", "image": "envoy:1"}
          ]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "docs"},
         "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {"theme": "light", "lang": "en"}}
    ]}))
    .unwrap()
}

fn spec(overrides: serde_json::Value) -> SideVersionSpec {
    let mut base = json!({
        "application": "docs",
        "routes": [{"name": "beta", "match": {"header": {"name": "x-version", "value": "beta"}}}]
    });
    base.as_object_mut()
        .unwrap()
        .extend(overrides.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn object(template: &Template, kind: &str) -> serde_json::Value {
    serde_json::Value::Object(template.of_kind(kind).next().unwrap().object())
}

#[test]
fn overrides_apply_to_a_copy_of_the_template() {
    let side = spec(json!({
        "images": {"app": "docs:pr-42"},
        "env": [{"container": "app", "name": "MODE", "value": "beta"},
                {"container": "proxy", "name": "TRACE", "value": "1"}],
        "replicas": 1,
        "configMaps": {"settings": {"theme": "dark"}}
    }));
    let cloned = side.apply(&template()).unwrap();
    let deployment = object(&cloned, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let containers = &deployment["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "docs:pr-42");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "MODE", "value": "beta"}])
    );
    assert_eq!(containers[1]["image"], "envoy:1");
    assert_eq!(
        containers[1]["env"],
        json!([{"name": "TRACE", "value": "1"}])
    );
    let config = object(&cloned, "ConfigMap");
    assert_eq!(config["data"], json!({"theme": "dark", "lang": "en"}));
    assert_eq!(object(&cloned, "Service"), object(&template(), "Service"));
}

#[test]
fn no_overrides_is_the_template_itself() {
    assert_eq!(spec(json!({})).apply(&template()).unwrap(), template());
}

#[test]
fn overrides_that_do_not_apply_name_the_field_and_the_fix() {
    let side = spec(json!({
        "images": {"web": "docs:pr-42"},
        "env": [{"container": "sidecar", "name": "A", "value": "1"}],
        "configMaps": {"flags": {"beta": "on"}}
    }));
    let errors = side.apply(&template()).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.configMaps.flags",
            "spec.images.web",
            "spec.env[0].container"
        ]
    );
    assert!(errors[1].message.contains("no container named \"web\""));
    assert!(errors[1].message.contains("[\"app\", \"proxy\"]"));
    assert!(errors[0].message.contains("no ConfigMap named \"flags\""));
}

#[test]
fn replicas_beside_an_autoscaler_are_refused() {
    let mut with_hpa = template();
    with_hpa.manifests.push(
        serde_json::from_value(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "docs"},
            "spec": {"maxReplicas": 5, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "docs"}}
        }))
        .unwrap(),
    );
    let errors = spec(json!({"replicas": 2})).apply(&with_hpa).unwrap_err();
    assert_eq!(errors[0].path, "spec.replicas");
}

#[test]
fn routes_are_named_after_the_side_version() {
    let routes = spec(json!({})).engine_routes("pr-42");
    assert_eq!(routes[0].name, "pr-42-beta");
}

#[test]
fn route_names_must_be_unique() {
    let side = spec(json!({"routes": [
        {"name": "beta", "match": {"header": {"name": "x-version", "value": "beta"}}},
        {"name": "beta", "match": {"subdomain": "{version}"}}
    ]}));
    let errors = validate(&side);
    assert_eq!(errors[0].path, "spec.routes[1].name");
}
