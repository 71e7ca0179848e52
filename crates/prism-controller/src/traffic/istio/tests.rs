//! The provider on views of a cluster: what it says is pending, and the writes it makes.

use std::sync::Arc;

use prism_api::application::{Manifest, TrafficPolicy};
use serde_json::json;

use super::fixtures::{header, virtual_service, with_http};
use super::*;
use crate::cached::EndpointSlice;

fn manifest() -> Manifest {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "docs"},
        "spec": {"ports": [{"port": 8080}]}
    }))
    .unwrap()
}

fn policy() -> TrafficPolicy {
    TrafficPolicy {
        virtual_service: Some("docs".into()),
        ..TrafficPolicy::default()
    }
}

fn cached(object: &Value) -> Arc<VirtualService> {
    Arc::new(serde_json::from_value(object.clone()).unwrap())
}

/// Both versions' Services list a ready endpoint.
static SERVED: std::sync::LazyLock<[Arc<EndpointSlice>; 2]> = std::sync::LazyLock::new(|| {
    [
        Arc::new(EndpointSlice::of("docs-2", true)),
        Arc::new(EndpointSlice::of("docs-3", true)),
    ]
});

/// The view of application `docs` (releases docs-2 and docs-3) with these VirtualServices.
fn view<'a>(
    manifest: &'a Manifest,
    policy: &'a TrafficPolicy,
    virtual_services: Result<&'a [Arc<VirtualService>], &'a str>,
) -> AppView<'a> {
    AppView {
        target: None,
        app: "docs",
        service: Some((manifest, "docs-3")),
        observed_service: None,
        services: &[],
        endpoint_slices: &*SERVED,
        pods: &[],
        owner: None,
        policy,
        releases: &["docs-2", "docs-3"],
        http_routes: Ok(&[]),
        grpc_routes: Ok(&[]),
        virtual_services,
    }
}

/// What `pending` says, as people read it.
fn pending(view: &AppView) -> Option<String> {
    Istio.pending(view).map(|pending| pending.message)
}

#[test]
fn pending_says_why_nothing_can_be_routed() {
    let (manifest, policy) = (manifest(), policy());
    assert_eq!(
        pending(&view(&manifest, &policy, Ok(&[]))),
        Some("VirtualService docs does not exist in the application's namespace: create it, with an http entry whose route has a destination to the application's Service docs".into())
    );
    assert_eq!(
        pending(&view(&manifest, &policy, Err("the server could not find the requested resource"))),
        Some("the VirtualServices of the cluster cannot be read (the server could not find the requested resource): are Istio's CRDs installed (virtualservices.networking.istio.io)?".into())
    );
    let mut elsewhere = virtual_service();
    elsewhere["spec"]["http"][1]["route"] = json!([{"destination": {"host": "static"}}]);
    let message = pending(&view(&manifest, &policy, Ok(&[cached(&elsewhere)]))).unwrap();
    assert!(
        message.starts_with("VirtualService shop/docs has no spec.http entry with a route to the application's Service docs"),
        "{message}"
    );
    let mut stale = virtual_service();
    stale["status"] = json!({"observedGeneration": 2});
    assert_eq!(
        pending(&view(&manifest, &policy, Ok(&[cached(&stale)]))),
        Some("VirtualService shop/docs waits for istiod to process generation 3: its status.observedGeneration is 2".into())
    );
    assert_eq!(
        pending(&view(&manifest, &policy, Ok(&[cached(&virtual_service())]))),
        None,
        "no status: in place once written"
    );
}

#[test]
fn writes_make_the_services_first_then_apply_spec_http_on_the_version_read() {
    let (manifest, policy) = (manifest(), policy());
    let objects = [cached(&virtual_service())];
    let weights: Weights = [("docs-2".to_owned(), 75), ("docs-3".to_owned(), 25)].into();
    let routes = [header("canary", "docs-3", "x-canary", "always")];
    let writes = Istio.writes(&view(&manifest, &policy, Ok(&objects)), &weights, &routes);
    let written: Vec<(Kind, &str)> = writes.iter().map(Write::object).collect();
    assert_eq!(
        written,
        [
            (Kind::Service, "docs"),
            (Kind::Service, "docs-2"),
            (Kind::Service, "docs-3"),
            (Kind::VirtualService, "docs"),
        ]
    );
    let Write::Apply { body, .. } = &writes[3] else {
        panic!("{:?}", writes[3]);
    };
    assert_eq!(body["metadata"]["resourceVersion"], "48213");
    assert_eq!(
        body["metadata"]["annotations"][ROUTES_ANNOTATION],
        serde_json::to_string(&routes).unwrap()
    );
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["metadata", "spec"]
    );
    assert_eq!(
        body["spec"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["http"],
        "nothing but spec.http"
    );
    let mut applied = with_http(
        &virtual_service(),
        body["spec"]["http"].as_array().unwrap().clone(),
    );
    applied["metadata"]["annotations"][ROUTES_ANNOTATION] =
        body["metadata"]["annotations"][ROUTES_ANNOTATION].clone();
    let applied = [cached(&applied)];
    let view = view(&manifest, &policy, Ok(&applied));
    assert_eq!(Istio.observe(&view), weights);
    assert_eq!(Istio.routes(&view), routes);
    assert!(
        !Istio
            .writes(&view, &weights, &routes)
            .iter()
            .any(|write| write.object().0 == Kind::VirtualService),
        "nothing to write once applied"
    );
}

#[test]
fn remove_puts_the_virtual_service_back_and_lets_the_annotation_go() {
    let (manifest, policy) = (manifest(), policy());
    let weights: Weights = [("docs-2".to_owned(), 100)].into();
    let routes = [header("canary", "docs-3", "x-canary", "always")];
    let objects = [cached(&virtual_service())];
    let writes = Istio.writes(&view(&manifest, &policy, Ok(&objects)), &weights, &routes);
    let Some(Write::Apply { body, .. }) = writes.last() else {
        panic!("{writes:?}");
    };
    let mut split = with_http(
        &virtual_service(),
        body["spec"]["http"].as_array().unwrap().clone(),
    );
    split["metadata"]["annotations"][ROUTES_ANNOTATION] = json!("[]");
    let split = [cached(&split)];
    let writes = Istio.remove(&view(&manifest, &policy, Ok(&split)));
    let [
        Write::Apply {
            kind: Kind::VirtualService,
            body,
        },
    ] = writes.as_slice()
    else {
        panic!("{writes:?}");
    };
    assert!(body["metadata"].get("annotations").is_none());
    let mut expected = virtual_service()["spec"]["http"].clone();
    expected[1]["route"][0]["weight"] = json!(100);
    assert_eq!(body["spec"]["http"], expected);
    let untouched = [cached(&virtual_service())];
    assert_eq!(
        Istio.remove(&view(&manifest, &policy, Ok(&untouched))),
        Vec::<Write>::new(),
        "a VirtualService never split is left alone"
    );
}
