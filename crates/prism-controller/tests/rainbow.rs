//! Rainbow deployments end to end through the `gatewayAPI` provider: with `versions.max` above 2,
//! complete versions stay live after a newer one takes the default route, each on its own
//! hostname, measured through every sandbox cluster's real gateway (Traefik); a version retires
//! in order (Draining: its routes leave, its pods stay for `versions.drainPeriod`; Drained:
//! scaled to 0; Retired: its objects deleted after `versions.deleteAfter`) when one more would
//! exceed the limit, when it outlives its TTL, or at a person's command; a pin keeps it.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use prism_api::Release;
use prism_api::labels::{PINNED_ANNOTATION, RETIRE_ANNOTATION};
use prism_api::release::{ReleasePhase, RetireCause, Retirement, VersionState};
use prism_testkit::exporter::{Behaviour, Series, TestExporter};
use prism_testkit::fixtures::{example, web_template};
use prism_testkit::gateway::{LoadLoop, Request, wait_until_served};
use prism_testkit::prometheus::Prometheus;
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet as World, apply_object, measure};
use common::{application, apply, patch_release_spec, wait_for_phase, wait_for_step};

const REPLICAS: u32 = 2;
/// `versions.drainPeriod` of the tests: well above Traefik's 2 s between configurations.
const DRAIN: &str = "8s";
const DRAIN_SECS: f64 = 8.0;
/// `versions.deleteAfter` of the tests.
const DELETE_AFTER: &str = "10s";
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

    /// The Application `web` at image tag `tag`, with at most 3 live versions, drained for
    /// [`DRAIN`] and deleted [`DELETE_AFTER`] later; `versions` adds to `spec.versions`.
    async fn apply(&self, tag: u32, versions: Value) {
        self.try_apply(tag, versions).await.unwrap();
    }

    /// As `apply`, the API server's refusal as text.
    async fn try_apply(&self, tag: u32, versions: Value) -> Result<(), String> {
        let mut policy = json!({"max": 3, "drainPeriod": DRAIN, "deleteAfter": DELETE_AFTER});
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

    /// Waits until Release `release` is in `state`; its retirement, if it started.
    async fn state(&self, release: &str, state: VersionState) -> Option<Retirement> {
        let found = wait_until(
            format!("{release} is {}", state.as_str()),
            DEFAULT_TIMEOUT,
            || async {
                let found = self.releases.get(release).await?;
                let status = found.status.clone().unwrap_or_default();
                Ok((status.state == Some(state)).then_some(status))
            },
        )
        .await
        .unwrap();
        found.retirement
    }

    /// The state Release `release` is in now.
    async fn state_now(&self, release: &str) -> Option<VersionState> {
        let found: Release = self.releases.get(release).await.unwrap();
        found.status.and_then(|status| status.state)
    }

    /// Sets `annotation` on Release `release` as `prism pin` and `prism retire` do, once the
    /// controller made it.
    async fn annotate(&self, release: &str, annotation: &str, value: &str) {
        wait_until(format!("{release} is made"), DEFAULT_TIMEOUT, || async {
            Ok(self.releases.get_opt(release).await?.map(drop))
        })
        .await
        .unwrap();
        self.releases
            .patch(
                release,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {annotation: value}}})),
            )
            .await
            .unwrap();
    }

    /// Whether `release`'s Deployment is in every cluster with 0 replicas: Drained.
    async fn scaled_to_zero(&self, release: &str) -> bool {
        for cluster in self.env.clusters() {
            let deployments: Api<Deployment> =
                Api::namespaced(cluster.client(), self.env.namespace());
            let Some(deployment) = deployments.get_opt(release).await.unwrap() else {
                return false;
            };
            if deployment.spec.and_then(|spec| spec.replicas) != Some(0) {
                return false;
            }
        }
        true
    }

    /// The uids of the test namespace's pods in every cluster.
    async fn pod_uids(&self) -> std::collections::BTreeSet<String> {
        let mut uids = std::collections::BTreeSet::new();
        for cluster in self.env.clusters() {
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(cluster.client(), self.env.namespace());
            for pod in pods.list(&Default::default()).await.unwrap() {
                uids.extend(pod.metadata.uid);
            }
        }
        uids
    }

    /// Makes version `tag` and waits until it is complete.
    async fn complete(&self, tag: u32, versions: &Value) {
        self.apply(tag, versions.clone()).await;
        wait_for_phase(
            &self.releases,
            &format!("web-{tag}"),
            ReleasePhase::Complete,
        )
        .await
        .unwrap();
    }
}

