//! Requests through the sandbox's data plane: each cluster runs Traefik as its Gateway API
//! implementation, and every Ready pod answers at its pod IP with who served it (see "Data
//! plane" in `sandbox/README.md`).
//!
//! A test routes to its pods with an HTTPRoute whose `parentRefs` name the cluster's
//! [`Gateway`], waits until the route is [accepted](wait_route_accepted) and
//! [served](wait_until_served), then sends requests with [`Gateway::send`] (a fixed number,
//! counted per `prism.dev/release`) or runs a [`LoadLoop`] across a whole rollout, which
//! reports every failed request with its time and reason.
//!
//! ```no_run
//! use prism_testkit::gateway::{Gateway, Request};
//! # async fn example(env: &prism_testkit::TestEnv) -> anyhow::Result<()> {
//! let gateway = Gateway::of(env.cluster("c1"))?;
//! // spec.parentRefs of the test's HTTPRoute:
//! let parent_ref = gateway.parent_ref();
//! // ... create a Deployment, a Service and an HTTPRoute for host "web.example.test" ...
//! let tally = gateway.send(&Request::new("web.example.test"), 2000).await;
//! assert!(tally.failures.is_empty(), "{tally}");
//! let share = tally.share("web-v2");
//! # Ok(()) }
//! ```
//!
//! Requests go to the gateway's loopback address on the host, which a bridge connects to
//! Traefik inside the cluster's network namespace; nothing on the host side ever dials a pod IP.

mod load;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{DEFAULT_TIMEOUT, TestCluster, TestEnv, wait_until};

pub use load::{LoadLoop, LoadReport};

/// How many requests [`Gateway::send`] has under way at once.
pub const SEND_CONCURRENCY: usize = 32;

/// A request times out after this long; a timeout is a failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The label whose value the pod servers answer as the release.
pub const RELEASE_LABEL: &str = "prism.dev/release";

/// The API resource of Gateway API HTTPRoutes, for `Api::<DynamicObject>`.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// One cluster's gateway: where to send requests, and the Gateway object to attach routes to.
#[derive(Debug, Clone)]
pub struct Gateway {
    cluster: String,
    address: String,
    namespace: String,
    name: String,
    client: reqwest::Client,
}

