//! Blue/green through the Service-selector provider, on the sandbox (c1 is the management cluster
//! and the only application cluster): the contender comes up at full capacity beside the
//! incumbent while the Service selects the incumbent; a person switches the Service over; a
//! person retires the incumbent. At no moment does the Service select a version without a ready
//! pod.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use common::{application, apply, patch_release_spec, setup};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use prism_api::Release;
use prism_api::release::{ReleasePhase, ReleaseStatus};
use prism_controller::cached::Pod;

use prism_testkit::fixtures::web_template;
use prism_testkit::{AbortOnDrop, DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

/// How often the watchdog looks at the Service and the pods it selects.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// 3 replicas behind a Service whose selector Prism switches: `preview` brings the contender to
/// full capacity without traffic, `switch` moves the Service to it, `retire` scales the incumbent
/// to nothing; a person promotes past each of the first two.
fn spec(image: &str) -> Value {
    json!({
        "template": web_template(image, 3),
        "traffic": {"provider": "serviceSelector"},
        "strategy": {"steps": [
            {"name": "preview", "capacity": {"contender": "100%"}, "traffic": {"contender": 0}, "gate": {"manual": true}},
            {"name": "switch", "traffic": {"contender": 100}, "gate": {"manual": true}},
            {"name": "retire", "capacity": {"incumbent": "0%"}}
        ]},
    })
}

/// The release the Service `web` selects, if any, from its selector.
fn selected(service: &Service) -> Option<String> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()?
        .get("prism.dev/release")
        .cloned()
}

/// Each Deployment's (replicas, ready replicas), by name.
async fn deployments(api: &Api<Deployment>) -> anyhow::Result<BTreeMap<String, (i32, i32)>> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|d| {
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            (d.name_any(), (replicas, ready))
        })
        .collect())
}

/// Samples the Service `web` and the pods its selector matches every [`SAMPLE_EVERY`] until
/// dropped, and records each moment it selects no ready pod (once it exists).
struct Watchdog {
    samples: Arc<Mutex<u32>>,
    violations: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop<()>,
}

