//! `prism status`, `promote`, `abort` and `rollback` against the sandbox (c1 is the management
//! cluster). Most tests run no controller: they play its part by writing the Releases' status
//! themselves, so that every phase and message the commands read is the test's choice. The last
//! ones drive real rollouts, with the controller running, through the commands alone.

mod run;

use std::collections::BTreeMap;
use std::process::Stdio;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release, ReleaseSpec};
use prism_controller::application::{release_name, schedule};
use prism_testkit::{DEFAULT_TIMEOUT, TestEnv, wait_until};
use run::{application, prism, text, with_controller};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A test's namespace with the Application `web` and two Releases of it, as the controllers
/// would leave them: web-1 (image web:1) complete and incumbent, web-2 (web:2) the contender,
/// with `contender_status`.
struct Rollout {
    env: TestEnv,
    releases: Api<Release>,
}

impl Rollout {
    async fn new(test: &str, contender_status: Value) -> Rollout {
        let env = TestEnv::new(test).await;
        let client = env.cluster("c1").client();
        prism_testkit::install_crds(&client, prism_api::crds())
            .await
            .unwrap();
        let apps: Api<Application> = Api::namespaced(client.clone(), env.namespace());
        let releases: Api<Release> = Api::namespaced(client, env.namespace());
        let app = apps
            .patch(
                "web",
                &PatchParams::apply("prism-tests"),
                &Patch::Apply(&application("web:2")),
            )
            .await
            .unwrap();
        let rollout = Rollout { env, releases };
        rollout.release(&app, 1, "web:1", complete(2)).await;
        rollout.release(&app, 2, "web:2", contender_status).await;
        apps.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": app.metadata.generation,
                "strategy": "inline",
                "phase": "Progressing",
                "contender": "web-2",
                "incumbent": "web-1",
                "currentRevision": 2,
            }})),
        )
        .await
        .unwrap();
        rollout
    }

    /// Creates revision `revision` of `app`, running `image`, and sets its status.
    async fn release(&self, app: &Application, revision: u32, image: &str, status: Value) {
        let name = release_name("web", revision);
        let mut release = Release::new(
            &name,
            ReleaseSpec {
                application: "web".into(),
                revision,
                template: application(image).spec.template,
                target: None,
                strategy: prism_api::Pipeline {
                    webhooks: None,
                    steps: app.spec.strategy.steps.clone().unwrap(),
                    waves: None,
                },
                clusters: schedule(app, &[]).unwrap(),
                target_step: None,
                aborted: false,
                side: None,
            },
        );
        release.metadata = ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([
                (APP_LABEL.to_owned(), "web".to_owned()),
                (RELEASE_LABEL.to_owned(), name.clone()),
            ])),
            ..ObjectMeta::default()
        };
        self.releases
            .create(&PostParams::default(), &release)
            .await
            .unwrap();
        self.set_status(&name, status).await;
    }

    async fn set_status(&self, release: &str, status: Value) {
        self.releases
            .patch_status(
                release,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    /// The Application's phase, as the controller sets it after its newest Release's.
    async fn set_app_phase(&self, phase: &str) {
        Api::<Application>::namespaced(self.env.cluster("c1").client(), self.env.namespace())
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await
            .unwrap();
    }

    async fn spec(&self, release: &str) -> ReleaseSpec {
        self.releases.get(release).await.unwrap().spec
    }

    async fn prism(&self, args: &[&str]) -> std::process::Output {
        in_namespace(&self.env, args).await
    }
}

/// A complete Release of the two-step strategy, with `replicas` ready replicas in the cluster
/// `local`, and all of its traffic unless `replicas` is 0.
fn complete(replicas: u32) -> Value {
    json!({
        "phase": "Complete",
        "step": 1,
        "stepName": "full",
        "achievedAt": "2026-11-22T12:00:00Z",
        "progress": "2/2",
        "clusters": [{
            "name": "local",
            "phase": "Achieved",
            "achievedStep": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "weight": if replicas > 0 { 100 } else { 0 },
        }],
    })
}

/// A Release at its first step, `canary`, in `phase`.
fn at_canary(phase: &str) -> Value {
    json!({
        "phase": phase,
        "step": 0,
        "stepName": "canary",
        "progress": "0/2",
        "clusters": [{
            "name": "local",
            "phase": "Progressing",
            "replicas": 1,
            "readyReplicas": 0,
            "weight": 0,
            "message": "scaling up (waiting for ready pods)",
        }],
        "conditions": [{
            "type": "Progressing",
            "status": "True",
            "reason": "StepInProgress",
            "message": "step 1/2 \"canary\": cluster local is scaling up (waiting for ready pods)",
            "lastTransitionTime": "2026-11-22T12:00:00Z",
        }],
    })
}

/// `prism ARGS -n NAMESPACE`.
async fn in_namespace(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["-n", env.namespace()])
        .collect();
    prism(env, &args).await
}

