//! An invalid Application on the sandbox (c1 is the management cluster): either the API server
//! refuses it with a message that names the field, or the controller reports the problem in the
//! `Valid` condition and a Warning Event, and installs nothing: no Release, and no object of the
//! application in any cluster. Fixed, it gets its first Release.

mod common;

use std::collections::BTreeSet;

use anyhow::bail;
use common::invalid::{
    installed, made_for, spec_of, template_with, wait_for_valid, wait_for_warning,
};
use common::{
    application, apply, apply_strategy, canary_steps, setup, valid_condition, wait_for_phase,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{Api, ResourceExt};
use prism_api::Application;
use prism_api::application::ApplicationPhase;
use prism_api::release::ReleasePhase;
use prism_testkit::fixtures::web_template;
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use serde_json::{Value, json};

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
            message: "a template holds one workload (Deployment, StatefulSet or DaemonSet), its Service, ConfigMaps, a HorizontalPodAutoscaler, and ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress and NetworkPolicy objects: create other kinds in each cluster outside the Application",
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
            message: "set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, StatefulSet or DaemonSet, v1 for a Service, ConfigMap or ServiceAccount, autoscaling/v2 for a HorizontalPodAutoscaler, rbac.authorization.k8s.io/v1 for a Role or RoleBinding, policy/v1 for a PodDisruptionBudget, networking.k8s.io/v1 for an Ingress or NetworkPolicy",
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

#[tokio::test]
async fn a_running_application_s_workload_keeps_its_kind() -> anyhow::Result<()> {
    let env = TestEnv::new("invalid-kind-change").await;
    let (client, apps, releases, _controller) = setup(&env).await?;
    apply(
        &apps,
        &application("web", spec_of(web_template("web:1", 2)))?,
    )
    .await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;
    let status = wait_for_valid(&apps, "web", "web is reconciled", |_| true).await?;
    assert_eq!(status.workload.as_deref(), Some("Deployment/web"));

    // The same application as a StatefulSet: its one StatefulSet would start every pod of the
    // new version at once, past the strategy's steps.
    let stateful = spec_of(template_with(|t| {
        let workload = &mut t["manifests"][0];
        workload["kind"] = json!("StatefulSet");
        workload["spec"]["serviceName"] = json!("web");
    }));
    apply(&apps, &application("web", stateful)?).await?;
    let problem =
        "spec.template: the workload is a StatefulSet where version web-1 runs a Deployment";
    wait_for_valid(&apps, "web", "Valid is False", |c| {
        c.status == "False" && c.reason == "WorkloadChanged" && c.message.contains(problem)
    })
    .await?;
    wait_for_warning(&client, env.namespace(), "web", "WorkloadChanged", problem).await?;
    let names: Vec<String> = releases
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|release| release.name_any())
        .collect();
    assert_eq!(names, ["web-1"], "no Release of the StatefulSet");
    assert_eq!(
        installed::<StatefulSet>(&env, "web").await?,
        BTreeSet::new()
    );
    Ok(())
}

#[tokio::test]
async fn a_reconcile_that_fails_is_a_warning_event_on_the_application_naming_the_fix() {
    let env = TestEnv::new("invalid-reconcile").await;
    let (client, apps, releases, _controller) = setup(&env).await.unwrap();
    let spec = json!({"template": web_template("web:1", 1), "strategy": {"steps": canary_steps()}});
    apply(&apps, &application("web", spec).unwrap())
        .await
        .unwrap();
    common::wait_for_phase(&releases, "web-1", ReleasePhase::Complete)
        .await
        .unwrap();

    // A Release made by hand whose autoscaler has a negative bound: its capacity cannot be
    // read, so no reconcile of the application can get through.
    let mut template = web_template("web:2", 1);
    template["manifests"].as_array_mut().unwrap().push(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": -1,
        },
    }));
    let by_hand: prism_api::Release = serde_json::from_value(json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "web-2", "labels": {"prism.dev/app": "web"}},
        "spec": {
            "application": "web",
            "revision": 2,
            "template": template,
            "strategy": {"steps": canary_steps()},
            "clusters": [{"name": "local", "region": "local"}],
        },
    }))
    .unwrap();
    releases
        .create(&Default::default(), &by_hand)
        .await
        .unwrap();

    let event =
        common::wait_for_event(&client, env.namespace(), "web", "ReconcileFailed", |_| true)
            .await
            .unwrap();
    let note = event.note.unwrap_or_default();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        note.contains("Release web-2")
            && note.contains("(unreadable_capacity)")
            && note.contains("delete Release web-2"),
        "{note}"
    );
}