impl Watchdog {
    fn start(client: &Client, namespace: &str) -> Watchdog {
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let samples = Arc::new(Mutex::new(0));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (count, record) = (samples.clone(), violations.clone());
        let task = prism_testkit::spawn_for_test(async move {
            loop {
                match Watchdog::sample(&services, &pods).await {
                    Ok(None) => *count.lock().unwrap() += 1,
                    Ok(Some(violation)) => {
                        *count.lock().unwrap() += 1;
                        record.lock().unwrap().push(violation);
                    }
                    // An API hiccup is no sample.
                    Err(_) => {}
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        Watchdog {
            samples,
            violations,
            _task: task,
        }
    }

    /// A violation, if the Service selects a version without a ready pod now.
    async fn sample(services: &Api<Service>, pods: &Api<Pod>) -> anyhow::Result<Option<String>> {
        let Some(service) = services.get_opt("web").await? else {
            return Ok(None);
        };
        let selector = service
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .unwrap_or_default();
        let Some(release) = selector.get("prism.dev/release") else {
            return Ok(Some(format!(
                "the Service selects no single version: {selector:?}"
            )));
        };
        let labels = selector
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        let matched = pods.list(&ListParams::default().labels(&labels)).await?;
        // Only a consistent read can show a broken promise: the Service must not have changed
        // while the pods were read.
        let after = services.get_opt("web").await?;
        if after.map(|s| s.resource_version()) != Some(service.resource_version()) {
            bail!("the Service changed while reading");
        }
        let ready = matched.items.iter().filter(|pod| pod.is_ready()).count();
        Ok((ready == 0).then(|| {
            format!(
                "{}: the Service selects {release}, which has no ready pod ({} pods)",
                k8s_openapi::jiff::Timestamp::now(),
                matched.items.len()
            )
        }))
    }

    fn samples(&self) -> u32 {
        *self.samples.lock().unwrap()
    }

    /// Waits until the watchdog has looked `more` more times: it has seen the state of now.
    async fn look(&self, more: u32) -> anyhow::Result<()> {
        let target = self.samples() + more;
        wait_until(
            format!("the watchdog has sampled {target} times"),
            DEFAULT_TIMEOUT,
            || async { Ok((self.samples() >= target).then_some(())) },
        )
        .await
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

struct Fixture {
    client: Client,
    releases: Api<Release>,
    services: Api<Service>,
    deployments: Api<Deployment>,
}

impl Fixture {
    /// Waits until Release `name` is at `step` in `phase`.
    async fn wait_for(
        &self,
        name: &str,
        step: u32,
        phase: ReleasePhase,
    ) -> anyhow::Result<ReleaseStatus> {
        wait_until(
            format!("Release {name} at step {step}, {phase:?}"),
            DEFAULT_TIMEOUT,
            || async {
                let status = self.releases.get_opt(name).await?.and_then(|r| r.status);
                match status {
                    Some(s) if s.step == Some(step) && s.phase == Some(phase) => Ok(Some(s)),
                    Some(s) => bail!("step {:?}, {:?}", s.step, s.phase),
                    None => Ok(None),
                }
            },
        )
        .await
    }

    /// `prism promote --to step`, as the CLI writes it.
    async fn promote(&self, name: &str, step: u32) -> anyhow::Result<()> {
        patch_release_spec(&self.releases, name, json!({"targetStep": step})).await
    }

    async fn selected(&self) -> anyhow::Result<Option<String>> {
        Ok(selected(&self.services.get("web").await?))
    }
}

#[tokio::test]
async fn blue_green_switches_the_service_between_two_full_versions() -> anyhow::Result<()> {
    let env = TestEnv::new("blue-green").await;
    let (client, _apps, _releases, _controller) = setup(&env).await?;
    let ns = env.namespace();
    let apps = Api::namespaced(client.clone(), ns);
    let fixture = Fixture {
        releases: Api::namespaced(client.clone(), ns),
        services: Api::namespaced(client.clone(), ns),
        deployments: Api::namespaced(client.clone(), ns),
        client,
    };

    // Revision 1 has no incumbent: straight to the last step, selected by the Service.
    apply(&apps, &application("web", spec("web:1"))?).await?;
    fixture.wait_for("web-1", 2, ReleasePhase::Complete).await?;
    assert_eq!(fixture.selected().await?.as_deref(), Some("web-1"));
    let service = fixture.services.get("web").await?;
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.selector.clone()),
        Some(
            [
                ("prism.dev/app".to_owned(), "web".to_owned()),
                ("prism.dev/release".to_owned(), "web-1".to_owned())
            ]
            .into()
        ),
        "the template's selector is replaced, not merged"
    );
    assert_eq!(
        deployments(&fixture.deployments).await?,
        [("web-1".to_owned(), (3, 3))].into()
    );

    let watchdog = Watchdog::start(&fixture.client, ns);
    apply(&apps, &application("web", spec("web:2"))?).await?;

    // preview: the contender at full capacity, no traffic; the incumbent untouched.
    fixture
        .wait_for("web-2", 0, ReleasePhase::WaitingForCommand)
        .await?;
    assert_eq!(
        deployments(&fixture.deployments).await?,
        [("web-1".to_owned(), (3, 3)), ("web-2".to_owned(), (3, 3))].into()
    );
    assert_eq!(fixture.selected().await?.as_deref(), Some("web-1"));
    watchdog.look(2).await?;

    // switch: the Service selects the contender; both keep full capacity.
    fixture.promote("web-2", 1).await?;
    let switched = fixture
        .wait_for("web-2", 1, ReleasePhase::WaitingForCommand)
        .await?;
    assert_eq!(fixture.selected().await?.as_deref(), Some("web-2"));
    assert_eq!(
        deployments(&fixture.deployments).await?,
        [("web-1".to_owned(), (3, 3)), ("web-2".to_owned(), (3, 3))].into()
    );
    let local = switched
        .clusters
        .iter()
        .find(|c| c.name == "local")
        .context("no progress for cluster local")?;
    assert_eq!((local.weight, local.ready_replicas), (100, 3), "{local:?}");
    watchdog.look(2).await?;

    // retire: the incumbent goes, the Service stays on the contender.
    fixture.promote("web-2", 2).await?;
    fixture.wait_for("web-2", 2, ReleasePhase::Complete).await?;
    assert_eq!(fixture.selected().await?.as_deref(), Some("web-2"));
    watchdog.look(2).await?;
    assert_eq!(watchdog.violations(), Vec::<String>::new());
    let deleted = wait_until("Deployment web-1 is deleted", DEFAULT_TIMEOUT, || async {
        let left = deployments(&fixture.deployments).await?;
        Ok((!left.contains_key("web-1")).then_some(()))
    })
    .await;
    if let Err(error) = deleted {
        let left = deployments(&fixture.deployments).await?;
        let web_1 = fixture.releases.get("web-1").await?.status;
        bail!("{error:#}\nDeployments (replicas, ready): {left:?}\nRelease web-1: {web_1:#?}");
    }
    assert_eq!(
        deployments(&fixture.deployments).await?,
        [("web-2".to_owned(), (3, 3))].into()
    );
    assert_eq!(fixture.selected().await?.as_deref(), Some("web-2"));

    watchdog.look(2).await?;
    assert_eq!(watchdog.violations(), Vec::<String>::new());
    Ok(())
}
