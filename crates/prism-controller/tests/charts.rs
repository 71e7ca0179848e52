//! Helm charts as an Application's template, end to end on the sandbox: charts of the sandbox's
//! repository (`http://127.0.0.1:8879`) rendered by the controller's helm into Releases that keep
//! what was rendered, rolled out with real requests through the gateways, changed by their values
//! inline or in a ConfigMap, rolled back; and the charts that cannot make a Release, which make
//! none and install nothing.
//!
//! What triggers a reconcile: the controller watches no ConfigMap of the management cluster, so a
//! values file (`valuesFrom`) created or edited is read at the Application's next reconcile (any
//! change of the Application, or the 5-minute resync). The tests touch the Application (an
//! annotation) after writing one, as a user would have to.

mod common;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prism_api::Release;
use prism_api::application::Manifest;
use prism_api::chart::Chart;
use prism_api::release::ReleasePhase;
use prism_chart::Helm;
use prism_testkit::gateway::{Request, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, charts, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet, apply_object, measure};
use common::invalid::{made_for, wait_for_valid};
use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};

/// The chart `name` at `version` of the sandbox's repository, with inline `values`.
async fn chart(name: &str, version: &str, values: Value) -> Value {
    json!({
        "repository": charts::repository_url().await,
        "name": name,
        "version": version,
        "values": values,
    })
}

/// A step of `replicas` contender pods and `weight`% of the traffic, held until promoted.
fn canary_then_full(replicas: u32, weight: u32) -> Value {
    json!([
        {"name": "canary", "capacity": {"contender": replicas}, "traffic": {"contender": weight}, "gate": {"manual": true}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
    ])
}

/// Capacity alone, for a workload that serves no requests.
fn one_then_all() -> Value {
    json!([
        {"name": "one", "capacity": {"contender": 1}},
        {"name": "all", "capacity": {"contender": "100%", "incumbent": "0%"}},
    ])
}

/// The Release `name` as the API server returns it, unparsed.
async fn raw_release(client: &Client, namespace: &str, name: &str) -> String {
    let request = http::Request::get(format!(
        "/apis/prism.dev/v1alpha1/namespaces/{namespace}/releases/{name}"
    ))
    .body(Vec::new())
    .unwrap();
    client.request_text(request).await.unwrap()
}

/// What Release `name` keeps of its chart's render: `spec.template.rendered`, a string, and no
/// inline manifests; decoded, its objects.
async fn kept_render(client: &Client, namespace: &str, name: &str) -> (String, Vec<Manifest>) {
    let raw: Value = serde_json::from_str(&raw_release(client, namespace, name).await).unwrap();
    let template = &raw["spec"]["template"];
    assert!(template["manifests"].is_null(), "{name}: {template}");
    let rendered = template["rendered"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} keeps no rendered string: {template}"))
        .to_owned();
    let manifests = prism_api::chart::decompress(&rendered).unwrap();
    (rendered, manifests)
}

/// What the chart of `release` renders now, as the controller renders it: the Application's name
/// as the release's, in its namespace.
async fn render_again(release: &Release, values_files: &[String]) -> Vec<Manifest> {
    let chart: &Chart = release.spec.template.chart.as_ref().unwrap();
    Helm::new(charts::helm_path().await)
        .render(
            chart,
            values_files,
            release.labels()["prism.dev/app"].as_str(),
            &release.namespace().unwrap(),
        )
        .await
        .unwrap()
        .manifests
}

/// The pod annotations of the Deployment a Release's chart rendered.
fn pod_annotations(manifests: &[Manifest]) -> BTreeMap<String, String> {
    let deployment = manifests
        .iter()
        .find(|m| m.kind() == Some("Deployment"))
        .unwrap();
    let deployment: Deployment =
        serde_json::from_value(Value::Object(deployment.object())).unwrap();
    deployment
        .spec
        .and_then(|spec| spec.template.metadata)
        .and_then(|metadata| metadata.annotations)
        .unwrap_or_default()
}

/// Sets an annotation of the Application, so that it is reconciled: what a values file's change
/// needs, since the controller does not watch ConfigMaps.
async fn touch(apps: &Api<prism_api::Application>, name: &str, value: &str) {
    apps.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"example.test/touched": value}}})),
    )
    .await
    .unwrap();
}

