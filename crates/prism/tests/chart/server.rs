//! The chart's HTTP server (`prism serve`): rendered apart from the controller and locked down,
//! its ClusterRole enough for every read and action prism-ops takes, and, run in-process with the
//! chart's ServiceAccount alone, it serves callers as their own rights allow and is refused the
//! rest.

use k8s_openapi::api::core::v1::{Event, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prism_api::labels::{APP_LABEL, FIELD_MANAGER};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release};
use prism_ops::actions::Action;
use prism_testkit::fixtures::web_template;
use prism_testkit::identity::{service_account_client, service_account_token};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, spawn_for_test, wait_until};
use serde_json::{Value, json};

use super::{documents, find, forbidden, render, strings};

#[tokio::test]
async fn the_chart_runs_the_server_apart_from_the_controller_and_locked_down() {
    let objects = documents(&render("prism", "prism-system", &[]).await);
    let rules: Vec<PolicyRule> = serde_json::from_value(
        find(&objects, "ClusterRole", "prism-server").unwrap()["rules"].clone(),
    )
    .unwrap();
    assert_eq!(rules, prism::rbac::server_rules());
    let binding = find(&objects, "ClusterRoleBinding", "prism-server").unwrap();
    assert_eq!(binding["subjects"][0]["name"], "prism-server");
    assert_eq!(binding["roleRef"]["name"], "prism-server");
    assert!(find(&objects, "ServiceAccount", "prism-server").is_some());

    let deployment = find(&objects, "Deployment", "prism-server").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "prism-server");
    // The same hardening as the controller's pod.
    let controller = &find(&objects, "Deployment", "prism").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"], controller["securityContext"]);
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        controller["containers"][0]["securityContext"]
    );
    assert_eq!(
        strings(&container["args"]),
        ["serve", "--address=0.0.0.0:8080", "--log-format=json"]
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert_eq!(container["resources"]["requests"]["memory"], "128Mi");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");

    // Neither Deployment selects the other's pods (nor does the controller's Service or
    // PodDisruptionBudget, which use its selector).
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(key, value)| labels[key] == *value)
    };
    let server_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let controller_deployment = find(&objects, "Deployment", "prism").unwrap();
    let controller_labels = &controller_deployment["spec"]["template"]["metadata"]["labels"];
    assert!(!selects(
        &controller_deployment["spec"]["selector"]["matchLabels"],
        server_labels
    ));
    assert!(!selects(
        &deployment["spec"]["selector"]["matchLabels"],
        controller_labels
    ));
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        server_labels
    ));

    let service = find(&objects, "Service", "prism-server").unwrap();
    assert_eq!(
        service["spec"]["ports"][0],
        json!({"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"})
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert!(
        !objects.iter().any(|object| object["kind"] == "Ingress"),
        "optional"
    );

    let exposed = documents(
        &render(
            "prism",
            "prism-system",
            &["server.ingress.enabled=true,server.ingress.host=prism.example.org,server.ingress.tlsSecretName=prism-tls"],
        )
        .await,
    );
    let ingress = find(&exposed, "Ingress", "prism-server").expect("an Ingress when enabled");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "prism-tls");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "prism.example.org");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "prism-server", "port": {"name": "http"}})
    );

    let without = documents(&render("prism", "prism-system", &["server.enabled=false"]).await);
    assert!(
        !without
            .iter()
            .any(|object| object["metadata"]["name"] == "prism-server"),
        "server.enabled=false renders no server"
    );
}

/// The server runs promote, abort and rollback with its own identity (after the caller's
/// SubjectAccessReview): its ClusterRole must allow every request prism-ops makes for them.
#[test]
fn the_servers_role_allows_every_request_of_the_actions() {
    let rules = prism::rbac::server_rules();
    for action in Action::ALL {
        for (verb, resource) in action.needs() {
            assert!(
                rules.iter().any(|rule| {
                    rule.api_groups.as_deref() == Some(&["prism.dev".to_owned()][..])
                        && rule.resources.as_deref() == Some(&[(*resource).to_owned()][..])
                        && rule.verbs.iter().any(|v| v == verb)
                }),
                "{action:?} needs {verb} {resource}"
            );
        }
    }
}

/// A ServiceAccount `name` of `namespace`, granted `rules` there by a Role, and its token.
async fn caller(env: &TestEnv, name: &str, rules: Value) -> String {
    let c1 = env.cluster("c1");
    let namespace = env.namespace();
    let client = c1.client();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client, namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    service_account_token(c1, namespace, name).await.unwrap()
}

/// Application `web` running `image`, whose first step waits for a person.
fn gated_web(image: &str) -> Application {
    serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "template": web_template(image, 2),
            "strategy": {"steps": [
                {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
                 "gate": {"manual": true}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
                 "traffic": {"contender": 100}}
            ]},
        },
    }))
    .unwrap()
}

async fn wait_for(releases: &Api<Release>, name: &str, phase: ReleasePhase, step: Option<u32>) {
    prism_testkit::wait_for_release(releases, name, phase, step)
        .await
        .unwrap();
}

