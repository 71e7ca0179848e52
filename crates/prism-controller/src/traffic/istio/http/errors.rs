//! What Prism cannot write into a VirtualService, or read from it; each message names the
//! VirtualService, the field and the fix, for the condition the controller sets.

use crate::traffic::Disagreement;
use prism_api::labels::MANAGED_RULE_PREFIX;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error(
        "{virtual_service} has no spec.http entry with a route to the application's Service {service}: add route: [{{destination: {{host: {service}}}}}] to the http entry whose traffic Prism should split (the host may also be spelled {service}.<namespace>, {service}.<namespace>.svc or {service}.<namespace>.svc.cluster.local)"
    )]
    NoSplitEntry {
        virtual_service: String,
        service: String,
    },
    #[error(
        "{virtual_service}: {field} is named with the prefix {MANAGED_RULE_PREFIX}, which Prism keeps for the http entries it manages, but it sends traffic elsewhere than to a version of the application: rename the entry"
    )]
    ReservedName {
        virtual_service: String,
        field: String,
    },
    #[error(
        "{virtual_service}: {field} routes to subset {subset} of {host}: Prism routes to each version through a Service of its own, where the subset of a DestinationRule for {host} does not apply: remove the subset"
    )]
    Subset {
        virtual_service: String,
        field: String,
        subset: String,
        host: String,
    },
    #[error("{virtual_service}: route {name} cannot be added to {field}: {reason}")]
    Inexpressible {
        virtual_service: String,
        name: String,
        field: String,
        reason: String,
    },
    #[error(
        "{virtual_service}: route {name} matches no request of the http entries that send traffic to {service}: {reason}"
    )]
    MatchesNothing {
        virtual_service: String,
        name: String,
        service: String,
        reason: String,
    },
    #[error(
        "{virtual_service}: route {name} matches subdomain {subdomain}, but no host of spec.hosts ({hosts}) takes requests for it: add a wildcard host such as *.<host> to spec.hosts, so that {subdomain}.<host> reaches the VirtualService"
    )]
    NoSubdomainHost {
        virtual_service: String,
        name: String,
        subdomain: String,
        hosts: String,
    },
    #[error(
        "routes {name} (to {version}) and {other} (to {other_version}) both claim authority {authority}: give each version its own subdomain"
    )]
    AuthorityTaken {
        name: String,
        version: String,
        other: String,
        other_version: String,
        authority: String,
    },
    #[error(
        "{virtual_service}: the weights {weights} give no version any traffic: Prism needs weights that sum to 100"
    )]
    NoWeight {
        virtual_service: String,
        weights: String,
    },
}

/// The weights a VirtualService's split entries disagree on, or the lack of any.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ObserveError {
    #[error(
        "{virtual_service} has no spec.http entry with a route to the application's Service {service}: add route: [{{destination: {{host: {service}}}}}] to the http entry whose traffic Prism should split (the host may also be spelled {service}.<namespace>, {service}.<namespace>.svc or {service}.<namespace>.svc.cluster.local)"
    )]
    NoSplitEntry {
        virtual_service: String,
        service: String,
    },
    #[error(
        "{virtual_service}: {} splits {} but {} splits {}: Prism sets every http entry that sends traffic to the application alike, and writes them again",
        disagreement.field, disagreement.first_weights, disagreement.other_field, disagreement.other_weights
    )]
    Disagree {
        virtual_service: String,
        disagreement: Disagreement,
    },
}
