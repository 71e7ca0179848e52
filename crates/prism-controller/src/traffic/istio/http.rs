//! The `spec.http` Prism writes in the user's VirtualService, and the weights it is set to.
//!
//! An entry *Prism splits* is an http entry of the user's whose `route` has a destination to
//! the application's Service or to a version's Service (named like its release), in any form of
//! [`hosts::service_of`]. Prism replaces those destinations with one destination per version
//! with a weight (the first one's `port` and `headers` copied, its host form kept, weights
//! summing to 100) and leaves everything else of the entry, and every other entry, exactly as it
//! was. Istio weighs a destination by `weight / (sum of the entry's weights)`, so a destination
//! of the user's in a split entry keeps its weight against Prism's 100.
//!
//! A step's routes become *managed entries* named `prism-…`, placed first, since Istio takes the
//! first entry a request matches: a copy of each split entry whose matches are narrowed by the
//! route's condition ([`matches`]) and whose one destination, without a weight, is the route's
//! version. Entries named `prism-…` are Prism's, dropped and rebuilt on every call, so that a
//! step's or a version's leaving takes its entries along and a restart needs no memory. A
//! user's entry named so is refused when it sends traffic anywhere but to the application's
//! Service or a version's.
//!
//! Going back to the VirtualService as the user wrote it gives one destination to the
//! application's Service: without a weight when it is alone in its entry (Istio gives it
//! everything), else with weight 100, the sum Prism's destinations had beside the user's. The
//! weight the user had set there is not known any more once the entry is split.
//!
//! `http` is an atomic list under server-side apply (the CRD marks no list type), so whoever
//! writes it owns all of it: the entries here are the whole list, the user's included. Prism
//! writes every field it adds in full and the CRD defaults nothing, so a read-back equals the
//! write.

use std::collections::{BTreeMap, BTreeSet};

use prism_api::labels::MANAGED_RULE_PREFIX;
use prism_engine::ResolvedRoute;
use serde_json::{Map, Value};

use super::hosts::{service_of, subdomain_authorities};
use crate::traffic::{Weights, agreed, describe_object, describe_weights};

mod errors;
mod matches;
#[cfg(test)]
mod tests;

pub use errors::{HttpError, ObserveError};

/// What Prism wants of one VirtualService.
#[derive(Clone, Copy, Debug)]
pub struct Desired<'a> {
    /// The application's Service: the destination the user wrote and Prism splits.
    pub service: &'a str,
    /// Every version Service of the application Prism made or may find in the VirtualService,
    /// live or retired: destinations to them are Prism's.
    pub versions: &'a BTreeSet<String>,
    /// Percent by version Service name; sums to 100, or empty for the VirtualService as the
    /// user wrote it (one destination to the application's Service).
    pub weights: &'a Weights,
    /// The step's routes; `version` is the release, which names the version's Service.
    pub routes: &'a [ResolvedRoute],
}

/// The new `spec.http`: the managed entries of the step's routes first, then the user's entries,
/// split ones with Prism's destinations replaced. Deterministic and idempotent: applied to its
/// own result it gives the same entries.
pub fn http(virtual_service: &Value, desired: &Desired) -> Result<Vec<Value>, HttpError> {
    let mut known = desired.versions.clone();
    known.extend(desired.weights.keys().cloned());
    known.extend(desired.routes.iter().map(|route| route.version.clone()));
    let context = Context::new(virtual_service, desired.service, &known);
    let user = context.user_entries()?;
    let split = context.split_entries(&user);
    if split.is_empty() {
        return Err(context.no_split_entry());
    }
    for (index, entry) in &split {
        context.check_subsets(*index, entry)?;
    }
    if !desired.weights.is_empty() && desired.weights.values().all(|w| *w == 0) {
        return Err(HttpError::NoWeight {
            virtual_service: context.name.clone(),
            weights: describe_weights(desired.weights),
        });
    }
    let mut http = managed_entries(&context, &split, desired.routes)?;
    for (_, entry) in &user {
        http.push(if context.splits(entry) {
            split_entry(&context, entry, desired.weights)
        } else {
            Value::Object((*entry).clone())
        });
    }
    Ok(http)
}