/// A request to the server as one caller: the status and the JSON body.
async fn call(request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_server_with_the_charts_identity_serves_callers_and_is_refused_the_rest() {
    let env = TestEnv::new("chart-server").await;
    let namespace = env.namespace();
    let release = namespace;
    let _cleanup = super::install(&env, release, namespace).await;
    let server_account = format!("{release}-prism-server");

    // The test's controller (the admin's: the chart's is proven by the other test) rolls web
    // out to the gate that a caller's promote opens.
    let admin = env.cluster("c1").client();
    let _controller = spawn_for_test(prism_controller::run(
        env.cluster("c1").config().await,
        prism_controller::Options {
            namespace: Some(namespace.to_owned()),
            cluster_selector: Some(env.cluster_selector()),
            global_namespace: None,
            prometheus_url: None,
            metrics_address: None,
            leader_election: None,
            helm: Some(prism_testkit::charts::helm_path().await.to_path_buf()),
        },
    ));
    let apps: Api<Application> = Api::namespaced(admin.clone(), namespace);
    let releases: Api<Release> = Api::namespaced(admin.clone(), namespace);
    let apply = PatchParams::apply("prism-tests").force();
    apps.patch("web", &apply, &Patch::Apply(gated_web("web:1")))
        .await
        .unwrap();
    wait_for(&releases, "web-1", ReleasePhase::Complete, None).await;
    apps.patch("web", &apply, &Patch::Apply(gated_web("web:2")))
        .await
        .unwrap();
    wait_for(&releases, "web-2", ReleasePhase::WaitingForCommand, Some(0)).await;

    let server_client = service_account_client(env.cluster("c1"), namespace, &server_account)
        .await
        .unwrap();
    let listener = prism_server::bind("127.0.0.1:0".parse().unwrap(), prism_server::Mode::Serve)
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // The test joins no Cluster: selecting none, the server watches the management cluster's
    // own pods as `local`, with the chart's rights.
    let _server = spawn_for_test(prism_server::serve(
        server_client.clone(),
        prism_server::Options {
            mode: prism_server::Mode::Serve,
            namespace: None,
            cluster_selector: Some(env.cluster_selector()),
        },
        listener,
        std::future::pending(),
    ));

    let read = json!(["get", "list", "watch"]);
    let viewer = caller(
        &env,
        "viewer",
        json!([{"apiGroups": ["prism.dev"], "resources": ["applications", "releases", "rolloutblocks"],
                "verbs": read}]),
    )
    .await;
    let operator = caller(
        &env,
        "operator",
        json!([{"apiGroups": ["prism.dev"], "resources": ["applications", "releases", "rolloutblocks"],
                "verbs": ["get", "list", "watch", "patch"]}]),
    )
    .await;
    let http = reqwest::Client::new();
    let app = format!("{url}/api/v1/namespaces/{namespace}/applications/web");

    // The caches filled under the server's identity: the viewer sees web waiting at its gate.
    wait_until(
        "the server shows web-2 to the viewer",
        DEFAULT_TIMEOUT,
        || async {
            let (status, body) = call(http.get(&app), &viewer).await;
            Ok((status == 200 && body.to_string().contains("web-2")).then_some(()))
        },
    )
    .await
    .unwrap();
    for path in [
        format!("{url}/api/v1/fleet"),
        format!("{app}/releases"),
        format!("{app}/versions"),
        format!("{app}/pods"),
    ] {
        let (status, body) = call(http.get(&path), &viewer).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, fleet) = call(http.get(format!("{url}/api/v1/fleet")), &viewer).await;
    assert!(fleet.to_string().contains("web"), "{fleet}");

    // The server never lends its rights: the viewer may not patch Releases, so its promote is
    // refused although the server's identity could patch them.
    let (status, body) = call(
        http.post(format!("{app}/promote")).json(&json!({})),
        &viewer,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        http.post(format!("{app}/promote")).json(&json!({})),
        &operator,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&releases, "web-2", ReleasePhase::Complete, None).await;

    may_do_what_its_caches_do(&server_client, namespace).await;
    refuses_what_the_server_role_does_not_grant(&server_client, namespace).await;
}

/// What the caches read that the requests above need not have shown: pods cluster-wide (the
/// application cluster `local`, when no Cluster object is), and a Cluster's Secret by name,
/// whichever Cluster objects the shared sandbox holds at the moment.
async fn may_do_what_its_caches_do(client: &Client, namespace: &str) {
    Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels(APP_LABEL))
        .await
        .expect("listing the pods of Prism's applications in every namespace");
    Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("reportingComponent={FIELD_MANAGER}")))
        .await
        .expect("listing Prism's Events in every namespace");
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt("a-clusters-kubeconfig")
        .await
    {
        Ok(None) => {}
        other => panic!("getting a Secret by name: expected allowed and not found, got {other:?}"),
    }
}

/// The server's identity reads and patches, never deletes or creates Prism's objects, and reads
/// Secrets only by name.
async fn refuses_what_the_server_role_does_not_grant(client: &Client, namespace: &str) {
    let dry_run_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    forbidden(
        "deleting an Application",
        Api::<Application>::namespaced(client.clone(), namespace)
            .delete("web", &dry_run_delete)
            .await,
    );
    forbidden(
        "deleting a Release",
        Api::<Release>::namespaced(client.clone(), namespace)
            .delete("web-1", &dry_run_delete)
            .await,
    );
    forbidden(
        "listing the test namespace's Secrets",
        Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "listing Secrets cluster-wide",
        Api::<Secret>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "patching an Application's status",
        Api::<Application>::namespaced(client.clone(), namespace)
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {}})),
            )
            .await,
    );
}
