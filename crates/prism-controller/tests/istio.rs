//! The `istio` traffic provider on the sandbox's API server, with Istio's VirtualService CRD
//! installed from the `istio.io/api` module (c1 is the management cluster and the only
//! application cluster). There is no istiod and no Envoy here, so what is asserted is the
//! VirtualService Prism writes: at every step exactly the one asked (weights, the managed
//! header entry first), with everything of the user's byte-identical, through a rollout and an
//! abort; a missing VirtualService holds the rollout with a condition that names it; and so does
//! a generation istiod has not reported on, when the VirtualService has a status.

mod common;

use anyhow::bail;
use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prism_api::Release;
use prism_api::conditions::{self, Condition};
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

fn virtual_services(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    );
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Istio's VirtualService CRD, and the user's VirtualService `web` ([`user_spec`]).
async fn install_user_virtual_service(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<Api<DynamicObject>> {
    prism_testkit::istio::install_crds(client, &[prism_testkit::istio::VIRTUAL_SERVICES]).await?;
    let api = virtual_services(client, namespace);
    let user: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "annotations": {"team": "web"}},
        "spec": user_spec(namespace),
    }))?;
    api.create(&PostParams::default(), &user).await?;
    Ok(api)
}

/// The user's VirtualService `web`: an entry for another host's Service (admin), and the
/// application's entry, with response headers Prism does not manage and a second destination
/// (static) beside the application's Service.
fn user_spec(namespace: &str) -> Value {
    json!({
        "hosts": ["web.example.test"],
        "http": [
            {
                "name": "admin",
                "match": [{"uri": {"prefix": "/admin"}}],
                "route": [{"destination": {"host": format!("admin.{namespace}.svc.cluster.local"), "port": {"number": 80}}}]
            },
            {
                "name": "site",
                "headers": {"response": {"add": {"x-served-by": "mesh"}}},
                "route": [
                    {"destination": {"host": "web", "port": {"number": 80}}, "weight": 90},
                    {"destination": {"host": "static", "port": {"number": 80}}, "weight": 10}
                ]
            }
        ]
    })
}

/// The user's spec with the application's destination split into `weights`, and a managed
/// entry `prism-beta` (the header route) to `beta` first, if any: what Prism must write.
fn expected_spec(namespace: &str, weights: &[(&str, u32)], beta: Option<&str>) -> Value {
    let mut spec = user_spec(namespace);
    let site = spec["http"][1].clone();
    let mut route: Vec<Value> = weights
        .iter()
        .map(|(version, weight)| {
            json!({"destination": {"host": version, "port": {"number": 80}}, "weight": weight})
        })
        .collect();
    route.push(site["route"][1].clone());
    spec["http"][1]["route"] = Value::Array(route);
    if let Some(version) = beta {
        let mut managed = site;
        managed["name"] = json!("prism-beta");
        managed["match"] = json!([{"headers": {"x-canary": {"exact": "always"}}}]);
        managed["route"] = json!([{"destination": {"host": version, "port": {"number": 80}}}]);
        spec["http"].as_array_mut().unwrap().insert(0, managed);
    }
    spec
}

