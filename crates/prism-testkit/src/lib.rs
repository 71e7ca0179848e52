//! Test harness for Prism's end-to-end tests.
//!
//! The tests run against a fleet of real Kubernetes clusters (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and KWOK nodes)
//! that `sandbox/sandbox` runs on loopback addresses; see `sandbox/README.md`.
//! The first test of a test binary starts the fleet (building it if needed) or
//! reuses the one that runs; `sandbox/sandbox` serialises concurrent starts
//! with a file lock, so parallel tests and test binaries do not race. The
//! fleet keeps running after the tests; `sandbox/sandbox down` stops it.
//!
//! Every cluster also has a data plane: its Ready pods answer HTTP at their pod IPs, and a
//! Gateway API gateway (Traefik) routes to them; [`gateway`] sends requests through it and
//! counts who served them.
//!
//! A test that needs the fleet panics with the sandbox's output when the fleet
//! cannot start: such a test fails, it is never skipped.
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//! use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
//!
//! #[tokio::test]
//! async fn config_map_exists_everywhere() {
//!     // A fresh namespace in every cluster, deleted when `env` is dropped.
//!     let env = TestEnv::new("config-map").await;
//!     for cluster in env.clusters() {
//!         let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), env.namespace());
//!         wait_until("the root CA config map is published", DEFAULT_TIMEOUT, || async {
//!             Ok(config_maps.get_opt("kube-root-ca.crt").await?)
//!         })
//!         .await
//!         .unwrap();
//!     }
//! }
//! ```

pub mod admission;
pub mod browser;
pub mod charts;
pub mod exporter;
pub mod fixtures;
pub mod fleet;
pub mod gateway;
pub mod helm;
pub mod identity;
pub mod istio;
pub mod prometheus;
pub mod webhook;

use std::collections::hash_map::RandomState;
use std::fmt::Display;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How many clusters the harness asks the sandbox for: c1 (also the
/// management cluster), c2 and c3, spread over two regions.
pub const CLUSTER_COUNT: usize = 3;

/// A deadline that suits most waits on the sandbox: generous, because the
/// machine has two cores shared by several clusters and the compiler.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Label of the Cluster objects of one test: its value is the test's namespace.
pub const TEST_CLUSTER_LABEL: &str = "prism.dev/test-namespace";

/// Label put on every namespace the harness creates.
pub const TEST_NAMESPACE_LABEL: &str = "prism.dev/testkit";

/// One cluster of the sandbox fleet.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    region: String,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// `c1`, `c2`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `topology.kubernetes.io/region` of the cluster's nodes.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Admin kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new admin client. A client belongs to the tokio runtime that made it
    /// (each `#[tokio::test]` has its own), so it is not cached here.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// The admin client's configuration (what `prism_controller::run` takes).
    pub async fn config(&self) -> anyhow::Result<Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("reading {}", self.kubeconfig.display()))?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }
}

/// The running fleet, shared by all tests of a process.
#[derive(Debug)]
pub struct Sandbox {
    script: PathBuf,
    clusters: Vec<Cluster>,
}

static SANDBOX: OnceCell<Result<Sandbox, String>> = OnceCell::const_new();

impl Sandbox {
    /// Starts the fleet (`sandbox/sandbox up`), or reuses the running one.
    ///
    /// # Panics
    /// When the fleet cannot start; the message holds the sandbox's output.
    pub async fn get() -> &'static Sandbox {
        let started = SANDBOX
            .get_or_init(|| async {
                tokio::task::spawn_blocking(Sandbox::start)
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|result| result.map_err(|error| format!("{error:#}")))
            })
            .await;
        match started {
            Ok(sandbox) => sandbox,
            Err(message) => panic!("the Kubernetes sandbox could not start:\n{message}"),
        }
    }

    fn start() -> anyhow::Result<Sandbox> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = repo
            .canonicalize()
            .with_context(|| format!("finding the repository at {}", repo.display()))?;
        let script = repo.join("sandbox/sandbox");
        let output = std::process::Command::new(&script)
            .args(["up", "--clusters", &CLUSTER_COUNT.to_string()])
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        check_output("sandbox/sandbox up", &output)?;
        let clusters = (1..=CLUSTER_COUNT)
            .map(|index| {
                let name = format!("c{index}");
                let dir = repo.join(".sandbox").join(&name);
                let region = std::fs::read_to_string(dir.join("region"))
                    .with_context(|| format!("reading the region of {name}"))?;
                Ok(Cluster {
                    region: region.trim().to_owned(),
                    kubeconfig: dir.join("kubeconfig"),
                    name,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Sandbox { script, clusters })
    }

    /// The clusters c1..c[`CLUSTER_COUNT`], in order.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The cluster with this name.
    ///
    /// # Panics
    /// When there is no such cluster.
    pub fn cluster(&self, name: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|cluster| cluster.name == name)
            .unwrap_or_else(|| panic!("the sandbox has no cluster named {name}"))
    }

    /// Stops the kube-apiserver of one cluster (fault injection). Its other
    /// components keep running.
    pub async fn stop_apiserver(&self, cluster: &str) -> anyhow::Result<()> {
        self.run_script(&["stop-apiserver", cluster]).await
    }

    /// The `sandbox/sandbox` command of this checkout.
    pub fn script(&self) -> &Path {
        &self.script
    }

    /// Starts the kube-apiserver of one cluster again (and any other of its
    /// components that is not running) and waits until the cluster is ready.
    pub async fn start_apiserver(&self, cluster: &str) -> anyhow::Result<()> {
        self.run_script(&["start-apiserver", cluster]).await
    }

    async fn run_script(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = tokio::process::Command::new(&self.script)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.script.display()))?;
        check_output(&format!("sandbox/sandbox {}", args.join(" ")), &output)
    }
}

