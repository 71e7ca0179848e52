//! The rules a pipeline must follow for the engine to complete it, which need the state each step
//! leaves in each cluster: no traffic to a role without pods, and a contender with all of the
//! capacity and traffic everywhere at the end. Checked against the clusters an application is
//! scheduled to, or against any fleet, before it is scheduled.
//!
//! The field-level rules (weights are percentages, steps have unique names, ...) are
//! `prism_api::validate`'s; this check expects a pipeline that passed them, and reports in the same
//! [`ValidationError`]s. Paths are relative to the pipeline (`steps[2].traffic.contender`).

use std::collections::BTreeSet;
use std::fmt;

use prism_api::strategy::{ClusterScope, Pipeline, RouteTo, Share};
use prism_api::validate::{Errors, ValidationError, ValidationErrors};
use serde::Serialize;

use crate::effective::{ClusterPlace, StepState, states};
use crate::model::ClusterInfo;

/// The clusters a pipeline is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clusters<'a> {
    /// The clusters an application is scheduled to, in schedule order; errors name one of them.
    Scheduled(&'a [ClusterInfo]),
    /// Any fleet: one cluster of every kind the steps' scopes tell apart, for an application not
    /// scheduled yet or a Strategy on its own.
    Any,
}

/// Checks that `pipeline` completes on `clusters` and is safe on the way, for an application with
/// (`traffic`) or without a traffic provider: the last step applies to every cluster, no step sends
/// traffic (a weight or a route) to a role without capacity, and the last step leaves the contender
/// with all of the capacity (and traffic) everywhere.
///
/// Expects a pipeline that passed `prism_api::validate`; on any other it does not panic, but what
/// it reports is only as meaningful as the pipeline. Every error is collected, not just the first.
pub fn check_pipeline(
    pipeline: &Pipeline,
    traffic: bool,
    clusters: Clusters<'_>,
) -> Result<(), ValidationErrors> {
    let steps = &pipeline.steps;
    let Some(last) = steps.len().checked_sub(1) else {
        return Err(Errors(vec![ValidationError::new(
            "steps",
            steps,
            "the contender never reaches \"100%\" capacity: add a step that sets capacity.contender: \"100%\"",
        )]));
    };
    let last_path = format!("steps[{last}]");
    let mut errors = Vec::new();
    if let Some(scope) = steps[last].clusters.as_ref().filter(|s| !everywhere(s)) {
        errors.push(ValidationError::new(
            format!("{last_path}.clusters"),
            scope,
            "the last step must apply to every cluster, so that the Release completes everywhere: remove its clusters, or add a last step without them",
        ));
    }

    let mut reported = BTreeSet::new();
    let mut short_capacity = None;
    let mut short_traffic = None;
    for (place, name) in places(pipeline, clusters) {
        let mut end = StepState::INITIAL;
        for (k, state) in states(pipeline, place).enumerate() {
            end = state;
            if !traffic {
                continue;
            }
            for role in [RouteTo::Contender, RouteTo::Incumbent] {
                let (capacity, weight) = share_of(&state, role);
                let routed = state
                    .routes
                    .is_some_and(|routes| routes.iter().any(|route| route.to == role));
                if (weight > 0 || routed) && capacity.is_zero() && reported.insert((k, role)) {
                    errors.push(no_pods_for_traffic(pipeline, k, role, &state, name));
                }
            }
        }
        if end.contender != Share::Percent(100) {
            short_capacity.get_or_insert((end.contender, name));
        }
        if traffic && end.contender_weight != 100 {
            short_traffic.get_or_insert((end.contender_weight, name));
        }
    }
    if let Some((share, name)) = short_capacity {
        errors.push(ValidationError::new(
            format!("{last_path}.capacity.contender"),
            &share,
            format!(
                "the last step must leave the contender at \"100%\" capacity in every cluster{}: set capacity.contender: \"100%\" on the last step",
                left_at(name, share)
            ),
        ));
    }
    if let Some((weight, name)) = short_traffic {
        errors.push(ValidationError::new(
            format!("{last_path}.traffic.contender"),
            &weight,
            format!(
                "the last step must leave the contender 100% of the traffic in every cluster{}: set traffic.contender: 100 on the last step",
                left_at(name, format!("{weight}%"))
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(errors))
    }
}

/// The capacity and the weight of `role` in `state`.
fn share_of(state: &StepState, role: RouteTo) -> (Share, u32) {
    if role == RouteTo::Contender {
        (state.contender, state.contender_weight)
    } else {
        (state.incumbent, 100 - state.contender_weight)
    }
}

fn no_pods_for_traffic(
    pipeline: &Pipeline,
    k: usize,
    role: RouteTo,
    state: &StepState,
    cluster: Option<&str>,
) -> ValidationError {
    let role_name = if role == RouteTo::Contender {
        "contender"
    } else {
        "incumbent"
    };
    let step = &pipeline.steps[k];
    let field = if step.traffic.is_some() {
        format!(".traffic.{role_name}")
    } else if step.capacity.is_some() {
        format!(".capacity.{role_name}")
    } else {
        String::new()
    };
    #[derive(Serialize)]
    struct RoleState {
        capacity: Share,
        weight: u32,
    }
    let (capacity, weight) = share_of(state, role);
    let cluster = match cluster {
        Some(name) => format!("cluster {name}"),
        None => "some cluster".into(),
    };
    ValidationError::new(
        format!("steps[{k}]{field}"),
        &RoleState { capacity, weight },
        format!(
            "step {:?} sends traffic to the {role_name} while it runs no pods in {cluster}: give the {role_name} capacity in this step or an earlier one, or send it no traffic",
            step.name
        ),
    )
}

/// `, and leaves cluster c2 at 0%` after a rule, when the cluster is a scheduled one.
fn left_at(cluster: Option<&str>, value: impl fmt::Display) -> String {
    cluster
        .map(|name| format!(", and leaves cluster {name} at {value}"))
        .unwrap_or_default()
}

fn everywhere(scope: &ClusterScope) -> bool {
    scope.first.is_none() && scope.names.is_none() && scope.region.is_none()
}

/// The clusters to walk the steps over, each with its name when it is a scheduled one.
fn places<'c>(
    pipeline: &'c Pipeline,
    clusters: Clusters<'c>,
) -> Vec<(ClusterPlace<'c>, Option<&'c str>)> {
    match clusters {
        Clusters::Scheduled(clusters) => (0..clusters.len())
            .map(|index| {
                let place = ClusterPlace::scheduled(clusters, index);
                (place, place.name)
            })
            .collect(),
        Clusters::Any => cluster_kinds(pipeline)
            .into_iter()
            .map(|place| (place, None))
            .collect(),
    }
}

/// More kinds of cluster than this, and only one aspect (place, name, region) varies at a time.
const MAX_CLUSTER_KINDS: usize = 4096;

/// One cluster of every kind the steps' scopes tell apart: its place in schedule order (inside or
/// outside each `first`), its name (one a scope names, or none of them) and its region (likewise).
/// A cluster named by one step may be in any region and at any place, so every combination counts:
/// a strategy must be safe for all of them.
fn cluster_kinds(pipeline: &Pipeline) -> Vec<ClusterPlace<'_>> {
    let scopes = || pipeline.steps.iter().filter_map(|s| s.clusters.as_ref());
    let firsts: BTreeSet<usize> = scopes()
        .filter_map(|s| s.first)
        .map(|f| f as usize)
        .collect();
    // The last place inside each `first`, and one place beyond them all.
    let mut indices: Vec<usize> = firsts.iter().filter_map(|f| f.checked_sub(1)).collect();
    indices.push(firsts.last().copied().unwrap_or(0));
    let names: BTreeSet<Option<&str>> = scopes()
        .filter_map(|s| s.names.as_ref())
        .flatten()
        .map(|n| Some(n.as_str()))
        .chain([None])
        .collect();
    let regions: BTreeSet<Option<&str>> = scopes()
        .filter_map(|s| s.region.as_deref())
        .map(Some)
        .chain([None])
        .collect();

    let kind = |index, name, region| ClusterPlace {
        index,
        name,
        region,
    };
    let count = indices
        .len()
        .saturating_mul(names.len())
        .saturating_mul(regions.len());
    if count <= MAX_CLUSTER_KINDS {
        let mut kinds = Vec::new();
        for &index in &indices {
            for &name in &names {
                for &region in &regions {
                    kinds.push(kind(index, name, region));
                }
            }
        }
        return kinds;
    }
    let beyond = indices.last().copied().unwrap_or(0);
    let by_index = indices.iter().map(|&index| kind(index, None, None));
    let by_name = names.iter().map(|&name| kind(beyond, name, None));
    let by_region = regions.iter().map(|&region| kind(beyond, None, region));
    by_index.chain(by_name).chain(by_region).collect()
}
