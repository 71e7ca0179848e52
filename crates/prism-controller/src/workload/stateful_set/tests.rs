//! The StatefulSet provider's writes for each case, and what it observes.

use std::sync::Arc;

use super::*;

fn release(name: &str, image: &str) -> Release {
    let web = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 4, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{"name": "db", "image": image,
                                    "envFrom": [{"configMapRef": {"name": "settings"}}]}]
                }
            }
        }
    });
    let settings = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "settings"}, "data": {"a": "1"}});
    crate::workload::test_release(
        name,
        "db",
        1,
        serde_json::from_value(json!({ "manifests": [web, settings] })).unwrap(),
    )
}

/// The StatefulSet as the cache keeps it: holding `held` at `partition`, its status current
/// with `revision` as the update revision unless `stale`.
fn stateful_set(held: &str, partition: i32, stale: bool) -> Arc<StatefulSet> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 2,
                         "labels": {"prism.dev/app": "db", "prism.dev/release": held}},
            "spec": {"replicas": 4, "template": {"metadata": {"labels": {"app": "db"}}},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": partition}}},
            "status": {"observedGeneration": if stale { 1 } else { 2 },
                       "updateRevision": format!("{held}-rev")}
        }))
        .unwrap(),
    )
}

/// Pod `db-<ordinal>` of `release`, at its release's revision.
fn pod(ordinal: u32, release: &str, ready: bool) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("db-{ordinal}"),
                         "labels": {"prism.dev/release": release,
                                    "controller-revision-hash": format!("{release}-rev")}},
            "status": {"conditions": [{"type": "Ready",
                                       "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap(),
    )
}

fn install(
    release: &Release,
    replicas: u32,
    stateful_sets: &[Arc<StatefulSet>],
    pods: &[Arc<Pod>],
) -> Vec<Write> {
    let cluster = Workloads {
        stateful_sets,
        pods,
        ..Workloads::default()
    };
    let version = Version {
        release,
        pod_labels: &[],
        owner: None,
        app_owner: None,
        successor: None,
    };
    StatefulSets.install(cluster, version, Capacity::Replicas(replicas))
}

fn remove(release: &Release, stateful_sets: &[Arc<StatefulSet>], pods: &[Arc<Pod>]) -> Vec<Write> {
    let cluster = Workloads {
        stateful_sets,
        pods,
        ..Workloads::default()
    };
    StatefulSets.remove(cluster, release)
}

/// What each write does, as `verb Kind/name`, with the partition of an applied StatefulSet.
fn described(writes: &[Write]) -> Vec<String> {
    writes
        .iter()
        .map(|write| match write {
            Write::Apply { kind, body } => {
                let partition = &body["spec"]["updateStrategy"]["rollingUpdate"]["partition"];
                let held = &body["metadata"]["labels"]["prism.dev/release"];
                match kind {
                    Kind::StatefulSet => format!(
                        "apply StatefulSet/{} holding {held} at partition {partition}",
                        body["metadata"]["name"].as_str().unwrap()
                    ),
                    _ => format!(
                        "apply {kind:?}/{}",
                        body["metadata"]["name"].as_str().unwrap()
                    ),
                }
            }
            Write::Delete { kind, name } => format!("delete {kind:?}/{name}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn the_first_version_makes_the_stateful_set_with_its_config_maps_first() {
    let writes = install(&release("db-1", "db:1"), 4, &[], &[]);
    assert_eq!(
        described(&writes),
        [
            "apply ConfigMap/db-1-settings",
            "apply StatefulSet/db holding \"db-1\" at partition 0"
        ]
    );
    let Write::Apply { body, .. } = &writes[1] else {
        unreachable!()
    };
    assert_eq!(body["spec"]["replicas"], 4);
    assert_eq!(body["spec"]["serviceName"], "db");
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({"app": "db", "prism.dev/app": "db"}),
        "never the release: a selector cannot change"
    );
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"],
        json!({"app": "db", "prism.dev/app": "db", "prism.dev/release": "db-1"})
    );
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "db-1-settings"
    );
    assert_eq!(body["metadata"].get("ownerReferences"), None);
}

#[test]
fn the_contender_takes_the_highest_ordinals_by_the_partition() {
    let incumbent = stateful_set("db-1", 0, false);
    let pods: Vec<_> = (0..4).map(|i| pod(i, "db-1", true)).collect();
    let contender = release("db-2", "db:2");
    assert_eq!(
        described(&install(&contender, 1, &[incumbent], &pods)),
        [
            "apply ConfigMap/db-2-settings",
            "apply StatefulSet/db holding \"db-2\" at partition 3"
        ]
    );
    let held = stateful_set("db-2", 3, false);
    assert_eq!(
        described(&install(&contender, 2, &[held], &pods)),
        ["apply StatefulSet/db holding \"db-2\" at partition 2"],
        "a release that holds the StatefulSet moves only its partition"
    );
}

#[test]
fn the_incumbent_shrinking_writes_nothing_and_restored_takes_every_pod_back() {
    let held = stateful_set("db-2", 2, false);
    let pods = [
        pod(0, "db-1", true),
        pod(1, "db-1", true),
        pod(2, "db-2", true),
        pod(3, "db-2", true),
    ];
    let incumbent = release("db-1", "db:1");
    assert_eq!(
        install(&incumbent, 2, std::slice::from_ref(&held), &pods),
        []
    );
    assert_eq!(
        install(&incumbent, 3, std::slice::from_ref(&held), &pods),
        [],
        "no partial restore"
    );
    assert_eq!(
        described(&install(&incumbent, 4, &[held], &pods)),
        [
            "apply ConfigMap/db-1-settings",
            "apply StatefulSet/db holding \"db-1\" at partition 0"
        ]
    );
}

#[test]
fn the_stateful_set_goes_only_with_the_last_version_and_a_version_s_config_maps_with_its_last_pod()
{
    let held = stateful_set("db-1", 0, false);
    let contender = release("db-2", "db:2");
    let incumbent = release("db-1", "db:1");
    let mixed = [pod(0, "db-1", true), pod(1, "db-2", true)];
    assert_eq!(
        install(&incumbent, 0, std::slice::from_ref(&held), &mixed),
        []
    );
    assert_eq!(remove(&contender, std::slice::from_ref(&held), &mixed), []);
    let alone = [pod(0, "db-1", true), pod(1, "db-1", true)];
    assert_eq!(
        described(&remove(&contender, std::slice::from_ref(&held), &alone)),
        ["delete ConfigMap/db-2-settings"]
    );
    assert_eq!(
        described(&install(&incumbent, 0, &[held], &alone)),
        ["delete StatefulSet/db", "delete ConfigMap/db-1-settings"]
    );
}

#[test]
fn the_held_release_counts_the_pods_at_the_update_revision_and_ready() {
    let held = stateful_set("db-2", 2, false);
    let pods = [
        pod(0, "db-1", true),
        pod(1, "db-1", false),
        pod(2, "db-2", true),
        // Not replaced yet.
        pod(3, "db-1", true),
    ];
    let observed = observe(&held, &pods);
    assert_eq!(observed["db-2"].capacity, Capacity::Replicas(2));
    assert_eq!(observed["db-2"].ready, 1);
    assert_eq!(observed["db-1"].capacity, Capacity::Replicas(2));
    assert_eq!(observed["db-1"].ready, 1);

    let stale = stateful_set("db-2", 2, true);
    assert_eq!(
        observe(&stale, &pods)["db-2"].ready,
        0,
        "a status behind the spec may name the revision before"
    );
}

#[test]
fn a_pod_being_recreated_below_the_partition_keeps_its_version_s_capacity() {
    let held = stateful_set("db-2", 3, false);
    let pods = [
        pod(0, "db-1", true),
        pod(2, "db-1", true),
        pod(3, "db-2", true),
    ];
    let observed = observe(&held, &pods);
    assert_eq!(observed["db-1"].capacity, Capacity::Replicas(3));
    assert_eq!(observed["db-1"].ready, 2);
    assert_eq!(observed["db-2"].capacity, Capacity::Replicas(1));
    assert_eq!(observed["db-2"].ready, 1);
}

#[test]
fn in_place_the_incumbent_runs_the_rest_of_the_contender_s_share() {
    let pipeline: Pipeline = serde_json::from_value(json!({"steps": [
        {"name": "a", "capacity": {"contender": "25%", "maxSurge": 2}},
        {"name": "b", "traffic": {"contender": 50}},
        {"name": "c", "capacity": {"contender": "50%", "incumbent": "100%"}},
        {"name": "d", "capacity": {"incumbent": 1}}
    ]}))
    .unwrap();
    let in_place = in_place_pipeline(&pipeline, 4);
    let shares = |contender, incumbent| {
        Some(CapacityStep {
            contender: Some(contender),
            incumbent: Some(Share::Replicas(incumbent)),
            max_surge: None,
        })
    };
    let capacities: Vec<Option<CapacityStep>> = in_place
        .steps
        .iter()
        .map(|step| step.capacity.clone())
        .collect();
    assert_eq!(
        capacities,
        [
            shares(Share::Percent(25), 3),
            None,
            shares(Share::Percent(50), 2),
            shares(Share::Replicas(3), 1)
        ]
    );
}

#[test]
fn the_incumbent_grows_back_into_a_superseded_contender_s_pods_one_at_a_time() {
    // db-2 was superseded at half by db-3, which holds the StatefulSet at its first step: db-2's
    // pod below the partition is reached by no partition.
    let mut held = (*stateful_set("db-3", 3, false)).clone();
    held.status.as_mut().unwrap().current_revision = Some("db-1-rev".into());
    let held = Arc::new(held);
    let pods = [
        pod(0, "db-1", true),
        pod(1, "db-1", true),
        pod(2, "db-2", true),
        pod(3, "db-3", true),
    ];
    let incumbent = release("db-1", "db:1");
    assert_eq!(
        described(&install(&incumbent, 3, std::slice::from_ref(&held), &pods)),
        ["delete Pod/db-2"],
        "recreated below the partition as the current revision: the incumbent"
    );
    let restarting = [
        pod(0, "db-1", false),
        pod(1, "db-1", true),
        pod(2, "db-2", true),
        pod(3, "db-3", true),
    ];
    assert_eq!(
        install(&incumbent, 3, std::slice::from_ref(&held), &restarting),
        [],
        "never a second pod down"
    );
    assert_eq!(
        install(&incumbent, 2, std::slice::from_ref(&held), &pods),
        [],
        "not while the incumbent has its share"
    );
}

#[test]
fn a_side_version_never_takes_the_stateful_set_over() {
    let held = stateful_set("db-1", 0, false);
    let pods: Vec<_> = (0..4).map(|i| pod(i, "db-1", true)).collect();
    let mut side = release("db-preview", "db:3");
    side.spec.side = Some(prism_api::release::SideRelease {
        side_version: "preview".into(),
        routes: Vec::new(),
    });
    assert_eq!(install(&side, 4, std::slice::from_ref(&held), &pods), []);
}
