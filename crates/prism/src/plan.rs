//! `prism plan`: an application's rollout, simulated by the engine on an idealised fleet, as a
//! table (or JSON for scripts). A chart template (`spec.template.chart`) is rendered by helm
//! first, as the controller renders it, with its inline values: the values files of
//! `valuesFrom` live in a cluster, which plan does not read, so it refuses them.

use std::borrow::Cow;
use std::fmt::Write as _;

use prism_api::application::{DAEMON_SET_CAPACITY, Target};
use prism_api::chart::WorkloadKind;
use prism_api::strategy::{MatchType, RouteMatch};
use prism_api::validate::ValidationError;
use prism_chart::Helm;
use prism_engine::{
    AppPolicy, Capacity, ClusterInfo, ClusterRow, ResolvedRoute, Scenario, SimulateError, Timeline,
    VersionRow,
};

use crate::input::{self, Input, InputError, InputErrors};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(#[from] InputErrors),
    #[error("{0}")]
    Simulate(#[from] SimulateError),
    /// The chart could not be rendered for a reason of the machine's, not the file's: its
    /// repository does not answer, or helm cannot run.
    #[error("{0}")]
    Render(prism_chart::RenderError),
}

impl PlanError {
    /// 2 for input to fix (the file, or --fail-at), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            PlanError::Invalid(_) => 2,
            PlanError::Simulate(SimulateError::Stuck { .. }) => 1,
            PlanError::Simulate(_) => 2,
            PlanError::Render(_) => 1,
        }
    }
}

/// The idealised fleet: clusters c1..cN, the first half (rounded up) in region eu, the rest in us.
pub fn fleet(clusters: u32) -> Vec<ClusterInfo> {
    let eu = clusters.div_ceil(2);
    (1..=clusters)
        .map(|i| ClusterInfo {
            name: format!("c{i}"),
            region: if i <= eu { "eu" } else { "us" }.into(),
        })
        .collect()
}

/// Reads and checks an application file's text, renders its chart with `helm` if its template is
/// one, then simulates its rollout on `clusters` clusters, failing the analysis (or webhook) of
/// the step named `fail_at`.
pub async fn plan(
    text: &str,
    clusters: u32,
    fail_at: Option<&str>,
    helm: &Helm,
) -> Result<Timeline, PlanError> {
    let mut input = input::read(text)?;
    render_chart(&mut input, helm).await?;
    simulate(&input, clusters, fail_at)
}

/// Puts what the Application's chart renders into its template's manifests, checked as the
/// controller checks a render before it makes a Release of it.
async fn render_chart(input: &mut Input, helm: &Helm) -> Result<(), PlanError> {
    let Some(chart) = input.application.spec.template.chart.clone() else {
        return Ok(());
    };
    let name = kube::ResourceExt::name_any(&input.application);
    let document = format!("Application/{name}");
    let invalid = |path: &str, message: String| {
        PlanError::Invalid(prism_api::validate::Errors(vec![InputError {
            document: document.clone(),
            path: path.into(),
            value: None,
            message,
        }]))
    };
    if !chart.values_from.is_empty() {
        return Err(invalid(
            "spec.template.chart.valuesFrom",
            "prism plan reads no cluster, so it cannot read these values files: plan a copy of the file with their values in spec.template.chart.values".into(),
        ));
    }
    let namespace = input
        .application
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let rendered = match helm.render(&chart, &[], &name, &namespace).await {
        Ok(rendered) => rendered.manifests,
        Err(error) => {
            return Err(match error.field() {
                Some(field) => invalid(field, error.to_string()),
                None => PlanError::Render(error),
            });
        }
    };
    if let Err(errors) = prism_api::validate::rendered(&input.application.spec, &rendered) {
        let errors = errors.0.into_iter().map(
            |ValidationError {
                 path,
                 value,
                 message,
             }| InputError {
                document: document.clone(),
                path,
                value: Some(value),
                message,
            },
        );
        return Err(PlanError::Invalid(prism_api::validate::Errors(
            errors.collect(),
        )));
    }
    input.application.spec.template.manifests = rendered;
    Ok(())
}

