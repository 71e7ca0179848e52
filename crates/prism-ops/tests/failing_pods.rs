//! `pods::failure` on pods that fail for real in the sandbox: the KWOK stages fail the pods whose
//! template asks it (`sandbox.prism.dev/fail[-<cluster>]`, sandbox/README.md), the real scheduler
//! leaves a pod no node matches unschedulable, and the data plane serves none of them.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prism_ops::pods::{PodFailure, failure};
use prism_testkit::gateway::{
    Gateway, Request, http_route_resource, wait_route_accepted, wait_until_served,
};
use prism_testkit::{DEFAULT_TIMEOUT, TestCluster, TestEnv, wait_until};
use serde_json::{Value, json};

/// Label of every pod of the test, which its Service selects.
const GROUP: &str = "failing-pods";

/// What a Deployment's one pod should come to in a cluster.
#[derive(Clone, Copy)]
enum Expect {
    Ready,
    Failing {
        reason: &'static str,
        /// Part of the kubelet's or the scheduler's message.
        message: &'static str,
        container: Option<&'static str>,
    },
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ready => write!(f, "is Ready and not failing"),
            Expect::Failing { reason, .. } => write!(f, "fails with {reason}"),
        }
    }
}

const CRASH_LOOP: Expect = Expect::Failing {
    reason: "CrashLoopBackOff",
    message: "back-off 10s restarting failed container=app pod=crash-loop-",
    container: Some("app"),
};

#[tokio::test]
async fn pods_asked_to_fail_show_why_in_each_cluster() {
    let env = TestEnv::new("failing-pods").await;
    let deployments = [
        ("crash-loop", fail("CrashLoopBackOff"), None),
        ("image-pull", fail("ImagePullBackOff"), None),
        ("readiness", fail("ReadinessProbeFailed"), None),
        (
            "only-in-c2",
            json!({"sandbox.prism.dev/fail-c2": "CrashLoopBackOff"}),
            None,
        ),
        (
            "unschedulable",
            json!({}),
            Some(json!({"sandbox.prism.dev/no-such-node": "true"})),
        ),
    ];
    for cluster in ["c1", "c2"] {
        let client = env.cluster(cluster).client();
        for (name, annotations, node_selector) in &deployments {
            let deployment = deployment(name, annotations, node_selector.as_ref());
            Api::<Deployment>::namespaced(client.clone(), env.namespace())
                .create(&PostParams::default(), &deployment)
                .await
                .unwrap_or_else(|error| panic!("creating {name} in {cluster}: {error}"));
        }
    }

    let image_pull = Expect::Failing {
        reason: "ImagePullBackOff",
        message: "Back-off pulling image \"example.test/image-pull:v1\": ErrImagePull:",
        container: Some("app"),
    };
    let readiness = Expect::Failing {
        reason: "ReadinessProbeFailed",
        message: "container app runs but is not ready: its readiness probe fails",
        container: Some("app"),
    };
    let unschedulable = Expect::Failing {
        reason: "Unschedulable",
        message: "3 node(s) didn't match Pod's node affinity/selector",
        container: None,
    };
    let expected = [
        ("c1", "crash-loop", CRASH_LOOP),
        ("c1", "image-pull", image_pull),
        ("c1", "readiness", readiness),
        ("c1", "only-in-c2", Expect::Ready),
        ("c1", "unschedulable", unschedulable),
        ("c2", "crash-loop", CRASH_LOOP),
        ("c2", "image-pull", image_pull),
        ("c2", "readiness", readiness),
        (
            "c2",
            "only-in-c2",
            Expect::Failing {
                reason: "CrashLoopBackOff",
                message: "back-off 10s restarting failed container=app pod=only-in-c2-",
                container: Some("app"),
            },
        ),
        ("c2", "unschedulable", unschedulable),
    ];
    for (cluster, deployment, expect) in expected {
        let pods = Api::<Pod>::namespaced(env.cluster(cluster).client(), env.namespace());
        let failure = wait_for(&pods, deployment, expect)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{deployment} in {cluster}: {error:#}\n(does each KWOK run the stages of this \
                     checkout's sandbox/kwok-stages.yaml? sandbox/sandbox restart-kwok)"
                )
            });
        if let Expect::Failing {
            message, container, ..
        } = expect
        {
            let failure = failure.expect("a failing pod has a failure");
            assert!(
                failure.message.contains(message),
                "{deployment} in {cluster}: {failure:?}"
            );
            assert_eq!(
                failure.container.as_deref(),
                container,
                "{deployment} in {cluster}"
            );
            assert!(
                failure.since.is_some(),
                "{deployment} in {cluster}: {failure:?}"
            );
            let restarts = if failure.reason == "CrashLoopBackOff" {
                1..=u32::MAX
            } else {
                0..=0
            };
            assert!(
                restarts.contains(&failure.restarts),
                "{deployment} in {cluster}: {failure:?}"
            );
        }
    }

    // The crash loop goes on: the containers crash again every 10 to 20 s.
    let pods = Api::<Pod>::namespaced(env.cluster("c1").client(), env.namespace());
    wait_until(
        "crash-loop's container restarts a second time in c1",
        DEFAULT_TIMEOUT,
        || async {
            let failure = pod_failure(&pods, "crash-loop").await?;
            Ok(failure
                .filter(|failure| failure.reason == "CrashLoopBackOff" && failure.restarts >= 2))
        },
    )
    .await
    .unwrap();

    only_the_ready_pod_is_served(env.cluster("c1"), env.namespace()).await;
}

