use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::releases::fixtures;

/// `web-<revision>`, made `minutes` before [`now`], with `status`; a rainbow's one step gives every
/// live version its own subdomain.
fn release(revision: u32, minutes: i64, status: Value) -> Release {
    let mut release = fixtures::release(revision, &format!("web:{revision}"), status);
    release.spec.strategy = serde_json::from_value(json!({"steps": [
        {"name": "preview", "capacity": {"contender": "100%"}, "traffic": {"contender": 0, "routes": [
            {"name": "by-version", "to": "each", "match": {"subdomain": "{version}"}}
        ]}},
        {"name": "live", "traffic": {"contender": 100}}
    ]}))
    .unwrap();
    let created = now() - SignedDuration::from_mins(minutes);
    release.metadata.creation_timestamp = Some(Time(created));
    release
}

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn app() -> Application {
    let mut app =
        fixtures::application("web:5", json!({"contender": "web-5", "incumbent": "web-4"}));
    app.spec.versions =
        serde_json::from_value(json!({"max": 4, "ttl": "2h", "name": "v{revision}"})).unwrap();
    app
}

fn clusters(ready: u32, desired: u32) -> Value {
    json!([
        {"name": "eu-1", "phase": "Achieved", "replicas": desired, "readyReplicas": ready},
        {"name": "us-1", "phase": "Achieved", "replicas": desired, "readyReplicas": ready},
    ])
}

fn releases() -> Vec<Release> {
    let mut pinned = release(
        2,
        90,
        json!({"phase": "Complete", "step": 1, "state": "Live", "clusters": clusters(2, 2)}),
    );
    pinned.metadata.annotations = Some([(PINNED_ANNOTATION.to_owned(), "true".to_owned())].into());
    vec![
        release(
            1,
            200,
            json!({"phase": "Complete", "step": 1, "state": "Retired"}),
        ),
        pinned,
        release(
            3,
            60,
            json!({"phase": "Complete", "step": 1, "state": "Draining", "clusters": clusters(2, 2)}),
        ),
        release(
            4,
            30,
            json!({"phase": "Complete", "step": 1, "state": "Live", "clusters": clusters(2, 2)}),
        ),
        release(
            5,
            1,
            json!({"phase": "Progressing", "step": 0, "state": "Live", "clusters": clusters(1, 2)}),
        ),
    ]
}

fn rows_now() -> Vec<Row> {
    rows(
        &app(),
        &releases(),
        &["docs.example.test".to_owned()],
        now(),
    )
}

#[test]
fn every_version_that_runs_with_its_role_and_routes() {
    let rows = rows_now();
    let roles: Vec<(&str, Role)> = rows
        .iter()
        .map(|row| (row.version.as_str(), row.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("v2", Role::Retained),
            ("v3", Role::Draining),
            ("v4", Role::Default),
            ("v5", Role::Contender)
        ]
    );
    assert_eq!(rows[0].routes, ["http://v2.docs.example.test/"]);
    assert!(
        rows[1].routes.is_empty(),
        "a draining version's routes left"
    );
    assert_eq!(
        rows[2].routes,
        ["http://docs.example.test/", "http://v4.docs.example.test/"]
    );
    assert!(rows[0].pinned);
    assert_eq!(rows[0].ttl_left_seconds, None, "a pin exempts from the ttl");
}

#[test]
fn the_table() {
    insta::assert_snapshot!(table(&rows_now()));
}

#[test]
fn the_json_is_stable() {
    let json = serde_json::to_value(&rows_now()[2]).unwrap();
    assert_eq!(
        json,
        json!({
            "version": "v4",
            "release": "web-4",
            "revision": 4,
            "role": "default",
            "routes": ["http://docs.example.test/", "http://v4.docs.example.test/"],
            "created": "2026-11-22T11:30:00Z",
            "ttlLeftSeconds": null,
            "clusters": [
                {"name": "eu-1", "ready": 2, "desired": 2},
                {"name": "us-1", "ready": 2, "desired": 2}
            ],
            "pinned": false,
        })
    );
}

