//! Rollouts on the sandbox with the default traffic provider (pod labels behind one Service):
//! a 3-step canary with capacity and traffic checked at every step, an abort mid-rollout, and a
//! rollback to an earlier revision. Throughout, a sampler checks that no version with a share of
//! the traffic is left without a ready pod receiving it.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use common::{
    application, apply, patch_release_spec, setup, wait_for_phase, wait_for_status, wait_for_step,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use prism_api::release::ReleasePhase;
use prism_controller::cached::Pod;

use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

/// 4 replicas: a quarter, then a half, then everything, each step held for `prism promote`.
fn spec(image: &str) -> Value {
    json!({
        "template": web_template(image, 4),
        "strategy": {"steps": [
            {"name": "canary", "capacity": {"contender": "25%"}, "traffic": {"contender": 25}, "gate": {"manual": true}},
            {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}},
        ]},
    })
}

/// What one version runs in the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Version {
    /// The Deployment's replicas; None without a Deployment.
    replicas: Option<i32>,
    ready: usize,
    /// Ready pods the Service selects.
    serving: usize,
}

/// Every version's state and the Service's weights, read at once.
#[derive(Clone, Debug, Default)]
struct Observed {
    versions: BTreeMap<String, Version>,
    weights: BTreeMap<String, u32>,
}

/// Reads the Service before and after the pods, and fails when it changed meanwhile: the
/// controller orders its writes so that a consistent read never breaks a promise, and only a
/// consistent read can show that.
async fn observe(client: &Client, namespace: &str) -> anyhow::Result<Observed> {
    let services = Api::<Service>::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels("prism.dev/app=web");
    let service = services.get_opt("web").await?;
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await?;
    let after = services.get_opt("web").await?;
    let version =
        |s: &Option<Service>| s.as_ref().and_then(|s| s.metadata.resource_version.clone());
    anyhow::ensure!(
        version(&service) == version(&after),
        "the Service changed while reading"
    );
    let mut observed = Observed::default();
    for deployment in deployments.items {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        observed.versions.entry(name).or_default().replicas =
            deployment.spec.and_then(|spec| spec.replicas);
    }
    let selector = service
        .as_ref()
        .and_then(|s| s.spec.as_ref()?.selector.clone())
        .unwrap_or_default();
    for pod in pods.items {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let ready = pod.is_ready();
        let version = observed
            .versions
            .entry(labels.get("prism.dev/release").cloned().unwrap_or_default())
            .or_default();
        if ready {
            version.ready += 1;
            let selected = !selector.is_empty()
                && selector
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value));
            if selected {
                version.serving += 1;
            }
        }
    }
    if let Some(service) = service {
        // One version alone is selected by its release; versions that share the traffic by the
        // traffic label, with the weights as set in an annotation.
        let app = ("prism.dev/app".to_owned(), "web".to_owned());
        match selector.get("prism.dev/release") {
            Some(release) => {
                anyhow::ensure!(
                    selector
                        == BTreeMap::from([app, ("prism.dev/release".to_owned(), release.clone())]),
                    "the Service selects {selector:?}"
                );
                observed.weights.insert(release.clone(), 100);
            }
            None => {
                anyhow::ensure!(
                    selector
                        == BTreeMap::from([
                            app,
                            ("prism.dev/traffic".to_owned(), "enabled".to_owned()),
                        ]),
                    "the Service selects {selector:?}"
                );
                let annotations = service.metadata.annotations.unwrap_or_default();
                for pair in annotations
                    .get("prism.dev/weights")
                    .map(String::as_str)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                {
                    let (release, weight) = pair.split_once('=').context("a weight without =")?;
                    observed.weights.insert(release.into(), weight.parse()?);
                }
            }
        }
    }
    Ok(observed)
}

