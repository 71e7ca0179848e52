mod common;

use common::*;
use prism_api::strategy::{AnalysisStep, Duration, Pipeline, Waves};
use prism_engine::{Capacity, Outcome, Scenario, SimulateError, Timeline, simulate};

fn plan(
    pipeline: &Pipeline,
    traffic: bool,
    clusters: usize,
    fail_at: Option<&str>,
) -> Result<Timeline, SimulateError> {
    let app = app(traffic);
    let clusters = common::clusters(clusters);
    simulate(&Scenario {
        app: &app,
        capacity: Capacity::Replicas(10),
        pipeline,
        clusters,
        fail_at,
        version_names: ["old", "new"],
    })
}

fn analysed_canary() -> Pipeline {
    let mut pipeline = canary();
    pipeline.steps[2].analysis = Some(AnalysisStep {
        count: Some(3),
        ..Default::default()
    });
    pipeline.steps[2] = pause(pipeline.steps[2].clone(), 300);
    pipeline
}

#[test]
fn a_plan_has_a_row_per_step_with_each_role_capacity_and_weight() {
    let timeline = plan(&canary(), true, 2, None).unwrap();
    assert_eq!(timeline.outcome, Outcome::Complete);
    let names: Vec<&str> = timeline.rows.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(names, ["start", "staging", "canary", "half", "full"]);
    let canary = &timeline.rows[2];
    assert_eq!(canary.gate, "manual: prism promote");
    for cluster in &canary.clusters {
        assert_eq!(
            (cluster.contender.capacity, cluster.contender.weight),
            (Capacity::Replicas(1), Some(10))
        );
        assert_eq!(
            (cluster.incumbent.capacity, cluster.incumbent.weight),
            (Capacity::Replicas(10), Some(90))
        );
    }
    let full = &timeline.rows[4].clusters[1];
    assert_eq!(
        (full.contender.capacity, full.incumbent.capacity),
        (Capacity::Replicas(10), Capacity::ZERO)
    );
}

#[test]
fn pauses_and_analyses_take_simulated_time() {
    let timeline = plan(&analysed_canary(), true, 1, None).unwrap();
    let half = &timeline.rows[3];
    assert_eq!(half.gate, "analysis: 3 × 1m, then pause 5m");
    assert_eq!(half.elapsed, Duration::from_secs(0));
    // The pause counts from the step's achievement, and the analysis took 3m of it.
    assert_eq!(timeline.rows[4].elapsed, Duration::from_secs(300));
}

#[test]
fn waves_take_their_soak_one_after_the_other() {
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![
            traffic(capacity(step("canary"), 25, 100), 25),
            traffic(capacity(step("full"), 100, 0), 100),
        ],
        waves: Some(Waves {
            max_concurrency: Some(1),
            soak: Some(Duration::from_secs(60)),
            ..Default::default()
        }),
    };
    let timeline = plan(&pipeline, true, 3, None).unwrap();
    assert_eq!(timeline.outcome, Outcome::Complete);
    let elapsed: Vec<i64> = timeline
        .rows
        .iter()
        .map(|row| row.elapsed.as_secs())
        .collect();
    // Each step: a wave per cluster, 1m apart; the rollout leaves it once the last wave soaked.
    assert_eq!(elapsed, [0, 120, 300]);
}

#[test]
fn a_failure_shows_the_rollback_to_its_end() {
    let timeline = plan(&analysed_canary(), true, 2, Some("half")).unwrap();
    assert_eq!(timeline.outcome, Outcome::RolledBack);
    assert!(timeline.rows[3].gate.ends_with("fails, rolling back"));
    let end = timeline.rows.last().unwrap();
    assert_eq!(end.name, "rolled back");
    for cluster in &end.clusters {
        assert_eq!(
            (cluster.incumbent.capacity, cluster.incumbent.weight),
            (Capacity::Replicas(10), Some(100))
        );
        assert_eq!(
            (cluster.contender.capacity, cluster.contender.weight),
            (Capacity::ZERO, Some(0))
        );
    }
}

#[test]
fn a_headless_plan_has_no_weights() {
    let mut pipeline = canary();
    for step in &mut pipeline.steps {
        step.traffic = None;
    }
    let timeline = plan(&pipeline, false, 3, None).unwrap();
    assert_eq!(timeline.outcome, Outcome::Complete);
    assert!(
        timeline
            .rows
            .iter()
            .flat_map(|row| &row.clusters)
            .all(|cluster| cluster.contender.weight.is_none())
    );
}

#[test]
fn failing_an_unknown_step_names_the_steps() {
    let error = plan(&canary(), true, 1, Some("nope")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "--fail-at: no step is named \"nope\"; the steps are staging, canary, half, full"
    );
}

#[test]
fn failing_a_step_without_checks_is_an_error() {
    let error = plan(&canary(), true, 1, Some("half")).unwrap_err();
    assert_eq!(
        error,
        SimulateError::NothingToFail {
            name: "half".into()
        }
    );
}

#[test]
fn an_invalid_pipeline_is_an_error_not_a_plan() {
    let error = plan(&Pipeline::default(), true, 1, None).unwrap_err();
    assert!(matches!(error, SimulateError::Pipeline(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "steps: the contender never reaches \"100%\" capacity: add a step that sets capacity.contender: \"100%\" (value: [])"
    );
}
