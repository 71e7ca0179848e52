//! What Prism cannot write into a route, or read from it; each message names the route, the
//! field and the fix, for the condition the controller sets.

use crate::traffic::Disagreement;
use prism_api::labels::MANAGED_RULE_PREFIX;
use thiserror::Error;

use super::{MAX_HOSTNAMES, MAX_MATCHES_PER_ROUTE, MAX_RULES};

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error(
        "{route} has no rule with a backendRef to the application's Service {service}: add backendRef {{name: {service}, port: <its port>}} to the rule whose traffic Prism should split"
    )]
    NoSplitRule { route: String, service: String },
    #[error(
        "{route}: {field} is named with the prefix {MANAGED_RULE_PREFIX}, which Prism keeps for the rules it manages, but it sends traffic elsewhere than to a version of the application: rename the rule"
    )]
    ReservedRuleName { route: String, field: String },
    #[error("{route}: route {name} cannot be added to {field}: {reason}")]
    Inexpressible {
        route: String,
        name: String,
        field: String,
        reason: String,
    },
    #[error(
        "{route}: route {name} matches no request of the rules that send traffic to {service}: {reason}"
    )]
    MatchesNothing {
        route: String,
        name: String,
        service: String,
        reason: String,
    },
    #[error(
        "{route}: the weights {weights} give no version any traffic: Prism needs weights that sum to 100"
    )]
    NoWeight { route: String, weights: String },
    #[error(
        "{route} would have {count} rules with Prism's, more than the {MAX_RULES} the Gateway API allows: give the step fewer routes, or move some of the user's rules to another HTTPRoute"
    )]
    TooManyRules { route: String, count: usize },
    #[error(
        "{route}: {field} would have {count} {what}, more than the {limit} the Gateway API allows: give the rule fewer matches, or the step fewer routes"
    )]
    TooMany {
        route: String,
        field: String,
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error(
        "{route} would have {count} matches in all, more than the {MAX_MATCHES_PER_ROUTE} the Gateway API allows: give the step fewer routes, or the rules that send traffic to the application fewer matches"
    )]
    TooManyMatches { route: String, count: usize },
    #[error(
        "route {name} matches a subdomain, but {route} has no spec.hostnames to put it in front of: give the HTTPRoute the application's hostnames, e.g. hostnames: [example.com]"
    )]
    NoHostnames { route: String, name: String },
    #[error(
        "route {name}: subdomain {subdomain} of {hostname} ({route}) gives {result}, which is not a hostname: a subdomain is lowercase letters, digits, '-' and '.', each label at most 63 characters, 253 in all"
    )]
    InvalidHostname {
        route: String,
        name: String,
        subdomain: String,
        hostname: String,
        result: String,
    },
    #[error(
        "route {name} would give version {version} {count} hostnames, more than the {MAX_HOSTNAMES} the Gateway API allows: give {route} fewer hostnames"
    )]
    TooManyHostnames {
        route: String,
        name: String,
        version: String,
        count: usize,
    },
    #[error(
        "routes {name} (to {version}) and {other} (to {other_version}) both claim hostname {hostname}: give each version its own subdomain"
    )]
    HostnameTaken {
        name: String,
        version: String,
        other: String,
        other_version: String,
        hostname: String,
    },
}

/// The weights a route's split rules disagree on, or the lack of any.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ObserveError {
    #[error(
        "{route} has no rule with a backendRef to the application's Service {service}: add backendRef {{name: {service}, port: <its port>}} to the rule whose traffic Prism should split"
    )]
    NoSplitRule { route: String, service: String },
    #[error(
        "{route}: {} splits {} but {} splits {}: Prism sets every rule that sends traffic to the application alike, and writes them again",
        disagreement.field, disagreement.first_weights, disagreement.other_field, disagreement.other_weights
    )]
    Disagree {
        route: String,
        disagreement: Disagreement,
    },
}
