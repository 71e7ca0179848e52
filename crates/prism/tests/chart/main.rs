//! The Helm chart `deploy/helm/prism`: it lints, what is derived from it and from the code is
//! committed fresh (the manifests, its CRDs, its RBAC rules, the documented rights), it renders
//! the controller locked down, and, installed on the sandbox's management cluster, the controller
//! with the chart's ServiceAccount alone rolls an application out and is refused the rest; so is
//! the HTTP server with its own ([`server`]).

mod server;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release};
use prism_controller::application::release_name;
use prism_controller::touches::{Rule, management, server as server_touches};
use prism_testkit::fixtures::web_in_two_steps;
use prism_testkit::helm::{helm, repository};
use prism_testkit::identity::{service_account_client, service_account_config};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, spawn_for_test, wait_until};
use serde_json::{Value, json};

const CHART: &str = "deploy/helm/prism";
const REGENERATE: &str = "regenerate with\n    scripts/render-manifests.sh";

/// `helm template` of the chart as release `release` in `namespace`, with `values` (`--set`).
async fn render(release: &str, namespace: &str, values: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for value in values {
        args.extend(["--set", value]);
    }
    helm(&args).await.unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

/// The object of `kind` named `name`: the controller's and the server's share kinds.
fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    documents
        .iter()
        .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn committed(path: &str) -> String {
    std::fs::read_to_string(repository().join(path)).unwrap_or_default()
}

#[tokio::test]
async fn the_chart_passes_helm_lint_with_every_option() {
    helm(&["lint", "--strict", CHART]).await.unwrap();
    helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "createNamespace=true,metrics.serviceMonitor.enabled=true,podDisruptionBudget.enabled=false",
        "--set",
        "controller.watchNamespace=apps,controller.clusterSelector=fleet=eu",
        "--set",
        "server.ingress.enabled=true,server.ingress.tlsSecretName=prism-tls,server.replicas=2",
    ])
    .await
    .unwrap();
    helm(&["lint", "--strict", CHART, "--set", "server.enabled=false"])
        .await
        .unwrap();
}

#[tokio::test]
async fn what_is_derived_from_the_chart_and_the_code_is_committed_fresh() {
    let rendered = render("prism", "prism-system", &["createNamespace=true"]).await;
    assert!(
        committed("deploy/manifests/prism.yaml") == rendered,
        "deploy/manifests/prism.yaml is stale: {REGENERATE}"
    );
    assert!(
        committed(prism::rbac::CHART_FILE) == prism::rbac::render().unwrap(),
        "{} is stale: {REGENERATE}",
        prism::rbac::CHART_FILE
    );
    assert!(
        committed("deploy/helm/prism/crds/prism.dev.yaml") == prism::crds::render().unwrap(),
        "deploy/helm/prism/crds/prism.dev.yaml is stale: {REGENERATE}"
    );
}

/// docs/operations.md's table of the management cluster's rights lists what the controller
/// declares it needs there for itself (the application clusters' are docs/fleet.md's), and what
/// the server declares.
#[test]
fn the_documented_rights_are_the_declared_ones() {
    let docs = committed("docs/operations.md");
    let table = docs
        .split("| role | API group | resource | verbs | why |")
        .nth(1)
        .expect("docs/operations.md has the table of the management cluster's rights");
    let documented: Vec<[String; 4]> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').replace("\"\"", "");
            [
                cells[1].to_owned(),
                unquote(cells[2]),
                unquote(cells[3]),
                cells[4].to_owned(),
            ]
        })
        .collect();
    let row = |role: &str, rule: Rule| {
        [
            role.to_owned(),
            rule.api_group,
            rule.resource,
            rule.verbs.join(", "),
        ]
    };
    let declared: Vec<[String; 4]> = management::own_rules()
        .into_iter()
        .map(|rule| row("ClusterRole", rule))
        .chain(
            management::lease_rules()
                .into_iter()
                .map(|rule| row("Role", rule)),
        )
        .chain(
            server_touches::rules()
                .into_iter()
                .map(|rule| row("server ClusterRole", rule)),
        )
        .collect();
    assert_eq!(documented, declared);
}

