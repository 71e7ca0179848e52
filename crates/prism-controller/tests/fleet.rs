//! End-to-end: rollouts across the sandbox's three clusters in two regions (c1 and c3 in eu-west,
//! c2 in us-east), each a Cluster of the test's fleet.

mod common;

use std::collections::BTreeMap;

use common::{application, apply, patch_release_spec, setup, wait_for_phase, wait_for_step};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use prism_api::Release;
use prism_api::release::ReleasePhase;
use prism_testkit::TestEnv;
use prism_testkit::fixtures::web_template;
use prism_testkit::fleet::TestFleet;
use serde_json::json;

/// The sandbox cluster of each of the test's Cluster objects.
fn sandbox_clusters(env: &TestEnv, release: &Release) -> Vec<String> {
    let prefix = format!("{}-", env.namespace());
    release
        .spec
        .clusters
        .iter()
        .map(|c| c.name.strip_prefix(&prefix).unwrap_or(&c.name).to_owned())
        .collect()
}

/// Each sandbox cluster's replicas of the Deployment `name` (None where it is not installed).
async fn replicas(env: &TestEnv, name: &str) -> anyhow::Result<BTreeMap<String, Option<i32>>> {
    let mut found = BTreeMap::new();
    for cluster in env.clusters() {
        let deployments = Api::<Deployment>::namespaced(cluster.client(), env.namespace());
        let deployment = deployments.get_opt(name).await?;
        found.insert(
            cluster.name().to_owned(),
            deployment.and_then(|d| d.spec.and_then(|s| s.replicas)),
        );
    }
    Ok(found)
}

#[tokio::test]
async fn a_per_cluster_vanguard_reaches_its_canary_before_the_other_clusters_move()
-> anyhow::Result<()> {
    let env = TestEnv::new("fleet-vanguard").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let steps = json!([
        {"name": "vanguard", "clusters": {"first": 1},
         "capacity": {"contender": "50%"}, "traffic": {"contender": 50}, "gate": {"manual": true}},
        {"name": "everywhere", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
         "gate": {"manual": true}},
        {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
         "traffic": {"contender": 100}}
    ]);
    let spec = |image: &str| {
        json!({
            "template": web_template(image, 2),
            "strategy": {"steps": steps},
            "schedule": {"regions": [
                {"name": "eu-west", "clusters": 2},
                {"name": "us-east", "clusters": 1},
            ]},
        })
    };
    apply(&apps, &application("web", spec("web:1"))?).await?;
    let first = wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let scheduled = sandbox_clusters(&env, &first);
    assert_eq!(scheduled.len(), 3, "every cluster: {scheduled:?}");
    assert_eq!(
        scheduled[2], "c2",
        "regions in the order listed: eu-west first"
    );
    for (cluster, replicas) in replicas(&env, "web-1").await? {
        assert_eq!(replicas, Some(2), "web-1 in {cluster}");
    }

    apply(&apps, &application("web", spec("web:2"))?).await?;
    let second = wait_for_step(&releases, "web-2", 0).await?;
    assert_eq!(
        sandbox_clusters(&env, &second),
        scheduled,
        "the same clusters"
    );
    let vanguard = &scheduled[0];
    let canary = replicas(&env, "web-2").await?;
    for (cluster, replicas) in &canary {
        let expected = (cluster == vanguard).then_some(1);
        assert_eq!(
            *replicas, expected,
            "web-2 in {cluster} at the vanguard step"
        );
    }

    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;
    wait_for_step(&releases, "web-2", 1).await?;
    for (cluster, replicas) in replicas(&env, "web-2").await? {
        assert_eq!(
            replicas,
            Some(1),
            "web-2 in {cluster} once every cluster moved"
        );
    }

    patch_release_spec(&releases, "web-2", json!({"targetStep": 3})).await?;
    wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    for cluster in env.clusters() {
        let deployments = Api::<Deployment>::namespaced(cluster.client(), env.namespace());
        prism_testkit::wait_until(
            format!("web-1 is removed from {}", cluster.name()),
            prism_testkit::DEFAULT_TIMEOUT,
            || async { Ok(deployments.get_opt("web-1").await?.is_none().then_some(())) },
        )
        .await?;
    }
    Ok(())
}

