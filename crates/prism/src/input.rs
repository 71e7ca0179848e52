//! Reading an application file: multi-document YAML with an Application and, optionally, the
//! Strategy or ClusterStrategy it names. Strict where the API server is lenient: an unknown field
//! is an error here (the API server would silently prune it), named by its path.

use std::fmt;

use kube::CustomResourceExt;
use prism_api::application::Target;
use prism_api::strategy::Pipeline;
use prism_api::validate::{self, AppTraffic, Errors, ValidationError, ValidationErrors};
use prism_api::{Application, ClusterStrategy, Strategy};
use prism_engine::{Clusters, check_pipeline};
use serde::de::DeserializeOwned;
use serde_json::Value;

const API_VERSION: &str = "prism.dev/v1alpha1";

/// The documents of an application file, checked.
#[derive(Clone, Debug)]
pub struct Input {
    pub application: Application,
    /// The strategy the application rolls out under: inline, or a document of the file.
    pub pipeline: Pipeline,
}

/// Something wrong in one document of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// Which document, e.g. `Application/web` or `document 2`.
    pub document: String,
    /// The field, e.g. `spec.strategy.steps[2].traffic.contender`; empty for the whole file.
    pub path: String,
    /// The value found there, as JSON, when there is one.
    pub value: Option<String>,
    /// What is wrong, and the fix.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.document)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(value) = &self.value {
            write!(f, " (value: {value})")?;
        }
        Ok(())
    }
}

/// Every error in the file, in document order.
pub type InputErrors = Errors<InputError>;

/// Parses and validates an application file's text.
pub fn read(text: &str) -> Result<Input, InputErrors> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|error| {
        Errors(vec![InputError {
            document: "file".into(),
            path: String::new(),
            value: None,
            message: format!("not valid YAML: {error}"),
        }])
    })?;

    let mut errors = Vec::new();
    let mut applications = Vec::new();
    let mut strategies = Vec::new();
    let mut cluster_strategies = Vec::new();
    for (index, document) in documents
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
    {
        let label = label(index, &document);
        let fail = |path: &str, value: Option<&Value>, message: String| InputError {
            document: label.clone(),
            path: path.into(),
            value: value.map(Value::to_string),
            message,
        };
        let api_version = document.get("apiVersion");
        if api_version.and_then(Value::as_str) != Some(API_VERSION) {
            errors.push(fail(
                "apiVersion",
                api_version,
                format!("expected {API_VERSION}"),
            ));
            continue;
        }
        match document.get("kind").and_then(Value::as_str) {
            Some("Application") => applications.push((label.clone(), typed::<Application>(document, &label, &mut errors))),
            Some("Strategy") => strategies.push(typed::<Strategy>(document, &label, &mut errors)),
            Some("ClusterStrategy") => cluster_strategies.push(typed::<ClusterStrategy>(document, &label, &mut errors)),
            _ => errors.push(fail(
                "kind",
                document.get("kind"),
                "expected Application, Strategy or ClusterStrategy: an application file holds one Application and the strategy it names".into(),
            )),
        }
    }

    let application = match applications.as_slice() {
        [(label, Some(application))] => Some((label.clone(), application.clone())),
        [_] => None,
        _ => {
            errors.push(InputError {
                document: "file".into(),
                path: String::new(),
                value: None,
                message: format!(
                    "expected exactly one Application document, found {}",
                    applications.len()
                ),
            });
            None
        }
    };
    let (Some((label, application)), []) = (application, errors.as_slice()) else {
        return Err(Errors(errors));
    };
    let strategies: Vec<Strategy> = strategies.into_iter().flatten().collect();
    let cluster_strategies: Vec<ClusterStrategy> =
        cluster_strategies.into_iter().flatten().collect();
    check(&label, application, &strategies, &cluster_strategies)
}

/// Validates the parsed documents and resolves the application's strategy.
fn check(
    app_label: &str,
    application: Application,
    strategies: &[Strategy],
    cluster_strategies: &[ClusterStrategy],
) -> Result<Input, InputErrors> {
    let spec = &application.spec;
    let mut errors = Vec::new();
    collect(&mut errors, app_label, "", validate::application(spec));

    let traffic = AppTraffic::of(spec);
    let strategy = &spec.strategy;
    let named = |kind: &str, name: &str| format!("{kind}/{name}");
    let mut pipeline = strategy.inline();
    if let Some(inline) = &pipeline {
        // A Service target's versions have their capacity given: the engine runs its steps so.
        let checked = match spec.target {
            Some(_) => Target::pipeline(inline),
            None => inline.clone(),
        };
        check_effective_states(&mut errors, app_label, &checked, "spec.strategy.", traffic);
    }
    if let Some(name) = &strategy.name {
        match strategies
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(name))
        {
            Some(found) => pipeline = Some(found.pipeline().clone()),
            None => errors.push(missing_strategy(
                app_label,
                "spec.strategy.name",
                "Strategy",
                name,
            )),
        }
    }
    if let Some(name) = &strategy.cluster_strategy_name {
        match cluster_strategies
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(name))
        {
            Some(found) => pipeline = Some(found.pipeline().clone()),
            None => errors.push(missing_strategy(
                app_label,
                "spec.strategy.clusterStrategyName",
                "ClusterStrategy",
                name,
            )),
        }
    }
    // Every strategy document is checked; the one the application names, against the application.
    let documents = strategies
        .iter()
        .map(|s| ("Strategy", &s.metadata, s.pipeline(), &strategy.name))
        .chain(cluster_strategies.iter().map(|s| {
            let named_by_app = &strategy.cluster_strategy_name;
            ("ClusterStrategy", &s.metadata, s.pipeline(), named_by_app)
        }));
    for (kind, metadata, steps, named_by_app) in documents {
        let name = metadata.name.as_deref().unwrap_or("");
        let traffic = if named_by_app.as_deref() == Some(name) {
            traffic
        } else {
            AppTraffic::Unknown
        };
        let document = named(kind, name);
        collect(
            &mut errors,
            &document,
            "",
            validate::pipeline(steps, "spec.steps", traffic),
        );
        check_effective_states(&mut errors, &document, steps, "spec.", traffic);
    }

    match pipeline {
        Some(pipeline) if errors.is_empty() => Ok(Input {
            application,
            pipeline,
        }),
        _ => Err(Errors(errors)),
    }
}