/// Simulates the rollout of a read (and rendered) application file.
pub fn simulate(
    input: &Input,
    clusters: u32,
    fail_at: Option<&str>,
) -> Result<Timeline, PlanError> {
    let spec = &input.application.spec;
    let app = AppPolicy {
        traffic: spec.has_traffic(),
        max_versions: spec.versions.max,
        version_ttl: spec.versions.ttl,
        drain: None,
    };
    let template = &spec.template;
    // A Service target's versions have their capacity given (one copy of the Service each).
    let (capacity, pipeline) = match spec.target {
        Some(_) => (
            Some(Capacity::Replicas(1)),
            Cow::Owned(Target::pipeline(&input.pipeline)),
        ),
        // A StatefulSet's incumbent runs the rest of the contender's pods (rolled out in place).
        None => (
            template.full_capacity().map(Capacity::from),
            prism_controller::workload::engine_pipeline(template, &input.pipeline),
        ),
    };
    // `input::read` validated the template, which guarantees its capacity.
    let Some(capacity) = capacity else {
        return Err(PlanError::Invalid(prism_api::validate::Errors(vec![
            InputError {
                document: format!(
                    "Application/{}",
                    kube::ResourceExt::name_any(&input.application)
                ),
                path: "spec.template".into(),
                value: None,
                message: "the template's replicas or autoscaler bounds cannot be read".into(),
            },
        ])));
    };
    let clusters = fleet(clusters);
    // The simulated versions are revisions 1 and 2, named `old` and `new` unless the
    // Application names its versions.
    let name = kube::ResourceExt::name_any(&input.application);
    let versions = &input.application.spec.versions;
    let [old, new] = [(1, "old"), (2, "new")].map(|(revision, plain)| {
        versions
            .version_name(&name, revision)
            .unwrap_or(plain.into())
    });
    let scenario = Scenario {
        app: &app,
        capacity,
        pipeline: &pipeline,
        clusters: &clusters,
        fail_at,
        version_names: [&old, &new],
    };
    let mut timeline = prism_engine::simulate(&scenario)?;
    if template.workload_kind() == WorkloadKind::DaemonSet {
        on_other_nodes(&mut timeline);
    }
    Ok(timeline)
}

/// A DaemonSet's shares are hundredths of its nodes, and its incumbent runs on every node the
/// contender does not: the engine observes it whole while it has a pod (its pods cannot be
/// counted apart from the nodes), the plan shows the nodes it keeps.
fn on_other_nodes(timeline: &mut Timeline) {
    for cluster in timeline.rows.iter_mut().flat_map(|row| &mut row.clusters) {
        if let (Capacity::Replicas(new), Capacity::Replicas(old)) =
            (cluster.contender.capacity, cluster.incumbent.capacity)
            && old > 0
        {
            cluster.incumbent.capacity =
                Capacity::Replicas(old.min(DAEMON_SET_CAPACITY - new.min(DAEMON_SET_CAPACITY)));
        }
    }
}

/// The timeline as a table: one block per step, clusters in the same state on one line.
pub fn table(timeline: &Timeline) -> String {
    let blocks: Vec<Block> = timeline
        .rows
        .iter()
        .map(|row| Block::of(&row.clusters))
        .collect();
    let capacity_width = blocks
        .iter()
        .flat_map(|b| &b.groups)
        .map(|g| g.capacity_width())
        .max()
        .unwrap_or(1);
    let label_width = blocks
        .iter()
        .flat_map(|b| &b.groups)
        .map(|g| g.label.len())
        .max()
        .unwrap_or(0);
    let state_width = blocks
        .iter()
        .flat_map(|b| &b.groups)
        .map(|g| g.state(capacity_width).chars().count())
        .max()
        .unwrap_or(0);
    let name_width = timeline
        .rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("STEP".len());
    let time_width = timeline
        .rows
        .iter()
        .map(|r| r.elapsed.to_string().len())
        .max()
        .unwrap_or(0)
        .max("TIME".len());
    let clusters_width = label_width + 2 + state_width;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:name_width$}  {:time_width$}  {:clusters_width$}  GATE",
        "STEP", "TIME", "CLUSTERS"
    );
    for (row, block) in timeline.rows.iter().zip(&blocks) {
        for (i, group) in block.groups.iter().enumerate() {
            let (name, time, gate) = if i == 0 {
                (row.name.clone(), row.elapsed.to_string(), row.gate.as_str())
            } else {
                (String::new(), String::new(), "")
            };
            let label = format!("{}:", group.label);
            let state = group.state(capacity_width);
            let line = format!(
                "{name:name_width$}  {time:time_width$}  {label:label_width$} {state:state_width$}  {gate}",
                label_width = label_width + 1,
                state_width = state_width,
            );
            let _ = writeln!(out, "{}", line.trim_end());
            for route in &group.routes {
                let indent = name_width + time_width + label_width + 6;
                let _ = writeln!(out, "{:indent$}route {}", "", describe_route(route));
            }
        }
    }
    let outcome = match timeline.outcome {
        prism_engine::Outcome::Complete => "complete",
        prism_engine::Outcome::RolledBack => "rolled back",
    };
    let elapsed = timeline
        .rows
        .last()
        .map(|r| r.elapsed.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "\noutcome: {outcome} after {elapsed}");
    out
}