async fn wait_for_release(releases: &Api<Release>, name: &str) -> Release {
    wait_until(
        format!("Release {name} exists"),
        DEFAULT_TIMEOUT,
        || async { Ok(releases.get_opt(name).await?) },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_web_chart_rolls_out_as_a_canary_through_the_gateway_changes_and_rolls_back() {
    let world = GatewayFleet::new("chart-canary").await;
    let ns = world.namespace().to_owned();
    let client = world.env.cluster("c1").client();
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let route = gateway.route("web", &world.host, &[("web", 1)]);
        apply_object(&cluster.client(), &ns, route).await;
    }
    let spec = |chart: Value| {
        json!({
            "template": {"chart": chart},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
            "strategy": {"steps": canary_then_full(1, 20)},
        })
    };
    let request = Request::new(&world.host);

    // Version 1: web 1.0.0 on 4 replicas, alone, so promoted at once.
    let first = chart("web", "1.0.0", json!({"replicaCount": 4})).await;
    apply(&world.apps, &application("web", spec(first)).unwrap())
        .await
        .unwrap();
    patch_release_spec(&world.releases, "web-1", json!({"targetStep": 1}))
        .await
        .unwrap();
    let web_1 = wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    let (rendered, kept) = kept_render(&client, &ns, "web-1").await;
    assert_eq!(kept, render_again(&web_1, &[]).await);
    assert_eq!(web_1.spec.template.manifests, kept);
    let kinds: Vec<_> = kept.iter().filter_map(|m| m.kind()).collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"Service"),
        "{kinds:?}"
    );
    let stored = raw_release(&client, &ns, "web-1").await;
    println!(
        "Release web-1 ({} objects rendered): {} bytes as the API server returns it, of which spec.template.rendered {} bytes; the render's JSON {} bytes",
        kept.len(),
        stored.len(),
        rendered.len(),
        serde_json::to_vec(&kept).unwrap().len()
    );
    for gateway in &world.gateways {
        wait_until_served(gateway, &request, "web-1", |served| {
            served.release == "web-1"
        })
        .await
        .unwrap();
        measure(gateway, &request, &[("web-1", 100.0)]).await;
    }

    // Version 2: the chart's 1.1.0, one pod and a fifth of the requests, measured; then all.
    let second = chart("web", "1.1.0", json!({"replicaCount": 4})).await;
    apply(&world.apps, &application("web", spec(second)).unwrap())
        .await
        .unwrap();
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
    for gateway in &world.gateways {
        measure(gateway, &request, &[("web-2", 20.0), ("web-1", 80.0)]).await;
    }
    // The chart's ServiceAccount is each version's own, and its pods run as it; its Service is
    // shared.
    for cluster in world.env.clusters() {
        let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client(), &ns);
        for release in ["web-1", "web-2"] {
            let account = accounts.get(&format!("{release}-web")).await.unwrap();
            assert_eq!(account.labels()["prism.dev/release"], release);
            let deployment = Api::<Deployment>::namespaced(cluster.client(), &ns)
                .get(release)
                .await
                .unwrap();
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            assert_eq!(
                pod.service_account_name.as_deref(),
                Some(&*format!("{release}-web"))
            );
        }
    }
    patch_release_spec(&world.releases, "web-2", json!({"targetStep": 1}))
        .await
        .unwrap();
    let web_2 = wait_for_phase(&world.releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    assert_eq!(web_2.spec.template.chart.as_ref().unwrap().version, "1.1.0");
    for gateway in &world.gateways {
        measure(gateway, &request, &[("web-2", 100.0)]).await;
    }

    // Version 3: a values change alone.
    let annotated = chart(
        "web",
        "1.1.0",
        json!({"replicaCount": 4, "podAnnotations": {"example.test/build": "3"}}),
    )
    .await;
    apply(&world.apps, &application("web", spec(annotated)).unwrap())
        .await
        .unwrap();
    patch_release_spec(&world.releases, "web-3", json!({"targetStep": 1}))
        .await
        .unwrap();
    let web_3 = wait_for_phase(&world.releases, "web-3", ReleasePhase::Complete)
        .await
        .unwrap();
    let values = web_3.spec.template.chart.as_ref().unwrap().values.clone();
    assert_eq!(values.unwrap()["podAnnotations"]["example.test/build"], "3");
    let (_, kept_3) = kept_render(&client, &ns, "web-3").await;
    assert_eq!(
        pod_annotations(&kept_3)
            .get("example.test/build")
            .map(String::as_str),
        Some("3")
    );

    // A rollback to revision 1, as `prism rollback web --to 1` does it: a Release of its render.
    let connection = prism_ops::connection::Connection::with_client(client.clone(), &ns, "c1");
    prism_ops::rollback::rollback(&connection, "web", Some(1), false)
        .await
        .unwrap();
    patch_release_spec(&world.releases, "web-4", json!({"targetStep": 1}))
        .await
        .unwrap();
    let web_4 = wait_for_phase(&world.releases, "web-4", ReleasePhase::Complete)
        .await
        .unwrap();
    let (_, kept_4) = kept_render(&client, &ns, "web-4").await;
    assert_eq!(kept_4, kept, "revision 1's render, again");
    assert_eq!(web_4.spec.template.chart, web_1.spec.template.chart);
    for gateway in &world.gateways {
        measure(gateway, &request, &[("web-4", 100.0)]).await;
    }
}