/// The traffic promise: every version with a weight has a ready pod that receives traffic.
fn broken_promises(observed: &Observed) -> Vec<String> {
    observed
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .filter(|(release, _)| {
            observed
                .versions
                .get(*release)
                .is_none_or(|v| v.serving == 0)
        })
        .map(|(release, weight)| {
            format!("{release} has weight {weight} but no ready pod serving it: {observed:?}")
        })
        .collect()
}

/// Samples the namespace every 100 ms until dropped and keeps every broken promise it sees.
struct Sampler {
    violations: Arc<Mutex<Vec<String>>>,
    _task: prism_testkit::AbortOnDrop<()>,
}

impl Sampler {
    fn start(client: &Client, namespace: &str) -> Sampler {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (client, namespace, found) = (client.clone(), namespace.to_owned(), violations.clone());
        let task = prism_testkit::spawn_for_test(async move {
            loop {
                if let Ok(observed) = observe(&client, &namespace).await {
                    found.lock().unwrap().extend(broken_promises(&observed));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler {
            violations,
            _task: task,
        }
    }

    fn assert_kept(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(
            violations.is_empty(),
            "broken traffic promises: {violations:#?}"
        );
    }
}

/// Waits until the namespace runs `expected`: per version (replicas, ready, serving), and the
/// Service's weights above 0.
async fn wait_for_state(
    client: &Client,
    namespace: &str,
    what: &str,
    expected: &[(&str, Option<i32>, usize, usize)],
    weights: &[(&str, u32)],
) -> anyhow::Result<Observed> {
    let expected_versions: BTreeMap<String, Version> = expected
        .iter()
        .map(|(name, replicas, ready, serving)| {
            (
                name.to_string(),
                Version {
                    replicas: *replicas,
                    ready: *ready,
                    serving: *serving,
                },
            )
        })
        .collect();
    let expected_weights: BTreeMap<String, u32> =
        weights.iter().map(|(r, w)| (r.to_string(), *w)).collect();
    let last = Arc::new(Mutex::new(None));
    let seen = last.clone();
    let outcome = wait_until(what.to_owned(), DEFAULT_TIMEOUT, || {
        let seen = seen.clone();
        let (expected_versions, expected_weights) = (&expected_versions, &expected_weights);
        async move {
            let observed = observe(client, namespace).await?;
            *seen.lock().unwrap() = Some(observed.clone());
            let weights: BTreeMap<String, u32> = observed
                .weights
                .iter()
                .filter(|(_, weight)| **weight > 0)
                .map(|(r, w)| (r.clone(), *w))
                .collect();
            Ok(
                (&observed.versions == expected_versions && &weights == expected_weights)
                    .then_some(observed),
            )
        }
    })
    .await;
    outcome.with_context(|| format!("last observed: {:?}", last.lock().unwrap()))
}

#[tokio::test]
async fn a_three_step_canary_completes_with_capacity_and_traffic_at_every_step()
-> anyhow::Result<()> {
    let env = TestEnv::new("rollout-canary").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await?;

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    wait_for_state(
        &client,
        ns,
        "web-1 serves alone",
        &[("web-1", Some(4), 4, 4)],
        &[("web-1", 100)],
    )
    .await?;
    let sampler = Sampler::start(&client, ns);

    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    // A quarter of 4 is 1 pod; 1 contender pod beside 3 of the 4 incumbent pods is 25%.
    wait_for_state(
        &client,
        ns,
        "canary: 1 contender pod, 3 of 4 incumbent pods serving",
        &[("web-1", Some(4), 4, 3), ("web-2", Some(1), 1, 1)],
        &[("web-1", 75), ("web-2", 25)],
    )
    .await?;
    let web_2 = releases.get("web-2").await?;
    let status = web_2.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(ReleasePhase::WaitingForCommand));
    assert_eq!(status.progress.as_deref(), Some("1/3"));
    assert_eq!(status.step_name.as_deref(), Some("canary"));
    let local = &status.clusters[0];
    assert_eq!(
        (local.replicas, local.ready_replicas, local.weight),
        (1, 1, 25)
    );

    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "web-2", 1).await?;
    wait_for_state(
        &client,
        ns,
        "half: 2 contender pods, 2 of 4 incumbent pods serving",
        &[("web-1", Some(4), 4, 2), ("web-2", Some(2), 2, 2)],
        &[("web-1", 50), ("web-2", 50)],
    )
    .await?;

    patch_release_spec(&releases, "web-2", json!({"targetStep": 2})).await?;
    let web_2 = wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    assert_eq!(web_2.status.unwrap().progress.as_deref(), Some("3/3"));
    wait_for_state(
        &client,
        ns,
        "full: web-2 alone, web-1 removed",
        &[("web-2", Some(4), 4, 4)],
        &[("web-2", 100)],
    )
    .await?;
    // The Application's status follows its Releases' in a later reconcile: wait for it.
    wait_for_status(&apps, "web", "web-2 is the incumbent", |s| {
        s.incumbent.as_deref() == Some("web-2")
    })
    .await?;
    sampler.assert_kept();
    Ok(())
}

#[tokio::test]
async fn an_abort_mid_rollout_restores_the_incumbent() -> anyhow::Result<()> {
    let env = TestEnv::new("rollout-abort").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await?;

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let sampler = Sampler::start(&client, ns);
    apply(&apps, &application("web", spec("web:2"))?).await?;
    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "web-2", 1).await?;
    wait_for_state(
        &client,
        ns,
        "half",
        &[("web-1", Some(4), 4, 2), ("web-2", Some(2), 2, 2)],
        &[("web-1", 50), ("web-2", 50)],
    )
    .await?;

    patch_release_spec(&releases, "web-2", json!({"aborted": true})).await?;
    let web_2 = wait_for_phase(&releases, "web-2", ReleasePhase::Aborted).await?;
    wait_for_state(
        &client,
        ns,
        "web-1 serves alone again, web-2 removed",
        &[("web-1", Some(4), 4, 4)],
        &[("web-1", 100)],
    )
    .await?;
    let status = web_2.status.unwrap_or_default();
    let aborted = prism_api::conditions::find(&status.conditions, "Aborted")
        .context("no Aborted condition")?;
    assert_eq!(
        (aborted.status.as_str(), aborted.reason.as_str()),
        ("True", "AbortedByCommand")
    );
    assert_eq!(
        releases.get("web-1").await?.status.and_then(|s| s.phase),
        Some(ReleasePhase::Complete),
        "the incumbent stays the complete release"
    );
    sampler.assert_kept();
    Ok(())
}

#[tokio::test]
async fn a_rollback_to_an_earlier_revision_rolls_its_template_out_again() -> anyhow::Result<()> {
    let env = TestEnv::new("rollout-rollback").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await?;

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    patch_release_spec(&releases, "web-2", json!({"targetStep": 3})).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;

    // What `prism rollback --to 1` does: the Application's template becomes revision 1's.
    let template = releases.get("web-1").await?.spec.template;
    let mut rolled_back = spec("web:1");
    rolled_back["template"] = serde_json::to_value(&template)?;
    apply(&apps, &application("web", rolled_back)?).await?;
    let web_3 = wait_until("Release web-3 exists", DEFAULT_TIMEOUT, || async {
        Ok(releases.get_opt("web-3").await?)
    })
    .await?;
    assert_eq!(web_3.spec.template, template);
    let sampler = Sampler::start(&client, ns);
    patch_release_spec(&releases, "web-3", json!({"targetStep": 3})).await?;
    wait_for_phase(&releases, "web-3", ReleasePhase::Complete).await?;
    wait_for_state(
        &client,
        ns,
        "web-3 serves alone, web-1 and web-2 removed",
        &[("web-3", Some(4), 4, 4)],
        &[("web-3", 100)],
    )
    .await?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("prism.dev/release=web-3"))
        .await?;
    for pod in pods.items {
        let image = pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image);
        assert_eq!(image.as_deref(), Some("web:1"));
    }
    sampler.assert_kept();
    Ok(())
}