/// The weights the VirtualService is set to, in percent by version Service name, the same in
/// every split entry; a version without a destination, or at weight 0, is not listed. A
/// destination alone in its entry takes everything; beside others, one without a weight takes
/// nothing (Istio's rules). Weights that do not sum to 100 are normalised by the largest
/// remainder (`traffic::percent`). Empty when the entries send their traffic to the application's
/// Service alone (as the user wrote them); the application's Service is listed by its name when
/// it shares an entry with version Services.
pub fn observe(
    virtual_service: &Value,
    service: &str,
    versions: &BTreeSet<String>,
) -> Result<Weights, ObserveError> {
    let context = Context::new(virtual_service, service, versions);
    let user = context.plain_entries();
    let parts = context
        .split_entries(&user)
        .into_iter()
        .map(|(index, entry)| {
            let alone = destinations(entry).len() == 1;
            let mut raw = Weights::new();
            for (name, destination) in context.prisms(entry) {
                let weight = if alone {
                    100
                } else {
                    destination
                        .get("weight")
                        .and_then(Value::as_u64)
                        .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX))
                };
                *raw.entry(name.to_owned()).or_default() += weight;
            }
            (format!("spec.http[{index}]"), raw)
        });
    agreed(service, parts)
        .map_err(|disagreement| ObserveError::Disagree {
            virtual_service: context.name.clone(),
            disagreement,
        })?
        .ok_or_else(|| ObserveError::NoSplitEntry {
            virtual_service: context.name.clone(),
            service: service.to_owned(),
        })
}

/// `VirtualService shop/docs`, for messages.
pub(super) fn describe_virtual_service(object: &Value) -> String {
    describe_object(object, "VirtualService")
}

/// An entry of the user's `spec.http` and its index there.
type Indexed<'a> = (usize, &'a Map<String, Value>);

/// One user's VirtualService and which of its destinations are Prism's.
struct Context<'a> {
    object: &'a Value,
    /// `VirtualService namespace/name`, for messages.
    name: String,
    namespace: Option<&'a str>,
    service: &'a str,
    versions: &'a BTreeSet<String>,
}

impl<'a> Context<'a> {
    fn new(object: &'a Value, service: &'a str, versions: &'a BTreeSet<String>) -> Self {
        Context {
            object,
            name: describe_virtual_service(object),
            namespace: object["metadata"]["namespace"].as_str(),
            service,
            versions,
        }
    }