#[tokio::test]
async fn the_chart_grants_the_declared_rules_and_runs_the_controller_locked_down() {
    let objects = documents(&render("prism", "prism-system", &[]).await);
    let rules = |kind: &str, name: &str| -> Vec<PolicyRule> {
        serde_json::from_value(find(&objects, kind, name).unwrap()["rules"].clone()).unwrap()
    };
    assert_eq!(rules("ClusterRole", "prism"), prism::rbac::cluster_rules());
    assert_eq!(
        rules("Role", "prism-leader-election"),
        prism::rbac::lease_rules()
    );
    assert!(
        !objects.iter().any(|object| object["kind"] == "Namespace"),
        "helm install makes the namespace"
    );
    assert!(
        !objects
            .iter()
            .any(|object| object["kind"] == "ServiceMonitor"),
        "optional"
    );
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "prism").unwrap()["spec"]["minAvailable"],
        1
    );
    assert_eq!(
        find(&objects, "Service", "prism-metrics").unwrap()["spec"]["ports"][0]["targetPort"],
        "metrics"
    );

    let deployment = find(&objects, "Deployment", "prism").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "prism:0.1.0");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let args = strings(&container["args"]);
    assert_eq!(&args[..2], ["controller", "--metrics-address=0.0.0.0:8080"]);
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| (var["name"].as_str().unwrap(), &var["valueFrom"]))
        .collect();
    assert_eq!(
        env["POD_NAME"]["fieldRef"]["fieldPath"], "metadata.name",
        "the replica's identity in the Lease"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(container["resources"]["limits"]["memory"].is_string());

    let monitored = documents(
        &render(
            "prism",
            "prism-system",
            &["metrics.serviceMonitor.enabled=true"],
        )
        .await,
    );
    let monitor =
        find(&monitored, "ServiceMonitor", "prism").expect("a ServiceMonitor when enabled");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

/// The ClusterRoles and ClusterRoleBindings a test applied (the controller's and the server's of
/// release `release`) outlive its namespace: deleted when the test ends, pass or fail.
struct ClusterScoped {
    release: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let controller = format!("{}-prism", self.release);
        let server = format!("{controller}-server");
        let deleted = std::process::Command::new(repository().join("sandbox/sandbox"))
            .args(["kubectl", "c1", "delete", "clusterrole,clusterrolebinding"])
            .args([&controller, &server])
            .arg("--ignore-not-found")
            .output();
        if !matches!(&deleted, Ok(output) if output.status.success()) {
            eprintln!(
                "could not delete ClusterRoles and ClusterRoleBindings {controller}, {server}: {deleted:?}"
            );
        }
    }
}

/// `yaml` server-side applied to c1 by its admin, as `kubectl apply` of the rendered chart would.
/// The chart, as `helm template` renders it (CRDs included), applied to c1 as release `release`
/// in `namespace`; its cluster-scoped objects are deleted when the returned guard is dropped.
async fn install(env: &TestEnv, release: &str, namespace: &str) -> ClusterScoped {
    let cleanup = ClusterScoped {
        release: release.to_owned(),
    };
    let chart = helm(&[
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ])
    .await
    .unwrap();
    apply_to_c1(env, chart).await;
    cleanup
}

