//! The CRDs' CEL rules, evaluated locally by kube-cel as the API server would, agree with
//! `prism_api::validate`: every rule rejects what it should, with the same message in both.

mod common;

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use prism_api::validate;
use prism_api::{Application, ApplicationSpec, Release, Strategy};
use serde_json::{Value, json};

fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema).unwrap()
}

fn cel_messages<K: CustomResourceExt>(object: &Value, old: Option<&Value>) -> BTreeSet<String> {
    match kube_cel::Validator::new().validate(&schema_of::<K>(), object, old) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn rust_messages(object: &Value) -> BTreeSet<String> {
    let spec: ApplicationSpec = serde_json::from_value(object["spec"].clone()).unwrap();
    match validate::application(&spec) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.0.into_iter().map(|e| e.message).collect(),
    }
}

fn application() -> Value {
    let canary = json!({
        "name": "canary",
        "capacity": {"contender": "25%"},
        "traffic": {"contender": 25},
        "analysis": {"metrics": [{"name": "errors", "query": "sum(errors)", "threshold": {"max": 1.0}}]},
        "gate": {"pause": "5m"}
    });
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": common::spec(json!([canary, common::full()]))
    })
}

/// Applies `change` to a valid Application and expects exactly `message` from CEL and from Rust.
fn rejects(change: impl FnOnce(&mut Value), message: &str) {
    let mut app = application();
    change(&mut app);
    let expected = BTreeSet::from([message.to_string()]);
    assert_eq!(
        cel_messages::<Application>(&app, None),
        expected,
        "CEL, for {app:#}"
    );
    assert_eq!(rust_messages(&app), expected, "validate, for {app:#}");
}

fn step(app: &mut Value, index: usize) -> &mut Value {
    &mut app["spec"]["strategy"]["steps"][index]
}

#[test]
fn the_valid_application_passes_both() {
    let app = application();
    assert_eq!(cel_messages::<Application>(&app, None), BTreeSet::new());
    assert_eq!(rust_messages(&app), BTreeSet::new());
}

#[test]
fn weights_that_do_not_sum_to_100() {
    rejects(
        |app| step(app, 0)["traffic"] = json!({"contender": 60, "incumbent": 60}),
        "contender and incumbent weights must sum to 100: give only one of them and the other gets the rest",
    );
}

#[test]
fn duplicate_step_names() {
    rejects(
        |app| step(app, 1)["name"] = json!("canary"),
        "step names must be unique within a strategy: rename one of the steps that share a name",
    );
}

#[test]
fn no_steps() {
    rejects(
        |app| app["spec"]["strategy"]["steps"] = json!([]),
        "a strategy needs at least one step: add a step whose capacity.contender is \"100%\"",
    );
}

#[test]
fn a_step_name_that_is_no_dns_label() {
    rejects(
        |app| step(app, 0)["name"] = json!("Canary!"),
        "a step name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
    );
}

#[test]
fn a_surge_step_that_shifts_traffic() {
    rejects(
        |app| step(app, 0)["capacity"]["maxSurge"] = json!(2),
        "a step with capacity.maxSurge moves capacity a few pods at a time, so it must not change traffic: move this traffic sub-step into a step of its own",
    );
}

fn route(name: &str, to: &str, matches: Value) -> Value {
    json!({"name": name, "to": to, "match": matches})
}

#[test]
fn duplicate_route_names() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] = json!([
                route(
                    "beta",
                    "contender",
                    json!({"header": {"name": "x-beta", "value": "1"}})
                ),
                route("beta", "contender", json!({"pathPrefix": "/beta"})),
            ])
        },
        "route names must be unique within a step: rename one of the routes that share a name",
    );
}

#[test]
fn a_route_to_each_version_without_the_placeholder() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] =
                json!([route("all", "each", json!({"subdomain": "beta"}))])
        },
        "a route to `each` version must contain {version} in its match, replaced by each version's name: e.g. subdomain: \"{version}\" or pathPrefix: \"/{version}\"",
    );
}

#[test]
fn the_placeholder_in_a_route_to_one_version() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] = json!([route(
                "beta",
                "contender",
                json!({"subdomain": "{version}"})
            )])
        },
        "{version} is replaced only in routes to `each`: set to: each, or write the match out",
    );
}

#[test]
fn a_route_with_two_matches() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] = json!([route(
                "beta",
                "contender",
                json!({"subdomain": "beta", "pathPrefix": "/beta"})
            )])
        },
        "a route matches on exactly one of header, pathPrefix, queryParam or subdomain: keep one, and give each other match a route of its own",
    );
}

