//! One `match` of a user's http entry narrowed by a route's condition: the requests that match
//! both. Istio takes the first entry whose match a request meets, and Prism's entries come
//! first, so a narrowed match needs only to be the intersection (unlike the Gateway API, where
//! it must also be more specific than its source).
//!
//! Within a match every field must hold; a route's condition is added as one more field:
//! a header (`headers.<name>`, lowercase as Istio requires), a query parameter
//! (`queryParams.<name>`), a path prefix (`uri.prefix`, a string prefix as Istio matches it:
//! `/beta` also takes `/betamax`), a subdomain (`authority.exact`, one match per authority).

use prism_api::strategy::{MatchType, RouteMatch};
use serde_json::{Map, Value, json};

/// The source match with the route's condition added: one match, or one per authority of a
/// subdomain route; None when no request meets both (a path outside the source's); an error,
/// saying why, when one match cannot say both.
pub(super) fn narrow(
    source: &Value,
    route: &RouteMatch,
    authorities: &[String],
) -> Result<Option<Vec<Value>>, String> {
    if route.header.is_none()
        && route.query_param.is_none()
        && route.path_prefix.is_none()
        && route.subdomain.is_none()
    {
        return Err("the route has no header, pathPrefix, queryParam or subdomain match".into());
    }
    let mut narrowed = source.as_object().cloned().unwrap_or_default();
    if let Some(header) = &route.header {
        let name = header.name.to_ascii_lowercase();
        add_keyed(
            &mut narrowed,
            "headers",
            &name,
            string_match(header.match_type, &header.value),
        )
        .map_err(|()| {
            format!(
                "the entry already matches header {name}: a route adds its header to the entry's matches, so choose another header"
            )
        })?;
    }
    if let Some(param) = &route.query_param {
        add_keyed(
            &mut narrowed,
            "queryParams",
            &param.name,
            string_match(param.match_type, &param.value),
        )
        .map_err(|()| {
            format!(
                "the entry already matches query parameter {}: a route adds its parameter to the entry's matches, so choose another parameter",
                param.name
            )
        })?;
    }
    if let Some(prefix) = &route.path_prefix {
        match narrow_uri(&narrowed, prefix)? {
            Some(uri) => {
                narrowed.insert("uri".into(), uri);
            }
            None => return Ok(None),
        }
    }
    if route.subdomain.is_none() {
        return Ok(Some(vec![Value::Object(narrowed)]));
    }
    if let Some(authority) = narrowed.get("authority") {
        return Err(format!(
            "the entry already matches the authority ({authority}): a subdomain route matches its own, so move the authority to spec.hosts or give the route a header match"
        ));
    }
    Ok(Some(
        authorities
            .iter()
            .map(|authority| {
                let mut with_authority = narrowed.clone();
                with_authority.insert("authority".into(), json!({"exact": authority}));
                Value::Object(with_authority)
            })
            .collect(),
    ))
}

/// The `uri` of the source narrowed to `prefix`: the longer of two prefixes one of which
/// starts the other, the source's exact path if it starts with `prefix`; None when they share
/// no path. A regular expression cannot be intersected with a prefix in one match.
fn narrow_uri(source: &Map<String, Value>, prefix: &str) -> Result<Option<Value>, String> {
    let Some(uri) = source.get("uri") else {
        return Ok(Some(json!({"prefix": prefix})));
    };
    // With ignoreUriCase the source's path matches whatever its case.
    let fold = |text: &str| {
        if source.get("ignoreUriCase") == Some(&Value::Bool(true)) {
            text.to_ascii_lowercase()
        } else {
            text.to_owned()
        }
    };
    let wanted = fold(prefix);
    if let Some(own) = uri.get("prefix").and_then(Value::as_str) {
        let own_folded = fold(own);
        return Ok(if wanted.starts_with(&own_folded) {
            Some(json!({"prefix": prefix}))
        } else if own_folded.starts_with(&wanted) {
            Some(uri.clone())
        } else {
            None
        });
    }
    if let Some(exact) = uri.get("exact").and_then(Value::as_str) {
        return Ok(fold(exact).starts_with(&wanted).then(|| uri.clone()));
    }
    Err(format!(
        "it matches the path by {uri}, which one match cannot also narrow to the prefix {prefix}: give the route a header or query parameter match instead, or the entry a uri prefix"
    ))
}