async fn apply_to_c1(env: &TestEnv, yaml: String) {
    let mut child = tokio::process::Command::new(env.sandbox().script())
        .args([
            "kubectl",
            "c1",
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=prism-chart-test",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, yaml.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "kubectl apply of the chart failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn wait_until_complete(releases: &Api<Release>, name: &str) {
    wait_until(
        format!("Release {name} is Complete"),
        DEFAULT_TIMEOUT,
        || async {
            let release = releases.get_opt(name).await?;
            let phase = release
                .as_ref()
                .and_then(|r| r.status.as_ref()?.phase)
                .unwrap_or_default();
            if phase == ReleasePhase::Complete {
                return Ok(Some(()));
            }
            anyhow::bail!("phase {phase:?}, exists: {}", release.is_some())
        },
    )
    .await
    .unwrap();
}

fn forbidden<T: std::fmt::Debug>(what: &str, result: kube::Result<T>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn installed_from_the_chart_prism_rolls_out_under_its_own_least_privilege_identity() {
    let env = TestEnv::new("chart").await;
    let namespace = env.namespace();
    // The release is named after the test's namespace, so that the chart's cluster-wide objects
    // are the test's own.
    let release = namespace;
    let service_account = format!("{release}-prism");
    let _cleanup = install(&env, release, namespace).await;

    let admin = env.cluster("c1").client();
    let controller_client = service_account_client(env.cluster("c1"), namespace, &service_account)
        .await
        .unwrap();
    // No Cluster object selected: the management cluster is the one application cluster, so the
    // chart's rights must cover both roles.
    // Leader election on, as the chart runs it: the Lease rights are proven too.
    let controller_config = service_account_config(env.cluster("c1"), namespace, &service_account)
        .await
        .unwrap();
    let _controller = spawn_for_test(prism_controller::run(
        controller_config,
        prism_controller::Options {
            namespace: Some(namespace.to_owned()),
            cluster_selector: Some(env.cluster_selector()),
            global_namespace: None,
            prometheus_url: None,
            metrics_address: None,
            leader_election: Some(prism_controller::LeaderElection {
                identity: "chart-test".to_owned(),
                namespace: namespace.to_owned(),
                shards: 1,
                lease_duration: std::time::Duration::from_secs(15),
            }),
            helm: None,
        },
    ));

    let apps: Api<Application> = Api::namespaced(admin.clone(), namespace);
    let releases: Api<Release> = Api::namespaced(admin.clone(), namespace);
    let apply = PatchParams::apply("prism-tests");
    apps.patch("web", &apply, &Patch::Apply(web_in_two_steps("web:1")))
        .await
        .unwrap();
    wait_until_complete(&releases, &release_name("web", 1)).await;
    apps.patch("web", &apply, &Patch::Apply(web_in_two_steps("web:2")))
        .await
        .unwrap();
    wait_until_complete(&releases, &release_name("web", 2)).await;

    // The old version deleted, the new one at full capacity: writes of every kind went through.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    wait_until("web-1's Deployment is deleted", DEFAULT_TIMEOUT, || async {
        Ok(deployments
            .get_opt(&release_name("web", 1))
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(admin.clone(), namespace);
    wait_until(
        "the controller's Event of web-2's completion is published",
        DEFAULT_TIMEOUT,
        || async {
            let events = events.list(&ListParams::default()).await?;
            Ok(events
                .items
                .iter()
                .any(|event| {
                    event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web-2")
                        && event.reason.as_deref() == Some("Complete")
                })
                .then_some(()))
        },
    )
    .await
    .unwrap();

    refuses_what_the_chart_does_not_grant(&controller_client, namespace).await;
}

/// Leader election's Lease in the release's namespace is allowed; Secrets listed, Secrets of
/// another namespace, Nodes deleted and Leases elsewhere are not.
async fn refuses_what_the_chart_does_not_grant(client: &Client, namespace: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "prism-controller"},
        "spec": {"holderIdentity": "test", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    leases.get("prism-controller").await.unwrap();
    leases
        .patch(
            "prism-controller",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "other"}})),
        )
        .await
        .unwrap();

    let dry_run_create = PostParams {
        dry_run: true,
        field_manager: None,
    };
    let dry_run_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    forbidden(
        "a Lease outside the release's namespace",
        Api::<Lease>::namespaced(client.clone(), "default")
            .create(&dry_run_create, &lease)
            .await,
    );
    forbidden(
        "listing Secrets (a Cluster's is read by name)",
        Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "listing kube-system's Secrets",
        Api::<Secret>::namespaced(client.clone(), "kube-system")
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "deleting a Node",
        Api::<Node>::all(client.clone())
            .delete("c1-node-1", &dry_run_delete)
            .await,
    );
}