#[test]
fn a_route_with_a_query_param_and_a_header() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] = json!([route(
                "beta",
                "contender",
                json!({
                    "queryParam": {"name": "beta", "value": "1"},
                    "header": {"name": "x-beta", "value": "1"}
                })
            )])
        },
        "a route matches on exactly one of header, pathPrefix, queryParam or subdomain: keep one, and give each other match a route of its own",
    );
}

#[test]
fn a_query_param_route_to_each_version_without_the_placeholder() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] = json!([route(
                "all",
                "each",
                json!({"queryParam": {"name": "version", "value": "any"}})
            )])
        },
        "a route to `each` version must contain {version} in its match, replaced by each version's name: e.g. subdomain: \"{version}\" or pathPrefix: \"/{version}\"",
    );
}

#[test]
fn query_param_and_regular_expression_routes_pass_both() {
    let mut app = application();
    step(&mut app, 0)["traffic"]["routes"] = json!([
        route(
            "by-query",
            "each",
            json!({"queryParam": {"name": "version", "value": "{version}"}})
        ),
        route(
            "beta",
            "contender",
            json!({"header": {"name": "x-beta", "value": "^(1|yes)$", "type": "RegularExpression"}})
        ),
    ]);
    assert_eq!(cel_messages::<Application>(&app, None), BTreeSet::new());
    assert_eq!(rust_messages(&app), BTreeSet::new());
}

#[test]
fn a_relative_path_prefix() {
    rejects(
        |app| {
            step(app, 0)["traffic"]["routes"] =
                json!([route("beta", "contender", json!({"pathPrefix": "beta"}))])
        },
        "a pathPrefix starts with '/': e.g. \"/beta\"",
    );
}

#[test]
fn duplicate_metric_names() {
    rejects(
        |app| {
            let metric =
                json!({"name": "errors", "query": "sum(errors)", "threshold": {"max": 1.0}});
            step(app, 0)["analysis"]["metrics"] = json!([metric.clone(), metric]);
        },
        "metric names must be unique within a step: rename one of the metrics that share a name",
    );
}

#[test]
fn a_threshold_judge_without_thresholds() {
    rejects(
        |app| {
            step(app, 0)["analysis"]["metrics"][0]
                .as_object_mut()
                .unwrap()
                .remove("threshold")
                .map(drop)
                .unwrap()
        },
        "the threshold judge needs a threshold on every metric: add threshold.min or threshold.max, or set judge: mannWhitney",
    );
}

#[test]
fn a_metric_with_two_sources() {
    rejects(
        |app| step(app, 0)["analysis"]["metrics"][0]["templateRef"] = json!("error-rate"),
        "a metric takes its query from exactly one of templateRef or query",
    );
}

#[test]
fn a_threshold_without_bounds() {
    rejects(
        |app| step(app, 0)["analysis"]["metrics"][0]["threshold"] = json!({}),
        "a threshold needs min, max or both",
    );
}

#[test]
fn a_threshold_whose_min_is_above_its_max() {
    rejects(
        |app| step(app, 0)["analysis"]["metrics"][0]["threshold"] = json!({"min": 2.0, "max": 1.0}),
        "threshold.min must not be greater than threshold.max",
    );
}

#[test]
fn two_gates_in_one() {
    rejects(
        |app| step(app, 0)["gate"]["manual"] = json!(true),
        "a gate is one of manual, pause or webhook: keep one, and put the others on steps of their own",
    );
}

#[test]
fn a_webhook_that_is_no_http_url() {
    rejects(
        |app| step(app, 0)["gate"] = json!({"webhook": {"url": "ftp://hooks.example.com"}}),
        "a webhook url starts with http:// or https://",
    );
}

#[test]
fn two_cluster_scopes_in_one() {
    rejects(
        |app| step(app, 0)["clusters"] = json!({"first": 1, "region": "eu"}),
        "a step's clusters are chosen by one of first, names or region: keep one, and give the others steps of their own",
    );
}

#[test]
fn a_strategy_named_and_inline() {
    rejects(
        |app| app["spec"]["strategy"]["name"] = json!("canary"),
        "give exactly one of name (a Strategy in this namespace), clusterStrategyName (a ClusterStrategy) or steps (an inline strategy)",
    );
}

#[test]
fn traffic_steps_without_a_traffic_provider() {
    rejects(
        |app| app["spec"]["traffic"] = json!({"provider": "none"}),
        "spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider",
    );
}

#[test]
fn a_weighted_step_with_a_selector_switch() {
    rejects(
        |app| app["spec"]["traffic"] = json!({"provider": "serviceSelector"}),
        "provider serviceSelector switches the Service from one version to the other, so weights are 0 or 100: for a weighted canary choose gatewayAPI, istio or podLabels",
    );
}

