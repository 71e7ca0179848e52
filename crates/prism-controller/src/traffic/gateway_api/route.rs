//! The `spec.rules` Prism writes in the user's HTTPRoute, and the weights a route is set to.
//!
//! A rule *Prism splits* is a rule of the user's that has a backendRef to the application's
//! Service or to a version's Service (named like its release). Prism replaces those backendRefs
//! with one weighted backendRef per version and leaves everything else of the rule, and every
//! other rule, exactly as it was. A step's routes (header, path prefix, query parameter) become
//! *managed rules* named `prism-…`, placed first: a copy of each split rule whose matches are
//! narrowed by the route's condition and whose one backendRef is the route's version. Gateways
//! pick a rule by the specificity of its matches, not by its place (Traefik computes a priority
//! from them), so a managed rule must be narrower than the rule it copies: it keeps every match
//! of the source and adds the route's condition.
//!
//! Rules named `prism-…` are Prism's, dropped and rebuilt on every call, so that a step's or a
//! version's leaving takes its rules along and a restart needs no memory. A user's rule named
//! so is refused (rather than silently dropped) when it sends traffic anywhere but to the
//! application's Service or a version's; one that sends traffic only there is taken for Prism's.
//!
//! Every field Prism adds is written out in full (a match's `type`, a backendRef's `weight`), so
//! a read-back equals the write after the server's defaulting (checked against the v1.6.1 CRD
//! with a server-side dry run), and the rules of a read-back route equal its `spec.rules` when
//! nothing is to change. Going back to the route as the user wrote it gives the application's
//! backendRef weight 1, the server's default: a weight the user had set there is not known any
//! more once the rule is split.
//!
//! A GRPCRoute has the same rules; only header routes apply to it.
//!
//! `spec.rules` is an atomic list under server-side apply, so whoever writes it owns all of it:
//! the rules here are the whole list, the user's included.

use std::collections::BTreeSet;

use prism_api::labels::MANAGED_RULE_PREFIX;
use prism_api::strategy::{MatchType, RouteMatch};
use prism_engine::ResolvedRoute;
use serde_json::{Map, Value, json};

use crate::traffic::{Weights, agreed, describe_object, describe_weights};

mod combine;
mod errors;
mod names;
#[cfg(test)]
mod tests;

pub use errors::{ObserveError, RouteError};
pub use names::object_name;
use names::{rule_name, unique};

/// The Gateway API's limits (HTTPRoute v1 CRD): rules per route, matches per rule and per
/// route, backendRefs per rule, headers and query parameters per match, hostnames per route.
pub const MAX_RULES: usize = 16;
pub const MAX_MATCHES_PER_RULE: usize = 64;
pub const MAX_MATCHES_PER_ROUTE: usize = 128;
pub const MAX_BACKEND_REFS: usize = 16;
pub const MAX_HEADERS: usize = 16;
pub const MAX_HOSTNAMES: usize = 16;

/// What Prism wants of one HTTPRoute.
#[derive(Clone, Copy, Debug)]
pub struct Desired<'a> {
    /// The application's Service: the backendRef the user wrote and Prism splits.
    pub service: &'a str,
    /// Every version Service of the application Prism made or may find in the route, live or
    /// retired: backendRefs to them are Prism's.
    pub versions: &'a BTreeSet<String>,
    /// Percent by version Service name; sums to 100, or empty for the route as the user wrote
    /// it (one backendRef to the application's Service).
    pub weights: &'a Weights,
    /// The step's routes; `version` is the release, which names the version's Service.
    pub routes: &'a [ResolvedRoute],
}

/// The new `spec.rules` of the user's HTTPRoute: the managed rules of the step's routes first,
/// then the user's rules, split ones with Prism's backendRefs replaced. Deterministic and
/// idempotent: applied to its own result it gives the same rules.
pub fn rules(route: &Value, desired: &Desired) -> Result<Vec<Value>, RouteError> {
    let known = known_versions(desired);
    let context = Context::new(route, desired.service, &known);
    let user = context.user_rules()?;
    let split = context.split_rules(&user);
    if split.is_empty() {
        return Err(context.no_split_rule());
    }
    if !desired.weights.is_empty() && desired.weights.values().all(|w| *w == 0) {
        return Err(RouteError::NoWeight {
            route: context.route.clone(),
            weights: describe_weights(desired.weights),
        });
    }
    let mut rules = managed_rules(&context, &split, desired.routes)?;
    for (_, rule) in &user {
        rules.push(if context.splits(rule) {
            split_rule(&context, rule, desired.weights)
        } else {
            Value::Object((*rule).clone())
        });
    }
    check_limits(&context.route, &rules)?;
    Ok(rules)
}

