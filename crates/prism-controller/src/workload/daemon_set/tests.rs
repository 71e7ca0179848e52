//! The DaemonSet provider's pure parts: the order of nodes, batches, abort, observation.

use serde_json::json;

use super::*;

fn release(name: &str) -> Release {
    crate::workload::test_release(name, "agent", 1, serde_json::from_value(json!({ "manifests": [
                {
                    "apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "agent"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "agent"}},
                        "template": {
                            "metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "agent", "image": format!("agent:{name}"),
                                "envFrom": [{"configMapRef": {"name": "settings"}}]}]}
                        }
                    }
                },
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
            ]}))
            .unwrap())
}

/// The DaemonSet as the cache holds it: holding `release` at `share`, its controller up to
/// date or not, over `nodes` nodes.
fn daemon_set(release: &str, share: u32, nodes: i32, seen: bool) -> Arc<DaemonSet> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 2,
                         "labels": {"prism.dev/app": "agent", "prism.dev/release": release},
                         "annotations": {CAPACITY_ANNOTATION: share.to_string()}},
            "spec": {"template": {}},
            "status": {"observedGeneration": if seen { 2 } else { 1 },
                       "desiredNumberScheduled": nodes}
        }))
        .unwrap(),
    )
}

fn pod(node: &str, release: &str, ready: bool) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("agent-{node}"), "labels": {"prism.dev/release": release}},
            "spec": {"nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap(),
    )
}

fn terminating(pod: Arc<Pod>) -> Arc<Pod> {
    let mut pod = (*pod).clone();
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    Arc::new(pod)
}

fn node(name: &str, zone: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {ZONE_LABEL: zone}}}))
            .unwrap(),
    )
}

/// Three nodes whose names run against their zones: c is in zone a, a in zone c.
fn zones() -> Vec<Arc<Node>> {
    vec![node("n-a", "z-c"), node("n-b", "z-b"), node("n-c", "z-a")]
}

fn install(
    daemon_sets: &[Arc<DaemonSet>],
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    release: &Release,
    successor: Option<&Release>,
    share: u32,
) -> Vec<Write> {
    let cluster = Workloads {
        daemon_sets,
        pods,
        nodes,
        ..Workloads::default()
    };
    let version = Version {
        release,
        pod_labels: &[],
        owner: None,
        app_owner: None,
        successor,
    };
    DaemonSets.install(cluster, version, Capacity::Replicas(share))
}

fn described(writes: &[Write]) -> Vec<String> {
    writes
        .iter()
        .map(|write| match write {
            Write::Apply { kind, body } => format!(
                "apply {kind:?}/{} {}",
                body["metadata"]["name"].as_str().unwrap(),
                body["metadata"]["annotations"][CAPACITY_ANNOTATION]
                    .as_str()
                    .unwrap_or("")
            ),
            Write::Delete { kind, name } => format!("delete {kind:?}/{name}"),
            Write::Label { .. } => "label".into(),
        })
        .collect()
}

#[test]
fn nodes_are_ordered_by_zone_then_name() {
    let pods = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
        pod("n-d", "v1", true),
    ];
    assert_eq!(
        node_order(&pods, &zones()),
        ["n-d", "n-c", "n-b", "n-a"],
        "a node of no known zone first, then zone by zone"
    );
    assert_eq!(node_order(&pods[..3], &[]), ["n-a", "n-b", "n-c"]);
}

#[test]
fn a_share_covers_the_nearest_count_of_nodes_leaving_one_to_the_others() {
    let three: Vec<u32> = [0, 10, 33, 50, 67, 99, 100]
        .iter()
        .map(|&share| nodes_for(share, 3))
        .collect();
    assert_eq!(three, [0, 1, 1, 2, 2, 2, 3]);
    let five: Vec<u32> = [20, 33, 40, 67, 80, 100]
        .iter()
        .map(|&share| nodes_for(share, 5))
        .collect();
    assert_eq!(five, [1, 2, 2, 3, 4, 5]);
}

#[test]
fn a_held_version_is_observed_at_its_asked_share_exactly_when_its_nodes_are_covered() {
    for nodes in [3, 5] {
        for asked in [20, 33, 50, 67, 80, 100] {
            for running in 0..=nodes {
                let share = share_of(running, nodes, asked);
                let covered = running == nodes_for(asked, nodes);
                assert_eq!(
                    share == asked,
                    covered,
                    "{running} of {nodes} nodes, asked {asked}: observed {share}"
                );
                assert_eq!(
                    share < asked,
                    running < nodes_for(asked, nodes),
                    "short of the share reads below it"
                );
            }
        }
    }
}

#[test]
fn observation_reads_the_held_share_and_every_other_running_version_at_full() {
    let held = daemon_set("v2", 33, 3, true);
    let pods = [
        pod("n-a", "v2", false),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
    ];
    let observed = observe(Some(&held), &pods);
    assert_eq!(observed["v2"].capacity, Capacity::Replicas(33));
    assert_eq!(observed["v2"].ready, 0, "its one pod is not ready yet");
    assert_eq!(observed["v1"].capacity, Capacity::Replicas(100));
    assert_eq!(observed["v1"].ready, 100);

    let pods = [
        pod("n-a", "v2", true),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
    ];
    assert_eq!(observe(Some(&held), &pods)["v2"].ready, 33);

    // The first pod deleted, its replacement not made yet.
    let pods = [
        terminating(pod("n-a", "v1", true)),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
    ];
    let observed = observe(Some(&held), &pods);
    assert_eq!(observed["v2"].capacity, Capacity::Replicas(0));
    assert_eq!(observed["v1"].capacity, Capacity::Replicas(100));

    // A new DaemonSet whose nodes its controller has not counted yet runs nothing.
    let uncounted = daemon_set("v1", 100, 0, false);
    let observed = observe(Some(&uncounted), &[]);
    assert_eq!(observed["v1"].capacity, Capacity::Replicas(0));
    assert_eq!(observed["v1"].ready, 0);
}

