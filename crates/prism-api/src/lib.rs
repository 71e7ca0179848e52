//! Prism's Kubernetes API, group `prism.dev`, version `v1alpha1`.

pub mod application;
pub mod chart;
pub mod cluster;
pub mod conditions;
pub mod labels;
pub mod metric_template;
pub mod release;
pub mod rollout_block;
mod rules;
pub mod side_version;
pub mod strategy;
pub mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use application::{Application, ApplicationSpec};
pub use cluster::{Cluster, ClusterSpec};
pub use metric_template::{ClusterMetricTemplate, MetricTemplate};
pub use release::{Release, ReleaseSpec};
pub use rollout_block::{RolloutBlock, RolloutBlockSpec};
pub use side_version::{SideVersion, SideVersionSpec};
pub use strategy::{ClusterStrategy, Pipeline, Strategy};

/// Every CRD of the API, as `prism crds` prints them and the cluster should have them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Application::crd(),
        Release::crd(),
        Strategy::crd(),
        ClusterStrategy::crd(),
        Cluster::crd(),
        RolloutBlock::crd(),
        MetricTemplate::crd(),
        ClusterMetricTemplate::crd(),
        SideVersion::crd(),
    ];
    for version in crds.iter_mut().flat_map(|crd| &mut crd.spec.versions) {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_unsigned_formats(schema);
        }
    }
    crds
}

/// schemars marks unsigned integers `format: uint32`, a format the API server does not know and
/// warns about on every apply; the `minimum: 0` beside it already says the same.
fn drop_unsigned_formats(schema: &mut JSONSchemaProps) {
    if schema
        .format
        .as_deref()
        .is_some_and(|f| f.starts_with("uint"))
    {
        schema.format = None;
    }
    let items = match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => vec![item.as_mut()],
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().collect(),
        None => vec![],
    };
    let additional = match &mut schema.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(additional)) => Some(additional.as_mut()),
        _ => None,
    };
    let nested = schema.properties.iter_mut().flat_map(|p| p.values_mut());
    let branches = [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
        .flatten();
    for child in items
        .into_iter()
        .chain(additional)
        .chain(nested)
        .chain(branches)
    {
        drop_unsigned_formats(child);
    }
}
