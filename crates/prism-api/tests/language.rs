//! The strategy language's own values parse as the CRD schema says, no more.

use prism_api::strategy::{Duration, Pipeline, Share, Step, step_label};

#[test]
fn shares_are_counts_or_canonical_percentages() {
    assert_eq!(
        serde_json::from_str::<Share>("3").unwrap(),
        Share::Replicas(3)
    );
    assert_eq!(
        serde_json::from_str::<Share>(r#""25%""#).unwrap(),
        Share::Percent(25)
    );
    for rejected in [r#""05%""#, r#""101%""#, r#""25""#, r#""-1%""#, "-1"] {
        assert!(
            serde_json::from_str::<Share>(rejected).is_err(),
            "{rejected}"
        );
    }
}

#[test]
fn a_percentage_rounds_up_to_a_pod() {
    assert_eq!(Share::Percent(1).of(10), 1);
    assert_eq!(Share::Percent(25).of(10), 3);
    assert_eq!(Share::Percent(0).of(10), 0);
    assert!(
        Share::Replicas(0).is_zero() && Share::Percent(0).is_zero() && !Share::Percent(1).is_zero()
    );
}

#[test]
fn durations_are_written_as_kubernetes_writes_them() {
    assert_eq!(
        serde_json::from_str::<Duration>(r#""1h30m""#).unwrap(),
        Duration::from_secs(5400)
    );
    assert_eq!(
        serde_json::from_str::<Duration>(r#""500ms""#)
            .unwrap()
            .0
            .as_millis(),
        500
    );
    for rejected in [r#""5 minutes""#, r#""PT5M""#, r#""5""#, r#""""#, r#""m""#] {
        assert!(
            serde_json::from_str::<Duration>(rejected).is_err(),
            "{rejected}"
        );
    }
}

#[test]
fn steps_are_counted_from_one_and_named() {
    let step = |name: &str| Step {
        name: name.into(),
        ..Step::default()
    };
    let pipeline = Pipeline {
        webhooks: None,
        steps: vec![step("canary"), step("half"), step("full")],
        waves: None,
    };
    assert_eq!(pipeline.step_label(0), "1/3 \"canary\"");
    assert_eq!(pipeline.step_label(1), "2/3 \"half\"");
    assert_eq!(step_label(1, 3, None), "2/3");
}