#[tokio::test]
async fn a_headless_worker_chart_rolls_out_by_capacity_and_again_on_a_values_change() {
    let env = TestEnv::new("chart-worker").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let spec = |chart: Value| {
        json!({
            "template": {"chart": chart},
            "traffic": {"provider": "none"},
            "strategy": {"steps": one_then_all()},
        })
    };
    let first = chart("worker", "1.0.0", json!({"replicaCount": 3})).await;
    apply(&apps, &application("worker", spec(first)).unwrap())
        .await
        .unwrap();
    let worker_1 = wait_for_phase(&releases, "worker-1", ReleasePhase::Complete)
        .await
        .unwrap();
    assert_eq!(
        kept_render(&client, ns, "worker-1").await.1,
        render_again(&worker_1, &[]).await
    );

    let second = chart(
        "worker",
        "1.0.0",
        json!({"replicaCount": 3, "config": {"topic": "invoices"}}),
    )
    .await;
    apply(&apps, &application("worker", spec(second)).unwrap())
        .await
        .unwrap();
    wait_for_phase(&releases, "worker-2", ReleasePhase::Complete)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_until(
        "worker-2 runs 3 ready pods, worker-1 none",
        DEFAULT_TIMEOUT,
        || async {
            let ready = |name: &str| {
                let deployments = deployments.clone();
                let name = name.to_owned();
                async move {
                    let found = deployments.get_opt(&name).await?;
                    anyhow::Ok(found.and_then(|d| d.status).and_then(|s| s.ready_replicas))
                }
            };
            let (new, old) = (ready("worker-2").await?, ready("worker-1").await?);
            Ok((new == Some(3) && old.unwrap_or(0) == 0).then_some(()))
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_chart_of_megabytes_rolls_out_from_its_compressed_release() {
    let env = TestEnv::new("chart-large").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let spec = json!({
        "template": {"chart": chart(charts::DASHBOARDS, "1.0.0", json!({})).await},
        "traffic": {"provider": "none"},
        "strategy": {"steps": [{"name": "all", "capacity": {"contender": "100%"}}]},
    });
    apply(&apps, &application("dashboards", spec).unwrap())
        .await
        .unwrap();
    wait_for_phase(&releases, "dashboards-1", ReleasePhase::Complete)
        .await
        .unwrap();
    // More than the API server keeps in one object as JSON, a fraction of it as the Release.
    let (_, manifests) = kept_render(&client, ns, "dashboards-1").await;
    let json = serde_json::to_vec(&manifests).unwrap().len();
    assert!(json > 3 * 512 * 1024, "{json} bytes rendered");
    let release = raw_release(&client, ns, "dashboards-1").await.len();
    println!("dashboards-1: {json} bytes of objects rendered, a Release of {release} bytes");
    assert!(release < 512 * 1024, "the Release is {release} bytes");
    // Every dashboard is installed, as the version's own copy.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let installed = config_maps
        .list(&ListParams::default().labels("prism.dev/release=dashboards-1"))
        .await
        .unwrap();
    assert_eq!(installed.items.len(), 60);
}

/// An Application of a chart that cannot make a Release, and what its `Valid` condition says.
struct Bad {
    name: &'static str,
    chart: Value,
    reason: &'static str,
    /// What the condition's message starts with: the field at fault.
    field: &'static str,
    /// What else it says.
    says: &'static str,
}

#[tokio::test]
async fn a_chart_that_cannot_render_makes_no_release_and_installs_nothing() {
    let env = TestEnv::new("chart-invalid").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let spec = |chart: Value| {
        json!({
            "template": {"chart": chart},
            "strategy": {"steps": [
                {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
            ]},
        })
    };
    let mut missing_values = chart("web", "1.0.0", json!({})).await;
    missing_values["valuesFrom"] = json!([{"kind": "ConfigMap", "name": "web-values"}]);
    let bad = [
        Bad {
            name: "no-such-chart",
            chart: chart("nosuch", "1.0.0", json!({})).await,
            reason: "ChartNotRendered",
            field: "spec.template.chart.name: ",
            says: "nosuch",
        },
        Bad {
            name: "no-such-version",
            chart: chart("web", "9.9.9", json!({})).await,
            reason: "ChartNotRendered",
            field: "spec.template.chart.version: ",
            says: "9.9.9",
        },
        Bad {
            name: "values-fail",
            chart: chart("web", "1.0.0", json!({"replicaCount": "3"})).await,
            reason: "ChartNotRendered",
            field: "spec.template.chart.values: ",
            says: "replicaCount must be a number",
        },
        Bad {
            name: "pair",
            chart: chart("pair", "1.0.0", json!({})).await,
            reason: "InvalidSpec",
            field: "spec.template.chart.workload",
            says: "",
        },
        Bad {
            name: "values-missing",
            chart: missing_values,
            reason: "ValuesNotFound",
            field: "spec.template.chart.valuesFrom[0].name: ",
            says: "web-values",
        },
    ];
    for case in &bad {
        apply(
            &apps,
            &application(case.name, spec(case.chart.clone())).unwrap(),
        )
        .await
        .unwrap();
    }
    for case in &bad {
        let status = wait_for_valid(&apps, case.name, "not valid", |valid| {
            valid.status == "False"
        })
        .await
        .unwrap();
        let valid = common::valid_condition(&status).unwrap();
        assert_eq!(
            valid.reason, case.reason,
            "{}: {}",
            case.name, valid.message
        );
        assert!(
            valid.message.starts_with(case.field) && valid.message.contains(case.says),
            "{}: {}",
            case.name,
            valid.message
        );
        let made = made_for(&env, &client, case.name).await.unwrap();
        assert!(made.is_empty(), "{}: made {made:?}", case.name);
    }

    // The values file created: the next reconcile reads it and makes the Release.
    let values = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("web-values".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "values.yaml".to_owned(),
            "replicaCount: 2\n".to_owned(),
        )])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &values)
        .await
        .unwrap();
    touch(&apps, "values-missing", "1").await;
    let made = wait_for_release(&releases, "values-missing-1").await;
    assert!(
        made.spec.template.chart.unwrap().values_digest.is_some(),
        "the digest of the values file is kept"
    );
}

#[tokio::test]
async fn editing_a_values_configmap_makes_a_new_release() {
    let env = TestEnv::new("chart-values-from").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let values_file = |build: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "worker-values"},
            "data": {"values.yaml": format!("replicaCount: 2\npodAnnotations:\n  example.test/build: \"{build}\"\n")},
        })
    };
    config_maps
        .patch(
            "worker-values",
            &PatchParams::apply(common::TEST_MANAGER),
            &Patch::Apply(values_file("1")),
        )
        .await
        .unwrap();
    let mut worker = chart("worker", "1.0.0", json!({})).await;
    worker["valuesFrom"] = json!([{"kind": "ConfigMap", "name": "worker-values"}]);
    let spec = json!({
        "template": {"chart": worker},
        "traffic": {"provider": "none"},
        "strategy": {"steps": one_then_all()},
    });
    apply(&apps, &application("worker", spec).unwrap())
        .await
        .unwrap();
    let first = wait_for_phase(&releases, "worker-1", ReleasePhase::Complete)
        .await
        .unwrap();
    let (_, kept_1) = kept_render(&client, ns, "worker-1").await;
    assert_eq!(pod_annotations(&kept_1)["example.test/build"], "1");

    config_maps
        .patch(
            "worker-values",
            &PatchParams::apply(common::TEST_MANAGER),
            &Patch::Apply(values_file("2")),
        )
        .await
        .unwrap();
    touch(&apps, "worker", "1").await;
    let second = wait_for_phase(&releases, "worker-2", ReleasePhase::Complete)
        .await
        .unwrap();
    let (_, kept_2) = kept_render(&client, ns, "worker-2").await;
    assert_eq!(pod_annotations(&kept_2)["example.test/build"], "2");
    let digest = |release: &Release| {
        release
            .spec
            .template
            .chart
            .as_ref()
            .unwrap()
            .values_digest
            .clone()
    };
    assert_ne!(digest(&first), digest(&second));
    let file = config_maps
        .get("worker-values")
        .await
        .unwrap()
        .data
        .unwrap()["values.yaml"]
        .clone();
    assert_eq!(kept_2, render_again(&second, &[file]).await);
}
