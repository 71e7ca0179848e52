//! Rainbow deployments end to end through the `gatewayAPI` provider: with `versions.max` above 2,
//! complete versions stay live after a newer one takes the default route, each on its own
//! hostname, measured through every sandbox cluster's real gateway (Traefik); the oldest retires
//! when one more would exceed the limit.

mod common;

use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::gateway::{LoadLoop, Request, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet as World, apply_object, measure};
use common::{application, apply, wait_for_phase};

const REPLICAS: u32 = 2;
/// Requests a second to each cluster's gateway on the retiring version's own hostname.
const LOAD: f64 = 40.0;

/// A test's fleet with the user's HTTPRoute `web` for its host in every cluster.
async fn world(name: &str) -> World {
    let world = World::new(name).await;
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let route = gateway.route("web", &world.host, &[("web", 1)]);
        apply_object(&cluster.client(), world.namespace(), route).await;
    }
    world
}

impl World {
    /// Waits until every gateway answers `request` with 404: its hostname is routed nowhere.
    async fn unknown_everywhere(&self, request: &Request) {
        for gateway in &self.gateways {
            wait_until(
                format!("{}: {request:?} is unknown", gateway.cluster()),
                DEFAULT_TIMEOUT,
                || async {
                    Ok(
                        matches!(gateway.request(request).await, Err(reason) if not_found(&reason))
                            .then_some(()),
                    )
                },
            )
            .await
            .unwrap();
        }
    }

    /// The Application `web` at image tag `tag`, with at most 3 live versions; `versions` adds
    /// to `spec.versions`.
    async fn apply(&self, tag: u32, versions: Value) {
        self.try_apply(tag, versions).await.unwrap();
    }

    /// As `apply`, the API server's refusal as text.
    async fn try_apply(&self, tag: u32, versions: Value) -> Result<(), String> {
        let mut policy = json!({"max": 3});
        policy
            .as_object_mut()
            .unwrap()
            .extend(versions.as_object().unwrap().clone());
        let spec = json!({
            "template": web_template(&format!("example.test/web:{tag}"), REPLICAS),
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
            "versions": policy,
            "strategy": {"steps": rainbow_steps()},
        });
        apply(&self.apps, &application("web", spec).unwrap())
            .await
            .map(drop)
            .map_err(|error| format!("{error:#}"))
    }

    /// Every gateway serves each of `live` (release, its hostname's first label) on its own
    /// hostname alone, and `default` on the application's host.
    async fn serves(&self, live: &[(&str, &str)], default: &str) {
        for gateway in &self.gateways {
            for &(release, label) in live {
                // A new hostname is unknown to the gateway (404) until it serves the new route.
                let request = Request::new(format!("{label}.{}", self.host));
                wait_until_served(gateway, &request, release, |served| {
                    served.release == release
                })
                .await
                .unwrap();
                measure(gateway, &request, &[(release, 100.0)]).await;
            }
            measure(gateway, &Request::new(&self.host), &[(default, 100.0)]).await;
        }
    }

    /// Waits until `release`'s Deployment is gone from every cluster.
    async fn gone(&self, release: &str) {
        for cluster in self.env.clusters() {
            let deployments: Api<Deployment> =
                Api::namespaced(cluster.client(), self.env.namespace());
            wait_until(
                format!("{}: {release} is gone", cluster.name()),
                DEFAULT_TIMEOUT,
                || async { Ok(deployments.get_opt(release).await?.is_none().then_some(())) },
            )
            .await
            .unwrap();
        }
    }
}

/// A preview that gives the contender its own hostname (and every live version its own), then
/// the default route; nothing scales the incumbent down, so it stays live, retained.
fn rainbow_steps() -> Value {
    json!([
        {
            "name": "preview",
            "capacity": {"contender": "100%"},
            "traffic": {"contender": 0, "routes": [
                {"name": "by-version", "to": "each", "match": {"subdomain": "{version}"}},
            ]},
        },
        {"name": "live", "traffic": {"contender": 100}},
    ])
}

/// Whether a load loop's failure is the gateway's 404 for a hostname it no longer routes.
fn not_found(reason: &str) -> bool {
    reason.starts_with("HTTP 404")
}

