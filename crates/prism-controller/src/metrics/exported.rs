//! What the controller exports, held against what names it: the Grafana dashboard
//! (`deploy/grafana/prism.json`) queries only exported metrics, and docs/operations.md documents
//! every one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

/// Every sample name `/metrics` can show: a counter's with `_total`, a histogram's `_bucket`,
/// `_sum` and `_count`. A family shows only once it has a child, so each gets one; the
/// destructuring without `..` makes a new metric a compile error here until it gets one too.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::default();
    let Metrics {
        registry,
        reconciles,
        reconcile_duration,
        reconcile_errors,
        transitions,
        rollout_duration,
        releases,
        cluster_reachable,
        leader,
        api_requests,
        watch_restarts,
        analysis_measurements,
        webhook_calls,
        step_duration,
    } = &metrics;
    let (result, reason, outcome) = (
        ResultLabel { result: "ok" },
        ReasonLabel { reason: "kube" },
        OutcomeLabel {
            outcome: "completed",
        },
    );
    let cluster = "c1".to_owned();
    reconciles.get_or_create(&result).inc();
    reconcile_duration.observe(1.0);
    reconcile_errors.get_or_create(&reason).inc();
    transitions.get_or_create(&reason).inc();
    rollout_duration.get_or_create(&outcome).observe(1.0);
    releases
        .get_or_create(&PhaseLabels {
            namespace: "ns".to_owned(),
            phase: "Complete",
        })
        .set(1);
    cluster_reachable
        .get_or_create(&ClusterLabel {
            cluster: cluster.clone(),
        })
        .set(1);
    leader.get_or_create(&ShardLabel { shard: 0 }).set(1);
    api_requests
        .get_or_create(&ApiRequestLabels {
            cluster: cluster.clone(),
            verb: "get",
            resource: "releases".to_owned(),
            code: "200".to_owned(),
        })
        .inc();
    watch_restarts
        .get_or_create(&WatchLabels {
            cluster,
            resource: "releases".to_owned(),
        })
        .inc();
    analysis_measurements.get_or_create(&result).inc();
    webhook_calls
        .get_or_create(&WebhookLabels {
            kind: "event",
            outcome: "accepted",
        })
        .inc();
    step_duration.get_or_create(&outcome).observe(1.0);
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .flat_map(|line| match line.split_once(' ') {
            Some((name, "counter")) => vec![format!("{name}_total")],
            Some((name, "histogram")) => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect(),
            Some((name, _)) => vec![name.to_owned()],
            None => Vec::new(),
        })
        .collect()
}

/// The metric names (`prism_...`) in `text`.
fn named_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("prism_") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if !preceded_by_word {
            names.push(name);
        }
    }
    names
}

/// Every string in a JSON document.
fn strings(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => into.push(text.clone()),
        serde_json::Value::Array(values) => values.iter().for_each(|v| strings(v, into)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| strings(v, into)),
        _ => {}
    }
}

fn repository_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dashboard_queries_only_metrics_the_controller_exports() {
    let exported = exported();
    let dashboard: serde_json::Value =
        serde_json::from_str(&repository_file("deploy/grafana/prism.json")).unwrap();
    let mut texts = Vec::new();
    strings(&dashboard, &mut texts);
    let named: BTreeSet<String> = texts.iter().flat_map(|text| named_in(text)).collect();
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
    // Every panel with queries queries a metric of Prism's.
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty()
                && targets
                    .iter()
                    .all(|t| !named_in(t["expr"].as_str().unwrap_or_default()).is_empty()),
            "{}",
            panel["title"]
        );
    }
    // And each metric is on the dashboard.
    let families = |names: &BTreeSet<String>| -> BTreeSet<String> {
        names
            .iter()
            .map(|name| {
                ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name)
                    .to_owned()
            })
            .collect()
    };
    let missing: Vec<String> = families(&exported)
        .difference(&families(&named))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[test]
fn operations_md_documents_every_metric() {
    let operations = repository_file("docs/operations.md");
    let metrics_section = operations
        .split("\n## ")
        .find(|section| section.starts_with("Metrics"))
        .expect("a section ## Metrics");
    let documented: BTreeSet<String> = named_in(metrics_section).into_iter().collect();
    for name in exported() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            documented.contains(family),
            "{family} is not in docs/operations.md's ## Metrics"
        );
    }
}

#[test]
fn metric_names_are_found_in_text_but_not_inside_other_words() {
    assert_eq!(
        named_in("sum(rate(prism_reconciles_total[5m])) / notprism_x + prism_up"),
        ["prism_reconciles_total", "prism_up"]
    );
}
