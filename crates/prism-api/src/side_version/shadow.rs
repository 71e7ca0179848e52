//! Whether a side version's route would take the requests of another version's route: one with
//! the same match (the same header or query parameter with the same exact value, the same path
//! prefix, the same subdomain). Only one of two such routes gets the requests, so the later one
//! is refused, naming both. A mainline route to `each` version matches with `{version}` standing
//! for any name a mainline version may go by (`versions.name`, or `<app>-<revision>`), so a side
//! route to `v3.docs.example.com` is refused where mainline versions are named `v{revision}`.
//! Regular expressions are compared as text only: whether two overlap is not decidable here.

use crate::strategy::{HeaderMatch, MatchType, QueryParamMatch, Route, RouteMatch};

const PLACEHOLDER: &str = "{version}";

/// The names mainline versions may go by: a `versions.name` template (`v{revision}`, with
/// `{app}` filled in) or, without one, the Release's name `<app>-<revision>`.
#[derive(Clone, Debug)]
pub struct MainlineNames {
    before: String,
    after: String,
}

impl MainlineNames {
    pub fn new(app: &str, template: Option<&str>) -> MainlineNames {
        let template = template
            .map(|template| template.replace("{app}", app))
            .unwrap_or_else(|| format!("{app}-{{revision}}"));
        let (before, after) = template
            .split_once("{revision}")
            .unwrap_or((template.as_str(), ""));
        MainlineNames {
            before: before.to_owned(),
            after: after.to_owned(),
        }
    }

    fn is_one(&self, name: &str) -> bool {
        name.strip_prefix(&self.before)
            .and_then(|rest| rest.strip_suffix(&self.after))
            .is_some_and(|revision| {
                !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit())
            })
    }
}

/// Whether `side` (with `{version}` already filled in) is `mainline`, a text that may hold
/// `{version}` for any mainline version's name.
fn same_text(side: &str, mainline: &str, names: Option<&MainlineNames>) -> bool {
    match (mainline.split_once(PLACEHOLDER), names) {
        (Some((before, after)), Some(names)) => side
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|name| names.is_one(name)),
        _ => side == mainline,
    }
}

/// Whether two matches take the same requests; `names` when `other`'s `{version}` stands for
/// any mainline version's name (else it is filled in already).
pub fn same_requests(side: &RouteMatch, other: &RouteMatch, names: Option<&MainlineNames>) -> bool {
    let text = |a: &str, b: &str| same_text(a, b, names);
    let exact = |a: MatchType, b: MatchType| a == MatchType::Exact && b == MatchType::Exact;
    match (side, other) {
        (
            RouteMatch {
                header:
                    Some(HeaderMatch {
                        name,
                        value,
                        match_type,
                    }),
                ..
            },
            RouteMatch {
                header: Some(other),
                ..
            },
        ) => {
            name.eq_ignore_ascii_case(&other.name)
                && exact(*match_type, other.match_type)
                && text(value, &other.value)
        }
        (
            RouteMatch {
                query_param:
                    Some(QueryParamMatch {
                        name,
                        value,
                        match_type,
                    }),
                ..
            },
            RouteMatch {
                query_param: Some(other),
                ..
            },
        ) => {
            *name == other.name && exact(*match_type, other.match_type) && text(value, &other.value)
        }
        _ => match (
            (&side.path_prefix, &side.subdomain),
            (&other.path_prefix, &other.subdomain),
        ) {
            ((Some(side), _), (Some(other), _)) | ((_, Some(side)), (_, Some(other))) => {
                text(side, other)
            }
            _ => false,
        },
    }
}

/// `matches` with `{version}` filled in with `name`.
pub fn filled(matches: &RouteMatch, name: &str) -> RouteMatch {
    let fill = |text: &String| text.replace(PLACEHOLDER, name);
    RouteMatch {
        header: matches.header.as_ref().map(|h| HeaderMatch {
            value: fill(&h.value),
            ..h.clone()
        }),
        path_prefix: matches.path_prefix.as_ref().map(fill),
        query_param: matches.query_param.as_ref().map(|q| QueryParamMatch {
            value: fill(&q.value),
            ..q.clone()
        }),
        subdomain: matches.subdomain.as_ref().map(fill),
    }
}

/// The mainline's route, of those `routes` of its strategy's steps, that `side` (filled in) takes
/// the requests of.
pub fn mainline_route<'a>(
    side: &RouteMatch,
    routes: impl IntoIterator<Item = &'a Route>,
    names: &MainlineNames,
) -> Option<&'a Route> {
    routes
        .into_iter()
        .find(|route| same_requests(side, &route.matches, Some(names)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matches(value: serde_json::Value) -> RouteMatch {
        serde_json::from_value(value).unwrap()
    }

    fn route(name: &str, value: serde_json::Value) -> Route {
        serde_json::from_value(json!({"name": name, "to": "each", "match": value})).unwrap()
    }

    #[test]
    fn the_same_header_query_path_or_subdomain_takes_the_same_requests() {
        for (a, b) in [
            (
                json!({"header": {"name": "X-Version", "value": "beta"}}),
                json!({"header": {"name": "x-version", "value": "beta"}}),
            ),
            (
                json!({"queryParam": {"name": "v", "value": "2"}}),
                json!({"queryParam": {"name": "v", "value": "2"}}),
            ),
            (
                json!({"pathPrefix": "/beta"}),
                json!({"pathPrefix": "/beta"}),
            ),
            (json!({"subdomain": "beta"}), json!({"subdomain": "beta"})),
        ] {
            assert!(
                same_requests(&matches(a.clone()), &matches(b.clone()), None),
                "{a} {b}"
            );
        }
        for (a, b) in [
            (
                json!({"header": {"name": "x-version", "value": "beta"}}),
                json!({"header": {"name": "x-version", "value": "gamma"}}),
            ),
            (
                json!({"header": {"name": "x-version", "value": "beta"}}),
                json!({"header": {"name": "x-version", "value": "beta", "type": "RegularExpression"}}),
            ),
            (
                json!({"pathPrefix": "/beta"}),
                json!({"subdomain": "/beta"}),
            ),
            (
                json!({"pathPrefix": "/beta/x"}),
                json!({"pathPrefix": "/beta"}),
            ),
        ] {
            assert!(
                !same_requests(&matches(a.clone()), &matches(b.clone()), None),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_mainline_each_route_takes_the_names_its_versions_may_go_by() {
        let routes = [route("per-version", json!({"subdomain": "{version}"}))];
        let named = MainlineNames::new("docs", Some("v{revision}"));
        let side = |subdomain: &str| matches(json!({"subdomain": subdomain}));
        assert!(mainline_route(&side("v3"), &routes, &named).is_some());
        assert!(mainline_route(&side("v"), &routes, &named).is_none());
        assert!(mainline_route(&side("pr-42"), &routes, &named).is_none());
        let unnamed = MainlineNames::new("docs", None);
        assert!(mainline_route(&side("docs-7"), &routes, &unnamed).is_some());
        assert!(mainline_route(&side("v3"), &routes, &unnamed).is_none());
        let app_in_name = MainlineNames::new("docs", Some("{app}-r{revision}-x"));
        assert!(mainline_route(&side("docs-r12-x"), &routes, &app_in_name).is_some());
    }

    #[test]
    fn a_side_routes_version_is_its_own_name() {
        let side = filled(&matches(json!({"subdomain": "{version}"})), "pr-42");
        assert_eq!(side.subdomain.as_deref(), Some("pr-42"));
    }
}
