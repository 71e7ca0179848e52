//! Applications whose template is a Helm chart (`spec.template.chart`): the values files it is
//! rendered with, read by name from the Application's namespace, and its render by Helm itself
//! (`prism_chart`) when a Release is to be made. The Release keeps what came out
//! (`prism_api::chart`), so a Release never renders again, nor differently.
//!
//! A render is remembered per Application with what it was made from (the chart, its values and
//! their digest), so that a Release held back (a RolloutBlock, a pre-rollout webhook, an
//! unschedulable fleet) is not rendered again at each reconcile, and a chart that fails fails once
//! per change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use prism_api::application::Manifest;
use prism_api::chart::{self, Chart, MAX_RENDERED_BYTES, ValuesKind};
use prism_api::{Application, validate};
use prism_chart::{Helm, RenderError};
use tracing::info;

use crate::application::{Invalid, REASON_INVALID_SPEC};
use crate::error::{Error, ReleasesError};

/// The `Valid` condition's reason when a chart cannot be rendered: it or its version does not
/// exist, or its templates fail with these values.
pub const REASON_CHART_NOT_RENDERED: &str = "ChartNotRendered";
/// The reason when a values file the chart names is missing.
pub const REASON_VALUES_NOT_FOUND: &str = "ValuesNotFound";

/// Each Application's last render (by `namespace/name`), with the chart it was made from.
type Renders = HashMap<String, (Chart, Result<Arc<[Manifest]>, Invalid>)>;

/// Renders charts with Helm, remembering the last render of each Application.
pub struct Charts {
    helm: Helm,
    renders: Mutex<Renders>,
}

impl Charts {
    pub fn new(helm: Helm) -> Charts {
        Charts {
            helm,
            renders: Mutex::default(),
        }
    }

