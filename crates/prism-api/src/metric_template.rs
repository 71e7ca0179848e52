//! `MetricTemplate` and `ClusterMetricTemplate`: metric checks written once, named by the
//! analysis steps of many strategies (`metrics[].templateRef`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::strategy::Metric;

/// A metric for the analysis steps of its namespace: a PromQL query with `{{app}}`,
/// `{{namespace}}`, `{{version}}` and `{{cluster}}`, and a threshold or a comparison of the
/// contender against the incumbent. A step's metric check overrides any field it sets itself.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "MetricTemplate",
    namespaced,
    shortname = "pmetric",
    category = "prism",
    doc = "A metric check for the analysis steps of its namespace.",
    printcolumn(name = "Query", type_ = "string", json_path = ".spec.query"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct MetricTemplateSpec(pub Metric);

/// A metric for the analysis steps of every namespace; a MetricTemplate of the same name in an
/// application's namespace takes precedence.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prism.dev",
    version = "v1alpha1",
    kind = "ClusterMetricTemplate",
    shortname = "pcmetric",
    category = "prism",
    doc = "A metric check for the analysis steps of every namespace.",
    printcolumn(name = "Query", type_ = "string", json_path = ".spec.query"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterMetricTemplateSpec(pub Metric);