fn check_output(command: &str, output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{command} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One cluster as a test sees it: the cluster and a client for it.
pub struct TestCluster {
    cluster: &'static Cluster,
    client: Client,
}

impl TestCluster {
    /// See [`Cluster::name`].
    pub fn name(&self) -> &str {
        self.cluster.name()
    }

    /// See [`Cluster::region`].
    pub fn region(&self) -> &str {
        self.cluster.region()
    }

    /// See [`Cluster::kubeconfig`].
    pub fn kubeconfig(&self) -> &Path {
        self.cluster.kubeconfig()
    }

    /// Admin client of the cluster (cloning a client is cheap).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// See [`Cluster::config`].
    ///
    /// # Panics
    /// When the kubeconfig cannot be read.
    pub async fn config(&self) -> Config {
        self.cluster
            .config()
            .await
            .expect("reading the cluster's kubeconfig")
    }
}

/// What one test gets: a namespace of its own, created in every cluster, and
/// a client per cluster. Dropping it deletes the namespaces.
pub struct TestEnv {
    sandbox: &'static Sandbox,
    namespace: String,
    clusters: Vec<TestCluster>,
}

impl TestEnv {
    /// Starts or reuses the fleet and creates a namespace named after the
    /// test (plus a unique suffix) in every cluster. It returns once each
    /// namespace has its `default` service account, so pods can be created.
    ///
    /// # Panics
    /// When the fleet cannot start or a namespace cannot be created.
    pub async fn new(test_name: &str) -> TestEnv {
        let sandbox = Sandbox::get().await;
        let namespace = unique_namespace(test_name);
        let mut clusters = Vec::new();
        for cluster in sandbox.clusters() {
            let client = create_namespace(cluster, &namespace)
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "creating namespace {namespace} in {}: {error:#}",
                        cluster.name()
                    )
                });
            clusters.push(TestCluster { cluster, client });
        }
        TestEnv {
            sandbox,
            namespace,
            clusters,
        }
    }

    /// The test's namespace, the same name in every cluster.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// All clusters, c1 first.
    pub fn clusters(&self) -> &[TestCluster] {
        &self.clusters
    }

    /// The cluster with this name.
    ///
    /// # Panics
    /// When there is no such cluster.
    pub fn cluster(&self, name: &str) -> &TestCluster {
        self.clusters
            .iter()
            .find(|cluster| cluster.name() == name)
            .unwrap_or_else(|| panic!("the sandbox has no cluster named {name}"))
    }

    /// The label selector of the test's own Cluster objects: a test's controller deploys only to
    /// the Clusters labelled with its namespace (`TestEnv::cluster_labels`), so tests that run at
    /// once never see each other's fleet. A test without Clusters has the management cluster alone.
    pub fn cluster_selector(&self) -> String {
        format!("{TEST_CLUSTER_LABEL}={}", self.namespace)
    }

    /// The name of the test's Cluster object for the sandbox cluster `sandbox_cluster`.
    pub fn cluster_object_name(&self, sandbox_cluster: &str) -> String {
        format!("{}-{sandbox_cluster}", self.namespace)
    }

    /// The labels that put a Cluster object in this test's fleet.
    pub fn cluster_labels(&self) -> std::collections::BTreeMap<String, String> {
        [(TEST_CLUSTER_LABEL.to_owned(), self.namespace.clone())].into()
    }

    /// The fleet, for fault injection.
    pub fn sandbox(&self) -> &'static Sandbox {
        self.sandbox
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may already be shutting
        // down (its clients with it), so delete from a thread with a runtime
        // and clients of its own.
        let namespace = self.namespace.clone();
        let clusters = self.sandbox.clusters();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                for cluster in clusters {
                    let deleted = tokio::time::timeout(
                        Duration::from_secs(10),
                        delete_namespace(cluster, &namespace),
                    )
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                    if let Err(error) = deleted {
                        eprintln!(
                            "prism-testkit: deleting namespace {namespace} in {}: {error:#}",
                            cluster.name()
                        );
                    }
                }
            });
            anyhow::Ok(())
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!(
                "prism-testkit: could not delete namespace {}",
                self.namespace
            );
        }
    }
}