fn assert_exit(output: &std::process::Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test]
async fn promote_raises_the_contender_target_step_and_is_refused_once_it_is_complete() {
    let rollout = Rollout::new("promote", at_canary("WaitingForCommand")).await;

    let promoted = rollout.prism(&["promote", "web"]).await;
    assert_exit(&promoted, 0);
    assert_eq!(
        text(&promoted.stdout),
        "promoted web-2 to step 2/2 \"full\"\n"
    );
    assert_eq!(rollout.spec("web-2").await.target_step, Some(1));
    assert_eq!(rollout.spec("web-1").await.target_step, None);

    let full = rollout.prism(&["promote", "web", "--full"]).await;
    assert_exit(&full, 0);
    assert_eq!(
        text(&full.stdout),
        "promoted web-2 to the end, past the gate of step 2/2 \"full\"\n"
    );
    assert_eq!(rollout.spec("web-2").await.target_step, Some(2));

    let again = rollout.prism(&["promote", "web", "--full"]).await;
    assert_exit(&again, 4);
    assert_eq!(
        text(&again.stderr),
        "prism: web-2 is already promoted to the end, past the gate of step 2/2 \"full\": the controller has not got there yet\n"
    );

    rollout.set_status("web-2", complete(2)).await;
    let complete = rollout.prism(&["promote", "web"]).await;
    assert_exit(&complete, 4);
    assert_eq!(
        text(&complete.stderr),
        "prism: nothing to promote: web-2, the newest Release of web, is Complete. A change of the Application's template starts a new rollout\n"
    );
}

#[tokio::test]
async fn abort_sets_aborted_on_the_contender_once() {
    let rollout = Rollout::new("abort", at_canary("Progressing")).await;

    let aborted = rollout.prism(&["abort", "web"]).await;
    assert_exit(&aborted, 0);
    assert_eq!(
        text(&aborted.stdout),
        "aborted web-2: the controller rolls back to web-1\n"
    );
    assert!(rollout.spec("web-2").await.aborted);
    assert!(!rollout.spec("web-1").await.aborted);

    let again = rollout.prism(&["abort", "web"]).await;
    assert_exit(&again, 4);
    assert!(
        text(&again.stderr).starts_with(
            "prism: nothing to abort: web-2, the newest Release of web, is aborted (Progressing)."
        ),
        "{}",
        text(&again.stderr)
    );

    let missing = rollout.prism(&["abort", "nope"]).await;
    assert_exit(&missing, 3);
}

#[tokio::test]
async fn status_shows_each_version_in_each_cluster() {
    let rollout = Rollout::new("status", at_canary("Progressing")).await;

    let json = rollout.prism(&["status", "web", "-o", "json"]).await;
    assert_exit(&json, 0);
    let status: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(status["rollout"]["release"], "web-2");
    assert_eq!(status["rollout"]["step"], 0);
    assert_eq!(
        status["rollout"]["waitingFor"],
        "step 1/2 \"canary\": cluster local is scaling up (waiting for ready pods)"
    );
    let rows: Vec<(Value, Value, Value, Value, Value, Value)> = status["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["cluster"].clone(),
                row["release"].clone(),
                row["role"].clone(),
                row["readyReplicas"].clone(),
                row["replicas"].clone(),
                row["weight"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                json!("local"),
                json!("web-2"),
                json!("contender"),
                json!(0),
                json!(1),
                json!(0)
            ),
            (
                json!("local"),
                json!("web-1"),
                json!("incumbent"),
                json!(2),
                json!(2),
                json!(100)
            ),
        ],
        "{status:#}"
    );

    let table = rollout.prism(&["status", "web"]).await;
    assert_exit(&table, 0);
    let table = text(&table.stdout);
    assert!(
        table.contains(
            "Contender:    web-2 (revision 2): Progressing towards step 1/2 \"canary\"\n"
        ),
        "{table}"
    );
    assert!(
        table
            .contains("\nlocal     web-1 (incumbent)   2/2             100%     2/2    Achieved\n"),
        "{table}"
    );

    let missing = rollout.prism(&["status", "nope"]).await;
    assert_exit(&missing, 3);
    assert_eq!(
        text(&missing.stderr),
        format!(
            "prism: application {}/nope not found\n",
            rollout.env.namespace()
        )
    );
}