/// Seconds from `from` to `to`.
fn secs(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    (to - from).total(jiff::Unit::Second).unwrap()
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
async fn four_versions_live_each_on_its_hostname_and_a_fifth_retires_the_oldest_after_its_drain() {
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

    let naming = json!({"name": "v{revision}", "max": 4});
    let mut live = Vec::new();
    for tag in 1..=4 {
        world.complete(tag, &naming).await;
        live.push((format!("web-{tag}"), format!("v{tag}")));
        let pairs: Vec<(&str, &str)> = live.iter().map(|(r, v)| (r.as_str(), v.as_str())).collect();
        world.serves(&pairs, &format!("web-{tag}")).await;
    }

    // A fifth exceeds versions.max: the oldest retires in order, while requests go to its own
    // hostname.
    let oldest = Request::new(format!("v1.{}", world.host));
    let load = LoadLoop::start(world.gateways.clone(), oldest.clone(), LOAD);
    let fifth = Instant::now();
    let fifth_at = jiff::Timestamp::now();
    world.apply(5, naming).await;
    world.state("web-1", VersionState::Draining).await;
    // Its hostname leaves every gateway while its pods still run.
    world.unknown_everywhere(&oldest).await;
    let unknown_at = jiff::Timestamp::now();
    assert_eq!(world.state_now("web-1").await, Some(VersionState::Draining));
    assert!(
        !world.scaled_to_zero("web-1").await,
        "its pods stay while it drains"
    );
    world.state("web-1", VersionState::Drained).await;
    let drained_seen = jiff::Timestamp::now();
    // Drained: at 0 replicas, its objects kept until deleteAfter.
    assert!(
        world.scaled_to_zero("web-1").await,
        "Drained keeps the Deployment at 0"
    );
    let retirement = world.state("web-1", VersionState::Retired).await.unwrap();
    world.gone("web-1").await;
    let gone_at = jiff::Timestamp::now();
    let report = load.stop().await;
    eprintln!("load on web-1's hostname across its retirement:\n{report}");

    let started = retirement.started_at.0;
    let left = retirement.routes_left_at.unwrap().0;
    let drained = retirement.drained_at.unwrap().0;
    let retired = retirement.retired_at.unwrap().0;
    let first_404 = report
        .failures()
        .iter()
        .filter(|(_, failure)| not_found(&failure.reason))
        .map(|(_, failure)| failure.at)
        .min();
    eprintln!("timeline of web-1's retirement, seconds after the 5th version's apply:");
    eprintln!(
        "  Draining (routes set to leave) {:6.1}",
        secs(fifth_at, started)
    );
    if let Some(first) = first_404 {
        eprintln!(
            "  first 404 on v1's hostname     {:6.1}",
            secs(fifth_at, first)
        );
    }
    eprintln!(
        "  routes gone from every cluster {:6.1}",
        secs(fifth_at, left)
    );
    eprintln!(
        "  404 in every gateway seen      {:6.1}",
        secs(fifth_at, unknown_at)
    );
    eprintln!(
        "  Drained (scaled to 0)          {:6.1}",
        secs(fifth_at, drained)
    );
    eprintln!(
        "  Drained seen at 0 replicas     {:6.1}",
        secs(fifth_at, drained_seen)
    );
    eprintln!(
        "  Retired (objects deleted)      {:6.1}",
        secs(fifth_at, retired)
    );
    eprintln!(
        "  Deployment gone everywhere     {:6.1}",
        secs(fifth_at, gone_at)
    );
    eprintln!("  (wall clock from apply to gone: {:?})", fifth.elapsed());
    assert_eq!(retirement.cause, RetireCause::MaxVersions);
    assert!(
        secs(left, drained) >= DRAIN_SECS,
        "drained before its drain period"
    );
    assert!(secs(drained, retired) >= 10.0, "deleted before deleteAfter");

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
        "only 404s once its route left, never a 503 or another failure: {failed:?}\n{report}"
    );
    world
        .serves(
            &[
                ("web-2", "v2"),
                ("web-3", "v3"),
                ("web-4", "v4"),
                ("web-5", "v5"),
            ],
            "web-5",
        )
        .await;
}