/// A Service selects every pod of the test, yet in c1 only `only-in-c2`'s pod, the Ready one,
/// answers requests through the gateway.
async fn only_the_ready_pod_is_served(cluster: &TestCluster, namespace: &str) {
    let client = cluster.client();
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": GROUP},
        "spec": {"selector": {"group": GROUP}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let gateway = Gateway::of(cluster).unwrap();
    let host = format!("{namespace}.example.test");
    create_route(
        &client,
        namespace,
        gateway.route(GROUP, &host, &[(GROUP, 1)]),
    )
    .await;
    wait_route_accepted(&client, namespace, GROUP)
        .await
        .unwrap();
    let request = Request::new(&host);
    let ready = ready_pod(&client, namespace, "only-in-c2").await;
    wait_until_served(&gateway, &request, "only-in-c2's pod", |served| {
        served.pod == ready
    })
    .await
    .unwrap();

    let tally = gateway.send(&request, 100).await;
    assert!(tally.failures.is_empty(), "{tally}");
    assert_eq!(
        tally.per_pod,
        BTreeMap::from([(format!("{namespace}/{ready}"), 100)]),
        "{tally}"
    );
}

/// Waits until the one pod of `deployment` is as `expect` says; its failure, if any.
async fn wait_for(
    pods: &Api<Pod>,
    deployment: &str,
    expect: Expect,
) -> anyhow::Result<Option<PodFailure>> {
    wait_until(
        format!("{deployment}'s pod {expect}"),
        DEFAULT_TIMEOUT,
        || async {
            let Some(pod) = one_pod(pods, deployment).await? else {
                return Ok(None);
            };
            let failure = failure(&pod, Timestamp::now());
            let met = match expect {
                Expect::Ready => failure.is_none() && is_ready(&pod),
                Expect::Failing { reason, .. } => {
                    failure.as_ref().is_some_and(|found| found.reason == reason)
                }
            };
            Ok(met.then_some(failure))
        },
    )
    .await
}

async fn pod_failure(pods: &Api<Pod>, deployment: &str) -> anyhow::Result<Option<PodFailure>> {
    Ok(one_pod(pods, deployment)
        .await?
        .and_then(|pod| failure(&pod, Timestamp::now())))
}

/// The pod of a one-replica Deployment, once there is exactly one.
async fn one_pod(pods: &Api<Pod>, deployment: &str) -> anyhow::Result<Option<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={deployment}")))
        .await
        .with_context(|| format!("listing the pods of {deployment}"))?;
    let mut pods = list.items;
    Ok((pods.len() == 1).then(|| pods.remove(0)))
}

async fn ready_pod(client: &Client, namespace: &str, deployment: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod = one_pod(&pods, deployment)
        .await
        .unwrap()
        .expect("the Ready pod is there");
    assert!(is_ready(&pod), "{deployment}'s pod is Ready");
    pod.name_any()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

fn fail(mode: &str) -> Value {
    json!({"sandbox.prism.dev/fail": mode})
}

/// A one-replica Deployment `name` whose pod template carries `annotations`; its container
/// `app` has a readiness probe.
fn deployment(name: &str, annotations: &Value, node_selector: Option<&Value>) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "group": GROUP}, "annotations": annotations},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [{
                        "name": "app",
                        "image": format!("example.test/{name}:v1"),
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}}
                    }]
                }
            }
        }
    }))
    .unwrap()
}

async fn create_route(client: &Client, namespace: &str, route: Value) {
    let route: DynamicObject = serde_json::from_value(route).unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &http_route_resource())
        .create(&PostParams::default(), &route)
        .await
        .unwrap();
}
