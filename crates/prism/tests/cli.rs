//! The `prism` binary: output, exit codes (0 done, 2 invalid input, 3 no such Application, 1
//! anything else), no panics.

use std::path::Path;
use std::process::{Command, Output};

fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plan_prints_the_timeline() {
    let output = prism(&["plan", "-f", "examples/vanguard.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.starts_with("STEP"), "{table}");
    assert!(
        table.lines().all(|line| line.chars().count() <= 100),
        "{table}"
    );
    assert!(table.ends_with("outcome: complete after 20m\n"), "{table}");
}

#[test]
fn plan_prints_json_for_scripts() {
    let output = prism(&[
        "plan",
        "-f",
        "examples/worker.yaml",
        "--clusters",
        "4",
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let timeline: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(timeline["outcome"], "Complete");
    assert_eq!(timeline["rows"][0]["clusters"].as_array().unwrap().len(), 4);
}

#[test]
fn invalid_input_exits_2_with_every_error() {
    let output = prism(&["plan", "-f", "crates/prism/tests/bad/weight-140.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "prism: crates/prism/tests/bad/weight-140.yaml is invalid:\nApplication/web: spec.strategy.steps[0].traffic.contender: a weight is a percentage of the default route, from 0 to 100 (value: 140)\n"
    );
}

#[test]
fn every_bad_file_exits_2_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let output = prism(&["plan", "-f", path.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            text(&output.stderr)
        );
        assert!(
            !text(&output.stderr).contains("panicked"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn an_unknown_fail_at_step_exits_2() {
    let output = prism(&[
        "plan",
        "-f",
        "examples/canary.yaml",
        "--fail-at",
        "weight-99",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no step is named \"weight-99\""),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_missing_file_exits_1() {
    let output = prism(&["plan", "-f", "examples/missing.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).starts_with("prism: cannot read examples/missing.yaml: "),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn crds_prints_yaml() {
    let output = prism(&["crds"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("name: applications.prism.dev"));
}

#[test]
fn history_without_a_reachable_cluster_exits_1_and_says_so() {
    let kubeconfig = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: nobody, user: {token: none}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody, namespace: team}}]
current-context: nowhere
",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["history", "web"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("prism: cannot reach the cluster at https://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn history_help_documents_the_exit_codes() {
    let output = prism(&["history", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(
        help.contains("  3  the Application does not exist"),
        "{help}"
    );
}

#[test]
fn every_command_on_a_cluster_documents_the_same_exit_codes() {
    for command in ["status", "promote", "abort", "rollback", "history"] {
        let output = prism(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0), "{command}");
        let help = text(&output.stdout);
        assert!(help.contains(prism::exit::EXIT_CODES), "{command}: {help}");
    }
}

#[test]
fn status_timeout_needs_watch_and_a_duration() {
    let without_watch = prism(&["status", "web", "--timeout", "2s"]);
    assert_eq!(without_watch.status.code(), Some(2));
    let not_a_duration = prism(&["status", "web", "--watch", "--timeout", "soon"]);
    assert_eq!(not_a_duration.status.code(), Some(2));
    assert!(
        text(&not_a_duration.stderr).contains("expected a duration such as \"30s\""),
        "{}",
        text(&not_a_duration.stderr)
    );
}

/// kubectl runs `kubectl-prism` from PATH for `kubectl prism ...`; the usage says so.
#[test]
fn as_a_kubectl_plugin_the_usage_reads_kubectl_prism() {
    let plugin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubectl-prism");
    if plugin.symlink_metadata().is_ok() {
        std::fs::remove_file(&plugin).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_prism"), &plugin).unwrap();
    let output = Command::new(&plugin)
        .args(["promote", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let help = text(&output.stdout);
    assert!(
        help.contains("Usage: kubectl prism promote [OPTIONS] <APP>"),
        "{help}"
    );
    let usage_error = Command::new(&plugin).arg("promote").output().unwrap();
    assert_eq!(usage_error.status.code(), Some(2));
    assert!(
        text(&usage_error.stderr).contains("Usage: kubectl prism promote"),
        "{}",
        text(&usage_error.stderr)
    );
}
