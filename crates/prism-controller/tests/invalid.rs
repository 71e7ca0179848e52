//! An invalid Application on the sandbox (c1 is the management cluster): either the API server
//! refuses it with a message that names the field, or the controller reports the problem in the
//! `Valid` condition and a Warning Event, and installs nothing: no Release, and no object of the
//! application in any cluster. Fixed, it gets its first Release.

mod common;

use std::collections::BTreeSet;

use anyhow::bail;
use common::{
    application, apply, apply_strategy, canary_steps, setup, valid_condition, wait_for_status,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use prism_api::application::{ApplicationPhase, ApplicationStatus};
use prism_api::conditions::Condition;
use prism_api::{Application, Release};
use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The `web` template (a Deployment and a Service) after `change`.
fn template_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut template = web_template("web:1", 2);
    change(&mut template);
    template
}

/// A spec with `template` rolled out by the canary.
fn spec_of(template: Value) -> Value {
    json!({"template": template, "strategy": {"steps": canary_steps()}})
}

/// Waits until the Application's status describes its current generation and its `Valid`
/// condition passes `check`.
async fn wait_for_valid(
    apps: &Api<Application>,
    name: &str,
    what: &str,
    check: impl Fn(&Condition) -> bool,
) -> anyhow::Result<ApplicationStatus> {
    wait_for_status(apps, name, what, |status| {
        valid_condition(status).is_some_and(&check)
    })
    .await
}

/// The names of the objects of kind `K` labelled as the application's, in the test's namespace
/// of every cluster.
async fn installed<K>(env: &TestEnv, app: &str) -> anyhow::Result<BTreeSet<String>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut names = BTreeSet::new();
    for cluster in env.clusters() {
        let api: Api<K> = Api::namespaced(cluster.client(), env.namespace());
        let list = api
            .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
            .await?;
        names.extend(list.items.iter().map(|o| {
            format!(
                "{} {}/{}",
                K::kind(&Default::default()),
                cluster.name(),
                o.name_any()
            )
        }));
    }
    Ok(names)
}

/// Everything Prism would have made for `app`: its Releases, and its objects in every cluster.
async fn made_for(env: &TestEnv, client: &Client, app: &str) -> anyhow::Result<BTreeSet<String>> {
    let releases: Api<Release> = Api::namespaced(client.clone(), env.namespace());
    let mut made: BTreeSet<String> = releases
        .list(&ListParams::default().labels(&format!("prism.dev/app={app}")))
        .await?
        .items
        .iter()
        .map(|r| format!("Release {}", r.name_any()))
        .collect();
    made.extend(installed::<Deployment>(env, app).await?);
    made.extend(installed::<Service>(env, app).await?);
    made.extend(installed::<ConfigMap>(env, app).await?);
    Ok(made)
}

/// Waits for the Warning Event that reports `problem` about `app`.
async fn wait_for_warning(
    client: &Client,
    namespace: &str,
    app: &str,
    reason: &str,
    problem: &str,
) -> anyhow::Result<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    wait_until(
        format!("a Warning Event {reason} about {app} that says {problem:?}"),
        DEFAULT_TIMEOUT,
        || async {
            let found = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(app)
                        && e.note.as_deref().is_some_and(|note| note.contains(problem))
                });
            Ok(found)
        },
    )
    .await
}

/// An Application the API server refuses, and what its answer must say.
struct Refused {
    name: &'static str,
    spec: Value,
    /// The field the API server names.
    field: &'static str,
    /// What it says is wrong there.
    message: &'static str,
}

