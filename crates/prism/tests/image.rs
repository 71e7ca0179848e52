//! The container image of `prism` (`scripts/build-image.sh`) run by podman as the controller of
//! a test's namespace of the sandbox (c1 is the management cluster): host network, read-only
//! root filesystem, user 65532, no capability, the controller's kubeconfig mounted read-only. It
//! carries a rollout from start to end, and its helm renders a chart of the sandbox's repository
//! there, writing only under /tmp, as the controller's renders do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};
use prism_api::Application;
use prism_api::release::{Release, ReleasePhase};
use prism_testkit::fixtures::web_in_two_steps;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};

/// The options every podman command of this test takes, for the machines it runs on:
/// - no systemd journal: events go to a file;
/// - runc, not crun: crun 1.8 (Debian 12) refuses a hybrid cgroup layout, cgroup v1 beside a v2
///   hierarchy that has a controller ("cgroups in hybrid mode not supported, drop all controllers
///   from cgroupv2"). Without systemd, podman manages the cgroups itself (cgroupfs).
const PODMAN: [&str; 2] = ["--events-backend=file", "--runtime=runc"];

/// The name the kubeconfig in the container gives c1's API server: the only name its serving
/// certificate holds. The container's own /etc/hosts points it at c1's address, so the client
/// resolves a name, as it does in a real cluster (`kubernetes.default.svc`), through the static
/// binary's resolver.
const SERVER_NAME: &str = "localhost";

