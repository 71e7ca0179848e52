//! The state a step leaves one cluster in: per aspect, the value of the latest step at or before
//! it whose scope includes the cluster and which sets that aspect.

use prism_api::strategy::{ClusterScope, Pipeline, Route, Share, Step};

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

impl<'a> StepState<'a> {
    /// The state once `step` applied to the cluster: the aspects it sets replace the earlier ones.
    fn apply(&mut self, step: &'a Step) {
        if let Some(capacity) = &step.capacity {
            self.contender = capacity.contender.unwrap_or(self.contender);
            self.incumbent = capacity.incumbent.unwrap_or(self.incumbent);
            self.max_surge = capacity.max_surge;
        }
        if let Some(traffic) = &step.traffic {
            self.contender_weight = match (traffic.contender, traffic.incumbent) {
                (Some(contender), _) => contender.min(100),
                (None, Some(incumbent)) => 100 - incumbent.min(100),
                (None, None) => self.contender_weight,
            };
            if let Some(routes) = &traffic.routes {
                self.routes = Some(routes);
            }
        }
    }
}

/// A cluster as the steps' scopes see it: its place in schedule order (from 0), its name and its
/// region. `None` stands for a name or a region that no scope mentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClusterPlace<'c> {
    pub index: usize,
    pub name: Option<&'c str>,
    pub region: Option<&'c str>,
}

impl<'c> ClusterPlace<'c> {
    /// The scheduled cluster at `clusters[index]`.
    pub fn scheduled(clusters: &'c [ClusterInfo], index: usize) -> ClusterPlace<'c> {
        let info = &clusters[index];
        ClusterPlace {
            index,
            name: Some(&info.name),
            region: Some(&info.region),
        }
    }
}

/// The state `cluster` is in after each step of `pipeline`, in step order.
pub(crate) fn states<'a>(
    pipeline: &'a Pipeline,
    cluster: ClusterPlace<'_>,
) -> impl Iterator<Item = StepState<'a>> {
    pipeline
        .steps
        .iter()
        .scan(StepState::INITIAL, move |state, step| {
            if in_scope(step.clusters.as_ref(), cluster) {
                state.apply(step);
            }
            Some(*state)
        })
}

/// The state of `cluster` once `pipeline` reached step `step` (clamped to the last step).
pub(crate) fn state_at<'a>(
    pipeline: &'a Pipeline,
    step: usize,
    cluster: ClusterPlace<'_>,
) -> StepState<'a> {
    states(pipeline, cluster)
        .take(step.saturating_add(1))
        .last()
        .unwrap_or(StepState::INITIAL)
}

/// Whether a step scoped by `scope` changes `cluster`. A scope that gives several fields asks for
/// all of them.
pub(crate) fn in_scope(scope: Option<&ClusterScope>, cluster: ClusterPlace<'_>) -> bool {
    let Some(scope) = scope else { return true };
    scope
        .first
        .is_none_or(|first| cluster.index < first as usize)
        && scope.names.as_ref().is_none_or(|names| {
            cluster
                .name
                .is_some_and(|name| names.iter().any(|n| n == name))
        })
        && scope
            .region
            .as_ref()
            .is_none_or(|region| cluster.region == Some(region.as_str()))
}

#[cfg(test)]
mod tests {
    use prism_api::strategy::{CapacityStep, TrafficStep};

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
            webhooks: None,
            steps: vec![step("capacity", 50, None), traffic],
            waves: None,
        };
        let state = state_at(&pipeline, 1, ClusterPlace::scheduled(&clusters(), 0));
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
            webhooks: None,
            steps: vec![
                step("staging", 10, None),
                step("vanguard", 100, Some(vanguard)),
            ],
            waves: None,
        };
        assert_eq!(
            state_at(&pipeline, 1, ClusterPlace::scheduled(&clusters(), 0)).contender,
            Share::Percent(100)
        );
        assert_eq!(
            state_at(&pipeline, 1, ClusterPlace::scheduled(&clusters(), 1)).contender,
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
                .map(|c| in_scope(Some(&eu), ClusterPlace::scheduled(&clusters, c)))
                .collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(
            (0..3)
                .map(|c| in_scope(Some(&us_1), ClusterPlace::scheduled(&clusters, c)))
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
            webhooks: None,
            steps: vec![only_incumbent],
            waves: None,
        };
        assert_eq!(
            state_at(&pipeline, 0, ClusterPlace::scheduled(&clusters(), 0)).contender_weight,
            30
        );
    }
}