#[tokio::test]
async fn the_api_server_refuses_what_the_schema_can_tell_and_names_the_field() -> anyhow::Result<()>
{
    let env = TestEnv::new("invalid-refused").await;
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds()).await?;
    let apps: Api<Application> = Api::namespaced(client.clone(), env.namespace());

    let web = || web_template("web:1", 2);
    let refused = [
        Refused {
            name: "weight-140",
            spec: json!({"template": web(), "strategy": {"steps": [
                {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 140}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}
            ]}}),
            field: "spec.strategy.steps[0].traffic.contender",
            message: "should be less than or equal to 100",
        },
        Refused {
            name: "traffic-without-provider",
            spec: json!({"template": web(), "traffic": {"provider": "none"}, "strategy": {"steps": canary_steps()}}),
            field: "spec.strategy.steps",
            message: "spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider",
        },
        Refused {
            name: "no-strategy",
            spec: json!({"template": web(), "strategy": {}}),
            field: "spec.strategy",
            message: "give exactly one of name (a Strategy in this namespace), clusterStrategyName (a ClusterStrategy) or steps (an inline strategy)",
        },
        Refused {
            name: "no-service",
            spec: spec_of(template_with(|t| {
                t["manifests"].as_array_mut().unwrap().truncate(1)
            })),
            field: "spec.template.manifests",
            message: "a traffic provider shifts the traffic of a Service: add the application's Service to spec.template.manifests, or set spec.traffic.provider: none for a workload that serves no requests",
        },
        Refused {
            name: "selector-switch-without-service",
            spec: json!({
                "template": template_with(|t| t["manifests"].as_array_mut().unwrap().truncate(1)),
                "traffic": {"provider": "serviceSelector"},
                "strategy": {"steps": [{"name": "switch", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}}]},
            }),
            field: "spec.template.manifests",
            message: "a traffic provider shifts the traffic of a Service",
        },
        Refused {
            name: "a-pod",
            spec: spec_of(template_with(|t| {
                t["manifests"].as_array_mut().unwrap().push(json!({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"},
                    "spec": {"containers": [{"name": "debug", "image": "busybox"}]}
                }))
            })),
            field: "spec.template.manifests",
            message: "a template holds only Deployment, Service, ConfigMap and HorizontalPodAutoscaler objects: run pods through the Deployment, and create other objects in each cluster outside the Application",
        },
        Refused {
            name: "a-secret",
            spec: spec_of(template_with(|t| {
                t["manifests"].as_array_mut().unwrap().push(json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                    "stringData": {"password": "hunter2"}
                }))
            })),
            field: "spec.template.manifests",
            message: "a template never inlines a Secret, since every Release keeps a copy of its template: create the Secret in each cluster and reference it by name",
        },
        Refused {
            name: "old-api-version",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["apiVersion"] = json!("apps/v1beta1")
            })),
            field: "spec.template.manifests",
            message: "set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, v1 for a Service or a ConfigMap, autoscaling/v2 for a HorizontalPodAutoscaler",
        },
        Refused {
            name: "unnamed-config-map",
            spec: spec_of(template_with(|t| {
                t["manifests"].as_array_mut().unwrap().push(json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"level": "debug"}
                }))
            })),
            field: "spec.template.manifests[2].metadata.name",
            message: "Required value",
        },
        Refused {
            name: "no-kind",
            spec: spec_of(template_with(|t| {
                t["manifests"][1].as_object_mut().unwrap().remove("kind");
            })),
            field: "spec.template.manifests[1].kind",
            message: "Required value",
        },
    ];

    for case in refused {
        let error = match apply(&apps, &application(case.name, case.spec)?).await {
            Ok(_) => bail!("the API server accepted Application {}", case.name),
            Err(error) => error,
        };
        let Some(kube::Error::Api(status)) = error.downcast_ref::<kube::Error>() else {
            return Err(error);
        };
        assert_eq!(status.code, 422, "{}: {status:?}", case.name);
        assert!(
            status.message.contains(&format!("{}: ", case.field))
                && status.message.contains(case.message),
            "{}: the API server said {:?}",
            case.name,
            status.message
        );
        assert_eq!(apps.get_opt(case.name).await?.map(|a| a.name_any()), None);
    }
    Ok(())
}

/// An Application the API server accepts, and the problem its `Valid` condition must report.
struct Reported {
    name: &'static str,
    spec: Value,
    /// The `Valid` condition's reason, and the Event's.
    reason: &'static str,
    /// `path: message`, as the condition and the Event say it.
    problem: &'static str,
}