/// `web` in one step on all three clusters, until its first Release completes.
async fn install_everywhere(
    apps: &Api<prism_api::Application>,
    releases: &Api<Release>,
) -> anyhow::Result<()> {
    let spec = json!({
        "template": web_template("web:1", 1),
        "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"},
                                "traffic": {"contender": 100}}]},
        "schedule": {"clusters": 3},
    });
    apply(apps, &application("web", spec)?).await?;
    wait_for_phase(releases, "web-1", ReleasePhase::Complete).await?;
    Ok(())
}

/// Waits until the Deployment `web-1` and the `K` named `web` are gone from every cluster.
async fn wait_until_web_is_gone<K>(env: &TestEnv) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    for cluster in env.clusters() {
        let deployments = Api::<Deployment>::namespaced(cluster.client(), env.namespace());
        let others = Api::<K>::namespaced(cluster.client(), env.namespace());
        prism_testkit::wait_until(
            format!(
                "web's Deployment and {} are gone from {}",
                K::kind(&Default::default()),
                cluster.name()
            ),
            // The sweep waits out a grace period before it takes anything for an orphan.
            prism_testkit::DEFAULT_TIMEOUT,
            || async {
                let gone = deployments.get_opt("web-1").await?.is_none()
                    && others.get_opt("web").await?.is_none();
                Ok(gone.then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn deleting_an_application_removes_what_it_installed_in_every_cluster() -> anyhow::Result<()>
{
    let env = TestEnv::new("fleet-delete").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    install_everywhere(&apps, &releases).await?;
    apps.delete("web", &Default::default()).await?;
    wait_until_web_is_gone::<Service>(&env).await?;
    Ok(())
}

#[tokio::test]
async fn a_deleted_headless_application_leaves_no_shared_object_in_any_cluster()
-> anyhow::Result<()> {
    let env = TestEnv::new("fleet-delete-shared").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    // A worker with no Service, and the PodDisruptionBudget its versions share: nothing but the
    // Application says the budget is the worker's once its versions are gone.
    let mut template = web_template("worker:1", 1);
    template["manifests"][1] = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    });
    let spec = json!({
        "template": template,
        "traffic": {"provider": "none"},
        "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"}}]},
        "schedule": {"clusters": 3},
    });
    apply(&apps, &application("web", spec)?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let budgets = |cluster: &prism_testkit::TestCluster| {
        Api::<PodDisruptionBudget>::namespaced(cluster.client(), env.namespace())
    };
    for cluster in env.clusters() {
        assert!(
            budgets(cluster).get_opt("web").await?.is_some(),
            "the shared budget is installed in {}",
            cluster.name()
        );
    }

    apps.delete("web", &Default::default()).await?;
    wait_until_web_is_gone::<PodDisruptionBudget>(&env).await?;
    Ok(())
}