#[tokio::test]
async fn a_pinned_version_stays_past_max_and_ttl_a_version_past_its_ttl_retires_and_a_command_retires_one()
 {
    let world = world("rainbow-pin").await;
    let policy = json!({"name": "v{revision}", "ttl": "100s"});
    world.apply(1, policy.clone()).await;
    world.annotate("web-1", PINNED_ANNOTATION, "true").await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    world.complete(2, &policy).await;
    world.complete(3, &policy).await;
    world
        .serves(
            &[("web-1", "v1"), ("web-2", "v2"), ("web-3", "v3")],
            "web-3",
        )
        .await;

    // A fourth exceeds versions.max: the oldest unpinned one retires, the pinned one stays.
    world.complete(4, &policy).await;
    let by_max = world.state("web-2", VersionState::Retired).await.unwrap();
    assert_eq!(by_max.cause, RetireCause::MaxVersions);
    world.gone("web-2").await;
    assert_eq!(world.state_now("web-1").await, Some(VersionState::Live));

    // web-3, retained, outlives its ttl and retires; web-1, pinned and older, stays.
    let by_ttl = world.state("web-3", VersionState::Draining).await.unwrap();
    assert_eq!(by_ttl.cause, RetireCause::Ttl);
    let web_3: Release = world.releases.get("web-3").await.unwrap();
    let created = web_3.metadata.creation_timestamp.unwrap().0;
    assert!(
        secs(created, by_ttl.started_at.0) >= 100.0,
        "web-3 retired before its ttl: {by_ttl:?}"
    );
    world.state("web-3", VersionState::Retired).await;
    assert_eq!(world.state_now("web-1").await, Some(VersionState::Live));
    world
        .serves(&[("web-1", "v1"), ("web-4", "v4")], "web-4")
        .await;

    // A person retires the pinned one: it goes, in order.
    world
        .annotate(
            "web-1",
            RETIRE_ANNOTATION,
            &jiff::Timestamp::now().to_string(),
        )
        .await;
    let by_command = world.state("web-1", VersionState::Retired).await.unwrap();
    assert_eq!(by_command.cause, RetireCause::Command);
    world.gone("web-1").await;
    world.serves(&[("web-4", "v4")], "web-4").await;
}

#[tokio::test]
async fn a_rollback_to_a_live_version_moves_the_default_route_at_once_and_makes_no_pod() {
    let world = world("rainbow-rollback").await;
    let policy = json!({"name": "v{revision}"});
    for tag in 1..=3 {
        world.complete(tag, &policy).await;
    }
    let three = [("web-1", "v1"), ("web-2", "v2"), ("web-3", "v3")];
    world.serves(&three, "web-3").await;
    let before = world.pod_uids().await;

    // As `prism rollback web --to 2` does for a live revision: the live Releases newer than it
    // are aborted.
    let rolled_back = Instant::now();
    world
        .releases
        .patch(
            "web-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"aborted": true}})),
        )
        .await
        .unwrap();
    // web-2 had no share of the default route: its first answer there is the route moved.
    let default = Request::new(&world.host);
    for gateway in &world.gateways {
        wait_until_served(gateway, &default, "web-2", |served| {
            served.release == "web-2"
        })
        .await
        .unwrap();
    }
    let moved_after = rolled_back.elapsed();
    eprintln!("the default route served web-2 in every gateway {moved_after:?} after the rollback");
    assert!(
        moved_after.as_secs() < 30,
        "the default route took {moved_after:?} to move back"
    );
    wait_for_phase(&world.releases, "web-3", ReleasePhase::Aborted)
        .await
        .unwrap();
    world.gone("web-3").await;
    let after = world.pod_uids().await;
    let made: Vec<&String> = after.difference(&before).collect();
    assert!(made.is_empty(), "the rollback made pods: {made:?}");
    world
        .serves(&[("web-1", "v1"), ("web-2", "v2")], "web-2")
        .await;
    let releases = world.releases.list(&Default::default()).await.unwrap();
    assert_eq!(
        releases.items.len(),
        3,
        "a rollback to a live version makes no Release"
    );
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

#[tokio::test]
async fn the_rainbow_example_runs_as_written() {
    let world = World::new("rainbow-example").await;
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let route = gateway.route("docs", &world.host, &[("docs", 1)]);
        apply_object(&cluster.client(), world.namespace(), route).await;
    }
    let [mut docs]: [Value; 1] = example("rainbow").try_into().unwrap();
    docs["metadata"]["namespace"] = json!(world.namespace());
    let image = &mut docs["spec"]["template"]["manifests"][0]["spec"]["template"]["spec"]["containers"]
        [0]["image"];
    let first = image.as_str().unwrap().to_owned();
    let revision = |image: &str| {
        let mut docs = docs.clone();
        docs["spec"]["template"]["manifests"][0]["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!(image);
        serde_json::from_value(docs).unwrap()
    };
    // Its preview step waits for a person: `prism promote --full` as a patch.
    let promote = |release: &'static str| async {
        patch_release_spec(&world.releases, release, json!({"targetStep": 2}))
            .await
            .unwrap();
        wait_for_phase(&world.releases, release, ReleasePhase::Complete)
            .await
            .unwrap();
    };
    apply(&world.apps, &revision(&first)).await.unwrap();
    promote("docs-1").await;
    apply(&world.apps, &revision(&format!("{first}-next")))
        .await
        .unwrap();
    wait_for_step(&world.releases, "docs-2", 0).await.unwrap();
    world
        .serves(&[("docs-1", "v1"), ("docs-2", "v2")], "docs-1")
        .await;
    promote("docs-2").await;
    world
        .serves(&[("docs-1", "v1"), ("docs-2", "v2")], "docs-2")
        .await;
}