/// `<test name>-<random suffix>`, a valid namespace name.
fn unique_namespace(test_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base: String = test_name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let base = base.trim_matches('-');
    // RandomState is seeded randomly per process, so names differ between
    // runs and between test binaries sharing the fleet.
    let suffix = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed)) as u32;
    if base.is_empty() {
        format!("test-{suffix:08x}")
    } else {
        format!("{base}-{suffix:08x}")
    }
}

async fn create_namespace(cluster: &Cluster, namespace: &str) -> anyhow::Result<Client> {
    let client = cluster.client().await?;
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await?;
    // The controller manager adds the service account moments later; pods
    // created before that are rejected by the ServiceAccount admission plugin.
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_until(
        format!("namespace {namespace} has its default service account"),
        DEFAULT_TIMEOUT,
        || async { Ok(service_accounts.get_opt("default").await?) },
    )
    .await?;
    Ok(client)
}

async fn delete_namespace(cluster: &Cluster, namespace: &str) -> anyhow::Result<()> {
    let namespaces = Api::<Namespace>::all(cluster.client().await?);
    namespaces
        .delete(namespace, &DeleteParams::background())
        .await?;
    Ok(())
}

/// Polls `check` until it returns `Ok(Some(value))` and returns the value,
/// or fails once `timeout` has passed.
///
/// `Ok(None)` means "not yet"; so does an error, which explains a timeout if
/// it is the last outcome (return `Err(anyhow!("2 of 3 replicas ready"))` to
/// say how far it got). The error after a timeout names `what` and the last
/// outcome.
pub async fn wait_until<T, F, Fut>(
    what: impl Display,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no check finished");
    loop {
        // A check that hangs (say, on a dead server) must not outlive the deadline; the deadline
        // falling during a check says nothing new, so the previous outcome is the one reported.
        last = match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => String::from("the condition was not met"),
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => format!("{last} (and the check under way at the deadline did not finish)"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}; last: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - Instant::now())).await;
    }
}

/// Applies `crds` (server-side, field manager `prism-tests`) and waits until each is
/// established. CRDs are cluster-wide and stay installed; applying them again is a no-op. The
/// caller passes them (e.g. `prism_api::crds()`), so the harness depends on no Prism crate.
pub async fn install_crds(
    client: &Client,
    crds: impl IntoIterator<Item = CustomResourceDefinition>,
) -> anyhow::Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        api.patch(
            &name,
            &PatchParams::apply("prism-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        wait_until(
            format!("CRD {name} is established"),
            DEFAULT_TIMEOUT,
            || async {
                let conditions = api
                    .get(&name)
                    .await?
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default();
                Ok(conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// A task that lives as long as the test holds this handle: dropping it aborts the task, so a
/// controller started in-process stops when its test ends, even when the test fails.
pub struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

/// Spawns `future` on the test's runtime; see [`AbortOnDrop`].
pub fn spawn_for_test<F>(future: F) -> AbortOnDrop<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    AbortOnDrop(tokio::spawn(future))
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A loopback port that is free now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A new directory `prism-<what>-…` under the system's temporary directory.
pub fn unique_temp_dir(what: &str) -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let suffix = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed)) as u32;
        let dir = base.join(format!("prism-{what}-{}-{suffix:08x}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", dir.display()));
            }
        }
    }
}

/// Waits until the Release `name` is in `phase`, at `step` when one is given.
pub async fn wait_for_release(
    releases: &Api<prism_api::Release>,
    name: &str,
    phase: prism_api::release::ReleasePhase,
    step: Option<u32>,
) -> anyhow::Result<prism_api::Release> {
    wait_until(
        format!("Release {name} {} at step {step:?}", phase.as_str()),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            Ok(release.filter(|release| {
                let status = release.status.as_ref();
                status.and_then(|s| s.phase) == Some(phase)
                    && (step.is_none() || status.and_then(|s| s.step) == step)
            }))
        },
    )
    .await
}