#[test]
fn a_retained_version_counts_down_its_ttl() {
    let mut app = app();
    app.status = Some(serde_json::from_value(json!({"incumbent": "web-4"})).unwrap());
    let releases = vec![
        release(
            3,
            30,
            json!({"phase": "Complete", "step": 1, "state": "Live"}),
        ),
        release(
            4,
            10,
            json!({"phase": "Complete", "step": 1, "state": "Live"}),
        ),
    ];
    let rows = rows(&app, &releases, &[], now());
    assert_eq!(rows[0].ttl_left_seconds, Some(90 * 60));
    assert_eq!(rows[0].routes, ["http://v3.<host>/"]);
}

#[test]
fn a_version_is_found_by_its_release_name_or_the_name_it_goes_by() {
    let (app, releases) = (app(), releases());
    assert_eq!(find(&app, &releases, "v3").unwrap().name_any(), "web-3");
    assert_eq!(find(&app, &releases, "web-3").unwrap().name_any(), "web-3");
    let missing = find(&app, &releases, "v9").unwrap_err().to_string();
    assert_eq!(
        missing,
        "web has no version v9: its versions are v2, v3, v4, v5 (see `prism versions web`)"
    );
}

#[test]
fn only_a_retained_version_retires_at_a_command_and_a_retiring_one_takes_no_pin() {
    let (app, releases) = (app(), releases());
    let refusal = |version| refuses_retire(&app, find(&app, &releases, version).unwrap());
    assert_eq!(refusal("v2"), None);
    assert_eq!(
        refusal("v4").unwrap(),
        "v4 takes the default route: roll out a newer version, or `prism rollback`, before retiring it"
    );
    assert_eq!(
        refusal("v5").unwrap(),
        "v5 is rolling out: `prism abort web` rolls it back"
    );
    assert_eq!(refusal("v3").unwrap(), "v3 is already retiring (Draining)");
    assert!(
        refuses_pin(&app, find(&app, &releases, "v3").unwrap())
            .unwrap()
            .contains("a pin does not stop a retirement that started")
    );
    assert_eq!(
        refuses_pin(&app, find(&app, &releases, "v4").unwrap()),
        None
    );
}

/// A SideVersion's Release (revision 0, `spec.side`), live.
fn side_release() -> Release {
    let mut side = release(
        0,
        5,
        json!({"phase": "Complete", "step": 1, "state": "Live", "clusters": clusters(1, 1)}),
    );
    side.metadata.name = Some("web-pr-42-1".into());
    side.spec.side = Some(
        serde_json::from_value(json!({"sideVersion": "pr-42", "routes": [
            {"name": "pr-42-host", "to": "each", "match": {"subdomain": "{version}"}},
            {"name": "pr-42-header", "to": "each",
             "match": {"header": {"name": "x-version", "value": "{version}"}}}
        ]}))
        .unwrap(),
    );
    side
}

#[test]
fn a_side_version_is_listed_with_the_role_side_and_its_own_routes_only() {
    let mut all = releases();
    all.push(side_release());
    let rows = rows(&app(), &all, &["docs.example.test".to_owned()], now());
    let side = rows
        .iter()
        .find(|row| row.release == "web-pr-42-1")
        .unwrap();
    assert_eq!(side.role, Role::Side);
    assert_eq!(side.version, "pr-42");
    assert_eq!(
        side.routes,
        [
            "http://pr-42.docs.example.test/",
            "http://docs.example.test/ -H 'x-version: pr-42'"
        ]
    );
    assert_eq!(side.ttl_left_seconds, None);
}

#[test]
fn retire_and_pin_refuse_a_side_version_naming_the_fix() {
    let side = side_release();
    let retire = refuses_retire(&app(), &side).unwrap();
    assert!(
        retire.contains("kubectl delete sideversion pr-42"),
        "{retire}"
    );
    let pin = refuses_pin(&app(), &side).unwrap();
    assert!(pin.contains("side version"), "{pin}");
}