fn missing_strategy(document: &str, path: &str, kind: &str, name: &str) -> InputError {
    InputError {
        document: document.into(),
        path: path.into(),
        value: Some(Value::from(name).to_string()),
        message: format!(
            "no {kind} named {name:?} in this file: add it as a YAML document after the Application (prism plan reads no cluster)"
        ),
    }
}

/// The engine's rules for the pipeline whose steps are at `{parent}steps`, which need the state
/// each step leaves in each cluster, on any fleet: `prism plan` reads no cluster.
fn check_effective_states(
    errors: &mut Vec<InputError>,
    document: &str,
    pipeline: &Pipeline,
    parent: &str,
    traffic: AppTraffic,
) {
    // `validate` reports a pipeline without steps.
    if pipeline.steps.is_empty() {
        return;
    }
    let traffic = match traffic {
        AppTraffic::Shifted(_) => true,
        AppTraffic::None => false,
        // A Strategy on its own shifts traffic if one of its steps does.
        AppTraffic::Unknown => pipeline.steps.iter().any(|step| step.traffic.is_some()),
    };
    collect(
        errors,
        document,
        parent,
        check_pipeline(pipeline, traffic, Clusters::Any),
    );
}

/// The errors of `result` as errors of `document`, their paths below `parent`.
fn collect(
    errors: &mut Vec<InputError>,
    document: &str,
    parent: &str,
    result: Result<(), ValidationErrors>,
) {
    if let Err(found) = result {
        errors.extend(found.0.into_iter().map(
            |ValidationError {
                 path,
                 value,
                 message,
             }| InputError {
                document: document.into(),
                path: format!("{parent}{path}"),
                value: Some(value),
                message,
            },
        ));
    }
}

/// `Kind/name` when the document says, else its place in the file.
fn label(index: usize, document: &Value) -> String {
    let kind = document.get("kind").and_then(Value::as_str);
    let name = document.pointer("/metadata/name").and_then(Value::as_str);
    match (kind, name) {
        (Some(kind), Some(name)) => format!("{kind}/{name}"),
        _ => format!("document {}", index + 1),
    }
}

/// Deserializes one document, reporting every unknown field and the first type error by path.
fn typed<T: DeserializeOwned + CustomResourceExt>(
    document: Value,
    label: &str,
    errors: &mut Vec<InputError>,
) -> Option<T> {
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let result: Result<T, _> = {
        let mut record = |path: serde_ignored::Path| unknown.push(segments(&path));
        let ignoring = serde_ignored::Deserializer::new(document, &mut record);
        serde_path_to_error::deserialize(ignoring)
    };
    let schema = serde_json::to_value(
        T::crd().spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref()),
    )
    .unwrap_or_default();
    // The generated resource types read apiVersion and kind as type information, not as fields;
    // `read` has checked both.
    let root_type_fields =
        |path: &[Segment]| matches!(path, [Segment::Field(f)] if f == "apiVersion" || f == "kind");
    for path in unknown.into_iter().filter(|path| !root_type_fields(path)) {
        let (field, parent) = match path.split_last() {
            Some((Segment::Field(field), parent)) => (field.clone(), parent),
            _ => (String::new(), path.as_slice()),
        };
        let mut message = format!("unknown field `{field}`: remove it, or fix its spelling");
        let known = fields_at(&schema, parent);
        if !known.is_empty() {
            message.push_str(&format!("; expected one of: {}", known.join(", ")));
        }
        errors.push(InputError {
            document: label.into(),
            path: format_path(&path),
            value: None,
            message,
        });
    }
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(InputError {
                document: label.into(),
                path: error_path(error.path()),
                value: None,
                message: error.inner().to_string(),
            });
            None
        }
    }
}

/// `spec.steps[2].traffic` for a serde_path_to_error path.
fn error_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

enum Segment {
    Field(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path) -> Vec<Segment> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut segments = segments(parent);
            segments.push(Segment::Index(*index));
            segments
        }
        Path::Map { parent, key } => {
            let mut segments = segments(parent);
            segments.push(Segment::Field(key.clone()));
            segments
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

/// `spec.steps[2].weigth`.
fn format_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Field(field) if path.is_empty() => path.push_str(field),
            Segment::Field(field) => {
                path.push('.');
                path.push_str(field);
            }
            Segment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The fields the CRD schema knows at `path`.
fn fields_at(schema: &Value, path: &[Segment]) -> Vec<String> {
    let node = path.iter().try_fold(schema, |node, segment| match segment {
        Segment::Field(field) => node.get("properties")?.get(field),
        Segment::Index(_) => node.get("items"),
    });
    let properties = node
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object);
    properties
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}
