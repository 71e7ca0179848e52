//! Helm's failures, told apart, each with a message fit for a condition a user reads.

use std::path::PathBuf;
use std::time::Duration;

use prism_api::chart::Chart;

use crate::output;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("chart {chart} was not found in the chart repository {repository}")]
    ChartNotFound { chart: String, repository: String },
    #[error(
        "version {version} of chart {chart} was not found in the chart repository {repository} (its newest version is {newest})"
    )]
    VersionNotFound {
        chart: String,
        version: String,
        repository: String,
        newest: String,
    },
    #[error("the chart repository {repository} cannot be reached: {message}")]
    RepositoryUnreachable { repository: String, message: String },
    /// A values file that is not YAML; `layer` counts the values files in order, the chart's
    /// inline values last.
    #[error("values file {layer} of chart {chart} {version} is not valid YAML: {message}")]
    InvalidValues {
        chart: String,
        version: String,
        layer: usize,
        message: String,
    },
    /// The chart's templates failed, with Helm's message (a `required` or `fail` of the
    /// chart's own among them).
    #[error("chart {chart} {version} from {repository} failed to render: {message}")]
    Template {
        chart: String,
        version: String,
        repository: String,
        message: String,
    },
    #[error("chart {chart} {version} rendered objects that are not valid: {message}")]
    Output {
        chart: String,
        version: String,
        message: String,
    },
    #[error("rendering chart {chart} {version} from {repository} took longer than {timeout:?}")]
    TimedOut {
        chart: String,
        version: String,
        repository: String,
        timeout: Duration,
    },
    #[error("helm ({path}) could not be run: {source}")]
    Helm {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("helm's working directory could not be made: {source}")]
    Workspace { source: std::io::Error },
}

impl RenderError {
    /// The Application's field at fault, when the failure is the chart's or its values' (the
    /// controller's `Valid` condition and `prism plan` name it); `None` when it may pass by
    /// itself or is the machine's (a repository that does not answer, helm that cannot run).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            RenderError::ChartNotFound { .. } => Some("spec.template.chart.name"),
            RenderError::VersionNotFound { .. } => Some("spec.template.chart.version"),
            RenderError::InvalidValues { .. } | RenderError::Template { .. } => {
                Some("spec.template.chart.values")
            }
            RenderError::Output { .. } => Some("spec.template.chart"),
            RenderError::RepositoryUnreachable { .. }
            | RenderError::TimedOut { .. }
            | RenderError::Helm { .. }
            | RenderError::Workspace { .. } => None,
        }
    }
}

/// Helm's message without its noise: from its `Error: ` line on, without that prefix nor the
/// advice to run with `--debug`.
pub(crate) fn helm_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.starts_with("Error: "))
        .unwrap_or(0);
    lines[start..]
        .iter()
        .map(|line| line.strip_prefix("Error: ").unwrap_or(line))
        .filter(|line| !line.starts_with("Use --debug flag"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Which failure Helm's `message` tells of. A chart that was not found may be a version that was
/// not found: the caller asks the repository to tell.
pub(crate) fn classify(chart: &Chart, message: &str, layers: usize) -> RenderError {
    if message.contains(" not found in ") && message.contains(" repository") {
        return RenderError::ChartNotFound {
            chart: chart.name.clone(),
            repository: chart.repository.clone(),
        };
    }
    if message.contains("is not a valid chart repository or cannot be reached") {
        return RenderError::RepositoryUnreachable {
            repository: chart.repository.clone(),
            message: message
                .split_once("cannot be reached: ")
                .map_or(message, |(_, why)| why)
                .to_owned(),
        };
    }
    if let Some(rest) = message.strip_prefix("failed to parse ")
        && let Some(layer) = (0..layers).find(|layer| {
            let name = output::values_file_name(*layer);
            rest.split_once(": ")
                .is_some_and(|(path, _)| path.ends_with(&format!("/{name}")))
        })
    {
        return RenderError::InvalidValues {
            chart: chart.name.clone(),
            version: chart.version.clone(),
            layer,
            message: rest
                .split_once(": ")
                .map_or(rest, |(_, why)| why)
                .to_owned(),
        };
    }
    RenderError::Template {
        chart: chart.name.clone(),
        version: chart.version.clone(),
        repository: chart.repository.clone(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Chart {
        Chart {
            repository: "http://127.0.0.1:8879".into(),
            name: "web".into(),
            version: "1.0.0".into(),
            ..Chart::default()
        }
    }

    #[test]
    fn helm_s_message_loses_its_prefix_and_debug_advice_only() {
        let stderr = "Error: execution error at (web/templates/deployment.yaml:9:15): replicaCount must be a number, not \"3\"\n\nUse --debug flag to render out invalid YAML\n";
        assert_eq!(
            helm_message(stderr),
            "execution error at (web/templates/deployment.yaml:9:15): replicaCount must be a number, not \"3\""
        );
    }

    #[test]
    fn a_values_file_that_is_not_yaml_is_named_by_its_place() {
        let message = format!(
            "failed to parse /tmp/prism-helm-x/{}: error converting YAML to JSON: yaml: line 1: did not find expected ',' or ']'",
            output::values_file_name(1)
        );
        let error = classify(&web(), &message, 2);
        assert!(
            matches!(error, RenderError::InvalidValues { layer: 1, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "values file 1 of chart web 1.0.0 is not valid YAML: error converting YAML to JSON: yaml: line 1: did not find expected ',' or ']'"
        );
    }
}