/// The versions whose backendRefs are Prism's: those the controller names, and any it asks
/// weights or routes for, so that a rule Prism writes is always recognised as its own.
pub(super) fn known_versions(desired: &Desired) -> BTreeSet<String> {
    let mut known = desired.versions.clone();
    known.extend(desired.weights.keys().cloned());
    known.extend(desired.routes.iter().map(|route| route.version.clone()));
    known
}

/// The weights the route is set to, in percent by version Service name, the same in every
/// split rule; a version without a backendRef is not listed (Prism writes none at weight 0).
/// A backendRef without a weight counts 1 (the server's default). Weights that do not sum to
/// 100 are normalised by the largest remainder: each version gets the floor of its share, and
/// the points left go one each to the largest remainders (ties to the name first in order), so
/// the result sums to 100 exactly. Empty when the rules send their traffic to the
/// application's Service alone (the route as the user wrote it); the application's Service is
/// listed by its name when it shares a rule with version Services.
pub fn observe(
    route: &Value,
    service: &str,
    versions: &BTreeSet<String>,
) -> Result<Weights, ObserveError> {
    let context = Context::new(route, service, versions);
    let user = context.plain_rules();
    let split = context.split_rules(&user);
    let parts = split.into_iter().map(|(index, rule)| {
        let mut raw = Weights::new();
        for backend in context.prisms(rule) {
            let weight = backend
                .get("weight")
                .and_then(Value::as_u64)
                .map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX));
            *raw.entry(str_of(backend, "name").to_owned()).or_default() += weight;
        }
        (format!("spec.rules[{index}]"), raw)
    });
    agreed(service, parts)
        .map_err(|disagreement| ObserveError::Disagree {
            route: context.route.clone(),
            disagreement,
        })?
        .ok_or_else(|| ObserveError::NoSplitRule {
            route: context.route.clone(),
            service: service.to_owned(),
        })
}

/// `HTTPRoute shop/docs`, for messages.
pub(super) fn describe_route(object: &Value) -> String {
    describe_object(object, "HTTPRoute")
}

/// A rule of the user's route and its index in `spec.rules`.
pub(super) type Indexed<'a> = (usize, &'a Map<String, Value>);

/// One user's HTTPRoute and which of its backendRefs are Prism's.
pub(super) struct Context<'a> {
    pub(super) object: &'a Value,
    /// `HTTPRoute namespace/name`, for messages.
    pub(super) route: String,
    pub(super) namespace: Option<&'a str>,
    pub(super) service: &'a str,
    versions: &'a BTreeSet<String>,
}

impl<'a> Context<'a> {
    pub(super) fn new(object: &'a Value, service: &'a str, versions: &'a BTreeSet<String>) -> Self {
        Context {
            object,
            route: describe_route(object),
            namespace: object["metadata"].get("namespace").and_then(Value::as_str),
            service,
            versions,
        }
    }

    fn spec_rules(&self) -> impl Iterator<Item = Indexed<'a>> {
        self.object["spec"]["rules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| Some((index, rule.as_object()?)))
    }