#[tokio::test]
async fn what_the_schema_cannot_tell_is_reported_and_nothing_is_installed() -> anyhow::Result<()> {
    let env = TestEnv::new("invalid-reported").await;
    let (client, apps, _releases, _controller) = setup(&env).await?;

    apply_strategy(&client, env.namespace(), "shifts-traffic", canary_steps()).await?;

    let reported = [
        Reported {
            name: "unknown-strategy",
            spec: json!({"template": web_template("web:1", 2), "strategy": {"name": "canary"}}),
            reason: "StrategyNotFound",
            problem: r#"spec.strategy.name: no Strategy named "canary" in the Application's namespace"#,
        },
        Reported {
            name: "strategy-for-another-provider",
            spec: json!({
                "template": template_with(|t| t["manifests"].as_array_mut().unwrap().truncate(1)),
                "traffic": {"provider": "none"},
                "strategy": {"name": "shifts-traffic"},
            }),
            reason: "InvalidSpec",
            problem: "Strategy/shifts-traffic spec.steps[0].traffic: spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider",
        },
        Reported {
            name: "never-complete",
            spec: json!({"template": web_template("web:1", 2), "strategy": {"steps": [
                {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50}}
            ]}}),
            reason: "InvalidSpec",
            problem: r#"spec.strategy.steps[0].capacity.contender: the last step must leave the contender at "100%" capacity in every cluster: set capacity.contender: "100%" on the last step"#,
        },
        Reported {
            name: "a-service-the-template-lacks",
            spec: json!({
                "template": web_template("web:1", 2),
                "traffic": {"provider": "podLabels", "service": "api"},
                "strategy": {"steps": canary_steps()},
            }),
            reason: "InvalidSpec",
            problem: r#"spec.traffic.service: names no Service of spec.template.manifests: choose one of ["web"]"#,
        },
        Reported {
            name: "no-selector",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("selector");
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[0].spec.selector: a Deployment needs spec.selector, the labels that pick its pods: e.g. matchLabels: {app: web}, with the same labels in spec.template.metadata.labels",
        },
        Reported {
            name: "selector-misses-pods",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["selector"] = json!({"matchLabels": {"app": "api"}})
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[0].spec.selector: the Deployment's selector must match its pod template's labels: add the selector's labels to spec.template.metadata.labels",
        },
        Reported {
            name: "replicas-three",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["replicas"] = json!("three")
            })),
            reason: "InvalidSpec",
            problem: r#"spec.template.manifests[0].spec.replicas: invalid type: string "three", expected i32"#,
        },
        Reported {
            name: "replicas-negative",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["replicas"] = json!(-2)
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[0].spec.replicas: replicas is the number of pods to run: 0 or more",
        },
        Reported {
            name: "unknown-field",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] =
                    json!("Always")
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[0].spec.template.spec.containers[0].imagePullPolcy: a Deployment (apps/v1) has no field imagePullPolcy: remove it, or fix its spelling",
        },
        Reported {
            name: "containers-five",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["template"]["spec"]["containers"] = json!(5)
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[0].spec.template.spec.containers: invalid type: integer `5`, expected a sequence",
        },
        Reported {
            name: "ports-x",
            spec: spec_of(template_with(|t| {
                t["manifests"][1]["spec"]["ports"] = json!("x")
            })),
            reason: "InvalidSpec",
            problem: r#"spec.template.manifests[1].spec.ports: invalid type: string "x", expected a sequence"#,
        },
        Reported {
            name: "config-map-data-list",
            spec: spec_of(template_with(|t| {
                t["manifests"].as_array_mut().unwrap().push(json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": [1]
                }))
            })),
            reason: "InvalidSpec",
            problem: "spec.template.manifests[2].data: invalid type: sequence, expected a map",
        },
    ];

    for case in &reported {
        apply(&apps, &application(case.name, case.spec.clone())?).await?;
    }
    for case in &reported {
        let status =
            wait_for_valid(&apps, case.name, "Valid is False", |c| c.status == "False").await?;
        let valid = valid_condition(&status).unwrap();
        assert_eq!(valid.reason, case.reason, "{}: {valid:?}", case.name);
        assert!(
            valid.message.contains(case.problem),
            "{}: the condition says {:?}",
            case.name,
            valid.message
        );
        wait_for_warning(
            &client,
            env.namespace(),
            case.name,
            case.reason,
            case.problem,
        )
        .await?;
    }
    // Every Application has been reconciled and reported: nothing was made for any of them.
    for case in &reported {
        assert_eq!(
            made_for(&env, &client, case.name).await?,
            BTreeSet::new(),
            "{}",
            case.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_invalid_application_once_fixed_gets_its_first_release() -> anyhow::Result<()> {
    let env = TestEnv::new("invalid-fixed").await;
    let (client, apps, releases, _controller) = setup(&env).await?;

    let broken = spec_of(template_with(|t| {
        t["manifests"][0]["spec"]["replicas"] = json!("three")
    }));
    apply(&apps, &application("web", broken)?).await?;
    let problem =
        r#"spec.template.manifests[0].spec.replicas: invalid type: string "three", expected i32"#;
    wait_for_valid(&apps, "web", "Valid is False", |c| {
        c.status == "False" && c.message.contains(problem)
    })
    .await?;
    wait_for_warning(&client, env.namespace(), "web", "InvalidSpec", problem).await?;
    assert_eq!(made_for(&env, &client, "web").await?, BTreeSet::new());

    let fixed = spec_of(web_template("web:1", 2));
    let applied = apply(&apps, &application("web", fixed)?).await?;
    let status = wait_for_valid(&apps, "web", "Valid is True", |c| c.status == "True").await?;
    assert_eq!(status.current_revision, Some(1));
    // Rolling out, or already complete: a first release goes straight to its last step.
    let named = [status.contender.as_deref(), status.incumbent.as_deref()];
    assert!(named.contains(&Some("web-1")), "{status:?}");
    assert_ne!(status.phase, Some(ApplicationPhase::Invalid));
    let release = releases.get("web-1").await?;
    assert_eq!(release.spec.template, applied.spec.template);
    // What was not installed before is now: the checks above would have seen it.
    wait_until(
        "the fixed Application's Deployment is installed",
        DEFAULT_TIMEOUT,
        || async {
            let deployments = installed::<Deployment>(&env, "web").await?;
            Ok((!deployments.is_empty()).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// A template that passes every offline check, and what the API server must refuse in it.
struct RefusedByServer {
    name: &'static str,
    spec: Value,
    /// The field of the object as written that the API server names.
    field: &'static str,
}

#[tokio::test]
async fn a_template_only_the_api_server_refuses_is_reported_before_any_release()
-> anyhow::Result<()> {
    let env = TestEnv::new("invalid-server").await;
    let (client, apps, releases, _controller) = setup(&env).await?;

    let cases = [
        RefusedByServer {
            name: "requests-above-limits",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["template"]["spec"]["containers"][0]["resources"] =
                    json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})
            })),
            field: "spec.template.spec.containers[0].resources.requests",
        },
        RefusedByServer {
            name: "mount-without-volume",
            spec: spec_of(template_with(|t| {
                t["manifests"][0]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name": "conf", "mountPath": "/etc/web"}])
            })),
            field: "spec.template.spec.containers[0].volumeMounts[0].name",
        },
    ];
    for case in &cases {
        let app = application(case.name, case.spec.clone())?;
        assert_eq!(
            prism_api::validate::application(&app.spec),
            Ok(()),
            "{}: only the API server can tell",
            case.name
        );
        apply(&apps, &app).await?;
    }
    let source = "spec.template.manifests[0] (Deployment web): the API server refuses it: ";
    for case in &cases {
        let status =
            wait_for_valid(&apps, case.name, "Valid is False", |c| c.status == "False").await?;
        let valid = valid_condition(&status).unwrap();
        assert_eq!(valid.reason, "InvalidTemplate", "{}: {valid:?}", case.name);
        assert!(
            valid.message.contains(source) && valid.message.contains(case.field),
            "{}: the condition says {:?}",
            case.name,
            valid.message
        );
        assert_eq!(status.phase, Some(ApplicationPhase::Invalid));
        let event = wait_for_warning(
            &client,
            env.namespace(),
            case.name,
            "InvalidTemplate",
            source,
        )
        .await?;
        assert!(
            event
                .note
                .as_deref()
                .unwrap_or_default()
                .contains(case.field),
            "{}: {event:?}",
            case.name
        );
    }
    for case in &cases {
        assert_eq!(
            made_for(&env, &client, case.name).await?,
            BTreeSet::new(),
            "{}",
            case.name
        );
    }

    // Fixed, the same Application gets its first Release, and its template is on record as
    // accepted by the API server.
    let fixed = application(cases[0].name, spec_of(web_template("web:1", 2)))?;
    apply(&apps, &fixed).await?;
    let status = wait_for_valid(&apps, cases[0].name, "Valid is True", |c| {
        c.status == "True"
    })
    .await?;
    assert_eq!(
        valid_condition(&status).unwrap().message,
        prism_controller::dry_run::ACCEPTED
    );
    assert_eq!(status.current_revision, Some(1));
    releases
        .get(&format!("{}-1", cases[0].name))
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

#[tokio::test]
async fn the_offline_checks_give_the_api_servers_verdict_where_they_can() -> anyhow::Result<()> {
    let env = TestEnv::new("invalid-agree").await;
    let client = env.cluster("c1").client();
    prism_testkit::install_crds(&client, prism_api::crds()).await?;

    fn container(template: &mut Value) -> &mut Value {
        &mut template["manifests"][0]["spec"]["template"]["spec"]["containers"][0]
    }
    // Fields the providers write as the template has them (not the replicas, autoscaler bounds,
    // names or Service selector, which they set themselves).
    let cases: Vec<(&str, Value)> = vec![
        ("valid", web_template("web:1", 2)),
        (
            "unknown-field",
            template_with(|t| container(t)["imagePullPolcy"] = json!("Always")),
        ),
        (
            "port-out-of-range",
            template_with(|t| container(t)["ports"] = json!([{"containerPort": 80800}])),
        ),
        (
            "protocol",
            template_with(|t| {
                container(t)["ports"] = json!([{"containerPort": 80, "protocol": "HTTP"}])
            }),
        ),
        (
            "container-name",
            template_with(|t| container(t)["name"] = json!("Web")),
        ),
        (
            "no-image",
            template_with(|t| {
                container(t).as_object_mut().unwrap().remove("image");
            }),
        ),
        (
            "label-value",
            template_with(|t| {
                t["manifests"][0]["spec"]["template"]["metadata"]["labels"]["team"] = json!("-core")
            }),
        ),
        (
            "selector-misses-pods",
            template_with(|t| {
                t["manifests"][0]["spec"]["selector"]["matchLabels"]["tier"] = json!("front")
            }),
        ),
        (
            "service-ports-unnamed",
            template_with(|t| {
                t["manifests"][1]["spec"]["ports"] = json!([{"port": 80}, {"port": 443}])
            }),
        ),
        (
            "service-port-zero",
            template_with(|t| t["manifests"][1]["spec"]["ports"] = json!([{"port": 0}])),
        ),
        (
            "config-map-key",
            template_with(|t| {
                t["manifests"].as_array_mut().unwrap().push(json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                    "data": {"a/b": "1"}
                }))
            }),
        ),
    ];
    let mut disagreements = Vec::new();
    for (name, template) in cases {
        let mut app = application(name, spec_of(template))?;
        app.metadata.namespace = Some(env.namespace().to_owned());
        let offline = prism_api::validate::application(&app.spec).err();
        let release = prism_api::Release::new(
            &format!("{name}-1"),
            prism_api::ReleaseSpec {
                application: name.into(),
                revision: 1,
                template: app.spec.template.clone(),
                strategy: Default::default(),
                clusters: Vec::new(),
                target_step: None,
                aborted: false,
            },
        );
        let candidates = prism_controller::dry_run::candidates(&app, &release)?;
        let server =
            prism_controller::dry_run::check(&client, env.namespace(), &candidates).await?;
        if offline.is_some() != server.is_err() {
            disagreements.push(format!(
                "{name}: offline {offline:?}, the API server {server:?}"
            ));
        }
    }
    assert_eq!(disagreements, Vec::<String>::new());
    Ok(())
}
