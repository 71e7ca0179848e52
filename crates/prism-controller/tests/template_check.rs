//! A template the Kubernetes API server would refuse never gets a Release: the offline checks
//! (`prism_api::validate`, as `prism plan` runs them) give the server's verdict where they can,
//! and what only the server knows is asked of the management cluster's API server (a dry run)
//! before the Release is made; either way the `Valid` condition and a Warning Event name the field.

mod common;

use std::collections::BTreeSet;

use common::invalid::{made_for, spec_of, template_with, wait_for_valid, wait_for_warning};
use common::{application, apply, setup, valid_condition};
use prism_api::application::ApplicationPhase;
use prism_testkit::TestEnv;
use prism_testkit::fixtures::web_template;
use serde_json::{Value, json};

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
                target: None,
                strategy: Default::default(),
                clusters: Vec::new(),
                target_step: None,
                aborted: false,
                side: None,
            },
        );
        let candidates = prism_controller::dry_run::candidates(&app, &release, &[])?;
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