    fn entries(&self) -> impl Iterator<Item = Indexed<'a>> {
        self.object["spec"]["http"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| Some((index, entry.as_object()?)))
    }

    /// The entries that are not Prism's managed ones; one named like a managed entry that
    /// routes elsewhere than to the application is an error.
    fn user_entries(&self) -> Result<Vec<Indexed<'a>>, HttpError> {
        let mut user = Vec::new();
        for (index, entry) in self.entries() {
            if !is_managed_name(entry) {
                user.push((index, entry));
            } else if !self.is_managed(entry) {
                return Err(HttpError::ReservedName {
                    virtual_service: self.name.clone(),
                    field: format!("spec.http[{index}] ({})", str_of(entry, "name")),
                });
            }
        }
        Ok(user)
    }

    /// The entries not named as managed ones; what `observe` reads, which reports rather than
    /// refuses.
    fn plain_entries(&self) -> Vec<Indexed<'a>> {
        self.entries()
            .filter(|(_, entry)| !is_managed_name(entry))
            .collect()
    }

    fn split_entries(&self, user: &[Indexed<'a>]) -> Vec<Indexed<'a>> {
        user.iter()
            .filter(|(_, entry)| self.splits(entry))
            .copied()
            .collect()
    }

    fn no_split_entry(&self) -> HttpError {
        HttpError::NoSplitEntry {
            virtual_service: self.name.clone(),
            service: self.service.to_owned(),
        }
    }

    /// Whether a managed entry is one Prism wrote: every destination of it is Prism's.
    fn is_managed(&self, entry: &Map<String, Value>) -> bool {
        let all = destinations(entry);
        !all.is_empty()
            && all
                .iter()
                .all(|element| self.prisms_name(element).is_some())
    }

    fn splits(&self, entry: &Map<String, Value>) -> bool {
        self.prisms(entry).next().is_some()
    }

    /// The entry's destinations that are Prism's, with the Service each names.
    fn prisms(
        &self,
        entry: &'a Map<String, Value>,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + '_ {
        destinations(entry)
            .iter()
            .filter_map(|element| Some((self.prisms_name(element)?, element)))
    }

    /// The Service a destination names, if it is the application's or a version's.
    fn prisms_name<'v>(&self, element: &'v Value) -> Option<&'v str> {
        let host = element["destination"]["host"].as_str()?;
        let (name, _) = service_of(host, self.namespace)?;
        (name == self.service || self.versions.contains(name)).then_some(name)
    }

    /// A subset of the application's Service means nothing on a version's.
    fn check_subsets(&self, index: usize, entry: &Map<String, Value>) -> Result<(), HttpError> {
        for (position, element) in destinations(entry).iter().enumerate() {
            let subset = element["destination"]["subset"]
                .as_str()
                .unwrap_or_default();
            if self.prisms_name(element).is_some() && !subset.is_empty() {
                return Err(HttpError::Subset {
                    virtual_service: self.name.clone(),
                    field: format!("spec.http[{index}].route[{position}]"),
                    subset: subset.to_owned(),
                    host: element["destination"]["host"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The first of Prism's destinations of a split entry, which every destination Prism
    /// writes in its place copies (port, headers, the host's form).
    fn template(&self, entry: &'a Map<String, Value>) -> Map<String, Value> {
        self.prisms(entry)
            .next()
            .and_then(|(_, element)| element.as_object())
            .cloned()
            .unwrap_or_default()
    }

    /// The VirtualService's hosts.
    fn hosts(&self) -> Vec<&'a str> {
        self.object["spec"]["hosts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect()
    }
}

fn is_managed_name(entry: &Map<String, Value>) -> bool {
    str_of(entry, "name").starts_with(MANAGED_RULE_PREFIX)
}

fn destinations(entry: &Map<String, Value>) -> &[Value] {
    entry
        .get("route")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn str_of<'v>(map: &'v Map<String, Value>, key: &str) -> &'v str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A destination to the Service `name` copied from `template`, its host in the template's form,
/// with `weight` or none.
fn destination_to(
    context: &Context,
    template: &Map<String, Value>,
    name: &str,
    weight: Option<u32>,
) -> Value {
    let mut element = template.clone();
    let host = element
        .get("destination")
        .and_then(|destination| destination["host"].as_str())
        .unwrap_or_default();
    let rest = service_of(host, context.namespace).map_or("", |(_, rest)| rest);
    let host = format!("{name}{rest}");
    if let Some(Value::Object(destination)) = element.get_mut("destination") {
        destination.insert("host".into(), host.into());
    }
    match weight {
        Some(weight) => element.insert("weight".into(), weight.into()),
        None => element.remove("weight"),
    };
    Value::Object(element)
}

/// A split entry with Prism's destinations replaced, in the place of the first of them.
fn split_entry(context: &Context, entry: &Map<String, Value>, weights: &Weights) -> Value {
    let template = context.template(entry);
    let prisms: Vec<(&str, &Value)> = context.prisms(entry).collect();
    let others = destinations(entry).len() - prisms.len();
    let replacement: Vec<Value> = if !weights.is_empty() {
        weights
            .iter()
            .filter(|(_, weight)| **weight > 0)
            .map(|(version, weight)| destination_to(context, &template, version, Some(*weight)))
            .collect()
    } else if let [(name, only)] = prisms.as_slice()
        && *name == context.service
    {
        vec![(*only).clone()]
    } else {
        let weight = (others > 0).then_some(100);
        vec![destination_to(context, &template, context.service, weight)]
    };
    let mut route = Vec::new();
    let mut replaced = false;
    for element in destinations(entry) {
        if context.prisms_name(element).is_none() {
            route.push(element.clone());
        } else if !replaced {
            route.extend(replacement.iter().cloned());
            replaced = true;
        }
    }
    let mut entry = entry.clone();
    entry.insert("route".into(), Value::Array(route));
    Value::Object(entry)
}

/// The entries of the step's routes: for each route and each split entry, the entry narrowed by
/// the route's condition, to its version only.
fn managed_entries(
    context: &Context,
    split: &[Indexed],
    routes: &[ResolvedRoute],
) -> Result<Vec<Value>, HttpError> {
    let mut entries = Vec::new();
    let mut claimed: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for route in routes {
        let authorities = match &route.matches.subdomain {
            Some(subdomain) => {
                let hosts = context.hosts();
                let authorities = subdomain_authorities(subdomain, &hosts);
                if authorities.is_empty() {
                    return Err(HttpError::NoSubdomainHost {
                        virtual_service: context.name.clone(),
                        name: route.name.clone(),
                        subdomain: subdomain.clone(),
                        hosts: hosts.join(", "),
                    });
                }
                for authority in &authorities {
                    if let Some((other, other_version)) = claimed.get(authority)
                        && (*other, *other_version) != (route.name.as_str(), route.version.as_str())
                    {
                        return Err(HttpError::AuthorityTaken {
                            name: route.name.clone(),
                            version: route.version.clone(),
                            other: (*other).to_owned(),
                            other_version: (*other_version).to_owned(),
                            authority: authority.clone(),
                        });
                    }
                    claimed.insert(authority.clone(), (&route.name, &route.version));
                }
                authorities
            }
            None => Vec::new(),
        };
        let several_versions = routes
            .iter()
            .any(|other| other.name == route.name && other.version != route.version);
        let mut disjoint = Vec::new();
        let before = entries.len();
        for (k, (index, source)) in split.iter().enumerate() {
            let source_matches = match source.get("match").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => list.clone(),
                // No match: every request.
                _ => vec![Value::Object(Map::new())],
            };
            let mut narrowed = Vec::new();
            for (j, source_match) in source_matches.iter().enumerate() {
                let narrow = matches::narrow(source_match, &route.matches, &authorities).map_err(
                    |reason| HttpError::Inexpressible {
                        virtual_service: context.name.clone(),
                        name: route.name.clone(),
                        field: format!("spec.http[{index}].match[{j}]"),
                        reason,
                    },
                )?;
                match narrow {
                    Some(list) => narrowed.extend(list),
                    None => disjoint.push(matches::describe_uri(source_match)),
                }
            }
            if narrowed.is_empty() {
                continue;
            }
            let mut name = format!("{MANAGED_RULE_PREFIX}{}", route.name);
            if several_versions {
                name.push_str(&format!("-{}", route.version));
            }
            if split.len() > 1 {
                name.push_str(&format!("-{}", k + 1));
            }
            let mut entry = (*source).clone();
            entry.insert("name".into(), name.into());
            entry.insert("match".into(), Value::Array(narrowed));
            let template = context.template(source);
            entry.insert(
                "route".into(),
                Value::Array(vec![destination_to(
                    context,
                    &template,
                    &route.version,
                    None,
                )]),
            );
            entries.push(Value::Object(entry));
        }
        if entries.len() == before {
            let prefix = route.matches.path_prefix.as_deref().unwrap_or_default();
            return Err(HttpError::MatchesNothing {
                virtual_service: context.name.clone(),
                name: route.name.clone(),
                service: context.service.to_owned(),
                reason: format!(
                    "path prefix {prefix} lies outside all of their paths ({}): use a prefix under one of them",
                    disjoint.join("; ")
                ),
            });
        }
    }
    Ok(entries)
}
