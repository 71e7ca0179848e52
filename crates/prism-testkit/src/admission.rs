//! An admission policy that refuses writes in one sandbox cluster, as a cluster's own policies
//! would: a ValidatingAdmissionPolicy and its binding, which refuse to create or update one
//! Deployment of the test's namespace, and nothing anywhere else (policies are cluster-wide, and
//! the sandbox is shared with the tests running at the same time). Deleted when dropped.

use std::path::PathBuf;

use anyhow::bail;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::json;

use crate::{DEFAULT_TIMEOUT, TestEnv, wait_until};

const MANAGER: &str = "prism-testkit";

fn api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn policies(client: &Client) -> Api<DynamicObject> {
    api(
        client,
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
    )
}

fn bindings(client: &Client) -> Api<DynamicObject> {
    api(
        client,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    )
}

/// A policy of one sandbox cluster refusing the Deployment of one name in the test's namespace.
pub struct RefusingPolicy {
    client: Client,
    cluster: String,
    namespace: String,
    /// The policy's and its binding's name.
    name: String,
    deployment: String,
    /// `sandbox/sandbox`, to delete the policy when dropped.
    script: PathBuf,
}

impl RefusingPolicy {
    /// In `cluster`, refuses creating or updating the Deployment `deployment` of the test's
    /// namespace, with `message` as the API server's reason. Returns once the API server
    /// enforces it (a dry-run create is refused).
    pub async fn refuse_deployment(
        env: &TestEnv,
        cluster: &str,
        deployment: &str,
        message: &str,
    ) -> anyhow::Result<RefusingPolicy> {
        let client = env.cluster(cluster).client();
        let namespace = env.namespace().to_owned();
        let name = format!("{namespace}-refuse-{deployment}");
        let policy = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
                }]},
                "validations": [{
                    "expression": format!("object.metadata.name != '{deployment}'"),
                    "message": message,
                }],
            },
        });
        let binding = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": namespace,
                }}},
            },
        });
        let params = PatchParams::apply(MANAGER).force();
        let refusing = RefusingPolicy {
            client: client.clone(),
            cluster: cluster.to_owned(),
            namespace,
            name: name.clone(),
            deployment: deployment.to_owned(),
            script: env.sandbox().script().to_owned(),
        };
        policies(&client)
            .patch(&name, &params, &Patch::Apply(&policy))
            .await?;
        bindings(&client)
            .patch(&name, &params, &Patch::Apply(&binding))
            .await?;
        refusing.wait_until_enforced(true).await?;
        Ok(refusing)
    }

    /// Deletes the policy, and returns once the API server no longer enforces it.
    pub async fn lift(&self) -> anyhow::Result<()> {
        let params = DeleteParams::default();
        for api in [bindings(&self.client), policies(&self.client)] {
            match api.delete(&self.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.wait_until_enforced(false).await
    }

    /// Waits until a dry-run create of the Deployment is refused (`enforced`) or accepted.
    async fn wait_until_enforced(&self, enforced: bool) -> anyhow::Result<()> {
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace);
        let probe: Deployment = serde_json::from_value(json!({
            "metadata": {"name": self.deployment},
            "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {"containers": [{"name": "probe", "image": "probe"}]},
                },
            },
        }))?;
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let state = if enforced { "enforced" } else { "lifted" };
        wait_until(
            format!("the policy {} in {} is {state}", self.name, self.cluster),
            DEFAULT_TIMEOUT,
            || async {
                match deployments.create(&params, &probe).await {
                    Ok(_) => Ok((!enforced).then_some(())),
                    // Already there: an update would be checked the same way.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        bail!("the Deployment {} exists", self.deployment)
                    }
                    Err(kube::Error::Api(status)) if status.code == 422 || status.code == 403 => {
                        Ok(enforced.then_some(()))
                    }
                    Err(error) => Err(error.into()),
                }
            },
        )
        .await
    }
}

impl Drop for RefusingPolicy {
    /// Deletes the policy also when the test panicked, through the sandbox's kubectl, since a
    /// drop cannot await.
    fn drop(&mut self) {
        let deleted = std::process::Command::new(&self.script)
            .args(["kubectl", &self.cluster, "delete", "--ignore-not-found"])
            .arg(format!("validatingadmissionpolicybinding/{}", self.name))
            .arg(format!("validatingadmissionpolicy/{}", self.name))
            .output();
        if let Err(error) = deleted {
            eprintln!("could not delete the policy {}: {error}", self.name);
        }
    }
}