/// 2 replicas behind the VirtualService `web`: a tenth of the traffic with a header route to
/// the contender, then half, then all; a person promotes past the first two.
fn spec(image: &str, virtual_service: &str) -> Value {
    json!({
        "template": web_template(image, 2),
        "traffic": {"provider": "istio", "virtualService": virtual_service},
        "strategy": {"steps": [
            {
                "name": "canary",
                "capacity": {"contender": "50%"},
                "traffic": {"contender": 10, "routes": [
                    {"name": "beta", "to": "contender", "match": {"header": {"name": "x-canary", "value": "always"}}}
                ]},
                "gate": {"manual": true}
            },
            {"name": "half", "traffic": {"contender": 50}, "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100, "routes": []}}
        ]},
    })
}

/// Waits until the VirtualService's spec is `expected`, its user's annotation kept and Prism's
/// routes annotation naming the routes to `routes_to` (release names); fails with the last one
/// read.
async fn wait_for_virtual_service(
    api: &Api<DynamicObject>,
    what: &str,
    expected: &Value,
    routes_to: &[&str],
) -> anyhow::Result<()> {
    let matches = |object: &DynamicObject| {
        let annotations = object.metadata.annotations.clone().unwrap_or_default();
        let routes: Vec<Value> = annotations
            .get("prism.dev/routes")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let versions: Vec<&str> = routes
            .iter()
            .filter_map(|route| route["version"].as_str())
            .collect();
        object.data["spec"] == *expected
            && annotations.get("team").map(String::as_str) == Some("web")
            && versions == routes_to
    };
    let waited = wait_until(
        format!("the VirtualService is {what}"),
        DEFAULT_TIMEOUT,
        || async {
            let object = api.get("web").await?;
            Ok(matches(&object).then_some(()))
        },
    )
    .await;
    if let Err(error) = waited {
        let object = api.get("web").await?;
        bail!(
            "{error:#}\nexpected spec: {expected:#}\nread: {:#}\nannotations: {:?}",
            object.data["spec"],
            object.metadata.annotations
        );
    }
    Ok(())
}

/// The Service of a version: named like its Release, selecting its pods.
async fn assert_version_service(services: &Api<Service>, release: &str) -> anyhow::Result<()> {
    let service = services.get(release).await?;
    let selector = service
        .spec
        .and_then(|spec| spec.selector)
        .unwrap_or_default();
    assert_eq!(
        selector,
        [
            ("prism.dev/app".to_owned(), "web".to_owned()),
            ("prism.dev/release".to_owned(), release.to_owned())
        ]
        .into()
    );
    Ok(())
}

#[tokio::test]
async fn istio_splits_the_virtual_service_step_by_step_and_keeps_the_rest() -> anyhow::Result<()> {
    let env = TestEnv::new("istio").await;
    let ns = env.namespace();
    let client = env.cluster("c1").client();
    let api = install_user_virtual_service(&client, ns).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let (_client, apps, releases, _controller) = setup(&env).await?;

    // Revision 1 alone: straight to its last step, all its traffic through its own Service.
    apply(&apps, &application("web", spec("web:1", "web"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let alone = expected_spec(ns, &[("web-1", 100)], None);
    wait_for_virtual_service(&api, "split to web-1 alone", &alone, &[]).await?;
    assert_version_service(&services, "web-1").await?;

    // canary: a tenth to web-2, and the header route to it in an entry of its own, first.
    apply(&apps, &application("web", spec("web:2", "web"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    let canary = expected_spec(ns, &[("web-1", 90), ("web-2", 10)], Some("web-2"));
    wait_for_virtual_service(&api, "at the canary step", &canary, &["web-2"]).await?;
    assert_version_service(&services, "web-2").await?;

    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "web-2", 1).await?;
    let half = expected_spec(ns, &[("web-1", 50), ("web-2", 50)], Some("web-2"));
    wait_for_virtual_service(&api, "at the half step", &half, &["web-2"]).await?;

    patch_release_spec(&releases, "web-2", json!({"targetStep": 2})).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let full = expected_spec(ns, &[("web-2", 100)], None);
    wait_for_virtual_service(&api, "on web-2 alone", &full, &[]).await?;

    // Revision 3, aborted at its canary step: back to web-2 alone, the header route gone.
    apply(&apps, &application("web", spec("web:3", "web"))?).await?;
    wait_for_step(&releases, "web-3", 0).await?;
    let canary = expected_spec(ns, &[("web-2", 90), ("web-3", 10)], Some("web-3"));
    wait_for_virtual_service(&api, "at web-3's canary step", &canary, &["web-3"]).await?;
    patch_release_spec(&releases, "web-3", json!({"aborted": true})).await?;
    wait_for_phase(&releases, "web-3", ReleasePhase::Aborted).await?;
    wait_for_virtual_service(&api, "back on web-2 alone after the abort", &full, &[]).await?;
    Ok(())
}

fn condition_naming<'a>(release: &'a Release, text: &str) -> Option<&'a Condition> {
    let status = release.status.as_ref()?;
    [
        conditions::release::PROGRESSING,
        conditions::release::STEP_ACHIEVED,
    ]
    .iter()
    .filter_map(|type_| conditions::find(&status.conditions, type_))
    .find(|condition| condition.message.contains(text))
}

#[tokio::test]
async fn a_missing_virtual_service_holds_the_release_with_a_condition_naming_it()
-> anyhow::Result<()> {
    let env = TestEnv::new("istio-missing").await;
    let ns = env.namespace();
    let client = env.cluster("c1").client();
    prism_testkit::istio::install_crds(&client, &[prism_testkit::istio::VIRTUAL_SERVICES]).await?;
    let (_client, apps, releases, _controller) = setup(&env).await?;

    apply(&apps, &application("web", spec("web:1", "web"))?).await?;
    let missing = "VirtualService web does not exist in the application's namespace: create it, with an http entry whose route has a destination to the application's Service web";
    let held = wait_until(
        "web-1 says the VirtualService is missing",
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt("web-1").await?;
            Ok(release.filter(|release| condition_naming(release, missing).is_some()))
        },
    )
    .await?;
    let status = held.status.clone().unwrap_or_default();
    assert_ne!(status.phase, Some(ReleasePhase::Complete), "{status:#?}");

    // The VirtualService's watch reconciles the Application naming it: the rollout goes on.
    let user: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "annotations": {"team": "web"}},
        "spec": user_spec(ns),
    }))?;
    virtual_services(&client, ns)
        .create(&PostParams::default(), &user)
        .await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let alone = expected_spec(ns, &[("web-1", 100)], None);
    wait_for_virtual_service(
        &virtual_services(&client, ns),
        "split to web-1 alone",
        &alone,
        &[],
    )
    .await?;
    Ok(())
}

