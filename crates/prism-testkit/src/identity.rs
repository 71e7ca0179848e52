//! Clients that act as someone other than the sandbox's admin: a ServiceAccount, by a token
//! from the TokenRequest API, so a test proves what that identity's RBAC allows and refuses.

use anyhow::Context;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::TestCluster;

/// How long the token is valid: longer than any test.
const TOKEN_SECONDS: i64 = 3600;

/// A client of `cluster` authenticated as the ServiceAccount `namespace/name` alone (no client
/// certificate of the admin's), with a token the admin requests for it.
pub async fn service_account_client(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Client> {
    Ok(Client::try_from(
        service_account_config(cluster, namespace, name).await?,
    )?)
}

/// The configuration of [`service_account_client`] (what `prism_controller::run` takes).
pub async fn service_account_config(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Config> {
    let token = service_account_token(cluster, namespace, name).await?;
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig())
        .with_context(|| format!("reading {}", cluster.kubeconfig().display()))?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))?;
    Ok(config)
}

/// A bearer token of the ServiceAccount `namespace/name`, which `cluster`'s TokenReview accepts.
pub async fn service_account_token(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // None: the API server's own audience.
            audiences: None,
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(cluster.client(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?
        .status
        .and_then(|status| status.token)
        .context("a TokenRequest answered without a token")
}
