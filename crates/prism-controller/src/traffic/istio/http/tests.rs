use std::collections::BTreeSet;

use prism_engine::ResolvedRoute;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::traffic::istio::fixtures::{
    SERVICE, header, path, query, subdomain, versions, virtual_service, with_http,
};

fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect()
}

fn http_of(
    virtual_service: &Value,
    weights: &Weights,
    routes: &[ResolvedRoute],
) -> Result<Vec<Value>, HttpError> {
    let versions = versions();
    http(
        virtual_service,
        &Desired {
            service: SERVICE,
            versions: &versions,
            weights,
            routes,
        },
    )
}

fn original_http() -> Vec<Value> {
    virtual_service()["spec"]["http"]
        .as_array()
        .unwrap()
        .clone()
}

/// The user's VirtualService with the application's entry on `/` and another on `/docs`.
fn two_split_entries() -> Value {
    let mut virtual_service = virtual_service();
    let mut docs = virtual_service["spec"]["http"][1].clone();
    docs["match"] = json!([{"uri": {"prefix": "/docs"}}]);
    docs["name"] = json!("docs");
    virtual_service["spec"]["http"]
        .as_array_mut()
        .unwrap()
        .insert(1, docs);
    virtual_service
}

fn destination(host: &str, weight: Option<u32>) -> Value {
    let mut element = json!({"destination": {"host": host, "port": {"number": 8080}}});
    if let Some(weight) = weight {
        element["weight"] = weight.into();
    }
    element
}

#[test]
fn a_split_entry_gets_a_destination_per_weighted_version_in_the_host_s_form() {
    let http = http_of(
        &virtual_service(),
        &weights(&[("docs-2", 75), ("docs-3", 25)]),
        &[],
    )
    .unwrap();
    let original = original_http();
    assert_eq!(http[0], original[0], "the admin entry is not Prism's");
    let mut expected = original[1].clone();
    expected["route"] = json!([
        destination("docs-2.shop.svc.cluster.local", Some(75)),
        destination("docs-3.shop.svc.cluster.local", Some(25)),
        destination("docs-static", Some(10)),
    ]);
    assert_eq!(http[1], expected);
    assert_eq!(http.len(), 2);
}

#[test]
fn a_version_at_weight_0_gets_no_destination() {
    let http = http_of(
        &virtual_service(),
        &weights(&[("docs-2", 100), ("docs-3", 0)]),
        &[],
    )
    .unwrap();
    assert_eq!(
        http[1]["route"],
        json!([
            destination("docs-2.shop.svc.cluster.local", Some(100)),
            destination("docs-static", Some(10)),
        ])
    );
}

#[test]
fn empty_weights_give_one_destination_to_the_applications_service() {
    let split = with_http(
        &virtual_service(),
        http_of(
            &virtual_service(),
            &weights(&[("docs-2", 50), ("docs-3", 50)]),
            &[header("beta", "docs-3", "x-canary", "always")],
        )
        .unwrap(),
    );
    let back = http_of(&split, &Weights::new(), &[]).unwrap();
    let mut expected = original_http();
    expected[1]["route"][0]["weight"] = json!(100);
    assert_eq!(
        back, expected,
        "weight 100 beside the user's destination, the sum Prism's had"
    );
    assert_eq!(
        http_of(&virtual_service(), &Weights::new(), &[]).unwrap(),
        original_http(),
        "unsplit stays as it is"
    );
    let mut alone = virtual_service();
    alone["spec"]["http"][1]["route"] = json!([destination("docs", None)]);
    let split = with_http(
        &alone,
        http_of(&alone, &weights(&[("docs-2", 100)]), &[]).unwrap(),
    );
    assert_eq!(
        http_of(&split, &Weights::new(), &[]).unwrap()[1]["route"],
        json!([destination("docs", None)]),
        "alone, without a weight"
    );
}