#[tokio::test]
async fn a_drain_metric_keeps_a_retiring_version_until_its_requests_stop() {
    let world = world("rainbow-drain-metric").await;
    // web-1's requests as its pods would count them, in a real Prometheus: still some after its
    // route left (clients holding connections, say).
    let exporter = TestExporter::start().await.unwrap();
    let requests = Series::new("web", world.namespace(), "web-1", "c1");
    exporter.set(
        requests.clone(),
        Behaviour::new(0.0, Duration::from_millis(5)).at_rate(20.0),
    );
    let prometheus = Prometheus::start(&[exporter.addr()]).await.unwrap();
    prometheus
        .wait_for_sample(&requests.error_ratio_query("5s"))
        .await
        .unwrap();
    let policy = json!({
        "max": 2,
        "drainMetric": {
            "query": r#"sum(rate(http_requests_total{app="{{app}}",namespace="{{namespace}}",version="{{version}}"}[3s]))"#,
            "prometheus": {"address": prometheus.url()},
            "window": "5s",
            "interval": "1s",
        },
    });
    world.complete(1, &policy).await;
    world.complete(2, &policy).await;

    // The drain period passes, the requests go on: it stays Draining, its pods kept.
    wait_until(
        "web-1 is held by its drain metric",
        DEFAULT_TIMEOUT,
        || async {
            let release: Release = world.releases.get("web-1").await?;
            let status = release.status.unwrap_or_default();
            Ok(status
                .retirement
                .filter(|retirement| retirement.drain_held && retirement.quiet_since.is_none())
                .map(|_| status.conditions))
        },
    )
    .await
    .unwrap();
    assert_eq!(world.state_now("web-1").await, Some(VersionState::Draining));
    assert!(!world.scaled_to_zero("web-1").await);

    // Its requests stop: once its rate has read 0 for the window, it is Drained.
    let stopped = jiff::Timestamp::now();
    exporter.set(
        requests,
        Behaviour::new(0.0, Duration::from_millis(5)).at_rate(0.0),
    );
    let drained = world.state("web-1", VersionState::Drained).await.unwrap();
    let quiet_since = drained.quiet_since.expect("quiet since a reading of 0").0;
    assert!(
        quiet_since >= stopped,
        "quiet from {quiet_since}, stopped at {stopped}"
    );
    let drained_at = drained.drained_at.unwrap().0;
    assert!(
        secs(quiet_since, drained_at) >= 5.0,
        "Drained {} s after the rate first read 0",
        secs(quiet_since, drained_at)
    );
    wait_until("web-1 is scaled to 0", DEFAULT_TIMEOUT, || async {
        Ok(world.scaled_to_zero("web-1").await.then_some(()))
    })
    .await
    .unwrap();
}