/// `uri prefix /api`, for messages.
pub(super) fn describe_uri(source: &Value) -> String {
    match source.get("uri").and_then(Value::as_object) {
        None => "every path".into(),
        Some(uri) => uri
            .iter()
            .map(|(kind, value)| format!("uri {kind} {}", value.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Istio's StringMatch for a route's value.
fn string_match(match_type: MatchType, value: &str) -> Value {
    match match_type {
        MatchType::Exact => json!({"exact": value}),
        MatchType::RegularExpression => json!({"regex": value}),
    }
}

/// Sets `key.<name>` (a map of StringMatches), unless the map has the name already (header
/// names compared without case, as HTTP does).
fn add_keyed(
    narrowed: &mut Map<String, Value>,
    key: &str,
    name: &str,
    added: Value,
) -> Result<(), ()> {
    let map = narrowed
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(map) = map else {
        return Err(());
    };
    if map.keys().any(|other| other.eq_ignore_ascii_case(name)) {
        return Err(());
    }
    map.insert(name.to_owned(), added);
    Ok(())
}

#[cfg(test)]
mod tests {
    use prism_api::strategy::HeaderMatch;

    use super::*;

    fn path(prefix: &str) -> RouteMatch {
        RouteMatch {
            path_prefix: Some(prefix.into()),
            ..RouteMatch::default()
        }
    }

    #[test]
    fn a_path_prefix_narrows_the_entry_s_path() {
        let under = |source: Value, prefix| narrow(&source, &path(prefix), &[]);
        assert_eq!(
            under(json!({}), "/beta"),
            Ok(Some(vec![json!({"uri": {"prefix": "/beta"}})]))
        );
        assert_eq!(
            under(json!({"uri": {"prefix": "/docs"}}), "/docs/v2"),
            Ok(Some(vec![json!({"uri": {"prefix": "/docs/v2"}})]))
        );
        assert_eq!(
            under(json!({"uri": {"prefix": "/docs/v2"}}), "/docs"),
            Ok(Some(vec![json!({"uri": {"prefix": "/docs/v2"}})])),
            "every request of the entry is the route's"
        );
        assert_eq!(
            under(json!({"uri": {"exact": "/docs/a"}}), "/docs"),
            Ok(Some(vec![json!({"uri": {"exact": "/docs/a"}})]))
        );
        assert_eq!(under(json!({"uri": {"prefix": "/api"}}), "/beta"), Ok(None));
        assert_eq!(under(json!({"uri": {"exact": "/api"}}), "/beta"), Ok(None));
        assert_eq!(
            under(
                json!({"uri": {"prefix": "/Docs"}, "ignoreUriCase": true}),
                "/docs/v2"
            ),
            Ok(Some(vec![
                json!({"uri": {"prefix": "/docs/v2"}, "ignoreUriCase": true})
            ]))
        );
        assert!(
            under(json!({"uri": {"regex": "/d.*"}}), "/beta")
                .unwrap_err()
                .starts_with("it matches the path by {\"regex\":\"/d.*\"}")
        );
    }

    #[test]
    fn a_header_the_entry_matches_already_is_refused() {
        let route = RouteMatch {
            header: Some(HeaderMatch {
                name: "X-Canary".into(),
                value: "always".into(),
                match_type: MatchType::Exact,
            }),
            ..RouteMatch::default()
        };
        assert_eq!(
            narrow(&json!({"headers": {"x-user": {"exact": "a"}}}), &route, &[]),
            Ok(Some(vec![json!({"headers": {
                "x-user": {"exact": "a"},
                "x-canary": {"exact": "always"}
            }})]))
        );
        assert_eq!(
            narrow(&json!({"headers": {"x-canary": {"prefix": "a"}}}), &route, &[]),
            Err("the entry already matches header x-canary: a route adds its header to the entry's matches, so choose another header".into())
        );
    }

    #[test]
    fn a_subdomain_gives_a_match_per_authority() {
        let route = RouteMatch {
            subdomain: Some("v3".into()),
            ..RouteMatch::default()
        };
        let authorities = ["v3.a.test".to_owned(), "v3.b.test".to_owned()];
        assert_eq!(
            narrow(&json!({"uri": {"prefix": "/"}}), &route, &authorities),
            Ok(Some(vec![
                json!({"uri": {"prefix": "/"}, "authority": {"exact": "v3.a.test"}}),
                json!({"uri": {"prefix": "/"}, "authority": {"exact": "v3.b.test"}}),
            ]))
        );
        assert!(
            narrow(
                &json!({"authority": {"exact": "a.test"}}),
                &route,
                &authorities
            )
            .is_err()
        );
    }
}