#[test]
fn a_new_version_goes_into_the_daemon_set_before_any_pod_is_deleted() {
    let v2 = release("v2");
    let held = [daemon_set("v1", 100, 3, true)];
    let pods = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
    ];
    let writes = install(&held, &pods, &zones(), &v2, None, 33);
    assert_eq!(
        described(&writes),
        ["apply ConfigMap/v2-settings ", "apply DaemonSet/agent 33"]
    );
    let Write::Apply { body, .. } = &writes[1] else {
        unreachable!()
    };
    assert_eq!(body["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(body["metadata"]["labels"]["prism.dev/release"], "v2");
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({"app": "agent", "prism.dev/app": "agent"}),
        "selected by the application alone: a selector cannot change"
    );
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"]["prism.dev/release"],
        "v2"
    );
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "v2-settings"
    );
}

#[test]
fn pods_go_one_batch_of_nodes_at_a_time_zone_first() {
    let v2 = release("v2");
    let all_v1 = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v1", true),
    ];
    // Not until the DaemonSet controller has seen v2's template.
    let unseen = [daemon_set("v2", 33, 3, false)];
    assert_eq!(install(&unseen, &all_v1, &zones(), &v2, None, 33), []);

    // 33%: the node of the first zone, z-a, which is n-c.
    let held = [daemon_set("v2", 33, 3, true)];
    assert_eq!(
        described(&install(&held, &all_v1, &zones(), &v2, None, 33)),
        ["delete Pod/agent-n-c"]
    );
    // While that pod is replaced, nothing more.
    let replacing = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        terminating(pod("n-c", "v1", true)),
    ];
    assert_eq!(
        described(&install(&held, &replacing, &zones(), &v2, None, 67)),
        ["apply DaemonSet/agent 67"]
    );
    // 67%: the step adds one node, z-b's; the share is recorded with it.
    let one_moved = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v2", true),
    ];
    assert_eq!(
        described(&install(&held, &one_moved, &zones(), &v2, None, 67)),
        ["apply DaemonSet/agent 67", "delete Pod/agent-n-b"]
    );
    // At its share, nothing to do.
    assert_eq!(install(&held, &one_moved, &zones(), &v2, None, 33), []);
}

#[test]
fn a_version_the_daemon_set_does_not_hold_writes_nothing_to_shrink() {
    let v1 = release("v1");
    let held = [daemon_set("v2", 33, 3, true)];
    let pods = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v2", true),
    ];
    assert_eq!(install(&held, &pods, &zones(), &v1, None, 0), []);
    assert_eq!(
        DaemonSets.idle(
            Workloads::default(),
            Version {
                release: &v1,
                pod_labels: &[],
                owner: None,
                app_owner: None,
                successor: None
            }
        ),
        []
    );
}

#[test]
fn an_abort_puts_the_incumbent_back_then_deletes_the_contender_s_pods() {
    let (v1, v2) = (release("v1"), release("v2"));
    let pods = [
        pod("n-a", "v1", true),
        pod("n-b", "v1", true),
        pod("n-c", "v2", true),
    ];
    let held_by_v2 = [daemon_set("v2", 33, 3, true)];
    assert_eq!(
        described(&install(&held_by_v2, &pods, &zones(), &v2, Some(&v1), 0)),
        ["apply DaemonSet/agent 100"]
    );
    let Write::Apply { body, .. } = &install(&held_by_v2, &pods, &zones(), &v2, Some(&v1), 0)[0]
    else {
        unreachable!()
    };
    assert_eq!(body["metadata"]["labels"]["prism.dev/release"], "v1");
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["image"],
        "agent:v1"
    );

    // Held by v1 again, v1 is observed short of its share, and asked for it back.
    let held_by_v1 = [daemon_set("v1", 100, 3, true)];
    let observed = observe(Some(&held_by_v1[0]), &pods);
    assert_eq!(observed["v1"].capacity, Capacity::Replicas(66));
    assert_eq!(
        described(&install(&held_by_v1, &pods, &zones(), &v1, None, 100)),
        ["delete Pod/agent-n-c"]
    );
}

#[test]
fn a_held_version_at_zero_with_no_version_to_follow_takes_the_daemon_set_with_it() {
    let v1 = release("v1");
    let held = [daemon_set("v1", 100, 3, true)];
    let pods = [pod("n-a", "v1", true)];
    assert_eq!(
        described(&install(&held, &pods, &zones(), &v1, None, 0)),
        ["delete DaemonSet/agent", "delete ConfigMap/v1-settings"]
    );
}

#[test]
fn removal_keeps_a_daemon_set_another_version_still_runs_on() {
    let v2 = release("v2");
    let cluster = |daemon_sets, pods| Workloads {
        daemon_sets,
        pods,
        ..Workloads::default()
    };
    let held = [daemon_set("v2", 100, 3, true)];
    let mixed = [pod("n-a", "v1", true), pod("n-b", "v2", true)];
    assert_eq!(DaemonSets.remove(cluster(&held, &mixed), &v2), []);
    let only_v2 = [pod("n-a", "v2", true), pod("n-b", "v2", true)];
    assert_eq!(
        described(&DaemonSets.remove(cluster(&held, &only_v2), &v2)),
        ["delete DaemonSet/agent", "delete ConfigMap/v2-settings"]
    );
    let held_by_v1 = [daemon_set("v1", 100, 3, true)];
    assert_eq!(
        described(&DaemonSets.remove(cluster(&held_by_v1, &only_v2), &v2)),
        ["delete ConfigMap/v2-settings"]
    );
}