#[tokio::test]
async fn status_watch_times_out_while_the_rollout_goes_on_and_exits_5_once_rolled_back() {
    let rollout = Rollout::new("watch-timeout", at_canary("Progressing")).await;

    let timeout = rollout
        .prism(&["status", "web", "--watch", "--timeout", "2s"])
        .await;
    assert_exit(&timeout, 6);
    assert_eq!(
        text(&timeout.stderr),
        "prism: the newest Release did not finish within 2s: web-2 (revision 2): Progressing towards step 1/2 \"canary\"\n"
    );

    rollout
        .set_status(
            "web-2",
            json!({
                "phase": "Aborted",
                "abort": {"cause": "Command", "message": "aborted by prism abort"},
            }),
        )
        .await;
    rollout.set_app_phase("Aborted").await;
    let rolled_back = rollout
        .prism(&["status", "web", "--watch", "--timeout", "1m"])
        .await;
    assert_exit(&rolled_back, 5);
    assert_eq!(
        text(&rolled_back.stderr),
        "prism: web-2 was rolled back: aborted by prism abort\n"
    );
}

#[tokio::test]
async fn status_watch_redraws_each_change_and_exits_0_when_the_newest_release_completes() {
    let rollout = Rollout::new("watch-complete", at_canary("Progressing")).await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["status", "web", "--watch", "--timeout", "2m"])
        .args(["-n", rollout.env.namespace()])
        .env("KUBECONFIG", rollout.env.cluster("c1").kubeconfig())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut read_until = async |prefix: &str| {
        tokio::time::timeout(DEFAULT_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let found = line.starts_with(prefix);
                seen.push(line);
                if found {
                    return;
                }
            }
            panic!("the output ended before a line starting with {prefix:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"));
        seen.join("\n")
    };
    let first = read_until("local     web-1").await;
    assert!(first.contains("Progressing towards step 1/2"), "{first}");

    rollout
        .set_status(
            "web-2",
            json!({
                "phase": "Progressing",
                "step": 1,
                "stepName": "full",
                "clusters": [{"name": "local", "phase": "Progressing", "replicas": 2, "readyReplicas": 1, "weight": 50}],
            }),
        )
        .await;
    let second = read_until("local     web-2 (contender)   1/2").await;
    assert!(
        second.contains("Contender:    web-2 (revision 2): Progressing towards step 2/2 \"full\""),
        "{second}"
    );

    rollout.set_status("web-2", complete(2)).await;
    rollout.set_app_phase("Complete").await;
    let exit = tokio::time::timeout(DEFAULT_TIMEOUT, watch.wait())
        .await
        .expect("status --watch did not exit once web-2 was complete")
        .unwrap();
    let mut last = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        last.push(line);
    }
    let last = last.join("\n");
    assert_eq!(exit.code(), Some(0), "{last}");
    assert!(
        last.contains("Contender:    web-2 (revision 2): Complete at step 2/2 \"full\""),
        "{last}"
    );
}

/// Applies the Application `web` running `image`, as a user would, and waits for its Release
/// `revision`.
async fn deploy(
    apps: &Api<Application>,
    releases: &Api<Release>,
    image: &str,
    revision: u32,
) -> Release {
    apps.patch(
        "web",
        &PatchParams::apply("prism-tests").force(),
        &Patch::Apply(&application(image)),
    )
    .await
    .unwrap();
    release_exists(releases, revision).await
}

