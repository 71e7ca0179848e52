//! The state a step leaves one cluster in: per aspect, the value of the latest step at or before
//! it whose scope includes the cluster and which sets that aspect.

use prism_api::strategy::{ClusterScope, Pipeline, Route, Share};

use crate::model::ClusterInfo;

/// What a pipeline asks of one cluster at one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StepState<'a> {
    pub contender: Share,
    pub incumbent: Share,
    /// The contender's percent of the default route; the incumbent has the rest.
    pub contender_weight: u32,
    /// None until a step sets routes: the routes stay as the incumbent left them.
    pub routes: Option<&'a [Route]>,
    /// The surge limit of the latest step that set capacity.
    pub max_surge: Option<u32>,
}

impl StepState<'_> {
    /// Before any step: the incumbent runs everything and takes all of the traffic.
    pub const INITIAL: StepState<'static> = StepState {
        contender: Share::Percent(0),
        incumbent: Share::Percent(100),
        contender_weight: 0,
        routes: None,
        max_surge: None,
    };
}

/// The state of the cluster at `clusters[cluster]` once `pipeline` reached step `step` (clamped to
/// the last step).
pub(crate) fn state_at<'a>(
    pipeline: &'a Pipeline,
    step: usize,
    clusters: &[ClusterInfo],
    cluster: usize,
) -> StepState<'a> {
    let mut state = StepState::INITIAL;
    let reached = pipeline.steps.iter().take(step.saturating_add(1));
    for step in reached.filter(|step| in_scope(step.clusters.as_ref(), clusters, cluster)) {
        if let Some(capacity) = &step.capacity {
            state.contender = capacity.contender.unwrap_or(state.contender);
            state.incumbent = capacity.incumbent.unwrap_or(state.incumbent);
            state.max_surge = capacity.max_surge;
        }
        if let Some(traffic) = &step.traffic {
            state.contender_weight = match (traffic.contender, traffic.incumbent) {
                (Some(contender), _) => contender.min(100),
                (None, Some(incumbent)) => 100 - incumbent.min(100),
                (None, None) => state.contender_weight,
            };
            if let Some(routes) = &traffic.routes {
                state.routes = Some(routes);
            }
        }
    }
    state
}

/// Whether a step scoped by `scope` changes the cluster at `clusters[cluster]`. A scope that
/// gives several fields asks for all of them.
pub(crate) fn in_scope(
    scope: Option<&ClusterScope>,
    clusters: &[ClusterInfo],
    cluster: usize,
) -> bool {
    let Some(scope) = scope else { return true };
    let info = &clusters[cluster];
    scope.first.is_none_or(|first| cluster < first as usize)
        && scope
            .names
            .as_ref()
            .is_none_or(|names| names.contains(&info.name))
        && scope
            .region
            .as_ref()
            .is_none_or(|region| *region == info.region)
}

#[cfg(test)]
mod tests {
    use prism_api::strategy::{CapacityStep, Step, TrafficStep};

    use super::*;

    fn clusters() -> Vec<ClusterInfo> {
        ["eu-1:eu", "eu-2:eu", "us-1:us"]
            .iter()
            .map(|spec| {
                let (name, region) = spec.split_once(':').unwrap();
                ClusterInfo {
                    name: name.into(),
                    region: region.into(),
                }
            })
            .collect()
    }

    fn step(name: &str, contender: u32, scope: Option<ClusterScope>) -> Step {
        Step {
            name: name.into(),
            capacity: Some(CapacityStep {
                contender: Some(Share::Percent(contender)),
                ..Default::default()
            }),
            clusters: scope,
            ..Default::default()
        }
    }

    #[test]
    fn an_aspect_left_out_keeps_the_value_of_the_previous_step() {
        let mut traffic = step("traffic", 50, None);
        traffic.capacity = None;
        traffic.traffic = Some(TrafficStep {
            contender: Some(20),
            ..Default::default()
        });
        let pipeline = Pipeline {
            steps: vec![step("capacity", 50, None), traffic],
        };
        let state = state_at(&pipeline, 1, &clusters(), 0);
        assert_eq!(state.contender, Share::Percent(50));
        assert_eq!(state.incumbent, Share::Percent(100));
        assert_eq!(state.contender_weight, 20);
    }

    #[test]
    fn a_cluster_outside_a_step_scope_keeps_its_earlier_state() {
        let vanguard = ClusterScope {
            first: Some(1),
            ..Default::default()
        };
        let pipeline = Pipeline {
            steps: vec![
                step("staging", 10, None),
                step("vanguard", 100, Some(vanguard)),
            ],
        };
        assert_eq!(
            state_at(&pipeline, 1, &clusters(), 0).contender,
            Share::Percent(100)
        );
        assert_eq!(
            state_at(&pipeline, 1, &clusters(), 1).contender,
            Share::Percent(10)
        );
    }

    #[test]
    fn region_and_name_scopes_select_their_clusters() {
        let eu = ClusterScope {
            region: Some("eu".into()),
            ..Default::default()
        };
        let us_1 = ClusterScope {
            names: Some(vec!["us-1".into()]),
            ..Default::default()
        };
        let clusters = clusters();
        assert_eq!(
            (0..3)
                .map(|c| in_scope(Some(&eu), &clusters, c))
                .collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(
            (0..3)
                .map(|c| in_scope(Some(&us_1), &clusters, c))
                .collect::<Vec<_>>(),
            [false, false, true]
        );
    }

    #[test]
    fn an_incumbent_weight_alone_gives_the_contender_the_rest() {
        let mut only_incumbent = step("shift", 100, None);
        only_incumbent.traffic = Some(TrafficStep {
            incumbent: Some(70),
            ..Default::default()
        });
        let pipeline = Pipeline {
            steps: vec![only_incumbent],
        };
        assert_eq!(state_at(&pipeline, 0, &clusters(), 0).contender_weight, 30);
    }
}
