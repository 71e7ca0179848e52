use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use prism_api::release::ReleasePhase;
use prism_api::{Release, ReleaseSpec};
use serde_json::json;

use super::*;

fn release(revision: u32, selector: &str) -> Release {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "podinfo"},
        "spec": {"selector": {"app": selector}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    Release::new(
        &format!("podinfo-{revision}"),
        ReleaseSpec {
            application: "podinfo".into(),
            revision,
            template: Default::default(),
            target: Some(snapshot(&service)),
            strategy: Default::default(),
            clusters: Vec::new(),
            target_step: None,
            aborted: false,
            side: None,
        },
    )
}

/// The roles of `releases` at `phases`.
fn roles_of<'a>(releases: &'a [Release], phases: &[ReleasePhase]) -> Roles<'a> {
    let with_phases: Vec<(&Release, ReleasePhase)> =
        releases.iter().zip(phases.iter().copied()).collect();
    roles(&with_phases)
}

fn copy_of(name: &str, source: &str) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {SOURCE_ANNOTATION: source}},
            "spec": {"selector": {"app": "x"}}
        }))
        .unwrap(),
    )
}

#[test]
fn a_snapshot_keeps_what_routes_requests_and_no_address_of_the_cluster() {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"],
            "selector": {"app": "green"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]
        }
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(snapshot(&service)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "green"},
                "ports": [{"port": 80, "targetPort": 8080}]
            }
        })
    );
}

#[test]
fn the_primary_is_the_newest_complete_release_and_the_canary_the_newest() {
    let first = [release(1, "blue")];
    let roles = roles_of(&first, &[ReleasePhase::Progressing]);
    assert_eq!(roles.primary.unwrap().name_any(), "podinfo-1");
    assert!(roles.canary.is_none(), "a first Release is the primary");

    let two = [release(1, "blue"), release(2, "green")];
    let roles = roles_of(&two, &[ReleasePhase::Complete, ReleasePhase::Progressing]);
    assert_eq!(roles.primary.unwrap().name_any(), "podinfo-1");
    assert_eq!(roles.canary.unwrap().name_any(), "podinfo-2");

    let roles = roles_of(&two, &[ReleasePhase::Superseded, ReleasePhase::Complete]);
    assert_eq!(roles.primary.unwrap().name_any(), "podinfo-2");
    assert!(roles.canary.is_none());
}

#[test]
fn a_version_is_served_by_its_copy_the_primary_first() {
    let copies = Copies::read(
        &[
            copy_of("podinfo-primary", "podinfo-2"),
            copy_of("podinfo-canary", "podinfo-2"),
        ],
        "podinfo",
    );
    assert_eq!(copies.backend("podinfo-2").unwrap(), "podinfo-primary");
    assert_eq!(copies.release("podinfo-canary"), Some("podinfo-2"));
    assert_eq!(copies.backend("podinfo-1"), None);
}

#[test]
fn removing_the_old_primary_promotes_the_newest_complete_spec_into_it() {
    let releases = [release(1, "blue"), release(2, "green")];
    let roles = roles_of(
        &releases,
        &[ReleasePhase::Superseded, ReleasePhase::Complete],
    );
    let copies = Copies::read(
        &[
            copy_of("podinfo-primary", "podinfo-1"),
            copy_of("podinfo-canary", "podinfo-2"),
        ],
        "podinfo",
    );
    let writes = remove("podinfo", "podinfo-1", &copies, &roles, None);
    let [Write::Apply { body, .. }] = writes.as_slice() else {
        panic!("one apply, got {writes:?}");
    };
    assert_eq!(body["metadata"]["name"], "podinfo-primary");
    assert_eq!(
        body["metadata"]["annotations"][SOURCE_ANNOTATION],
        "podinfo-2"
    );
    assert_eq!(body["spec"]["selector"], json!({"app": "green"}));
    assert!(body["spec"].get("clusterIP").is_none());
}

#[test]
fn the_primary_is_never_deleted_with_a_version_only_replaced() {
    let releases = [release(1, "blue"), release(2, "green")];
    // The reconcile that completes Release 2 removes Release 1: with the phases of a status
    // read before, there would be nothing to promote.
    let roles = roles_of(
        &releases,
        &[ReleasePhase::Complete, ReleasePhase::Progressing],
    );
    let copies = Copies::read(&[copy_of("podinfo-primary", "podinfo-1")], "podinfo");
    assert_eq!(
        remove("podinfo", "podinfo-1", &copies, &roles, None),
        vec![]
    );
}

#[test]
fn removing_an_aborted_canary_deletes_its_copy_and_leaves_the_primary() {
    let releases = [release(1, "blue"), release(2, "green")];
    let roles = roles_of(&releases, &[ReleasePhase::Complete, ReleasePhase::Aborted]);
    let copies = Copies::read(
        &[
            copy_of("podinfo-primary", "podinfo-1"),
            copy_of("podinfo-canary", "podinfo-2"),
        ],
        "podinfo",
    );
    let writes = remove("podinfo", "podinfo-2", &copies, &roles, None);
    assert_eq!(
        writes,
        vec![Write::Delete {
            kind: Kind::Service,
            name: "podinfo-canary".into()
        }]
    );
}

#[test]
fn a_new_release_is_installed_into_the_canary() {
    let releases = [release(1, "blue"), release(2, "green")];
    let roles = roles_of(
        &releases,
        &[ReleasePhase::Complete, ReleasePhase::Progressing],
    );
    let writes = install("podinfo", &releases[1], &roles, None);
    let [Write::Apply { body, .. }] = writes.as_slice() else {
        panic!("one apply, got {writes:?}");
    };
    assert_eq!(body["metadata"]["name"], "podinfo-canary");
    assert_eq!(body["metadata"]["labels"][APP_LABEL], "podinfo");
}