/// Sets the VirtualService's `status.observedGeneration`, as istiod does with its status feature
/// on, to `generation`.
async fn report_generation(api: &Api<DynamicObject>, generation: i64) -> anyhow::Result<()> {
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"observedGeneration": generation}})),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_step_waits_for_istiod_when_the_virtual_service_reports_its_generation()
-> anyhow::Result<()> {
    let env = TestEnv::new("istio-status").await;
    let ns = env.namespace();
    let client = env.cluster("c1").client();
    let api = install_user_virtual_service(&client, ns).await?;
    let (_client, apps, releases, _controller) = setup(&env).await?;
    apply(&apps, &application("web", spec("web:1", "web"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let current = api
        .get("web")
        .await?
        .metadata
        .generation
        .unwrap_or_default();
    report_generation(&api, current).await?;

    // Prism's write of the canary step is a new generation, which istiod has not reported on.
    apply(&apps, &application("web", spec("web:2", "web"))?).await?;
    let canary = expected_spec(ns, &[("web-1", 90), ("web-2", 10)], Some("web-2"));
    wait_for_virtual_service(&api, "at the canary step", &canary, &["web-2"]).await?;
    let written = api
        .get("web")
        .await?
        .metadata
        .generation
        .unwrap_or_default();
    assert!(written > current, "{written} after {current}");
    let waiting = format!(
        "VirtualService {ns}/web waits for istiod to process generation {written}: its status.observedGeneration is {current}"
    );
    let held = wait_until("web-2 waits for istiod", DEFAULT_TIMEOUT, || async {
        let release = releases.get_opt("web-2").await?;
        Ok(release.filter(|release| condition_naming(release, &waiting).is_some()))
    })
    .await?;
    let status = held.status.unwrap_or_default();
    assert!(status.achieved_at.is_none(), "{status:#?}");

    report_generation(&api, written).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    Ok(())
}
