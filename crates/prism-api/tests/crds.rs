//! The generated CRDs are what the API server accepts: structural schemas, and CEL rules that
//! compile over bounded lists. (The API server's own cost estimate runs in `prism`'s end-to-end
//! test, which installs the CRDs.)

use kube_cel::compile_schema;
use serde_json::Value;

fn schemas() -> Vec<(String, Value)> {
    prism_api::crds()
        .into_iter()
        .map(|crd| {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref());
            (crd.spec.names.kind, serde_json::to_value(schema).unwrap())
        })
        .collect()
}

/// Calls `visit` with every node of a schema and its path.
fn walk(node: &Value, path: &str, visit: &mut dyn FnMut(&Value, &str)) {
    visit(node, path);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            walk(property, &format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), visit);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        walk(additional, &format!("{path}{{}}"), visit);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in node
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            walk(branch, &format!("{path}<{junctor}{i}>"), visit);
        }
    }
}

/// The rules of a structural schema that a derived schema can break: see
/// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
fn structural_errors(schema: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, "", &mut |node, path| {
        let typed = node.get("type").is_some();
        let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        let preserved =
            node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let in_junctor = path.ends_with('>');
        if in_junctor {
            for forbidden in [
                "type",
                "description",
                "default",
                "nullable",
                "additionalProperties",
                "properties",
                "items",
            ] {
                if node.get(forbidden).is_some() {
                    errors.push(format!("{path}: `{forbidden}` inside allOf/anyOf/oneOf"));
                }
            }
        } else if !typed && !int_or_string && !preserved {
            errors.push(format!("{path}: no type"));
        }
        if int_or_string && typed {
            errors.push(format!("{path}: x-kubernetes-int-or-string with a type"));
        }
        if node.get("$ref").is_some()
            || node.get("definitions").is_some()
            || node.get("$defs").is_some()
        {
            errors.push(format!("{path}: a reference; CRD schemas are inlined"));
        }
        if node.get("properties").is_some() && node.get("additionalProperties").is_some() {
            errors.push(format!("{path}: both properties and additionalProperties"));
        }
        if let Some(format) = node
            .get("format")
            .and_then(Value::as_str)
            .filter(|f| f.starts_with("uint"))
        {
            errors.push(format!(
                "{path}: format {format}, unknown to the API server"
            ));
        }
        if node.get("x-kubernetes-embedded-resource").is_some()
            && node.get("type") != Some(&Value::from("object"))
        {
            errors.push(format!("{path}: an embedded resource that is no object"));
        }
    });
    if let Some(metadata) = schema.pointer("/properties/metadata")
        && metadata
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k != "type" && k != "description"))
    {
        errors.push(".metadata: restricted beyond its type".into());
    }
    errors
}

#[test]
fn every_crd_schema_is_structural() {
    assert_eq!(schemas().len(), 9);
    for (kind, schema) in schemas() {
        assert_eq!(structural_errors(&schema), Vec::<String>::new(), "{kind}");
    }
}

#[test]
fn the_structural_check_catches_what_it_names() {
    let broken = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "count": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        }
    });
    assert_eq!(
        structural_errors(&broken),
        vec![
            ".count<anyOf0>: `type` inside allOf/anyOf/oneOf".to_string(),
            ".count<anyOf1>: `type` inside allOf/anyOf/oneOf".to_string(),
            ".untyped: no type".to_string(),
        ]
    );
}

#[test]
fn every_cel_rule_compiles() {
    let mut rules = 0;
    for (kind, schema) in schemas() {
        walk(&schema, "", &mut |node, path| {
            let compiled = compile_schema(node);
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            assert!(errors.is_empty(), "{kind}{path}: {errors:?}");
            rules += node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
        });
    }
    assert!(rules > 30, "only {rules} rules found");
}

/// A list that a rule iterates over needs maxItems, or the API server prices the rule as if the
/// list were as long as a request can be, and refuses the CRD.
#[test]
fn every_list_under_a_rule_is_bounded() {
    for (kind, schema) in schemas() {
        walk(&schema, "", &mut |node, path| {
            if node.get("x-kubernetes-validations").is_none() {
                return;
            }
            walk(node, path, &mut |inner, inner_path| {
                if inner.get("type") == Some(&Value::from("array")) {
                    assert!(
                        inner.get("maxItems").is_some(),
                        "{kind}{inner_path}: a list without maxItems under a rule at {path}"
                    );
                }
            });
        });
    }
}

#[test]
fn short_names_and_categories_are_set() {
    let names: Vec<(String, Vec<String>, Vec<String>)> = prism_api::crds()
        .into_iter()
        .map(|crd| {
            let names = crd.spec.names;
            (
                names.kind,
                names.short_names.unwrap_or_default(),
                names.categories.unwrap_or_default(),
            )
        })
        .collect();
    for (kind, short_names, categories) in &names {
        assert_eq!(short_names.len(), 1, "{kind}");
        assert!(
            short_names[0].starts_with('p'),
            "{kind}: {short_names:?} may clash with built-in resources"
        );
        assert_eq!(categories, &["prism".to_string()], "{kind}");
    }
}
