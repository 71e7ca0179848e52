//! What `helm template` prints, as objects, and the files it is given.

use prism_api::application::Manifest;
use serde_json::Value;

/// The name of the `layer`th values file in Helm's working directory.
pub(crate) fn values_file_name(layer: usize) -> String {
    format!("values-{layer}.yaml")
}

/// The objects of `helm template`'s multi-document YAML: empty documents skipped, a `kind: List`
/// expanded into its items.
pub(crate) fn manifests(yaml: &str) -> Result<Vec<Manifest>, String> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|error| format!("not YAML: {error}"))?;
    let mut manifests = Vec::new();
    for document in documents {
        let Value::Object(mut object) = document else {
            return Err(format!("a document is not an object: {document}"));
        };
        if object.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match object.remove("items") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(other) => return Err(format!("a List's items are not a list: {other}")),
            };
            for item in items {
                let Value::Object(item) = item else {
                    return Err(format!("an item of a List is not an object: {item}"));
                };
                manifests.push(Manifest::from(item));
            }
        } else {
            manifests.push(Manifest::from(object));
        }
    }
    Ok(manifests)
}

/// The `version` of a chart's Chart.yaml, as `helm show chart` prints it.
pub(crate) fn chart_version(chart_yaml: &str) -> Option<String> {
    let chart: Value = serde_saphyr::from_str(chart_yaml).ok()?;
    chart.get("version")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_documents_are_skipped_and_lists_expanded() {
        let yaml = "---\n# Source: web/templates/empty.yaml\n---\n# Source: web/templates/list.yaml\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
        let names: Vec<_> = manifests(yaml)
            .unwrap()
            .iter()
            .map(|manifest| format!("{}/{}", manifest.kind().unwrap(), manifest.name().unwrap()))
            .collect();
        assert_eq!(names, ["ConfigMap/a", "ConfigMap/b", "Service/web"]);
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused() {
        assert!(manifests("--- just text\n").is_err());
    }

    #[test]
    fn a_chart_s_version_is_read_from_its_chart_yaml() {
        assert_eq!(
            chart_version("apiVersion: v2\nname: web\nversion: 1.1.0\nappVersion: \"1.1.0\"\n")
                .as_deref(),
            Some("1.1.0")
        );
    }
}
