//! What the server's end-to-end tests share: the controller and the server of a test, callers
//! with their own rights, and an application rolling out across the test's fleet.

#![allow(dead_code)] // Each test binary uses its own part.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release};
use prism_testkit::fleet::TestFleet;
use prism_testkit::identity::service_account_token;
use prism_testkit::{AbortOnDrop, TestEnv};
use serde_json::{Value, json};

pub const TEST_MANAGER: &str = "prism-tests";

/// The test's controller (its namespace, its fleet) and `prism serve` in-process, on a port of
/// its own.
pub struct Served {
    pub client: Client,
    pub apps: Api<Application>,
    pub releases: Api<Release>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub fleet: TestFleet,
    _controller: AbortOnDrop<Result<(), prism_controller::Error>>,
    _server: AbortOnDrop<Result<(), std::io::Error>>,
}

pub async fn serve(env: &TestEnv) -> anyhow::Result<Served> {
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds()).await?;
    let controller = prism_testkit::spawn_for_test(prism_controller::run(
        env.cluster("c1").config().await,
        prism_controller::Options {
            namespace: Some(env.namespace().to_owned()),
            cluster_selector: Some(env.cluster_selector()),
            global_namespace: Some(format!("{}-global", env.namespace())),
            prometheus_url: None,
            metrics_address: None,
            leader_election: None,
            helm: Some(prism_testkit::charts::helm_path().await.to_path_buf()),
        },
    ));
    let fleet = TestFleet::join(env, &client).await?;
    let listener = prism_server::bind("127.0.0.1:0".parse()?, prism_server::Mode::Serve).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = prism_testkit::spawn_for_test(prism_server::serve(
        client.clone(),
        prism_server::Options {
            mode: prism_server::Mode::Serve,
            namespace: None,
            cluster_selector: Some(env.cluster_selector()),
        },
        listener,
        std::future::pending(),
    ));
    Ok(Served {
        apps: Api::namespaced(client.clone(), env.namespace()),
        releases: Api::namespaced(client.clone(), env.namespace()),
        client,
        url,
        fleet,
        _controller: controller,
        _server: server,
    })
}

/// A ServiceAccount `name` in `namespace` of the management cluster, granted `rules` there by a
/// Role (none when empty), and its bearer token.
pub async fn caller(
    env: &TestEnv,
    namespace: &str,
    name: &str,
    rules: Value,
) -> anyhow::Result<String> {
    let c1 = env.cluster("c1");
    let client = c1.client();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &account)
        .await
        .with_context(|| format!("creating ServiceAccount {namespace}/{name}"))?;
    if rules.as_array().is_some_and(|rules| !rules.is_empty()) {
        let role: Role =
            serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules}))?;
        Api::<Role>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &role)
            .await?;
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }))?;
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &binding)
            .await?;
    }
    service_account_token(c1, namespace, name).await
}

/// What `kubectl get` and `prism promote`, `abort` and `rollback` need on Prism's resources.
pub fn operator_rules() -> Value {
    json!([{"apiGroups": ["prism.dev"], "resources": ["applications", "releases", "rolloutblocks"],
            "verbs": ["get", "list", "watch", "patch"]}])
}

/// Reading only.
pub fn viewer_rules() -> Value {
    json!([{"apiGroups": ["prism.dev"], "resources": ["applications", "releases", "rolloutblocks"],
            "verbs": ["get", "list", "watch"]}])
}

/// Application `name`: a Deployment of `replicas` pods running `image` (with the pod
/// `annotations`, e.g. the sandbox's `sandbox.prism.dev/fail-c2`), rolled out in three steps,
/// each waiting for a person but the last.
pub fn application(
    name: &str,
    image: &str,
    replicas: u32,
    annotations: Value,
) -> anyhow::Result<Application> {
    let mut template = prism_testkit::fixtures::web_template(image, replicas);
    template["manifests"][0]["spec"]["template"]["metadata"]["annotations"] = annotations;
    Ok(serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "template": template,
            "strategy": {"steps": [
                {"name": "canary", "capacity": {"contender": "34%"}, "traffic": {"contender": 25},
                 "gate": {"manual": true}},
                {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
                 "gate": {"manual": true}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
                 "traffic": {"contender": 100}}
            ]},
        },
    }))?)
}

pub async fn apply(apps: &Api<Application>, app: &Application) -> anyhow::Result<()> {
    apps.patch(
        &app.name_any(),
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(app),
    )
    .await
    .with_context(|| format!("applying Application {}", app.name_any()))?;
    Ok(())
}

pub use prism_testkit::wait_for_release as wait_for;

/// A client of the server as one caller: their token, or none.
pub struct Http {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Http {
    pub fn new(served: &Served, token: Option<&str>) -> Http {
        Http::at(&served.url, token)
    }

    /// A client of the server at `url`.
    pub fn at(url: &str, token: Option<&str>) -> Http {
        Http {
            base: url.to_owned(),
            token: token.map(str::to_owned),
            http: reqwest::Client::new(),
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET `path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// POST `body` to `path`: the status and the JSON body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .authorized(self.http.post(format!("{}{path}", self.base)))
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The Server-Sent Events of `path`.
    pub async fn stream(&self, path: &str) -> anyhow::Result<Events> {
        let response = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await?
            .error_for_status()?;
        Ok(Events {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        })
    }
}

/// A stream of Server-Sent Events, read one event at a time.
pub struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    /// The next event: its name and its data as JSON (keep-alive comments skipped).
    pub async fn next(&mut self) -> anyhow::Result<(String, Value)> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Ok((name, serde_json::from_str(&data)?));
            }
            let chunk = self.body.next().await.context("the stream ended")??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Lets the ServiceAccount `name` of the test's namespace list the fleet's Clusters, as a
/// platform team would, by a ClusterRole and its binding named after the namespace; deleted by
/// [`forbid_clusters`].
pub async fn allow_clusters(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let client = env.cluster("c1").client();
    let role_name = format!("{}-clusters", env.namespace());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "rules": [{"apiGroups": ["prism.dev"], "resources": ["clusters"], "verbs": ["get", "list", "watch"]}],
    }))?;
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": env.namespace()}],
    }))?;
    Api::<ClusterRoleBinding>::all(client)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}

pub async fn forbid_clusters(env: &TestEnv) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let client = env.cluster("c1").client();
    let name = format!("{}-clusters", env.namespace());
    let params = kube::api::DeleteParams::default();
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&name, &params)
        .await?;
    Api::<ClusterRole>::all(client)
        .delete(&name, &params)
        .await?;
    Ok(())
}

/// web-1 (3 replicas in each cluster) installed, then web-2 rolling out, at its first step.
pub async fn web_waiting_at_its_first_step(served: &Served) -> anyhow::Result<()> {
    rolled_to_first_step(served, |image| application("web", image, 3, json!({}))).await
}

/// `app_of("web:1")` installed, then `app_of("web:2")` rolling out, at its first step.
pub async fn rolled_to_first_step(
    served: &Served,
    app_of: impl Fn(&str) -> anyhow::Result<Application>,
) -> anyhow::Result<()> {
    apply(&served.apps, &app_of("web:1")?).await?;
    wait_for(&served.releases, "web-1", ReleasePhase::Complete, None).await?;
    apply(&served.apps, &app_of("web:2")?).await?;
    wait_for(
        &served.releases,
        "web-2",
        ReleasePhase::WaitingForCommand,
        Some(0),
    )
    .await?;
    Ok(())
}
