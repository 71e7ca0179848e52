//! Side versions end to end through the `gatewayAPI` provider and every sandbox cluster's real
//! gateway: a SideVersion with its own image is reachable by a header and by its own hostname
//! only, never on the default route, while the mainline rolls out under it; deleting it retires
//! its version in order (its hostname then answers 404, never 503); overrides that do not apply
//! to the template install nothing and name the field.

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use prism_api::labels::SIDE_VERSION_LABEL;
use prism_api::release::{ReleasePhase, VersionState};
use prism_api::side_version::{SideVersion, SideVersionStatus};
use prism_testkit::fixtures::web_template;
use prism_testkit::gateway::{LoadLoop, Request, wait_until_served};
use prism_testkit::{DEFAULT_TIMEOUT, wait_until};
use serde_json::{Value, json};

use common::gateway::{GatewayFleet as World, apply_object, measure};
use common::{TEST_MANAGER, application, apply, wait_for_phase, wait_for_step};

const SIDE: &str = "pr-42";
const SIDE_RELEASE: &str = "web-pr-42-1";
const SIDE_IMAGE: &str = "example.test/web:pr-42";

async fn world(name: &str) -> World {
    let world = World::new(name).await;
    for (cluster, gateway) in world.env.clusters().iter().zip(&world.gateways) {
        let route = gateway.route("web", &world.host, &[("web", 1)]);
        apply_object(&cluster.client(), world.namespace(), route).await;
    }
    world
}

/// A canary that waits for `prism promote` at half the traffic.
fn steps() -> Value {
    json!([
        {"name": "half", "capacity": {"contender": "100%"}, "traffic": {"contender": 50},
         "gate": {"manual": true}},
        {"name": "full", "traffic": {"contender": 100}},
    ])
}

impl World {
    async fn apply_app(&self, tag: u32) {
        let spec = json!({
            "template": web_template(&format!("example.test/web:{tag}"), 2),
            "traffic": {"provider": "gatewayAPI", "httpRoutes": ["web"]},
            "versions": {"drainPeriod": "6s", "deleteAfter": "5s"},
            "strategy": {"steps": steps()},
        });
        apply(&self.apps, &application("web", spec).unwrap())
            .await
            .unwrap();
    }

    fn side_versions(&self) -> Api<SideVersion> {
        Api::namespaced(self.apps.clone().into_client(), self.namespace())
    }

    async fn apply_side(&self, name: &str, spec: Value) {
        let object = json!({
            "apiVersion": "prism.dev/v1alpha1",
            "kind": "SideVersion",
            "metadata": {"name": name},
            "spec": spec,
        });
        self.side_versions()
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .unwrap();
    }

    /// Waits until SideVersion `name`'s status passes `check`.
    async fn side_status(
        &self,
        name: &str,
        check: impl Fn(&SideVersionStatus) -> bool,
    ) -> SideVersionStatus {
        let api = self.side_versions();
        let check = &check;
        wait_until(
            format!("SideVersion {name}'s status"),
            DEFAULT_TIMEOUT,
            || {
                let api = api.clone();
                async move {
                    let found = api.get(name).await?;
                    Ok(found.status.filter(|status| check(status)))
                }
            },
        )
        .await
        .unwrap()
    }
}

fn is(status: &SideVersionStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value)
}