impl Gateway {
    /// The gateway of a cluster, as `sandbox/sandbox up` recorded it
    /// (`.sandbox/cN/gateway-address` and `.sandbox/cN/gateway`).
    pub fn of(cluster: &TestCluster) -> anyhow::Result<Gateway> {
        let dir = cluster
            .kubeconfig()
            .parent()
            .context("the cluster's kubeconfig has no directory")?;
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map(|text| text.trim().to_owned())
                .with_context(|| {
                    format!(
                        "reading {} (written by sandbox/sandbox up)",
                        dir.join(file).display()
                    )
                })
        };
        let address = read("gateway-address")?;
        let object = read("gateway")?;
        let (namespace, name) = object
            .split_once('/')
            .with_context(|| format!("{object:?} is not NAMESPACE/NAME"))?;
        Ok(Gateway {
            cluster: cluster.name().to_owned(),
            address,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            client: http_client()?,
        })
    }

    /// The gateway of every cluster of the test, c1 first.
    pub fn of_each(env: &TestEnv) -> anyhow::Result<Vec<Gateway>> {
        env.clusters().iter().map(Gateway::of).collect()
    }

    /// The sandbox cluster's name (`c1`, ...).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `HOST:PORT` on the host's loopback.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The Gateway object's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Gateway object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An entry of an HTTPRoute's `spec.parentRefs` naming this Gateway.
    pub fn parent_ref(&self) -> Value {
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": self.namespace, "name": self.name})
    }

    /// An HTTPRoute `name` attached to this Gateway: requests for `host` go to the Services of
    /// `backends` (name, weight), on port 80.
    pub fn route(&self, name: &str, host: &str, backends: &[(&str, u32)]) -> Value {
        let backend_refs: Vec<Value> = backends
            .iter()
            .map(|(service, weight)| json!({"name": service, "port": 80, "weight": weight}))
            .collect();
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {
                "parentRefs": [self.parent_ref()],
                "hostnames": [host],
                "rules": [{"backendRefs": backend_refs}]
            }
        })
    }

    /// Sends one request; an answer that is not a pod server's `200` is a failure with its
    /// reason (status and body, or the connection error).
    pub async fn request(&self, request: &Request) -> Result<Served, String> {
        let url = format!("http://{}{}", self.address, request.path);
        let mut builder = self
            .client
            .get(url)
            .header(reqwest::header::HOST, &request.host);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.map_err(|error| error_chain(&error))?;
        let status = response.status();
        let body = response.text().await.map_err(|error| error_chain(&error))?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", body.trim()));
        }
        Served::parse(&body).map_err(|error| format!("HTTP {status} but {error:#}: {body}"))
    }

    /// Sends `count` requests, [`SEND_CONCURRENCY`] at a time, and counts who served them.
    pub async fn send(&self, request: &Request, count: usize) -> Tally {
        let permits = Arc::new(Semaphore::new(SEND_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let (gateway, request) = (self.clone(), request.clone());
            tasks.spawn(async move {
                let outcome = gateway.request(&request).await;
                drop(permit);
                outcome
            });
        }
        let mut tally = Tally::default();
        while let Some(outcome) = tasks.join_next().await {
            tally.add(
                outcome.unwrap_or_else(|error| Err(format!("task failed: {error}"))),
                jiff::Timestamp::now(),
            );
        }
        tally
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    // No proxy: the gateway is on loopback, whatever the environment says.
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(64)
        .build()
        .context("building an HTTP client")
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What to send: `GET http://GATEWAY{path}` with `Host: {host}` and extra headers.
#[derive(Debug, Clone)]
pub struct Request {
    host: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// `GET /` for `host`.
    pub fn new(host: impl Into<String>) -> Request {
        Request {
            host: host.into(),
            path: "/".to_owned(),
            headers: Vec::new(),
        }
    }

    /// The path (and query), starting with `/`.
    pub fn path(mut self, path: impl Into<String>) -> Request {
        self.path = path.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A pod server's answer: who served the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    /// The pod's `prism.dev/release` label, empty when it has none.
    pub release: String,
    pub images: Vec<String>,
    /// The Host header the pod received.
    pub host: String,
    /// The path and query the pod received.
    pub path: String,
}

impl Served {
    fn parse(body: &str) -> anyhow::Result<Served> {
        let answer: Value = serde_json::from_str(body).context("the answer is not JSON")?;
        let text = |field: &str| {
            answer[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the answer has no {field}, so it is not a pod server's"))
        };
        Ok(Served {
            cluster: text("cluster")?,
            namespace: text("namespace")?,
            pod: text("pod")?,
            release: text("release")?,
            images: answer["images"]
                .as_array()
                .map(|images| {
                    images
                        .iter()
                        .filter_map(|image| image.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            host: text("host")?,
            path: text("path")?,
        })
    }
}

/// A failed request: when it ended and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: jiff::Timestamp,
    pub reason: String,
}

/// Who served a batch of requests, and which failed.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Served requests per `prism.dev/release`.
    pub per_release: BTreeMap<String, u64>,
    /// Served requests per `namespace/pod`.
    pub per_pod: BTreeMap<String, u64>,
    /// The clusters that answered (another cluster's, when a route sends to its gateway).
    pub clusters: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
}

impl Tally {
    fn add(&mut self, outcome: Result<Served, String>, at: jiff::Timestamp) {
        match outcome {
            Ok(served) => {
                *self.per_release.entry(served.release).or_default() += 1;
                *self
                    .per_pod
                    .entry(format!("{}/{}", served.namespace, served.pod))
                    .or_default() += 1;
                *self.clusters.entry(served.cluster).or_default() += 1;
            }
            Err(reason) => self.failures.push(Failure { at, reason }),
        }
    }

    /// Requests that a pod served.
    pub fn served(&self) -> u64 {
        self.per_release.values().sum()
    }

    /// All requests, failed ones included.
    pub fn total(&self) -> u64 {
        self.served() + self.failures.len() as u64
    }

    /// The share of all requests (failed ones included) that `release` served, from 0 to 1.
    pub fn share(&self, release: &str) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        self.per_release.get(release).copied().unwrap_or(0) as f64 / total as f64
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests, per release {:?}, per pod {:?}, {} failed",
            self.total(),
            self.per_release,
            self.per_pod,
            self.failures.len()
        )?;
        for failure in self.failures.iter().take(20) {
            write!(f, "\n  {} {}", failure.at, failure.reason)?;
        }
        if self.failures.len() > 20 {
            write!(f, "\n  ... and {} more", self.failures.len() - 20)?;
        }
        Ok(())
    }
}

/// Waits until every parent Gateway of the HTTPRoute reports it `Accepted` and `ResolvedRefs`
/// for its current generation (`observedGeneration`), as Traefik writes them.
pub async fn wait_route_accepted(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &http_route_resource());
    wait_until(
        format!("HTTPRoute {namespace}/{name} is Accepted and ResolvedRefs by every parent"),
        DEFAULT_TIMEOUT,
        || async {
            let route = routes.get(name).await?;
            route_accepted(&route).map(Some)
        },
    )
    .await
}

fn route_accepted(route: &DynamicObject) -> anyhow::Result<()> {
    let generation = route
        .metadata
        .generation
        .context("the route has no generation")?;
    let wanted = route.data["spec"]["parentRefs"]
        .as_array()
        .map_or(0, Vec::len);
    let parents = route.data["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if parents.len() < wanted {
        bail!("{} of {wanted} parents report a status", parents.len());
    }
    for parent in &parents {
        for condition in ["Accepted", "ResolvedRefs"] {
            let found = parent["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == condition);
            let ok = found.is_some_and(|c| {
                c["status"] == "True" && c["observedGeneration"].as_i64() == Some(generation)
            });
            if !ok {
                bail!(
                    "parent {} has {condition} {} (generation {generation})",
                    parent["parentRef"],
                    found.map_or("missing".to_owned(), Value::to_string)
                );
            }
        }
    }
    Ok(())
}

/// Waits until a request through the gateway is served and `check` accepts the answer (say,
/// by a pod of the expected release): Traefik applies a new configuration a moment after it
/// reports a route accepted.
pub async fn wait_until_served(
    gateway: &Gateway,
    request: &Request,
    what: &str,
    check: impl Fn(&Served) -> bool,
) -> anyhow::Result<Served> {
    let check = &check;
    wait_until(
        format!("{} serves {what}", gateway.cluster),
        DEFAULT_TIMEOUT,
        || async move {
            match gateway.request(request).await {
                Ok(served) if check(&served) => Ok(Some(served)),
                Ok(served) => Err(anyhow!("served by {served:?}")),
                Err(reason) => Err(anyhow!(reason)),
            }
        },
    )
    .await
}
