//! A test's own fleet: every sandbox cluster made a Cluster object of the management cluster
//! (c1), labelled for the test's controller (`TestEnv::cluster_selector`). Cluster objects are
//! cluster-scoped, so each test names its own after its namespace.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::{DEFAULT_TIMEOUT, TestEnv, wait_until};

const MANAGER: &str = "prism-testkit";

/// The test's Cluster objects, one per sandbox cluster, in sandbox order (c1, c2, c3).
pub struct TestFleet {
    client: Client,
    names: Vec<String>,
    /// `sandbox/sandbox`, to delete the Clusters when the fleet is dropped.
    script: std::path::PathBuf,
}

fn clusters_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("prism.dev", "v1alpha1", "Cluster");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

impl TestFleet {
    /// Makes every sandbox cluster a Cluster of the test's fleet: a Secret with its kubeconfig
    /// in the test namespace of `client`'s cluster (the management cluster, with Prism's CRDs)
    /// and a Cluster in the sandbox cluster's region. Returns once the controller reports each
    /// Reachable, so that the next Release is scheduled on them.
    pub async fn join(env: &TestEnv, client: &Client) -> anyhow::Result<TestFleet> {
        let namespace = env.namespace();
        let mut names = Vec::new();
        for cluster in env.clusters() {
            let kubeconfig = std::fs::read_to_string(cluster.kubeconfig())?;
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": cluster.name()},
                "stringData": {"kubeconfig": kubeconfig},
            });
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
                .patch(
                    cluster.name(),
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            let name = env.cluster_object_name(cluster.name());
            let object = json!({
                "apiVersion": "prism.dev/v1alpha1",
                "kind": "Cluster",
                "metadata": {"name": name, "labels": env.cluster_labels()},
                "spec": {
                    "region": cluster.region(),
                    "credentials": {"secretRef": {"name": cluster.name(), "namespace": namespace}},
                },
            });
            clusters_api(client)
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&object),
                )
                .await?;
            names.push(name);
        }
        let fleet = TestFleet {
            client: client.clone(),
            names,
            script: env.sandbox().script().to_owned(),
        };
        for name in &fleet.names {
            fleet.wait_for_reachable(name, true).await?;
        }
        Ok(fleet)
    }

    /// The Cluster objects' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Waits until the controller reports the Cluster `name` Reachable (or not).
    pub async fn wait_for_reachable(&self, name: &str, reachable: bool) -> anyhow::Result<()> {
        let clusters = clusters_api(&self.client);
        let wanted = if reachable { "True" } else { "False" };
        wait_until(
            format!("Cluster {name} is reported Reachable={wanted}"),
            DEFAULT_TIMEOUT,
            || async {
                let cluster = clusters.get(name).await?;
                let reported = cluster.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Reachable" && c["status"] == wanted);
                Ok(reported.then_some(()))
            },
        )
        .await
    }
}

impl Drop for TestFleet {
    /// Deletes the Cluster objects, which the namespace's deletion does not take, also when the
    /// test panicked: a leftover Cluster would join the fleet of every controller without a
    /// selector.
    fn drop(&mut self) {
        delete_cluster_objects(&self.script, &self.names);
    }
}

/// Deletes Cluster objects `names` from the management cluster, without waiting: for a test's
/// guards. Blocking, through the sandbox's kubectl (`script`), since a drop cannot await.
pub fn delete_cluster_objects(script: &std::path::Path, names: &[String]) {
    let deleted = std::process::Command::new(script)
        .args([
            "kubectl",
            "c1",
            "delete",
            "clusters.prism.dev",
            "--ignore-not-found",
            "--wait=false",
        ])
        .args(names)
        .output();
    if let Err(error) = deleted {
        eprintln!("could not delete the test's Clusters {names:?}: {error}");
    }
}