#[tokio::test]
async fn deleting_an_application_mid_rollout_removes_everything_it_installed() -> anyhow::Result<()>
{
    let env = TestEnv::new("rollout-delete").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await?;

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;

    // The Application owns its Releases and Service, each Release its version's objects.
    apps.delete("web", &Default::default()).await?;
    wait_until("every object of web is gone", DEFAULT_TIMEOUT, || async {
        let selector = ListParams::default().labels("prism.dev/app=web");
        let left = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&selector)
            .await?
            .items
            .len()
            + Api::<Service>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items
                .len()
            + releases.list(&selector).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    Ok(())
}

/// The finalizer that holds a pod in deletion for as long as a test needs it there.
const HOLD: &str = "prism.dev/test-hold";

/// Pods being deleted are left out of a split and never patched: they are going away, and a
/// label patch to one finds it gone (a failed write for nothing). Every incumbent pod is held
/// in deletion by a finalizer while its Deployment replaces it, so 8 ready incumbent pods
/// exist when the canary step splits the traffic; a split that counted the 4 held ones would
/// have to take the label off at least one of them.
#[tokio::test]
async fn a_split_never_patches_a_pod_being_deleted() -> anyhow::Result<()> {
    let env = TestEnv::new("rollout-deleting").await;
    let ns = env.namespace();
    let (client, apps, releases, _controller) = setup(&env).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);

    apply(&apps, &application("web", spec("web:1"))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let held: Vec<String> = pods
        .list(&ListParams::default().labels("prism.dev/release=web-1"))
        .await?
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(held.len(), 4, "web-1 runs 4 pods: {held:?}");
    for name in &held {
        let hold = json!({"metadata": {"finalizers": [HOLD]}});
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&hold))
            .await?;
        pods.delete(name, &DeleteParams::default()).await?;
    }
    let staying = |pod: &Pod| pod.metadata.deletion_timestamp.is_none();
    wait_until(
        "web-1's Deployment replaces its 4 pods held in deletion",
        DEFAULT_TIMEOUT,
        || async {
            let web_1 = pods
                .list(&ListParams::default().labels("prism.dev/release=web-1"))
                .await?;
            let ready = web_1.items.iter().filter(|p| staying(p) && p.is_ready());
            Ok((ready.count() == 4).then_some(()))
        },
    )
    .await?;

    apply(&apps, &application("web", spec("web:2"))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    // A quarter: 1 contender pod beside 3 of the 4 incumbent pods that stay.
    wait_until(
        "the canary's split: 1 web-2 pod and 3 of 4 staying web-1 pods labelled",
        DEFAULT_TIMEOUT,
        || async {
            let labelled = |release: &str| {
                let release = release.to_owned();
                move |pod: &&Pod| {
                    let labels = pod.metadata.labels.clone().unwrap_or_default();
                    staying(pod)
                        && pod.is_ready()
                        && labels.get("prism.dev/release") == Some(&release)
                        && labels.get("prism.dev/traffic").map(String::as_str) == Some("enabled")
                }
            };
            let all = pods.list(&ListParams::default()).await?.items;
            let split = (
                all.iter().filter(labelled("web-1")).count(),
                all.iter().filter(labelled("web-2")).count(),
            );
            Ok((split == (3, 1)).then_some(()))
        },
    )
    .await?;

    for name in &held {
        let pod = pods.get(name).await?;
        let managers: Vec<String> = pod
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|entry| entry.manager.clone())
            .collect();
        assert!(
            !managers.iter().any(|manager| manager == "prism"),
            "held pod {name} was written by the controller: managers {managers:?}"
        );
        let release = pods
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await?;
        assert!(release.metadata.deletion_timestamp.is_some());
    }
    Ok(())
}