#[test]
fn a_header_route_comes_first_copying_the_split_entry_to_its_version() {
    let route = header("canary", "docs-3", "X-Canary", "always");
    let http = http_of(&virtual_service(), &weights(&[("docs-2", 100)]), &[route]).unwrap();
    let mut expected = original_http()[1].clone();
    expected["name"] = json!("prism-canary");
    expected["match"] = json!([{
        "uri": {"prefix": "/"},
        "headers": {"x-canary": {"exact": "always"}}
    }]);
    expected["route"] = json!([destination("docs-3.shop.svc.cluster.local", None)]);
    assert_eq!(
        http[0], expected,
        "first, with the entry's headers and timeout"
    );
    assert_eq!(http[1], original_http()[0]);
    assert_eq!(
        http[2]["route"][0]["destination"]["host"],
        "docs-2.shop.svc.cluster.local"
    );
    assert_eq!(http.len(), 3);
}

#[test]
fn query_path_and_subdomain_routes_add_their_condition() {
    let mut wildcard = virtual_service();
    wildcard["spec"]["hosts"] = json!(["docs.example.test", "*.docs.example.test"]);
    let routes = [
        query("by-query", "docs-2", "v", "^2$"),
        path("beta", "docs-3", "/beta"),
        subdomain("by-host", "docs-3", "docs-3"),
    ];
    let http = http_of(&wildcard, &weights(&[("docs-2", 100)]), &routes).unwrap();
    let matches: Vec<(&str, &Value)> = http[..3]
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap(), &entry["match"]))
        .collect();
    assert_eq!(
        matches,
        [
            (
                "prism-by-query",
                &json!([{"uri": {"prefix": "/"}, "queryParams": {"v": {"regex": "^2$"}}}])
            ),
            ("prism-beta", &json!([{"uri": {"prefix": "/beta"}}])),
            (
                "prism-by-host",
                &json!([{"uri": {"prefix": "/"}, "authority": {"exact": "docs-3.docs.example.test"}}])
            ),
        ]
    );
}