#[tokio::test]
async fn three_versions_live_each_on_its_hostname_and_a_fourth_retires_the_oldest() {
    let world = world("rainbow-live").await;

    // A name two revisions could share is refused by the API server, naming the fix.
    let refused = world
        .try_apply(1, json!({"name": "{app}-live"}))
        .await
        .unwrap_err();
    assert!(
        refused.contains("versions.name must contain {revision}"),
        "{refused}"
    );

    let naming = json!({"name": "v{revision}"});
    world.apply(1, naming.clone()).await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    world.serves(&[("web-1", "v1")], "web-1").await;

    world.apply(2, naming.clone()).await;
    wait_for_phase(&world.releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    world
        .serves(&[("web-1", "v1"), ("web-2", "v2")], "web-2")
        .await;

    world.apply(3, naming.clone()).await;
    wait_for_phase(&world.releases, "web-3", ReleasePhase::Complete)
        .await
        .unwrap();
    let three = [("web-1", "v1"), ("web-2", "v2"), ("web-3", "v3")];
    world.serves(&three, "web-3").await;

    // A fourth exceeds versions.max: the oldest retires, while requests go to its own hostname.
    let oldest = Request::new(format!("v1.{}", world.host));
    let load = LoadLoop::start(world.gateways.clone(), oldest.clone(), LOAD);
    let fourth = Instant::now();
    let fourth_at = jiff::Timestamp::now();
    world.apply(4, naming).await;
    wait_for_phase(&world.releases, "web-4", ReleasePhase::Complete)
        .await
        .unwrap();
    world.gone("web-1").await;
    eprintln!(
        "from the 4th version's apply to web-1's Deployment gone in every cluster: {:?}",
        fourth.elapsed()
    );
    world.unknown_everywhere(&oldest).await;
    let report = load.stop().await;
    eprintln!("load on web-1's hostname across its retirement:\n{report}");
    for (cluster, tally) in &report.per_cluster {
        if let Some(first) = tally.failures.iter().map(|failure| failure.at).min() {
            eprintln!(
                "{cluster}: web-1's hostname answered 404 from {:.2}s after the 4th version's apply",
                (first - fourth_at).total(jiff::Unit::Second).unwrap()
            );
        }
    }
    for tally in report.per_cluster.values() {
        assert!(
            tally.served() > 0,
            "web-1 served before it retired: {report}"
        );
        assert_eq!(tally.per_release.keys().collect::<Vec<_>>(), ["web-1"]);
    }
    let failed: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|(_, failure)| !not_found(&failure.reason))
        .collect();
    assert!(
        failed.is_empty(),
        "only 404s once its route left, never another failure: {failed:?}\n{report}"
    );
    world
        .serves(
            &[("web-2", "v2"), ("web-3", "v3"), ("web-4", "v4")],
            "web-4",
        )
        .await;
}

#[tokio::test]
async fn a_retained_version_past_its_ttl_retires_and_the_newest_stays() {
    let world = world("rainbow-ttl").await;
    let policy = json!({"name": "v{revision}", "ttl": "40s"});
    world.apply(1, policy.clone()).await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    let created = world
        .releases
        .get("web-1")
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    world.apply(2, policy).await;
    wait_for_phase(&world.releases, "web-2", ReleasePhase::Complete)
        .await
        .unwrap();
    world
        .serves(&[("web-1", "v1"), ("web-2", "v2")], "web-2")
        .await;

    let oldest = Request::new(format!("v1.{}", world.host));
    let load = LoadLoop::start(world.gateways.clone(), oldest.clone(), LOAD);
    world.gone("web-1").await;
    let gone_after = jiff::Timestamp::now() - created;
    eprintln!("web-1 gone {gone_after:#} after its Release was made (ttl 40s)");
    assert!(
        gone_after.total(jiff::Unit::Second).unwrap() >= 40.0,
        "web-1 retired before its ttl: {gone_after:#}"
    );
    world.unknown_everywhere(&oldest).await;
    let report = load.stop().await;
    eprintln!("load on web-1's hostname across its retirement:\n{report}");
    let failed: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|(_, failure)| !not_found(&failure.reason))
        .collect();
    assert!(
        failed.is_empty(),
        "only 404s once its route left: {failed:?}\n{report}"
    );
    world.serves(&[("web-2", "v2")], "web-2").await;
}

#[tokio::test]
async fn a_new_version_name_moves_the_live_versions_hostnames_without_a_release() {
    let world = world("rainbow-rename").await;
    world.apply(1, json!({"name": "v{revision}"})).await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    world.serves(&[("web-1", "v1")], "web-1").await;

    world.apply(1, json!({"name": "{app}-r{revision}"})).await;
    world.serves(&[("web-1", "web-r1")], "web-1").await;
    let old = Request::new(format!("v1.{}", world.host));
    world.unknown_everywhere(&old).await;
    let releases = world.releases.list(&Default::default()).await.unwrap();
    assert_eq!(releases.items.len(), 1, "a new name makes no Release");
}