async fn release_exists(releases: &Api<Release>, revision: u32) -> Release {
    let name = release_name("web", revision);
    wait_until(
        format!("Release {name} exists"),
        DEFAULT_TIMEOUT,
        || async { Ok(releases.get_opt(&name).await?) },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rollout_promoted_and_rolled_back_through_the_commands() {
    let env = TestEnv::new("rollback").await;
    let (apps, releases, _controller) = with_controller(&env).await;
    let prism = async |args: &[&str]| in_namespace(&env, args).await;
    let watch = ["status", "web", "--watch", "--timeout", "90s"];

    // The first Release has no incumbent to wait for.
    deploy(&apps, &releases, "web:1", 1).await;
    assert_exit(&prism(&watch).await, 0);

    deploy(&apps, &releases, "web:2", 2).await;
    wait_until("web-2 waits for a command", DEFAULT_TIMEOUT, || async {
        let status = prism(&["status", "web", "-o", "json"]).await;
        let status: Value = serde_json::from_slice(&status.stdout)?;
        Ok((status["rollout"]["phase"] == "WaitingForCommand").then_some(()))
    })
    .await
    .unwrap();
    let promoted = prism(&["promote", "web", "--full"]).await;
    assert_exit(&promoted, 0);
    let completed = prism(&watch).await;
    assert_exit(&completed, 0);
    assert!(
        text(&completed.stdout)
            .contains("Contender:    web-2 (revision 2): Complete at step 2/2 \"full\""),
        "{}",
        text(&completed.stdout)
    );

    // web-2 is the incumbent: the version before it is web-1.
    let previous = prism(&["rollback", "web"]).await;
    assert_exit(&previous, 0);
    assert_eq!(
        text(&previous.stdout),
        "rolled web back to the template of revision 1 (web-1): the controller rolls it out as a new revision, under web's strategy\n"
    );
    let web_1 = release_exists(&releases, 1).await;
    let web_3 = release_exists(&releases, 3).await;
    assert_eq!(web_3.spec.template, web_1.spec.template);
    let app = apps.get("web").await.unwrap();
    assert_eq!(app.spec.template, web_1.spec.template);
    let managers: Vec<String> = app
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "prism-cli"), "{managers:?}");

    let current = prism(&["rollback", "web", "--to", "1"]).await;
    assert_exit(&current, 4);
    assert_eq!(
        text(&current.stderr),
        "prism: the template of revision 1 (web-1) is web's current template already: nothing to roll back\n"
    );
    let missing = prism(&["rollback", "web", "--to", "9"]).await;
    assert_exit(&missing, 3);
    assert_eq!(
        text(&missing.stderr),
        "prism: web has no revision 9; its revisions: 1, 2, 3 (older ones are pruned beyond spec.revisionHistoryLimit)\n"
    );

    wait_until("web-3 waits for a command", DEFAULT_TIMEOUT, || async {
        let web_3 = releases.get("web-3").await?;
        Ok(web_3
            .status
            .and_then(|s| s.phase)
            .filter(|p| *p == ReleasePhase::WaitingForCommand))
    })
    .await
    .unwrap();
    assert_exit(&prism(&["promote", "web", "--full"]).await, 0);
    assert_exit(&prism(&watch).await, 0);
}

#[tokio::test]
async fn an_abort_through_the_command_ends_the_watch_with_exit_5() {
    let env = TestEnv::new("abort-rollout").await;
    let (apps, releases, _controller) = with_controller(&env).await;
    let prism = async |args: &[&str]| in_namespace(&env, args).await;

    deploy(&apps, &releases, "web:1", 1).await;
    assert_exit(
        &prism(&["status", "web", "--watch", "--timeout", "90s"]).await,
        0,
    );
    deploy(&apps, &releases, "web:2", 2).await;
    let aborted = prism(&["abort", "web"]).await;
    assert_exit(&aborted, 0);
    let watch = prism(&["status", "web", "--watch", "--timeout", "90s"]).await;
    assert_exit(&watch, 5);
    assert!(
        text(&watch.stderr).starts_with("prism: web-2 was rolled back: "),
        "{}",
        text(&watch.stderr)
    );
}
