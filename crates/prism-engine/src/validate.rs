//! The rules a pipeline must follow for the engine to complete it, checked against the clusters it
//! will run on. Field paths are relative to the pipeline (`steps[2].traffic.contender`).

use prism_api::strategy::{Pipeline, Share};
use thiserror::Error;

use crate::effective::state_at;
use crate::model::{AppPolicy, ClusterInfo};

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PipelineError {
    #[error("steps: the strategy has no steps; add at least one step")]
    NoSteps,
    #[error(
        "steps[{step}].traffic: the application has no traffic provider, so weights and routes cannot apply; remove the traffic sub-step or give the application a traffic provider"
    )]
    TrafficWithoutProvider { step: usize },
    #[error(
        "steps[{step}].traffic.{role}: {value} is not a percentage; give a weight from 0 to 100"
    )]
    WeightAbove100 {
        step: usize,
        role: &'static str,
        value: u32,
    },
    #[error(
        "steps[{step}].traffic: contender {contender} and incumbent {incumbent} sum to {}; give weights that sum to 100, or only one of them",
        contender + incumbent
    )]
    WeightsDoNotSum {
        step: usize,
        contender: u32,
        incumbent: u32,
    },
    #[error(
        "steps[{step}].capacity.maxSurge: 0 lets no pod start before another stops; give at least 1"
    )]
    ZeroSurge { step: usize },
    #[error(
        "steps[{step}]: a step with capacity.maxSurge must not change traffic weights; move the traffic sub-step to a step of its own"
    )]
    SurgeWithTraffic { step: usize },
    #[error(
        "steps[{step}]: in cluster {cluster}, the {role} gets {weight}% of the traffic but no capacity; give it capacity in this step or an earlier one"
    )]
    TrafficWithoutCapacity {
        step: usize,
        cluster: String,
        role: &'static str,
        weight: u32,
    },
    #[error(
        "steps[{step}]: the last step leaves the contender with {share} of its capacity in cluster {cluster}; the last step must leave it with \"100%\" (add a final step without `clusters` that sets capacity.contender: \"100%\")"
    )]
    IncompleteCapacity {
        step: usize,
        cluster: String,
        share: Share,
    },
    #[error(
        "steps[{step}]: the last step leaves the contender with {weight}% of the traffic in cluster {cluster}; the last step must leave it with 100 (add a final step without `clusters` that sets traffic.contender: 100)"
    )]
    IncompleteTraffic {
        step: usize,
        cluster: String,
        weight: u32,
    },
}