    /// The objects `app`'s chart renders with `values_files` (its valuesFrom, read), checked as
    /// a template's objects are; or why they cannot make a Release. An error is what may pass by
    /// itself (an unreachable repository, Helm that cannot run), retried as a failed reconcile.
    pub async fn render(
        &self,
        app: &Application,
        chart: &Chart,
        values_files: &[String],
    ) -> Result<Result<Arc<[Manifest]>, Invalid>, Error> {
        let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
        if let Some((made_from, outcome)) = self.lock().get(&key)
            && made_from == chart
        {
            return Ok(outcome.clone());
        }
        let namespace = app.namespace().unwrap_or_default();
        let outcome = match self
            .helm
            .render(chart, values_files, &app.name_any(), &namespace)
            .await
        {
            Ok(rendered) => {
                info!(
                    application = %key,
                    chart = %chart.name,
                    version = %chart.version,
                    objects = rendered.manifests.len(),
                    took_ms = rendered.took.as_millis() as u64,
                    "rendered the chart"
                );
                check(app, rendered.manifests).map(Arc::from)
            }
            Err(error) => Err(refusal(error)?),
        };
        self.lock().insert(key, (chart.clone(), outcome.clone()));
        Ok(outcome)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Renders> {
        self.renders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a render says of the Application: the field at fault and Helm's own words; or an error
/// when the failure is not the Application's.
fn refusal(error: RenderError) -> Result<Invalid, Error> {
    let Some(field) = error.field() else {
        return Err(ReleasesError::Render(error.to_string()).into());
    };
    Ok(Invalid {
        reason: REASON_CHART_NOT_RENDERED,
        message: format!("{field}: {error}"),
    })
}

/// The rendered objects, if they can make a Release: valid as a template's objects, and small
/// enough to keep.
fn check(app: &Application, manifests: Vec<Manifest>) -> Result<Vec<Manifest>, Invalid> {
    if let Err(errors) = validate::rendered(&app.spec, &manifests) {
        return Err(Invalid {
            reason: REASON_INVALID_SPEC,
            message: errors
                .0
                .iter()
                .map(|error| format!("{}: {}", error.path, error.message))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let kept = chart::compress(&manifests).len();
    if kept > MAX_RENDERED_BYTES {
        return Err(Invalid {
            reason: REASON_CHART_NOT_RENDERED,
            message: format!(
                "spec.template.chart: the chart renders {} objects, {kept} bytes compressed, more than the {MAX_RENDERED_BYTES} a Release can keep: turn off what the application does not need in its values",
                manifests.len()
            ),
        });
    }
    Ok(manifests)
}

/// The values files `chart.valuesFrom` names, read from `namespace` of the management cluster,
/// in order; a missing one is the Application's fault, named by its field.
pub async fn values_files(
    client: &Client,
    namespace: &str,
    chart: &Chart,
) -> Result<Result<Vec<String>, Invalid>, Error> {
    let mut files = Vec::with_capacity(chart.values_from.len());
    for (i, reference) in chart.values_from.iter().enumerate() {
        let field = format!("spec.template.chart.valuesFrom[{i}]");
        let key = reference.key();
        let read = match reference.kind {
            ValuesKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
                .map(|found| {
                    found.map(|config_map| config_map.data.and_then(|mut data| data.remove(key)))
                }),
            ValuesKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await
                .map(|found| {
                    found.map(|secret| {
                        secret
                            .data
                            .and_then(|mut data| data.remove(key))
                            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                    })
                }),
        }
        .map_err(|source| ReleasesError::ReadValues {
            object: format!("{:?} {namespace}/{}", reference.kind, reference.name),
            source,
        })?;
        match read {
            Some(Some(file)) => files.push(file),
            Some(None) => {
                return Ok(Err(Invalid {
                    reason: REASON_VALUES_NOT_FOUND,
                    message: format!(
                        "{field}.key: {:?} {} has no key {key:?}: name the key that holds the values (default values.yaml)",
                        reference.kind, reference.name
                    ),
                }));
            }
            None => {
                return Ok(Err(Invalid {
                    reason: REASON_VALUES_NOT_FOUND,
                    message: format!(
                        "{field}.name: no {:?} named {:?} in namespace {namespace}: create it, or fix the name",
                        reference.kind, reference.name
                    ),
                }));
            }
        }
    }
    Ok(Ok(files))
}

/// The chart as its Release keeps it: with the digest of the values files it is rendered with,
/// when it has any, so that their change is a new version.
pub fn with_values_digest(chart: &Chart, values_files: &[String]) -> Chart {
    let mut chart = chart.clone();
    chart.values_digest = (!values_files.is_empty()).then(|| {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for file in values_files {
            // The length first, so that the files' boundaries are part of the digest.
            context.update(&(file.len() as u64).to_be_bytes());
            context.update(file.as_bytes());
        }
        let digest = context.finish();
        let hex: String = digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("sha256:{hex}")
    });
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_digest_follows_the_files_and_their_boundaries() {
        let chart = Chart::default();
        assert_eq!(with_values_digest(&chart, &[]).values_digest, None);
        let digest = |files: &[&str]| {
            let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
            with_values_digest(&chart, &files).values_digest.unwrap()
        };
        assert_eq!(digest(&["a: 1"]), digest(&["a: 1"]));
        assert_ne!(digest(&["a: 1"]), digest(&["a: 2"]));
        assert_ne!(digest(&["a: 1", "b: 2"]), digest(&["a: 1b: 2"]));
        assert!(digest(&["a: 1"]).starts_with("sha256:"));
    }

    #[test]
    fn a_failure_of_the_chart_names_its_field_and_one_of_the_network_is_retried() {
        let invalid = refusal(RenderError::VersionNotFound {
            chart: "web".into(),
            version: "9.9.9".into(),
            repository: "http://127.0.0.1:8879".into(),
            newest: "1.1.0".into(),
        })
        .unwrap();
        assert_eq!(invalid.reason, REASON_CHART_NOT_RENDERED);
        assert!(
            invalid.message.starts_with("spec.template.chart.version: "),
            "{}",
            invalid.message
        );
        assert!(
            refusal(RenderError::RepositoryUnreachable {
                repository: "http://127.0.0.1:1".into(),
                message: "connection refused".into(),
            })
            .is_err()
        );
    }
}
