//! `prism cluster join|list|cordon|uncordon` against the sandbox: c1 is the management cluster
//! (the current kubeconfig), c3 joins it. The binary makes least-privilege access on c3 and the
//! Secret and Cluster on c1; joining again changes nothing.

mod run;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use prism_api::Cluster;
use prism_testkit::{DEFAULT_TIMEOUT, Sandbox, TestEnv, wait_until};
use run::{prism, text};
use serde_json::{Value, json};

/// Deletes what joining `name` made that is not shared, when the test ends (also when it
/// fails): the Cluster and its Secret on c1, the ClusterRole and ClusterRoleBinding on c3.
struct Cleanup {
    sandbox: &'static Sandbox,
    name: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sandbox = self.sandbox;
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be shutting down: a thread with a
        // runtime and clients of its own, as TestEnv does.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let c1 = sandbox
                    .cluster("c1")
                    .client()
                    .await
                    .map_err(|e| e.to_string())?;
                let c3 = sandbox
                    .cluster("c3")
                    .client()
                    .await
                    .map_err(|e| e.to_string())?;
                let params = DeleteParams::background();
                let results = [
                    Api::<Cluster>::all(c1.clone())
                        .delete(&name, &params)
                        .await
                        .map(|_| ()),
                    Api::<Secret>::namespaced(c1, "prism-system")
                        .delete(&format!("cluster-{name}"), &params)
                        .await
                        .map(|_| ()),
                    Api::<ClusterRoleBinding>::all(c3.clone())
                        .delete("prism:controller", &params)
                        .await
                        .map(|_| ()),
                    Api::<ClusterRole>::all(c3)
                        .delete("prism:controller", &params)
                        .await
                        .map(|_| ()),
                ];
                for result in results {
                    match result {
                        Ok(()) => {}
                        Err(kube::Error::Api(status)) if status.is_not_found() => {}
                        Err(error) => eprintln!("cluster_join cleanup: {error}"),
                    }
                }
                Ok::<(), String>(())
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("cluster_join cleanup failed: {done:?}");
        }
    }
}

/// The resourceVersion of every object join makes, by kind and name.
async fn versions(c1: &Client, c3: &Client, name: &str) -> BTreeMap<String, String> {
    fn version(object: &impl Resource) -> String {
        object.meta().resource_version.clone().unwrap()
    }
    let mut versions = BTreeMap::new();
    let mut put = |key: &str, value| versions.insert(key.to_owned(), value);
    put(
        "c3 Namespace",
        version(
            &Api::<Namespace>::all(c3.clone())
                .get("prism-system")
                .await
                .unwrap(),
        ),
    );
    put(
        "c3 ServiceAccount",
        version(
            &Api::<ServiceAccount>::namespaced(c3.clone(), "prism-system")
                .get("prism-controller")
                .await
                .unwrap(),
        ),
    );
    put(
        "c3 ClusterRole",
        version(
            &Api::<ClusterRole>::all(c3.clone())
                .get("prism:controller")
                .await
                .unwrap(),
        ),
    );
    put(
        "c3 ClusterRoleBinding",
        version(
            &Api::<ClusterRoleBinding>::all(c3.clone())
                .get("prism:controller")
                .await
                .unwrap(),
        ),
    );
    put(
        "c3 Secret",
        version(
            &Api::<Secret>::namespaced(c3.clone(), "prism-system")
                .get("prism-controller-token")
                .await
                .unwrap(),
        ),
    );
    put(
        "c1 Namespace",
        version(
            &Api::<Namespace>::all(c1.clone())
                .get("prism-system")
                .await
                .unwrap(),
        ),
    );
    put(
        "c1 Secret",
        version(
            &Api::<Secret>::namespaced(c1.clone(), "prism-system")
                .get(&format!("cluster-{name}"))
                .await
                .unwrap(),
        ),
    );
    put(
        "c1 Cluster",
        version(&Api::<Cluster>::all(c1.clone()).get(name).await.unwrap()),
    );
    versions
}

