use serde_json::json;

use super::*;

fn app() -> Application {
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {
            "template": {"manifests": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                 "spec": {"ports": [{"port": 80}]}}
            ]},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
            "versions": {"sideMax": 1},
            "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"}}]}
        }
    }))
    .unwrap()
}

fn mainline(app: &Application) -> Release {
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"application": "web", "revision": 1, "template": app.spec.template,
                 "strategy": {"steps": [{"name": "full"}]},
                 "clusters": [{"name": "c1", "region": "eu"}]}
    }))
    .unwrap()
}

fn side_version(name: &str, secs: i64, spec: serde_json::Value) -> SideVersion {
    let made = jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1", "kind": "SideVersion",
        "metadata": {"name": name, "namespace": "shop", "generation": 1,
                     "creationTimestamp": made.to_string()},
        "spec": spec
    }))
    .unwrap()
}

fn spec(image: &str) -> serde_json::Value {
    json!({"application": "web", "images": {"web": image}, "ttl": "1h",
           "routes": [{"name": "host", "match": {"subdomain": "{version}"}}]})
}

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

#[test]
fn a_side_version_makes_a_release_of_its_own_on_the_mainline_clusters() {
    let app = app();
    let sv = side_version("pr-42", 0, spec("web:pr-42"));
    let plan = plan(&app, &[mainline(&app)], &[], &[&sv], at(10));
    assert_eq!(plan.create.len(), 1);
    let release = &plan.create[0];
    assert_eq!(release.name_any(), "web-pr-42-1");
    assert_eq!(release.spec.revision, 0);
    assert_eq!(release.spec.clusters[0].name, "c1");
    assert_eq!(release.labels()[SIDE_VERSION_LABEL], "pr-42");
    assert_eq!(release.labels()[RELEASE_LABEL], "web-pr-42-1");
    let side = release.spec.side.as_ref().unwrap();
    assert_eq!(side.routes[0].name, "pr-42-host");
    assert!(format!("{:?}", release.spec.template).contains("web:pr-42"));
    assert_eq!(
        plan.requeue_after,
        Some(std::time::Duration::from_secs(3590))
    );
    let (_, status, _) = &plan.statuses[0];
    assert_eq!(status.release.as_deref(), Some("web-pr-42-1"));
}

#[test]
fn a_change_replaces_the_release_and_a_deleted_or_expired_one_retires() {
    let app = app();
    let sv = side_version("pr-42", 0, spec("web:pr-42"));
    let first = plan(&app, &[mainline(&app)], &[], &[&sv], at(10)).create;
    let changed = side_version("pr-42", 0, spec("web:pr-43"));
    let next = plan(&app, &[mainline(&app)], &first, &[&changed], at(20));
    assert_eq!(next.create[0].name_any(), "web-pr-42-2");
    assert_eq!(next.retire, ["web-pr-42-1"]);

    let unchanged = plan(&app, &[mainline(&app)], &first, &[&sv], at(20));
    assert!(unchanged.create.is_empty() && unchanged.retire.is_empty());

    let deleted = plan(&app, &[mainline(&app)], &first, &[], at(20));
    assert_eq!(deleted.retire, ["web-pr-42-1"]);

    let expired = plan(&app, &[mainline(&app)], &first, &[&sv], at(3600));
    assert!(expired.create.is_empty());
    assert_eq!(expired.retire, ["web-pr-42-1"]);
}

#[test]
fn beyond_side_max_or_with_overrides_that_do_not_apply_nothing_is_made() {
    let app = app();
    let first = side_version("a", 0, spec("web:a"));
    let second = side_version("b", 1, spec("web:b"));
    let plan_two = plan(&app, &[mainline(&app)], &[], &[&second, &first], at(10));
    assert_eq!(plan_two.create.len(), 1);
    let (refused, status, warning) = &plan_two.statuses[1];
    assert_eq!(refused.name_any(), "b");
    let valid = status.conditions.iter().find(|c| c.type_ == VALID).unwrap();
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("False", "TooMany")
    );
    assert!(
        valid.message.contains("versions.sideMax (1)"),
        "{}",
        valid.message
    );
    assert!(warning.is_some());

    let typo = side_version(
        "typo",
        0,
        json!({"application": "web", "images": {"api": "x"},
               "routes": [{"name": "host", "match": {"subdomain": "{version}"}}]}),
    );
    let refused = plan(&app, &[mainline(&app)], &[], &[&typo], at(10));
    assert!(refused.create.is_empty());
    let valid = &refused.statuses[0].1.conditions[0];
    assert_eq!(valid.reason, "InvalidOverride");
    assert!(
        valid.message.contains("spec.images.api"),
        "{}",
        valid.message
    );
}

/// The refusal of the only (or second) SideVersion of a plan, when refused.
fn refusal(plan: &Plan, index: usize) -> Option<(String, String)> {
    let valid = plan.statuses[index]
        .1
        .conditions
        .iter()
        .find(|c| c.type_ == VALID)?;
    (valid.status == "False").then(|| (valid.reason.clone(), valid.message.clone()))
}

#[test]
fn a_route_that_takes_another_versions_requests_is_refused_naming_both() {
    let mut app = app();
    app.spec.versions.name = Some("v{revision}".into());
    app.spec.versions.side_max = 3;
    let mut mainline = mainline(&app);
    mainline.spec.strategy = serde_json::from_value(json!({"steps": [{"name": "full",
        "traffic": {"contender": 100, "routes": [
            {"name": "canary", "to": "contender", "match": {"header": {"name": "x-canary", "value": "always"}}},
            {"name": "each", "to": "each", "match": {"subdomain": "{version}"}}]}}]}))
    .unwrap();
    let routes = |route: serde_json::Value| json!({"application": "web", "images": {"web": "web:x"}, "routes": [route]});

    // Named like a mainline version: v3.<host> is the mainline's each route to v3.
    let v3 = side_version("v3", 0, spec("web:v3"));
    let (reason, message) =
        refusal(&plan(&app, &[mainline.clone()], &[], &[&v3], at(10)), 0).unwrap();
    assert_eq!(reason, "Shadowed");
    assert!(
        message.starts_with("spec.routes[0].match: the strategy's route \"each\""),
        "{message}"
    );
    let pr = side_version("pr-42", 0, spec("web:pr-42"));
    assert_eq!(
        refusal(&plan(&app, &[mainline.clone()], &[], &[&pr], at(10)), 0),
        None
    );

    // The mainline's header route.
    let header = side_version(
        "qa",
        0,
        routes(json!({"name": "h", "match": {"header": {"name": "X-Canary", "value": "always"}}})),
    );
    let (_, message) =
        refusal(&plan(&app, &[mainline.clone()], &[], &[&header], at(10)), 0).unwrap();
    assert!(
        message.contains("the strategy's route \"canary\""),
        "{message}"
    );

    // Two side versions with one header: the later one is refused, naming the earlier.
    let beta = |name: &str, secs| {
        side_version(
            name,
            secs,
            routes(
                json!({"name": "h", "match": {"header": {"name": "x-version", "value": "beta"}}}),
            ),
        )
    };
    let (first, second) = (beta("beta-1", 0), beta("beta-2", 5));
    let planned = plan(&app, &[mainline], &[], &[&second, &first], at(10));
    assert_eq!(planned.create.len(), 1);
    assert_eq!(refusal(&planned, 0), None);
    let (reason, message) = refusal(&planned, 1).unwrap();
    assert_eq!(reason, "Shadowed");
    assert!(
        message.contains("route \"h\" of SideVersion beta-1, made before this one,"),
        "{message}"
    );
}