#[test]
fn routes_with_a_provider_that_cannot_match_requests() {
    rejects(
        |app| {
            app["spec"]["traffic"] = json!({"provider": "podLabels"});
            step(app, 0)["traffic"]["routes"] =
                json!([route("beta", "contender", json!({"pathPrefix": "/beta"}))]);
        },
        "routes match requests, which only providers gatewayAPI and istio can do: choose one of them, or remove the routes",
    );
}

#[test]
fn traffic_without_a_service() {
    rejects(
        |app| {
            app["spec"]["template"]["manifests"]
                .as_array_mut()
                .unwrap()
                .truncate(1)
        },
        "a traffic provider shifts the traffic of a Service: add the application's Service to spec.template.manifests, or set spec.traffic.provider: none for a workload that serves no requests",
    );
}

#[test]
fn an_inlined_secret() {
    rejects(
        |app| {
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {}});
            app["spec"]["template"]["manifests"]
                .as_array_mut()
                .unwrap()
                .push(secret);
        },
        "a template never inlines a Secret, since every Release keeps a copy of its template: create the Secret in each cluster and reference it by name",
    );
}

#[test]
fn a_kind_a_template_does_not_hold() {
    rejects(
        |app| {
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"}, "spec": {}});
            app["spec"]["template"]["manifests"]
                .as_array_mut()
                .unwrap()
                .push(pod);
        },
        "a template holds one workload (Deployment, StatefulSet or DaemonSet), its Service, ConfigMaps, a HorizontalPodAutoscaler, and ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress and NetworkPolicy objects: create other kinds in each cluster outside the Application",
    );
}

#[test]
fn an_api_version_that_is_not_its_kinds() {
    let message = "set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, StatefulSet or DaemonSet, v1 for a Service, ConfigMap or ServiceAccount, autoscaling/v2 for a HorizontalPodAutoscaler, rbac.authorization.k8s.io/v1 for a Role or RoleBinding, policy/v1 for a PodDisruptionBudget, networking.k8s.io/v1 for an Ingress or NetworkPolicy";
    rejects(
        |app| app["spec"]["template"]["manifests"][0]["apiVersion"] = json!("apps/v1beta1"),
        message,
    );
    rejects(
        |app| {
            let hpa = json!({
                "apiVersion": "autoscaling/v1",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 8}
            });
            app["spec"]["template"]["manifests"]
                .as_array_mut()
                .unwrap()
                .push(hpa);
        },
        message,
    );
}

#[test]
fn two_deployments() {
    rejects(
        |app| {
            let manifests = app["spec"]["template"]["manifests"].as_array_mut().unwrap();
            let mut second = manifests[0].clone();
            second["metadata"]["name"] = json!("web-2");
            manifests.push(second);
        },
        "a template needs exactly one workload, the Deployment, StatefulSet or DaemonSet Prism scales: keep one (give other workloads an Application of their own)",
    );
}

#[test]
fn two_autoscalers() {
    rejects(
        |app| {
            let hpa = json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 8}
            });
            let manifests = app["spec"]["template"]["manifests"].as_array_mut().unwrap();
            manifests.push(hpa.clone());
            manifests.push(hpa);
        },
        "a template has at most one HorizontalPodAutoscaler, the one that scales its workload",
    );
}

#[test]
fn providers_without_their_traffic_object() {
    rejects(
        |app| app["spec"]["traffic"] = json!({"provider": "gatewayAPI"}),
        "provider gatewayAPI shifts traffic in HTTPRoutes or GRPCRoutes: name them in httpRoutes or grpcRoutes, e.g. httpRoutes: [web]",
    );
    rejects(
        |app| app["spec"]["traffic"] = json!({"provider": "istio"}),
        "provider istio shifts traffic in a VirtualService: name it in virtualService",
    );
}

#[test]
fn clusters_counted_per_region_and_in_all() {
    rejects(
        |app| {
            app["spec"]["schedule"] =
                json!({"clusters": 3, "regions": [{"name": "eu", "clusters": 2}]})
        },
        "give clusters per region (regions) or a total count (clusters), not both",
    );
}

#[test]
fn a_region_listed_twice() {
    rejects(
        |app| {
            app["spec"]["schedule"] =
                json!({"regions": [{"name": "eu", "clusters": 2}, {"name": "eu", "clusters": 1}]})
        },
        "each region is listed once: add up the counts of the entries that share a name",
    );
}

/// An Application whose versions are named `template` in their routes.
fn named(template: &str) -> impl FnOnce(&mut Value) {
    move |app| app["spec"]["versions"] = json!({"max": 3, "name": template})
}

#[test]
fn version_names_that_people_can_type_pass_both() {
    for template in [
        "v{revision}",
        "{app}-v{revision}",
        "{revision}",
        "r{revision}-live",
    ] {
        let mut app = application();
        named(template)(&mut app);
        assert_eq!(
            cel_messages::<Application>(&app, None),
            BTreeSet::new(),
            "{template}"
        );
        assert_eq!(rust_messages(&app), BTreeSet::new(), "{template}");
    }
}