/// A client with the kubeconfig the controller gets for the cluster.
async fn controller_client(kubeconfig: &[u8]) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(std::str::from_utf8(kubeconfig).unwrap()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn join_grants_least_privilege_registers_the_cluster_and_changes_nothing_the_second_time() {
    let env = TestEnv::new("cluster-join").await;
    let c1 = env.cluster("c1").client();
    let c3 = env.cluster("c3").client();
    prism_testkit::install_crds(&c1, prism_api::crds())
        .await
        .unwrap();
    // Clusters are cluster-scoped: a name of this test's own.
    let name = env.namespace().to_owned();
    let _cleanup = Cleanup {
        sandbox: env.sandbox(),
        name: name.clone(),
    };
    let kubeconfig = env.cluster("c3").kubeconfig().to_str().unwrap().to_owned();
    let join = [
        "cluster",
        "join",
        "--kubeconfig",
        &kubeconfig,
        "--name",
        &name,
        "--region",
        "eu-west",
        "--zone",
        "eu-west-a",
        "--capability",
        "ssd",
        "--capability",
        "arm64",
        "--allow-kind",
        "ServiceAccount",
    ];

    let first = prism(&env, &join).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let report = text(&first.stdout);
    assert!(
        report.contains(&format!("management cluster: Cluster {name} created\n")),
        "{report}"
    );
    assert!(
        report.ends_with(&format!(
            "cluster {name} joined: region eu-west, weight 100\n"
        )),
        "{report}"
    );

    // c3: the ServiceAccount, exactly the rights the controller needs, its token.
    let sa = Api::<ServiceAccount>::namespaced(c3.clone(), "prism-system")
        .get("prism-controller")
        .await
        .unwrap();
    assert_eq!(
        sa.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "prism"
    );
    let role = Api::<ClusterRole>::all(c3.clone())
        .get("prism:controller")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(role.rules).unwrap(),
        json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch", "delete", "deletecollection"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch", "delete"]},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create", "patch", "delete", "deletecollection"]},
            {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["list", "watch", "create", "patch", "delete", "deletecollection"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch", "delete", "deletecollection"]},
            // Asked for with --allow-kind; the other kinds templates carry by choice are not granted.
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "patch", "delete", "deletecollection"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "patch", "delete", "deletecollection"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["list", "watch", "create", "patch", "delete", "deletecollection"]},
            {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["grpcroutes"], "verbs": ["list", "watch", "create", "patch", "delete", "deletecollection"]},
            {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices"], "verbs": ["list", "watch", "create", "patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]},
        ])
    );
    let binding = Api::<ClusterRoleBinding>::all(c3.clone())
        .get("prism:controller")
        .await
        .unwrap();
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "prism:controller");
    assert_eq!(
        serde_json::to_value(binding.subjects).unwrap(),
        json!([{"kind": "ServiceAccount", "name": "prism-controller", "namespace": "prism-system"}])
    );
    let token = Api::<Secret>::namespaced(c3.clone(), "prism-system")
        .get("prism-controller-token")
        .await
        .unwrap();
    assert_eq!(
        token.type_.as_deref(),
        Some("kubernetes.io/service-account-token")
    );
    let token_data = token.data.unwrap();
    assert!(!token_data["token"].0.is_empty());

    // c1: the kubeconfig Secret and the Cluster.
    let secret = Api::<Secret>::namespaced(c1.clone(), "prism-system")
        .get(&format!("cluster-{name}"))
        .await
        .unwrap();
    let kubeconfig_bytes = secret.data.unwrap()["kubeconfig"].0.clone();
    let in_secret: Value =
        serde_saphyr::from_str(std::str::from_utf8(&kubeconfig_bytes).unwrap()).unwrap();
    assert_eq!(
        in_secret["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .as_bytes(),
        token_data["token"].0,
        "the Secret's kubeconfig holds the ServiceAccount's token"
    );
    assert_eq!(
        in_secret["clusters"][0]["cluster"]["server"],
        "https://127.10.0.3:6443"
    );
    let cluster = Api::<Cluster>::all(c1.clone()).get(&name).await.unwrap();
    assert_eq!(cluster.spec.region, "eu-west");
    assert_eq!(cluster.spec.zone.as_deref(), Some("eu-west-a"));
    assert_eq!(cluster.spec.capabilities, ["ssd", "arm64"]);
    assert_eq!(cluster.spec.weight, 100);
    assert!(!cluster.spec.unschedulable);
    assert_eq!(
        cluster.spec.credentials.secret_ref.name,
        format!("cluster-{name}")
    );
    assert_eq!(
        cluster.spec.credentials.secret_ref.namespace,
        "prism-system"
    );
    assert_eq!(cluster.spec.credentials.key, "kubeconfig");

    // The Secret's kubeconfig works, with the controller's rights and no more.
    let controller = controller_client(&kubeconfig_bytes).await;
    wait_until(
        "the controller's kubeconfig lists Deployments in every namespace",
        DEFAULT_TIMEOUT,
        || async {
            Ok(Some(
                Api::<Deployment>::all(controller.clone())
                    .list(&ListParams::default().limit(1))
                    .await?,
            ))
        },
    )
    .await
    .unwrap();
    match Api::<Secret>::all(controller.clone())
        .list(&ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the controller may list Secrets: {other:?}"),
    }
    match Api::<Secret>::namespaced(controller.clone(), env.namespace())
        .list(&ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the controller may list Secrets of a namespace: {other:?}"),
    }

    // Joining again changes nothing.
    let before = versions(&c1, &c3, &name).await;
    let second = prism(&env, &join).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let report = text(&second.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 9, "{report}");
    for line in &lines[..8] {
        assert!(line.ends_with(" unchanged"), "{report}");
    }
    assert_eq!(versions(&c1, &c3, &name).await, before, "{report}");

    // list, cordon, uncordon.
    let row = |output: &std::process::Output| -> Value {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        rows.into_iter()
            .find(|row| row["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not listed: {}", text(&output.stdout)))
    };
    let listed = row(&prism(&env, &["cluster", "list", "-o", "json"]).await);
    assert_eq!(listed["region"], "eu-west");
    assert_eq!(listed["weight"], 100);
    assert_eq!(listed["applications"], 0);
    assert_eq!(listed["versions"], 0);
    assert_eq!(listed["unschedulable"], false);
    assert!(
        !listed["state"].as_str().unwrap().contains("Cordoned"),
        "{listed}"
    );

    let cordon = prism(&env, &["cluster", "cordon", &name]).await;
    assert_eq!(cordon.status.code(), Some(0), "{}", text(&cordon.stderr));
    assert!(
        text(&cordon.stdout).starts_with(&format!("cluster {name} cordoned: ")),
        "{}",
        text(&cordon.stdout)
    );
    let clusters = Api::<Cluster>::all(c1.clone());
    assert!(clusters.get(&name).await.unwrap().spec.unschedulable);
    let listed = row(&prism(&env, &["cluster", "list", "-o", "json"]).await);
    assert_eq!(listed["unschedulable"], true);
    assert!(
        listed["state"].as_str().unwrap().ends_with(",Cordoned"),
        "{listed}"
    );
    let table = prism(&env, &["cluster", "list"]).await;
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert!(
        text(&table.stdout).starts_with("NAME "),
        "{}",
        text(&table.stdout)
    );
    assert!(
        text(&table.stdout)
            .lines()
            .any(|line| line.starts_with(&name) && line.contains(",Cordoned")),
        "{}",
        text(&table.stdout)
    );

    // Joining again leaves the cordon alone.
    let third = prism(&env, &join).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));
    assert!(clusters.get(&name).await.unwrap().spec.unschedulable);

    let uncordon = prism(&env, &["cluster", "uncordon", &name]).await;
    assert_eq!(
        uncordon.status.code(),
        Some(0),
        "{}",
        text(&uncordon.stderr)
    );
    assert!(
        text(&uncordon.stdout).starts_with(&format!("cluster {name} uncordoned")),
        "{}",
        text(&uncordon.stdout)
    );
    assert!(!clusters.get(&name).await.unwrap().spec.unschedulable);

    let missing = format!("{name}-missing");
    for command in ["cordon", "uncordon", "drain"] {
        let output = prism(&env, &["cluster", command, &missing]).await;
        assert_eq!(
            output.status.code(),
            Some(3),
            "{command}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(&format!("cluster {missing} not found")),
            "{command}: {}",
            text(&output.stderr)
        );
    }
}