/// The image `scripts/build-image.sh` writes: its OCI layout, tagged with the crate's version.
fn image() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/build-image.sh");
    let mut build = Command::new(&script);
    // What cargo sets for a test, and not for a build from a shell: ring's build script reruns
    // when CARGO_MANIFEST_DIR changes, and with it the whole release build (minutes).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "CARGO"
            || [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "CARGO_TARGET_TMPDIR"
        {
            build.env_remove(&*name);
        }
    }
    let output = build.output().unwrap();
    assert!(
        output.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let layout = root.join("target/image/prism").canonicalize().unwrap();
    // podman names an image it takes from a layout after the layout's path, and a name must be
    // lowercase; the checkout's path need not be (a CI clone's in /tmp/ci.tTCm was not).
    let link = Path::new("/tmp").join(format!("prism-oci-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&layout, &link).unwrap();
    format!("oci:{}:{}", link.display(), env!("CARGO_PKG_VERSION"))
}

/// A podman container, stopped and removed when dropped, with the image podman imported from
/// the layout to run it; when the test panics, its log is printed.
struct Container {
    name: String,
}

impl Container {
    /// `podman run` of `image` as the controller of the test's namespace, with the controller's
    /// identity on c1 (`.sandbox/c1/controller.kubeconfig`) reaching the API server by name.
    fn start_controller(env: &TestEnv, image: &str) -> Container {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join(format!("{}.kubeconfig", env.namespace()));
        std::fs::write(&kubeconfig, controller_kubeconfig(env)).unwrap();
        let hosts = dir.join(format!("{}.hosts", env.namespace()));
        std::fs::write(&hosts, format!("127.10.0.1 {SERVER_NAME}\n")).unwrap();

        let container = Container {
            name: format!("prism-{}", env.namespace()),
        };
        let volume = |from: &Path, to: &str| format!("{}:{to}:ro", from.display());
        podman(
            &[
                "run",
                "--detach",
                "--name",
                &container.name,
                "--network=host",
                "--read-only",
                "--user=65532",
                "--cap-drop=all",
                // Podman's defaults for root (1048576 each) are above the hard limits of a
                // session without CAP_SYS_RESOURCE, as on these machines: "error setting rlimit
                // type 7: operation not permitted". A controller of one namespace needs few.
                "--ulimit=nofile=1024:1024",
                "--ulimit=nproc=1024:1024",
                "--volume",
                &volume(&kubeconfig, "/etc/prism/kubeconfig"),
                "--volume",
                &volume(&hosts, "/etc/hosts"),
                "--env=KUBECONFIG=/etc/prism/kubeconfig",
                "--env=RUST_LOG=info,prism_controller=debug",
                image,
                "controller",
                "--namespace",
                env.namespace(),
                "--cluster-selector",
                &env.cluster_selector(),
            ],
            &container.name,
        );
        container
    }

    /// The user the container's process runs as: its name in the image, and its uid on the host.
    fn process_user(&self) -> String {
        podman(&["top", &self.name, "user", "huser"], &self.name)
    }

    /// `podman exec` of `command` in the container, as its user, with the environment variables
    /// `env` (`NAME=VALUE`) besides the container's; its stdout. The image has no shell.
    fn exec(&self, env: &[&str], command: &[&str]) -> String {
        let env: Vec<String> = env
            .iter()
            .map(|variable| format!("--env={variable}"))
            .collect();
        let mut args = vec!["exec"];
        args.extend(env.iter().map(String::as_str));
        args.push(&self.name);
        args.extend(command);
        podman(&args, &self.name)
    }

    fn log(&self) -> String {
        let output = Command::new("podman")
            .args(PODMAN)
            .args(["logs", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- container {} ----\n{}---- end of {} ----",
                self.name,
                self.log(),
                self.name
            );
        }
        let image = Command::new("podman")
            .args(PODMAN)
            .args(["container", "inspect", "--format={{.Image}}", &self.name])
            .output();
        let _ = Command::new("podman")
            .args(PODMAN)
            .args(["rm", "--force", "--time=10", &self.name])
            .output();
        if let Ok(image) = image {
            let _ = Command::new("podman")
                .args(PODMAN)
                .args(["rmi", String::from_utf8_lossy(&image.stdout).trim()])
                .output();
        }
    }
}

/// `podman ARGS`, which must succeed; its stdout. `container` names what it concerns.
fn podman(args: &[&str], container: &str) -> String {
    let output = Command::new("podman")
        .args(PODMAN)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "podman {} ({container}): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// c1's `controller.kubeconfig` (the identity `prism-controller`), its server named
/// [`SERVER_NAME`] instead of its address.
fn controller_kubeconfig(env: &TestEnv) -> String {
    let path = env
        .cluster("c1")
        .kubeconfig()
        .with_file_name("controller.kubeconfig");
    let mut kubeconfig = Kubeconfig::read_from(&path).unwrap();
    for named in &mut kubeconfig.clusters {
        let cluster = named.cluster.as_mut().unwrap();
        let server = cluster.server.as_deref().unwrap();
        assert!(server.starts_with("https://127.10.0.1:"), "{server}");
        cluster.server = Some(server.replace("127.10.0.1", SERVER_NAME));
    }
    serde_json::to_string(&kubeconfig).unwrap()
}

/// Application `web` running `image` with 2 replicas, in two steps: half, then all.
fn application(image: &str) -> Application {
    serde_json::from_value(web_in_two_steps(image)).unwrap()
}

#[tokio::test]
async fn the_image_runs_as_the_controller_and_carries_a_rollout() {
    let image = tokio::task::spawn_blocking(image).await.unwrap();
    let env = TestEnv::new("image").await;
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds())
        .await
        .unwrap();
    let apps: Api<Application> = Api::namespaced(client.clone(), env.namespace());
    let releases: Api<Release> = Api::namespaced(client.clone(), env.namespace());
    let pods: Api<Pod> = Api::namespaced(client, env.namespace());

    let started = Instant::now();
    let container = Container::start_controller(&env, &image);
    assert_eq!(
        container
            .process_user()
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [["USER", "HUSER"], ["prism", "65532"]]
    );
    // Podman's --read-only keeps /tmp writable (a tmpfs): where the controller's renders write.
    let helm_homes = [
        "HELM_CACHE_HOME=/tmp/helm/cache",
        "HELM_CONFIG_HOME=/tmp/helm/config",
        "HELM_DATA_HOME=/tmp/helm/data",
    ];
    let rendered = container.exec(
        &helm_homes,
        &[
            "/helm",
            "template",
            "web",
            "web",
            "--repo",
            prism_testkit::charts::repository_url().await,
            "--version",
            "1.0.0",
        ],
    );
    assert!(rendered.contains("\nkind: Deployment\n"), "{rendered}");

    let release_complete = |name: &'static str| {
        let releases = releases.clone();
        async move {
            wait_until(
                format!("Release {name} is Complete"),
                DEFAULT_TIMEOUT,
                || async {
                    let status = releases.get_opt(name).await?.and_then(|r| r.status);
                    Ok(status.filter(|s| s.phase == Some(ReleasePhase::Complete)))
                },
            )
            .await
            .unwrap()
        }
    };
    let apply = |image: &'static str| {
        let apps = apps.clone();
        async move {
            apps.patch(
                "web",
                &PatchParams::apply("prism-tests").force(),
                &Patch::Apply(&application(image)),
            )
            .await
            .unwrap();
        }
    };

    apply("web:1").await;
    release_complete("web-1").await;
    eprintln!(
        "from podman run to web-1 Complete: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let rollout = Instant::now();
    apply("web:2").await;
    let status = release_complete("web-2").await;
    eprintln!(
        "web-2 rolled out in {:.1} s",
        rollout.elapsed().as_secs_f64()
    );
    assert_eq!(status.step_name.as_deref(), Some("full"));
    wait_until("only web:2's 2 pods are left", DEFAULT_TIMEOUT, || async {
        let images: Vec<String> = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|pod| {
                let containers = &pod.spec.as_ref().unwrap().containers;
                format!(
                    "{} {}",
                    pod.name_any(),
                    containers[0].image.as_deref().unwrap()
                )
            })
            .collect();
        let web_2 = images.iter().filter(|i| i.ends_with(" web:2")).count();
        if web_2 == 2 && images.len() == 2 {
            Ok(Some(()))
        } else {
            Err(anyhow::anyhow!("pods: {images:?}"))
        }
    })
    .await
    .unwrap();
    assert!(
        !container.log().contains("reconcile failed"),
        "{}",
        container.log()
    );
}