    /// The rules that are not Prism's managed ones, by their index in `spec.rules`; a rule
    /// named like a managed one that routes elsewhere than to the application is an error.
    fn user_rules(&self) -> Result<Vec<Indexed<'a>>, RouteError> {
        let mut user = Vec::new();
        for (index, rule) in self.spec_rules() {
            if !is_managed_name(rule) {
                user.push((index, rule));
            } else if !self.is_managed(rule) {
                return Err(RouteError::ReservedRuleName {
                    route: self.route.clone(),
                    field: format!("spec.rules[{index}] ({})", str_of_map(rule, "name")),
                });
            }
        }
        Ok(user)
    }

    /// The rules not named as managed ones; what `observe` reads, which reports rather than
    /// refuses.
    pub(super) fn plain_rules(&self) -> Vec<Indexed<'a>> {
        self.spec_rules()
            .filter(|(_, rule)| !is_managed_name(rule))
            .collect()
    }

    pub(super) fn split_rules(&self, user: &[Indexed<'a>]) -> Vec<Indexed<'a>> {
        user.iter()
            .filter(|(_, rule)| self.splits(rule))
            .copied()
            .collect()
    }

    /// Whether the route is a GRPCRoute, whose rules have the same shape as an HTTPRoute's but
    /// whose matches are a service, a method and headers, no path or query parameters.
    pub(super) fn is_grpc(&self) -> bool {
        self.object["kind"] == "GRPCRoute"
    }

    pub(super) fn no_split_rule(&self) -> RouteError {
        RouteError::NoSplitRule {
            route: self.route.clone(),
            service: self.service.to_owned(),
        }
    }

    /// Whether a managed rule is one Prism wrote: every backendRef of it is Prism's.
    fn is_managed(&self, rule: &Map<String, Value>) -> bool {
        let backends = backend_refs(rule);
        !backends.is_empty() && backends.iter().all(|backend| self.is_prisms(backend))
    }

    pub(super) fn splits(&self, rule: &Map<String, Value>) -> bool {
        backend_refs(rule)
            .iter()
            .any(|backend| self.is_prisms(backend))
    }

    pub(super) fn prisms(&self, rule: &'a Map<String, Value>) -> impl Iterator<Item = &'a Value> {
        backend_refs(rule)
            .iter()
            .filter(|backend| self.is_prisms(backend))
    }

    /// A backendRef to the application's Service or a version's, in the route's namespace.
    fn is_prisms(&self, backend: &Value) -> bool {
        let field = |key| backend.get(key).and_then(Value::as_str);
        let name = field("name").unwrap_or_default();
        field("group").unwrap_or_default().is_empty()
            && field("kind").unwrap_or("Service") == "Service"
            && field("namespace").is_none_or(|ns| Some(ns) == self.namespace)
            && (name == self.service || self.versions.contains(name))
    }

    /// The first of Prism's backendRefs of a split rule, whose port, namespace, filters and
    /// other fields every backendRef Prism writes in its place copies.
    pub(super) fn template(&self, rule: &'a Map<String, Value>) -> Map<String, Value> {
        self.prisms(rule)
            .next()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

fn is_managed_name(rule: &Map<String, Value>) -> bool {
    str_of_map(rule, "name").starts_with(MANAGED_RULE_PREFIX)
}

fn backend_refs(rule: &Map<String, Value>) -> &[Value] {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn str_of<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn str_of_map<'v>(map: &'v Map<String, Value>, key: &str) -> &'v str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A backendRef to `version` copied from `template`, with `weight`.
pub(super) fn backend_to(template: &Map<String, Value>, version: &str, weight: u32) -> Value {
    let mut backend = template.clone();
    backend.insert("name".into(), version.into());
    backend.insert("weight".into(), weight.into());
    Value::Object(backend)
}

/// A split rule with Prism's backendRefs replaced, in the place of the first of them.
fn split_rule(context: &Context, rule: &Map<String, Value>, weights: &Weights) -> Value {
    let template = context.template(rule);
    let prisms: Vec<&Value> = context.prisms(rule).collect();
    let replacement: Vec<Value> = if !weights.is_empty() {
        weights
            .iter()
            .filter(|(_, weight)| **weight > 0)
            .map(|(version, weight)| backend_to(&template, version, *weight))
            .collect()
    } else if let [only] = prisms.as_slice()
        && str_of(only, "name") == context.service
    {
        vec![(*only).clone()]
    } else {
        // Back to the route as the user wrote it, with the weight the server gives it, 1.
        vec![backend_to(&template, context.service, 1)]
    };
    let mut backends = Vec::new();
    let mut replaced = false;
    for backend in backend_refs(rule) {
        if !context.is_prisms(backend) {
            backends.push(backend.clone());
        } else if !replaced {
            backends.extend(replacement.iter().cloned());
            replaced = true;
        }
    }
    let mut rule = rule.clone();
    rule.insert("backendRefs".into(), Value::Array(backends));
    Value::Object(rule)
}

/// The rules of the step's routes (not subdomain ones, which get HTTPRoutes of their own): for
/// each route and each split rule, the rule narrowed by the route's match, to its version only.
fn managed_rules(
    context: &Context,
    split: &[Indexed],
    routes: &[ResolvedRoute],
) -> Result<Vec<Value>, RouteError> {
    let mut rules = Vec::new();
    let mut origins = Vec::new();
    for route in routes
        .iter()
        .filter(|route| route.matches.subdomain.is_none())
    {
        let several_versions = routes
            .iter()
            .any(|other| other.name == route.name && other.version != route.version);
        let mut disjoint = Vec::new();
        let before = rules.len();
        for (k, (index, source)) in split.iter().enumerate() {
            let field = format!("spec.rules[{index}]");
            let matches = match source.get("matches").and_then(Value::as_array) {
                Some(matches) if !matches.is_empty() => matches.clone(),
                // What the server's default match means: every request.
                _ if context.is_grpc() => vec![json!({})],
                _ => vec![json!({"path": {"type": "PathPrefix", "value": "/"}})],
            };
            let mut narrowed = Vec::new();
            for (j, source_match) in matches.iter().enumerate() {
                let narrow = combine::narrow(source_match, &route.matches, context.is_grpc());
                let narrow = narrow.map_err(|reason| RouteError::Inexpressible {
                    route: context.route.clone(),
                    name: route.name.clone(),
                    field: format!("{field}.matches[{j}]"),
                    reason,
                })?;
                match narrow {
                    Some(narrow) => narrowed.push(narrow),
                    None => disjoint.push(combine::describe_path(source_match)),
                }
            }
            if narrowed.is_empty() {
                continue;
            }
            let name = rule_name(
                &route.name,
                several_versions.then_some(route.version.as_str()),
                (split.len() > 1).then_some(k + 1),
            );
            let mut rule = (*source).clone();
            rule.insert("name".into(), name.into());
            rule.insert("matches".into(), Value::Array(narrowed));
            let template = context.template(source);
            rule.insert(
                "backendRefs".into(),
                Value::Array(vec![backend_to(&template, &route.version, 1)]),
            );
            rules.push(Value::Object(rule));
            origins.push(format!("{}\0{}\0{k}", route.name, route.version));
        }
        if rules.len() == before {
            return Err(RouteError::MatchesNothing {
                route: context.route.clone(),
                name: route.name.clone(),
                service: context.service.to_owned(),
                reason: format!(
                    "{} lies outside all of their paths ({}): use a prefix under one of them",
                    describe_route_match(&route.matches),
                    disjoint.join(", ")
                ),
            });
        }
    }
    let names: Vec<String> = rules
        .iter()
        .map(|rule| rule["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    for (rule, name) in rules.iter_mut().zip(unique(&names, &origins)) {
        rule["name"] = name.into();
    }
    Ok(rules)
}

fn describe_route_match(matches: &RouteMatch) -> String {
    matches
        .path_prefix
        .as_ref()
        .map_or_else(String::new, |prefix| format!("path prefix {prefix}"))
}

/// The Gateway API's limits, checked before a write the API server would refuse.
pub(super) fn check_limits(route: &str, rules: &[Value]) -> Result<(), RouteError> {
    if rules.len() > MAX_RULES {
        return Err(RouteError::TooManyRules {
            route: route.to_owned(),
            count: rules.len(),
        });
    }
    let too_many = |field: String, what, count, limit| {
        (count > limit).then(|| RouteError::TooMany {
            route: route.to_owned(),
            field,
            what,
            count,
            limit,
        })
    };
    let mut total = 0;
    for (index, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{index}]");
        let matches = rule["matches"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        // A rule without matches gets the default one from the server.
        total += matches.len().max(1);
        let backends = rule["backendRefs"].as_array().map_or(0, Vec::len);
        let counts = [
            (
                field.clone(),
                "matches",
                matches.len(),
                MAX_MATCHES_PER_RULE,
            ),
            (field.clone(), "backendRefs", backends, MAX_BACKEND_REFS),
        ];
        let per_match = matches.iter().enumerate().flat_map(|(j, m)| {
            let count = |key: &str| m[key].as_array().map_or(0, Vec::len);
            [
                (
                    format!("{field}.matches[{j}]"),
                    "headers",
                    count("headers"),
                    MAX_HEADERS,
                ),
                (
                    format!("{field}.matches[{j}]"),
                    "queryParams",
                    count("queryParams"),
                    MAX_HEADERS,
                ),
            ]
        });
        for (field, what, count, limit) in counts.into_iter().chain(per_match) {
            if let Some(error) = too_many(field, what, count, limit) {
                return Err(error);
            }
        }
    }
    if total > MAX_MATCHES_PER_ROUTE {
        return Err(RouteError::TooManyMatches {
            route: route.to_owned(),
            count: total,
        });
    }
    Ok(())
}

/// The Gateway API's name of a match type.
pub(super) fn match_type(match_type: MatchType) -> &'static str {
    match match_type {
        MatchType::Exact => "Exact",
        MatchType::RegularExpression => "RegularExpression",
    }
}