/// One timeline row's clusters, those in the same state together.
struct Block {
    groups: Vec<Group>,
}

/// Consecutive clusters (in schedule order) in the same state.
struct Group {
    label: String,
    contender: VersionRow,
    incumbent: VersionRow,
    routes: Vec<ResolvedRoute>,
}

impl Block {
    fn of(clusters: &[ClusterRow]) -> Block {
        let mut groups: Vec<(Vec<&str>, &ClusterRow)> = Vec::new();
        for cluster in clusters {
            match groups.last_mut() {
                Some((names, first)) if same_state(first, cluster) => names.push(&cluster.cluster),
                _ => groups.push((vec![&cluster.cluster], cluster)),
            }
        }
        let groups = groups
            .into_iter()
            .map(|(names, row)| Group {
                label: range_label(&names),
                contender: row.contender,
                incumbent: row.incumbent,
                routes: row.routes.clone(),
            })
            .collect();
        Block { groups }
    }
}

impl Group {
    fn capacity_width(&self) -> usize {
        capacity_text(self.contender.capacity)
            .len()
            .max(capacity_text(self.incumbent.capacity).len())
    }

    /// `new 1/ 10% · old 9/ 90%`, or `new 1 · old 9` without traffic.
    fn state(&self, capacity_width: usize) -> String {
        let version = |role: &str, row: VersionRow| {
            let capacity = capacity_text(row.capacity);
            match row.weight {
                Some(weight) => format!("{role} {capacity:>capacity_width$}/{weight:>3}%"),
                None => format!("{role} {capacity:>capacity_width$}"),
            }
        };
        format!(
            "{} · {}",
            version("new", self.contender),
            version("old", self.incumbent)
        )
    }
}

/// `10` replicas, `4-20` for an autoscaler's bounds, `0` for none.
fn capacity_text(capacity: Capacity) -> String {
    if capacity.is_zero() {
        "0".into()
    } else {
        capacity.to_string()
    }
}

fn same_state(a: &ClusterRow, b: &ClusterRow) -> bool {
    a.contender == b.contender && a.incumbent == b.incumbent && a.routes == b.routes
}

/// `c1`, `c1,c2` or `c1-c4`.
fn range_label(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [a, b] => format!("{a},{b}"),
        [first, .., last] => format!("{first}-{last}"),
    }
}

fn describe_route(route: &ResolvedRoute) -> String {
    let RouteMatch {
        header,
        path_prefix,
        query_param,
        subdomain,
    } = &route.matches;
    let matched = if let Some(header) = header {
        format!(
            "header {}{}{}",
            header.name,
            comparison(header.match_type),
            header.value
        )
    } else if let Some(prefix) = path_prefix {
        format!("path {prefix}*")
    } else if let Some(param) = query_param {
        format!(
            "query {}{}{}",
            param.name,
            comparison(param.match_type),
            param.value
        )
    } else if let Some(subdomain) = subdomain {
        format!("subdomain {subdomain}")
    } else {
        String::new()
    };
    format!("{} ({matched}) → {}", route.name, route.version)
}

/// How a route's value is shown: `: 1` for an exact value, ` ~ ^v1` for a regular expression.
fn comparison(match_type: MatchType) -> &'static str {
    match match_type {
        MatchType::Exact => ": ",
        MatchType::RegularExpression => " ~ ",
    }
}

#[cfg(test)]
mod tests {
    use prism_api::strategy::{HeaderMatch, QueryParamMatch};

    use super::*;

    fn route(matches: RouteMatch) -> ResolvedRoute {
        ResolvedRoute {
            name: "beta".into(),
            version: "v2".into(),
            matches,
        }
    }

    #[test]
    fn routes_show_their_match_and_how_it_compares() {
        let header = route(RouteMatch {
            header: Some(HeaderMatch {
                name: "x-beta".into(),
                value: "^1$".into(),
                match_type: MatchType::RegularExpression,
            }),
            ..Default::default()
        });
        let query = route(RouteMatch {
            query_param: Some(QueryParamMatch {
                name: "beta".into(),
                value: "1".into(),
                match_type: MatchType::Exact,
            }),
            ..Default::default()
        });
        assert_eq!(describe_route(&header), "beta (header x-beta ~ ^1$) → v2");
        assert_eq!(describe_route(&query), "beta (query beta: 1) → v2");
    }
}