#[tokio::test]
async fn a_failure_beyond_the_budget_in_the_second_wave_rolls_the_first_wave_back_too()
-> anyhow::Result<()> {
    let env = TestEnv::new("fleet-budget").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let strategy = json!({
        "steps": [
            {"name": "eu", "clusters": {"region": "eu-west"},
             "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
             "gate": {"manual": true}},
            {"name": "everywhere", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
             "traffic": {"contender": 100}}
        ],
        // The deadline holds for every cluster at every step, web-1's included: it must leave a
        // slow machine time to make pods ready where they can be.
        "waves": {"progressDeadline": "30s", "failureBudget": 0},
    });
    let spec = |template: serde_json::Value| {
        json!({
            "template": template,
            "strategy": {"steps": strategy["steps"], "waves": strategy["waves"]},
            "schedule": {"regions": [
                {"name": "eu-west", "clusters": 2},
                {"name": "us-east", "clusters": 1},
            ]},
        })
    };
    apply(&apps, &application("web", spec(web_template("web:1", 2)))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;

    // Version 2's pods can only run on eu-west's nodes: in us-east they stay Pending, so the
    // second wave never gets ready there.
    let mut broken = web_template("web:2", 2);
    broken["manifests"][0]["spec"]["template"]["spec"]["nodeSelector"] =
        json!({"topology.kubernetes.io/region": "eu-west"});
    apply(&apps, &application("web", spec(broken))?).await?;
    wait_for_step(&releases, "web-2", 0).await?;
    for (cluster, replicas) in replicas(&env, "web-2").await? {
        let expected = (cluster != "c2").then_some(1);
        assert_eq!(replicas, expected, "web-2 in {cluster} in the first wave");
    }
    patch_release_spec(&releases, "web-2", json!({"targetStep": 1})).await?;

    let aborted = wait_for_phase(&releases, "web-2", ReleasePhase::Aborted).await?;
    let abort = aborted
        .status
        .as_ref()
        .and_then(|s| s.abort.clone())
        .expect("an abort cause");
    assert_eq!(
        abort.cause,
        prism_api::release::AbortCause::ProgressDeadlineExceeded
    );
    assert!(
        abort.message.contains(&env.cluster_object_name("c2")),
        "{}",
        abort.message
    );
    for (cluster, replicas) in replicas(&env, "web-2").await? {
        assert_eq!(replicas, None, "web-2 is gone from {cluster}");
    }
    for (cluster, replicas) in replicas(&env, "web-1").await? {
        assert_eq!(replicas, Some(2), "web-1 is whole again in {cluster}");
    }
    Ok(())
}

#[tokio::test]
async fn the_applications_namespace_is_made_in_clusters_that_lack_it() -> anyhow::Result<()> {
    let env = TestEnv::new("fleet-namespace").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    // Only the management cluster c1 has the namespace, as it would after `kubectl create ns`.
    for name in ["c2", "c3"] {
        let namespaces = Api::<Namespace>::all(env.cluster(name).client());
        namespaces
            .delete(env.namespace(), &Default::default())
            .await?;
        prism_testkit::wait_until(
            format!("the namespace is gone from {name}"),
            prism_testkit::DEFAULT_TIMEOUT,
            || async {
                Ok(namespaces
                    .get_opt(env.namespace())
                    .await?
                    .is_none()
                    .then_some(()))
            },
        )
        .await?;
    }
    install_everywhere(&apps, &releases).await?;
    for name in ["c2", "c3"] {
        let namespace = Api::<Namespace>::all(env.cluster(name).client())
            .get(env.namespace())
            .await?;
        let labels = namespace.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("prism"),
            "{name}"
        );
        let deployments =
            Api::<Deployment>::namespaced(env.cluster(name).client(), env.namespace());
        assert!(
            deployments.get_opt("web-1").await?.is_some(),
            "web-1 in {name}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_service_of_an_application_that_left_a_cluster_is_swept() -> anyhow::Result<()> {
    let env = TestEnv::new("fleet-left").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    let _fleet = TestFleet::join(&env, &client).await?;
    let spec = json!({
        "template": web_template("web:1", 1),
        "strategy": {"steps": [{"name": "full", "capacity": {"contender": "100%"},
                                "traffic": {"contender": 100}}]},
        "schedule": {"clusters": 1},
    });
    apply(&apps, &application("web", spec)?).await?;
    let first = wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let here = sandbox_clusters(&env, &first).remove(0);
    let elsewhere = env
        .clusters()
        .iter()
        .find(|cluster| cluster.name() != here)
        .expect("three clusters");

    // What a failed delete, or a Release pruned before the sweep of its cluster, leaves: the
    // application's Service where no version of it runs and none of its Releases is scheduled.
    let left: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"prism.dev/app": "web"}},
        "spec": {"selector": {"prism.dev/app": "web"}, "ports": [{"port": 80}]},
    }))?;
    let stale = Api::<Service>::namespaced(elsewhere.client(), env.namespace());
    stale.create(&Default::default(), &left).await?;
    prism_testkit::wait_until(
        format!("the Service left on {} is swept", elsewhere.name()),
        // The sweep waits out a grace period before it takes anything for an orphan.
        prism_testkit::DEFAULT_TIMEOUT,
        || async { Ok(stale.get_opt("web").await?.is_none().then_some(())) },
    )
    .await?;
    let serving = Api::<Service>::namespaced(env.cluster(&here).client(), env.namespace());
    assert!(
        serving.get_opt("web").await?.is_some(),
        "the Service of {here}, where web runs, stays"
    );
    Ok(())
}