#[test]
fn a_version_name_that_two_revisions_could_share() {
    rejects(
        named("{app}-live"),
        "versions.name must contain {revision}, or two versions could go by one name: e.g. \"v{revision}\"",
    );
}

#[test]
fn a_version_name_that_is_no_dns_label() {
    for template in [
        "V{revision}",
        "v.{revision}",
        "-{revision}",
        "v{revision}-",
        "v{tag}{revision}",
    ] {
        rejects(
            named(template),
            "versions.name must make a DNS label: lowercase letters, digits, '-' and the placeholders {revision} and {app}, starting and ending with a letter, a digit or a placeholder",
        );
    }
}

#[test]
fn a_strategy_documents_rules_are_those_of_an_inline_strategy() {
    let mut strategy = json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Strategy",
        "metadata": {"name": "canary"},
        "spec": application()["spec"]["strategy"].clone()
    });
    strategy["spec"]["steps"][1]["name"] = json!("canary");
    assert_eq!(
        cel_messages::<Strategy>(&strategy, None),
        BTreeSet::from(["step names must be unique within a strategy: rename one of the steps that share a name".to_string()])
    );
}

fn release() -> Value {
    let app = application();
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "web-3", "namespace": "shop"},
        "spec": {
            "application": "web",
            "revision": 3,
            "template": app["spec"]["template"],
            "strategy": {"steps": app["spec"]["strategy"]["steps"]},
            "clusters": [{"name": "c1", "region": "eu"}]
        }
    })
}

#[test]
fn a_release_is_immutable_but_for_its_commands_and_its_strategy() {
    let old = release();
    let mut commanded = old.clone();
    commanded["spec"]["targetStep"] = json!(1);
    commanded["spec"]["aborted"] = json!(true);
    assert_eq!(
        cel_messages::<Release>(&commanded, Some(&old)),
        BTreeSet::new()
    );

    let immutable =
        "is immutable: a Release is a snapshot; change the Application to make a new Release";
    let mut changed = old.clone();
    changed["spec"]["revision"] = json!(4);
    assert_eq!(
        cel_messages::<Release>(&changed, Some(&old)),
        BTreeSet::from([immutable.to_string()])
    );
    // The controller updates the strategy of a Release rolling out.
    let mut changed = old.clone();
    changed["spec"]["strategy"]["steps"][0]["traffic"]["contender"] = json!(50);
    assert_eq!(
        cel_messages::<Release>(&changed, Some(&old)),
        BTreeSet::new()
    );
}

#[test]
fn an_aborted_release_stays_aborted() {
    let mut aborted = release();
    aborted["spec"]["aborted"] = json!(true);
    let mut resumed = aborted.clone();
    resumed["spec"]["aborted"] = json!(false);
    assert_eq!(
        cel_messages::<Release>(&resumed, Some(&aborted)),
        BTreeSet::from([
            "an aborted Release stays aborted: change the Application to make a new Release"
                .to_string()
        ])
    );
}

#[test]
fn a_target_step_past_the_last_step() {
    let mut release = release();
    release["spec"]["targetStep"] = json!(2);
    assert_eq!(
        cel_messages::<Release>(&release, None),
        BTreeSet::new(),
        "past the last gate"
    );
    release["spec"]["targetStep"] = json!(3);
    assert_eq!(
        cel_messages::<Release>(&release, None),
        BTreeSet::from([
            "targetStep is the index of a step, or the number of steps to pass the last gate too (prism promote --full): it must not exceed the number of steps"
                .to_string()
        ])
    );
}

#[test]
fn side_version_route_names_must_be_unique_in_cel_and_rust() {
    use prism_api::side_version::{self, SideVersion};
    let route =
        json!({"name": "beta", "match": {"header": {"name": "x-version", "value": "beta"}}});
    let side = json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "SideVersion",
        "metadata": {"name": "pr-42", "namespace": "shop"},
        "spec": {"application": "web", "routes": [route, route]}
    });
    let spec = serde_json::from_value(side["spec"].clone()).unwrap();
    let rust: BTreeSet<String> = side_version::validate(&spec)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(cel_messages::<SideVersion>(&side, None), rust);
    assert!(
        rust.iter()
            .any(|m| m.contains("unique within a side version"))
    );
    let mut renamed = side.clone();
    renamed["spec"]["application"] = json!("shop");
    assert_eq!(
        cel_messages::<SideVersion>(&renamed, Some(&side)).len(),
        2,
        "the application is immutable, and the routes still collide"
    );
}