#[tokio::test]
async fn join_names_a_bad_kubeconfig_or_context_and_the_fix() {
    let env = TestEnv::new("cluster-join-errors").await;
    prism_testkit::install_crds(&env.cluster("c1").client(), prism_api::crds())
        .await
        .unwrap();
    let missing = prism(
        &env,
        &[
            "cluster",
            "join",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--name",
            "x",
            "--region",
            "eu-west",
        ],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(
        stderr.starts_with(
            "prism: cannot read the application cluster's kubeconfig /nonexistent/kubeconfig: "
        ) && stderr.contains("--kubeconfig"),
        "{stderr}"
    );

    let kubeconfig = env.cluster("c3").kubeconfig().to_str().unwrap().to_owned();
    let unknown = prism(
        &env,
        &[
            "cluster",
            "join",
            "--kubeconfig",
            &kubeconfig,
            "--context",
            "nope",
            "--name",
            "x",
            "--region",
            "eu-west",
        ],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("has no context \"nope\": pick one with --context (it has: "),
        "{stderr}"
    );

    let unreachable =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("join-unreachable.kubeconfig");
    std::fs::write(
        &unreachable,
        "apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: nobody, user: {token: none}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
",
    )
    .unwrap();
    let output = prism(
        &env,
        &[
            "cluster",
            "join",
            "--kubeconfig",
            unreachable.to_str().unwrap(),
            "--name",
            "x",
            "--region",
            "eu-west",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("prism: cannot reach the application cluster (context \"nowhere\" of ")
            && stderr.contains("at https://127.0.0.1:1"),
        "{stderr}"
    );

    let bad_name = prism(
        &env,
        &[
            "cluster",
            "join",
            "--kubeconfig",
            &kubeconfig,
            "--name",
            "Bad_Name",
            "--region",
            "eu",
        ],
    )
    .await;
    assert_eq!(
        bad_name.status.code(),
        Some(2),
        "{}",
        text(&bad_name.stderr)
    );
}
