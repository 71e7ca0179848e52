//! One match of a user's rule narrowed by a route's condition: the requests that match both.
//!
//! The result must be strictly more specific than the source match by the Gateway API's
//! precedence (longest path prefix, then most headers, then most query parameters), so that the
//! managed rule wins over the rule it copies whatever the implementation does with rule order.

use prism_api::strategy::RouteMatch;
use serde_json::{Map, Value, json};

use super::match_type;

/// The source match with the route's condition added; None when no request matches both (a
/// path prefix outside the source's path); an error, saying why, when Prism cannot write the
/// intersection as one match that beats the source.
pub(super) fn narrow(
    source: &Value,
    route: &RouteMatch,
    grpc: bool,
) -> Result<Option<Value>, String> {
    if grpc && route.header.is_none() {
        return Err(
            "a GRPCRoute matches a service, a method and headers, not paths or query parameters: give the route a header match"
                .into(),
        );
    }
    let mut narrowed = source.as_object().cloned().unwrap_or_default();
    if let Some(header) = &route.header {
        let added = json!({
            "name": header.name,
            "type": match_type(header.match_type),
            "value": header.value,
        });
        add_keyed(&mut narrowed, "headers", added, |name| {
            name.eq_ignore_ascii_case(&header.name)
        })
        .map_err(|()| {
            format!(
                "the rule already matches header {}: a route adds its header to the rule's matches, so choose another header",
                header.name
            )
        })?;
    } else if let Some(param) = &route.query_param {
        let added = json!({
            "name": param.name,
            "type": match_type(param.match_type),
            "value": param.value,
        });
        add_keyed(&mut narrowed, "queryParams", added, |name| name == param.name).map_err(
            |()| {
                format!(
                    "the rule already matches query parameter {}: a route adds its parameter to the rule's matches, so choose another parameter",
                    param.name
                )
            },
        )?;
    } else if let Some(prefix) = &route.path_prefix {
        let (kind, path) = path_of(source);
        match kind {
            "PathPrefix" if is_strictly_under(prefix, path) => {
                narrowed.insert(
                    "path".into(),
                    json!({"type": "PathPrefix", "value": prefix}),
                );
            }
            "PathPrefix" if is_under(path, prefix) => {
                return Err(format!(
                    "its path prefix {path} is not wider than the route's {prefix}, so the route would not win over the rule: use a prefix under {path}"
                ));
            }
            "PathPrefix" => return Ok(None),
            "Exact" if is_under(path, prefix) => {
                return Err(format!(
                    "its exact path {path} lies under the route's prefix {prefix}, so the route would not win over the rule: use a prefix that leaves {path} out"
                ));
            }
            "Exact" => return Ok(None),
            _ => {
                return Err(format!(
                    "it matches paths of type {kind} ({path}), which Prism cannot narrow to the prefix {prefix}: give the route a header or query parameter match instead, or the rule a PathPrefix"
                ));
            }
        }
    } else {
        return Err(
            "the route has no header, pathPrefix or queryParam match (a subdomain route gets an HTTPRoute of its own)"
                .into(),
        );
    }
    Ok(Some(Value::Object(narrowed)))
}

/// `PathPrefix /api`, for messages.
pub(super) fn describe_path(source: &Value) -> String {
    let (kind, path) = path_of(source);
    format!("{kind} {path}")
}

/// The match's path type and value, with the Gateway API's default, PathPrefix `/`.
fn path_of(source: &Value) -> (&str, &str) {
    let path = &source["path"];
    (
        path["type"].as_str().unwrap_or("PathPrefix"),
        path["value"].as_str().unwrap_or("/"),
    )
}

/// Appends `added` to the list `key` (a list keyed by name), unless an entry has the same name.
fn add_keyed(
    narrowed: &mut Map<String, Value>,
    key: &str,
    added: Value,
    same_name: impl Fn(&str) -> bool,
) -> Result<(), ()> {
    let list = narrowed
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return Err(());
    };
    if list
        .iter()
        .any(|entry| same_name(entry["name"].as_str().unwrap_or_default()))
    {
        return Err(());
    }
    list.push(added);
    Ok(())
}

/// Whether `path` lies under `prefix` as the Gateway API matches prefixes: element by element,
/// a trailing `/` ignored (`/api` covers `/api` and `/api/v1`, not `/apis`).
pub(super) fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn is_strictly_under(path: &str, prefix: &str) -> bool {
    is_under(path, prefix) && path.trim_end_matches('/') != prefix.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_element_by_element() {
        assert!(is_under("/api/v1", "/api"));
        assert!(is_under("/api", "/api/"));
        assert!(is_under("/beta", "/"));
        assert!(!is_under("/apis", "/api"));
        assert!(!is_under("/", "/api"));
        assert!(is_strictly_under("/api/v1", "/api/"));
        assert!(!is_strictly_under("/api/", "/api"));
        assert!(!is_strictly_under("/", "/"));
    }
}