#[test]
fn a_subdomain_no_host_takes_is_refused() {
    let error = http_of(
        &virtual_service(),
        &weights(&[("docs-2", 100)]),
        &[subdomain("by-host", "docs-3", "v3")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: route by-host matches subdomain v3, but no host of spec.hosts (docs.example.test) takes requests for it: add a wildcard host such as *.<host> to spec.hosts, so that v3.<host> reaches the VirtualService"
    );
}

#[test]
fn a_path_route_narrows_every_split_entry_it_meets() {
    let routes = [
        path("v2", "docs-3", "/docs/v2"),
        path("beta", "docs-3", "/beta"),
    ];
    let http = http_of(&two_split_entries(), &weights(&[("docs-2", 100)]), &routes).unwrap();
    let managed: Vec<(&str, &Value)> = http
        .iter()
        .filter(|e| e["name"].as_str().unwrap_or_default().starts_with("prism-"))
        .map(|e| (e["name"].as_str().unwrap(), &e["match"][0]["uri"]["prefix"]))
        .collect();
    assert_eq!(
        managed,
        [
            ("prism-v2-1", &json!("/docs/v2")),
            ("prism-v2-2", &json!("/docs/v2")),
            ("prism-beta-2", &json!("/beta")),
        ],
        "/beta lies outside /docs"
    );
}

#[test]
fn a_path_route_outside_every_split_entry_matches_nothing() {
    let mut only_api = virtual_service();
    only_api["spec"]["http"][1]["match"] = json!([{"uri": {"prefix": "/api"}}]);
    let error = http_of(
        &only_api,
        &weights(&[("docs-2", 100)]),
        &[path("beta", "docs-3", "/beta")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: route beta matches no request of the http entries that send traffic to docs: path prefix /beta lies outside all of their paths (uri prefix /api): use a prefix under one of them"
    );
}

#[test]
fn an_inexpressible_match_names_the_field() {
    let mut regex = virtual_service();
    regex["spec"]["http"][1]["match"] = json!([{"uri": {"regex": "/d.*"}}]);
    let error = http_of(
        &regex,
        &weights(&[("docs-2", 100)]),
        &[path("beta", "docs-3", "/beta")],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: route beta cannot be added to spec.http[1].match[0]: it matches the path by {\"regex\":\"/d.*\"}, which one match cannot also narrow to the prefix /beta: give the route a header or query parameter match instead, or the entry a uri prefix"
    );
}

#[test]
fn managed_entries_leave_with_their_route() {
    let with_route = with_http(
        &virtual_service(),
        http_of(
            &virtual_service(),
            &weights(&[("docs-2", 100)]),
            &[header("canary", "docs-3", "x-canary", "always")],
        )
        .unwrap(),
    );
    let http = http_of(&with_route, &weights(&[("docs-2", 100)]), &[]).unwrap();
    assert_eq!(http.len(), 2);
    assert!(http.iter().all(|entry| entry["name"] != "prism-canary"));
}

#[test]
fn an_entry_of_the_users_named_like_a_managed_one_is_refused() {
    let mut reserved = virtual_service();
    reserved["spec"]["http"][0]["name"] = json!("prism-admin");
    let error = http_of(&reserved, &weights(&[("docs-2", 100)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: spec.http[0] (prism-admin) is named with the prefix prism-, which Prism keeps for the http entries it manages, but it sends traffic elsewhere than to a version of the application: rename the entry"
    );
}

#[test]
fn a_virtual_service_without_the_applications_service() {
    let mut elsewhere = virtual_service();
    elsewhere["spec"]["http"][1]["route"][0]["destination"]["host"] =
        json!("docs.other.svc.cluster.local");
    let error = http_of(&elsewhere, &weights(&[("docs-2", 100)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs has no spec.http entry with a route to the application's Service docs: add route: [{destination: {host: docs}}] to the http entry whose traffic Prism should split (the host may also be spelled docs.<namespace>, docs.<namespace>.svc or docs.<namespace>.svc.cluster.local)"
    );
    assert_eq!(
        observe(&elsewhere, SERVICE, &versions())
            .unwrap_err()
            .to_string(),
        error.to_string()
    );
}

#[test]
fn a_subset_of_the_applications_service_is_refused() {
    let mut subset = virtual_service();
    subset["spec"]["http"][1]["route"][0]["destination"]["subset"] = json!("v1");
    let error = http_of(&subset, &weights(&[("docs-2", 100)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: spec.http[1].route[0] routes to subset v1 of docs.shop.svc.cluster.local: Prism routes to each version through a Service of its own, where the subset of a DestinationRule for docs.shop.svc.cluster.local does not apply: remove the subset"
    );
}

#[test]
fn weights_that_give_nobody_traffic_are_refused() {
    let error = http_of(&virtual_service(), &weights(&[("docs-2", 0)]), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "VirtualService shop/docs: the weights docs-2=0 give no version any traffic: Prism needs weights that sum to 100"
    );
}

#[test]
fn two_versions_claiming_one_authority_are_refused() {
    let mut wildcard = virtual_service();
    wildcard["spec"]["hosts"] = json!(["*.example.test"]);
    let routes = [
        subdomain("beta", "docs-2", "beta"),
        subdomain("preview", "docs-3", "beta"),
    ];
    let error = http_of(&wildcard, &weights(&[("docs-2", 100)]), &routes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "routes preview (to docs-3) and beta (to docs-2) both claim authority beta.example.test: give each version its own subdomain"
    );
}

#[test]
fn observe_reads_the_split() {
    let versions = versions();
    let split = with_http(
        &virtual_service(),
        http_of(
            &virtual_service(),
            &weights(&[("docs-2", 75), ("docs-3", 25)]),
            &[header("c", "docs-3", "x-c", "1")],
        )
        .unwrap(),
    );
    assert_eq!(
        observe(&split, SERVICE, &versions),
        Ok(weights(&[("docs-2", 75), ("docs-3", 25)]))
    );
    assert_eq!(
        observe(&virtual_service(), SERVICE, &versions),
        Ok(Weights::new()),
        "unsplit"
    );
}

#[test]
fn observe_follows_istio_s_weights() {
    let versions = versions();
    let mut virtual_service = virtual_service();
    virtual_service["spec"]["http"][1]["route"] = json!([destination("docs-2", None)]);
    assert_eq!(
        observe(&virtual_service, SERVICE, &versions),
        Ok(weights(&[("docs-2", 100)])),
        "alone, it takes everything"
    );
    virtual_service["spec"]["http"][1]["route"] = json!([
        destination("docs-1", Some(1)),
        destination("docs-2.shop", Some(2)),
        destination("docs-3", None),
    ]);
    assert_eq!(
        observe(&virtual_service, SERVICE, &versions),
        Ok(weights(&[("docs-1", 33), ("docs-2", 67)])),
        "beside others, no weight is none"
    );
}

#[test]
fn observe_reports_entries_that_disagree() {
    let mut virtual_service = two_split_entries();
    virtual_service["spec"]["http"][1]["route"] = json!([destination("docs-2", Some(100))]);
    virtual_service["spec"]["http"][2]["route"] = json!([
        destination("docs-2", Some(50)),
        destination("docs-3", Some(50))
    ]);
    assert_eq!(
        observe(&virtual_service, SERVICE, &versions())
            .unwrap_err()
            .to_string(),
        "VirtualService shop/docs: spec.http[1] splits docs-2=100 but spec.http[2] splits docs-2=50, docs-3=50: Prism sets every http entry that sends traffic to the application alike, and writes them again"
    );
}

#[test]
fn an_entry_prism_wrote_is_its_own_even_for_a_version_the_controller_left_out() {
    let versions = BTreeSet::new();
    let weights = weights(&[("docs-2", 100)]);
    let routes = [header("canary", "docs-9", "x-canary", "always")];
    let desired = Desired {
        service: SERVICE,
        versions: &versions,
        weights: &weights,
        routes: &routes,
    };
    let written = with_http(
        &virtual_service(),
        http(&virtual_service(), &desired).unwrap(),
    );
    assert_eq!(
        http(&written, &desired).unwrap(),
        written["spec"]["http"].as_array().unwrap().clone()
    );
}

/// Weights over a subset of the versions summing to 100, or none.
fn any_weights() -> impl Strategy<Value = Weights> {
    (
        proptest::sample::subsequence(vec!["docs-1", "docs-2", "docs-3", "docs-4"], 0..=4),
        proptest::collection::vec(1u32..100, 4),
    )
        .prop_map(|(chosen, cuts)| {
            let mut weights = Weights::new();
            let Some((last, rest)) = chosen.split_last() else {
                return weights;
            };
            let mut left = 100;
            for (version, cut) in rest.iter().zip(cuts) {
                let weight = cut % (left + 1);
                weights.insert(version.to_string(), weight);
                left -= weight;
            }
            weights.insert(last.to_string(), left);
            weights
        })
}

fn any_routes() -> impl Strategy<Value = Vec<ResolvedRoute>> {
    let version = proptest::sample::select(vec!["docs-1", "docs-2", "docs-3", "docs-4"]);
    let route = (0..5usize, version).prop_map(|(kind, version)| match kind {
        0 => header("canary", version, "x-canary", "always"),
        1 => query("by-query", version, "version", version),
        2 => path("beta", version, "/beta"),
        3 => path("docs-v2", version, "/docs/v2"),
        _ => subdomain("by-host", version, version),
    });
    proptest::collection::vec(route, 0..4).prop_map(|routes| {
        // One route per name and version, as the engine resolves them.
        let mut seen = BTreeSet::new();
        routes
            .into_iter()
            .filter(|r| seen.insert((r.name.clone(), r.version.clone())))
            .collect()
    })
}

fn is_managed(entry: &Value) -> bool {
    entry["name"]
        .as_str()
        .unwrap_or_default()
        .starts_with("prism-")
}

/// The user's VirtualService, with a wildcard host for subdomain routes, and one or two split
/// entries whose application's destination has the weight Prism gives it back (100 beside the
/// user's destination: the user's own weight is not known once split, see the module doc).
fn any_original(two_entries: bool) -> Value {
    let mut original = if two_entries {
        two_split_entries()
    } else {
        virtual_service()
    };
    original["spec"]["hosts"] = json!(["*.docs.example.test", "docs.example.test"]);
    for entry in original["spec"]["http"].as_array_mut().unwrap() {
        if entry["name"] != "admin" {
            entry["route"][0]["weight"] = json!(100);
        }
    }
    original
}

proptest! {
    #[test]
    fn prism_touches_only_what_it_manages(
        two_entries in any::<bool>(),
        before in any_weights(),
        weights in any_weights(),
        earlier in any_routes(),
        routes in any_routes(),
    ) {
        let versions = versions();
        let original = any_original(two_entries);
        let desired = Desired { service: SERVICE, versions: &versions, weights: &weights, routes: &routes };
        let earlier = Desired { weights: &before, routes: &earlier, ..desired };
        let fresh = http(&original, &desired).unwrap();
        // From any earlier state Prism wrote, the same entries.
        let written = with_http(&original, http(&original, &earlier).unwrap());
        let again = http(&written, &desired).unwrap();
        prop_assert_eq!(&again, &fresh);
        // Idempotent.
        let applied = with_http(&original, again.clone());
        prop_assert_eq!(&http(&applied, &desired).unwrap(), &again);

        let context = Context::new(&original, SERVICE, &versions);
        let user: Vec<&Value> = original["spec"]["http"].as_array().unwrap().iter().collect();
        let kept: Vec<&Value> = again.iter().filter(|entry| !is_managed(entry)).collect();
        prop_assert_eq!(kept.len(), user.len());
        for (old, new) in user.iter().zip(&kept) {
            if !context.splits(old.as_object().unwrap()) {
                prop_assert_eq!(old, new, "an unmanaged entry is byte-identical");
                continue;
            }
            let without_route = |entry: &Value| {
                let mut entry = entry.clone();
                entry.as_object_mut().unwrap().remove("route");
                entry
            };
            prop_assert_eq!(without_route(old), without_route(new));
            let others = |entry: &Value| -> Vec<Value> {
                entry["route"].as_array().unwrap().iter().filter(|d| context.prisms_name(d).is_none()).cloned().collect()
            };
            prop_assert_eq!(others(old), others(new), "unmanaged destinations are byte-identical");
            let prisms: Vec<&Value> = new["route"].as_array().unwrap().iter().filter(|d| context.prisms_name(d).is_some()).collect();
            if weights.is_empty() {
                prop_assert_eq!(prisms.len(), 1);
                prop_assert_eq!(&prisms[0]["destination"]["host"], "docs.shop.svc.cluster.local");
            } else {
                let sum: u64 = prisms.iter().map(|d| d["weight"].as_u64().unwrap()).sum();
                prop_assert_eq!(sum, 100);
                prop_assert!(prisms.iter().all(|d| d["weight"] != 0), "no destination at weight 0");
                prop_assert!(prisms.iter().all(|d| d["destination"]["host"].as_str().unwrap().ends_with(".shop.svc.cluster.local")), "in the host's form");
            }
        }
        for entry in again.iter().filter(|entry| is_managed(entry)) {
            let destinations = entry["route"].as_array().unwrap();
            prop_assert_eq!(destinations.len(), 1, "a managed entry routes to one version");
            prop_assert!(destinations[0].get("weight").is_none());
            let host = destinations[0]["destination"]["host"].as_str().unwrap();
            let name = entry["name"].as_str().unwrap();
            let of_its_route = routes.iter().any(|r| {
                host == format!("{}.shop.svc.cluster.local", r.version)
                    && name.starts_with(&format!("prism-{}", r.name))
            });
            prop_assert!(of_its_route, "{} is no route's entry to {}", name, host);
        }
        let managed = again.iter().filter(|entry| is_managed(entry)).count();
        prop_assert!(again[..managed].iter().all(is_managed), "managed entries come first");
        let positive: Weights = weights.iter().filter(|(_, w)| **w > 0).map(|(v, w)| (v.clone(), *w)).collect();
        prop_assert_eq!(observe(&applied, SERVICE, &versions).unwrap(), positive, "a version at 0 is not listed");
    }
}