#[tokio::test]
async fn a_side_version_is_reached_by_its_header_and_hostname_only_and_retires_when_deleted() {
    let world = world("side-versions").await;
    world.apply_app(1).await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();

    world
        .apply_side(
            SIDE,
            json!({
                "application": "web",
                "images": {"web": SIDE_IMAGE},
                "replicas": 1,
                "routes": [
                    {"name": "header", "match": {"header": {"name": "x-version", "value": "{version}"}}},
                    {"name": "host", "match": {"subdomain": "{version}"}},
                ],
            }),
        )
        .await;
    let status = world.side_status(SIDE, |s| is(s, "Ready", "True")).await;
    assert_eq!(status.release.as_deref(), Some(SIDE_RELEASE));

    let by_header = Request::new(&world.host).header("x-version", SIDE);
    let by_host = Request::new(format!("{SIDE}.{}", world.host));
    let default = Request::new(&world.host);
    let check = |mainline: &'static [(&'static str, f64)]| {
        let world = &world;
        let (by_header, by_host, default) = (&by_header, &by_host, &default);
        async move {
            for gateway in &world.gateways {
                let served = wait_until_served(gateway, by_header, SIDE_RELEASE, |served| {
                    served.release == SIDE_RELEASE
                })
                .await
                .unwrap();
                assert_eq!(served.images, [SIDE_IMAGE]);
                measure(gateway, by_header, &[(SIDE_RELEASE, 100.0)]).await;
                wait_until_served(gateway, by_host, SIDE_RELEASE, |served| {
                    served.release == SIDE_RELEASE
                })
                .await
                .unwrap();
                measure(gateway, by_host, &[(SIDE_RELEASE, 100.0)]).await;
                // `measure` fails on any release it was not told of: 0 default-route requests
                // reach the side version.
                let tally = measure(gateway, default, mainline).await;
                assert_eq!(tally.per_release.get(SIDE_RELEASE), None, "{tally}");
                eprintln!("{}: default route {tally}", gateway.cluster());
            }
        }
    };
    check(&[("web-1", 100.0)]).await;

    // A mainline rollout under it: the side version neither joins nor holds it.
    world.apply_app(2).await;
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
    check(&[("web-1", 50.0), ("web-2", 50.0)]).await;

    // Deleting the object retires its version in order; its hostname then answers 404, never 503.
    let load = LoadLoop::start(world.gateways.clone(), by_host.clone(), 30.0);
    world
        .side_versions()
        .delete(SIDE, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        format!("{SIDE_RELEASE} drains"),
        DEFAULT_TIMEOUT,
        || async {
            let found = world.releases.get_opt(SIDE_RELEASE).await?;
            let state = found.and_then(|r| r.status).and_then(|s| s.state);
            Ok(matches!(
                state,
                Some(VersionState::Draining | VersionState::Drained) | None
            )
            .then_some(()))
        },
    )
    .await
    .unwrap();
    for gateway in &world.gateways {
        wait_until(
            format!("{}: {SIDE}'s hostname is unknown", gateway.cluster()),
            DEFAULT_TIMEOUT,
            || async {
                Ok(matches!(gateway.request(&by_host).await, Err(reason) if reason.starts_with("HTTP 404"))
                    .then_some(()))
            },
        )
        .await
        .unwrap();
    }
    // Then it is scaled to 0 everywhere (Drained), and, once every cluster confirms it,
    // Retired: its objects and its Release are deleted.
    wait_until(
        format!("{SIDE_RELEASE} is drained"),
        DEFAULT_TIMEOUT,
        || async {
            let found = world.releases.get_opt(SIDE_RELEASE).await?;
            let state = found.and_then(|r| r.status).and_then(|s| s.state);
            Ok(matches!(
                state,
                Some(VersionState::Drained | VersionState::Retired) | None
            )
            .then_some(()))
        },
    )
    .await
    .unwrap();
    for cluster in world.env.clusters() {
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), world.namespace());
        wait_until(
            format!("{}: {SIDE_RELEASE} has no pods", cluster.name()),
            DEFAULT_TIMEOUT,
            || async {
                let found = deployments.get_opt(SIDE_RELEASE).await?;
                let replicas = found.and_then(|d| d.spec).and_then(|spec| spec.replicas);
                Ok(matches!(replicas, None | Some(0)).then_some(()))
            },
        )
        .await
        .unwrap();
    }
    wait_until(
        format!("{SIDE_RELEASE} is retired and its Release deleted"),
        DEFAULT_TIMEOUT,
        || async {
            let found = world.releases.get_opt(SIDE_RELEASE).await?;
            Ok(found.is_none().then_some(()))
        },
    )
    .await
    .unwrap();
    let report = load.stop().await;
    eprintln!("load on {SIDE}'s hostname across its retirement:\n{report}");
    let failures: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|(_, failure)| !failure.reason.starts_with("HTTP 404"))
        .collect();
    assert!(failures.is_empty(), "failures other than 404: {failures:?}");
    // The mainline went on as it was.
    wait_for_step(&world.releases, "web-2", 0).await.unwrap();
}

#[tokio::test]
async fn a_side_version_whose_overrides_do_not_apply_installs_nothing_and_names_the_field() {
    let world = world("side-invalid").await;
    world.apply_app(1).await;
    wait_for_phase(&world.releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();
    world
        .apply_side(
            "typo",
            json!({
                "application": "web",
                "images": {"api": SIDE_IMAGE},
                "configMaps": {"settings": {"theme": "dark"}},
                "routes": [{"name": "host", "match": {"subdomain": "{version}"}}],
            }),
        )
        .await;
    let status = world.side_status("typo", |s| is(s, "Valid", "False")).await;
    let valid = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Valid")
        .unwrap();
    assert_eq!(valid.reason, "InvalidOverride");
    assert!(
        valid.message.contains("spec.images.api"),
        "{}",
        valid.message
    );
    assert!(
        valid.message.contains("no container named \"api\""),
        "{}",
        valid.message
    );
    assert!(
        valid.message.contains("spec.configMaps.settings"),
        "{}",
        valid.message
    );
    let made = world
        .releases
        .list(&ListParams::default().labels(&format!("{SIDE_VERSION_LABEL}=typo")))
        .await
        .unwrap();
    assert!(made.items.is_empty(), "nothing is installed");

    // A route list with a repeated name is refused by the API server itself.
    let refused = world
        .side_versions()
        .patch(
            "dup",
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "prism.dev/v1alpha1",
                "kind": "SideVersion",
                "metadata": {"name": "dup"},
                "spec": {"application": "web", "routes": [
                    {"name": "a", "match": {"subdomain": "{version}"}},
                    {"name": "a", "match": {"pathPrefix": "/dup"}},
                ]},
            })),
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("route names must be unique within a side version"),
        "{refused}"
    );
}