/// Checks that `pipeline` can be rolled out to `clusters` and completes there: weights are
/// percentages, surge steps leave traffic alone, no step sends traffic to a role without capacity,
/// and the last step leaves the contender with all of the capacity and traffic everywhere.
pub fn check_pipeline(
    pipeline: &Pipeline,
    app: &AppPolicy,
    clusters: &[ClusterInfo],
) -> Result<(), PipelineError> {
    let last = pipeline
        .steps
        .len()
        .checked_sub(1)
        .ok_or(PipelineError::NoSteps)?;
    for (index, step) in pipeline.steps.iter().enumerate() {
        if let Some(traffic) = &step.traffic {
            if !app.traffic {
                return Err(PipelineError::TrafficWithoutProvider { step: index });
            }
            for (role, value) in [
                ("contender", traffic.contender),
                ("incumbent", traffic.incumbent),
            ] {
                if let Some(value) = value.filter(|value| *value > 100) {
                    return Err(PipelineError::WeightAbove100 {
                        step: index,
                        role,
                        value,
                    });
                }
            }
            if let (Some(contender), Some(incumbent)) = (traffic.contender, traffic.incumbent)
                && contender + incumbent != 100
            {
                return Err(PipelineError::WeightsDoNotSum {
                    step: index,
                    contender,
                    incumbent,
                });
            }
        }
        if let Some(surge) = step
            .capacity
            .as_ref()
            .and_then(|capacity| capacity.max_surge)
        {
            if surge == 0 {
                return Err(PipelineError::ZeroSurge { step: index });
            }
            if step
                .traffic
                .as_ref()
                .is_some_and(|traffic| traffic.contender.is_some() || traffic.incumbent.is_some())
            {
                return Err(PipelineError::SurgeWithTraffic { step: index });
            }
        }
    }
    for (cluster, info) in clusters.iter().enumerate() {
        for step in 0..=last {
            let state = state_at(pipeline, step, clusters, cluster);
            let weights = [
                ("contender", state.contender, state.contender_weight),
                ("incumbent", state.incumbent, 100 - state.contender_weight),
            ];
            for (role, share, weight) in weights {
                if app.traffic
                    && weight > 0
                    && matches!(share, Share::Percent(0) | Share::Replicas(0))
                {
                    let cluster = info.name.clone();
                    return Err(PipelineError::TrafficWithoutCapacity {
                        step,
                        cluster,
                        role,
                        weight,
                    });
                }
            }
        }
        let end = state_at(pipeline, last, clusters, cluster);
        if end.contender != Share::Percent(100) {
            let cluster = info.name.clone();
            return Err(PipelineError::IncompleteCapacity {
                step: last,
                cluster,
                share: end.contender,
            });
        }
        if app.traffic && end.contender_weight != 100 {
            let cluster = info.name.clone();
            return Err(PipelineError::IncompleteTraffic {
                step: last,
                cluster,
                weight: end.contender_weight,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prism_api::strategy::{CapacityStep, ClusterScope, Step, TrafficStep};

    use super::*;

    fn app(traffic: bool) -> AppPolicy {
        AppPolicy {
            traffic,
            max_versions: 2,
            version_ttl: None,
        }
    }

    fn clusters() -> Vec<ClusterInfo> {
        vec![
            ClusterInfo {
                name: "eu-1".into(),
                region: "eu".into(),
            },
            ClusterInfo {
                name: "us-1".into(),
                region: "us".into(),
            },
        ]
    }

    fn full(scope: Option<ClusterScope>) -> Step {
        Step {
            name: "full".into(),
            capacity: Some(CapacityStep {
                contender: Some(Share::Percent(100)),
                incumbent: Some(Share::Percent(0)),
                max_surge: None,
            }),
            traffic: Some(TrafficStep {
                contender: Some(100),
                ..Default::default()
            }),
            clusters: scope,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_last_step_is_valid() {
        let pipeline = Pipeline {
            steps: vec![full(None)],
        };
        assert_eq!(check_pipeline(&pipeline, &app(true), &clusters()), Ok(()));
    }

    #[test]
    fn an_empty_pipeline_is_rejected() {
        assert_eq!(
            check_pipeline(&Pipeline::default(), &app(true), &clusters()),
            Err(PipelineError::NoSteps)
        );
    }

    #[test]
    fn a_last_step_scoped_to_one_region_leaves_the_other_incomplete_and_names_it() {
        let eu = ClusterScope {
            region: Some("eu".into()),
            ..Default::default()
        };
        let pipeline = Pipeline {
            steps: vec![full(Some(eu))],
        };
        let error = check_pipeline(&pipeline, &app(true), &clusters()).unwrap_err();
        assert_eq!(
            error,
            PipelineError::IncompleteCapacity {
                step: 0,
                cluster: "us-1".into(),
                share: Share::Percent(0)
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("steps[0]: the last step leaves the contender with 0%")
        );
    }

    #[test]
    fn traffic_to_a_contender_without_capacity_is_rejected() {
        let mut early = full(None);
        early.capacity = None;
        early.traffic = Some(TrafficStep {
            contender: Some(10),
            ..Default::default()
        });
        let pipeline = Pipeline {
            steps: vec![early, full(None)],
        };
        assert!(matches!(
            check_pipeline(&pipeline, &app(true), &clusters()),
            Err(PipelineError::TrafficWithoutCapacity {
                step: 0,
                role: "contender",
                weight: 10,
                ..
            })
        ));
    }

    #[test]
    fn a_surge_step_that_shifts_traffic_is_rejected() {
        let mut surge = full(None);
        surge.capacity.as_mut().unwrap().max_surge = Some(2);
        let pipeline = Pipeline { steps: vec![surge] };
        assert_eq!(
            check_pipeline(&pipeline, &app(true), &clusters()),
            Err(PipelineError::SurgeWithTraffic { step: 0 })
        );
    }

    #[test]
    fn weights_are_percentages_that_sum_to_100() {
        let mut step = full(None);
        step.traffic = Some(TrafficStep {
            contender: Some(140),
            ..Default::default()
        });
        let pipeline = Pipeline {
            steps: vec![step.clone()],
        };
        let error = check_pipeline(&pipeline, &app(true), &clusters()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "steps[0].traffic.contender: 140 is not a percentage; give a weight from 0 to 100"
        );
        step.traffic = Some(TrafficStep {
            contender: Some(60),
            incumbent: Some(60),
            routes: None,
        });
        let pipeline = Pipeline { steps: vec![step] };
        assert!(matches!(
            check_pipeline(&pipeline, &app(true), &clusters()),
            Err(PipelineError::WeightsDoNotSum { .. })
        ));
    }

    #[test]
    fn traffic_without_a_provider_is_rejected() {
        let pipeline = Pipeline {
            steps: vec![full(None)],
        };
        assert_eq!(
            check_pipeline(&pipeline, &app(false), &clusters()),
            Err(PipelineError::TrafficWithoutProvider { step: 0 })
        );
    }
}
