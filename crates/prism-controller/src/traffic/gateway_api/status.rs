//! Whether the Gateways a route is attached to serve its current generation: every parentRef
//! needs a `status.parents[]` entry whose `Accepted` and `ResolvedRefs` conditions are True for
//! the route's `metadata.generation`. A step's traffic is not achieved before.

use std::fmt;

use serde_json::Value;

use super::route::{describe_route, str_of};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The conditions every parent must report True.
const CONDITIONS: [&str; 2] = ["Accepted", "ResolvedRefs"];

/// What the route's parents report. The first parent refused wins over one pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Every parent accepted the current generation and resolved its backendRefs.
    Accepted,
    /// The route names no parent, so nothing serves it.
    NoParents { route: String },
    /// A parent has not reported on the current generation yet.
    Pending {
        route: String,
        gateway: String,
        waiting: Waiting,
    },
    /// A parent reported a condition False for the current generation.
    Refused {
        route: String,
        gateway: String,
        condition: String,
        reason: String,
        message: String,
    },
}

/// What a pending parent has not reported yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// No `status.parents[]` entry for it: its controller has not seen the route, or does not
    /// serve that Gateway (Traefik writes none for a Gateway it does not serve).
    NoStatus,
    /// Its conditions are of another generation, or carry none (`observed` None: an
    /// implementation that never sets observedGeneration keeps the route here for ever).
    Generation { observed: Option<i64>, current: i64 },
    /// The condition is missing, or Unknown.
    Condition { condition: String },
}

impl fmt::Display for Acceptance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Acceptance::Accepted => write!(f, "every parent Gateway accepted the route"),
            Acceptance::NoParents { route } => write!(
                f,
                "{route} has no spec.parentRefs, so no Gateway serves it: attach it to a Gateway, e.g. parentRefs: [{{name: <gateway>}}]"
            ),
            Acceptance::Pending {
                route,
                gateway,
                waiting,
            } => match waiting {
                Waiting::NoStatus => write!(
                    f,
                    "{route} waits for Gateway {gateway} to report on it: status.parents has no entry for it yet (a Gateway no controller serves never reports; check its GatewayClass)"
                ),
                Waiting::Generation {
                    observed: None,
                    current,
                } => write!(
                    f,
                    "{route}: Gateway {gateway} reports its conditions without observedGeneration, so Prism cannot tell that it serves generation {current}"
                ),
                Waiting::Generation {
                    observed: Some(observed),
                    current,
                } => write!(
                    f,
                    "{route} waits for Gateway {gateway} to accept generation {current}: it reports on generation {observed}"
                ),
                Waiting::Condition { condition } => write!(
                    f,
                    "{route} waits for Gateway {gateway} to report {condition}: the condition is missing or Unknown"
                ),
            },
            Acceptance::Refused {
                route,
                gateway,
                condition,
                reason,
                message,
            } => write!(
                f,
                "{route} is refused by Gateway {gateway}: {condition} is False, reason {reason}: {message}"
            ),
        }
    }
}

/// Whether every parent of `route` accepted its current generation.
pub fn acceptance(route: &Value) -> Acceptance {
    let metadata = &route["metadata"];
    let namespace = str_of(metadata, "namespace");
    let route_name = describe_route(route);
    let generation = metadata["generation"].as_i64();
    let parents = route["spec"]["parentRefs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if parents.is_empty() {
        return Acceptance::NoParents { route: route_name };
    }
    let statuses = route["status"]["parents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut pending = None;
    for parent in parents {
        let key = ParentKey::of(parent, namespace);
        let reports: Vec<Report> = statuses
            .iter()
            .filter(|status| ParentKey::of(&status["parentRef"], namespace) == key)
            .map(|status| report(status, generation))
            .collect();
        if reports.contains(&Report::Good) {
            continue;
        }
        let gateway = key.to_string();
        let refused = reports.iter().find_map(|report| match report {
            Report::Refused {
                condition,
                reason,
                message,
            } => Some(Acceptance::Refused {
                route: route_name.clone(),
                gateway: gateway.clone(),
                condition: condition.clone(),
                reason: reason.clone(),
                message: message.clone(),
            }),
            _ => None,
        });
        if let Some(refused) = refused {
            return refused;
        }
        let waiting = reports
            .into_iter()
            .find_map(|report| match report {
                Report::Waiting(waiting) => Some(waiting),
                _ => None,
            })
            .unwrap_or(Waiting::NoStatus);
        pending.get_or_insert(Acceptance::Pending {
            route: route_name.clone(),
            gateway,
            waiting,
        });
    }
    pending.unwrap_or(Acceptance::Accepted)
}

#[derive(Debug, PartialEq, Eq)]
enum Report {
    Good,
    Waiting(Waiting),
    Refused {
        condition: String,
        reason: String,
        message: String,
    },
}

/// What one `status.parents[]` entry says of the route's `generation`.
fn report(status: &Value, generation: Option<i64>) -> Report {
    let conditions = status["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for wanted in CONDITIONS {
        let Some(condition) = conditions
            .iter()
            .find(|condition| str_of(condition, "type") == wanted)
        else {
            return Report::Waiting(Waiting::Condition {
                condition: wanted.into(),
            });
        };
        let observed = condition["observedGeneration"].as_i64();
        if let Some(current) = generation
            && observed != Some(current)
        {
            return Report::Waiting(Waiting::Generation { observed, current });
        }
        match str_of(condition, "status") {
            "True" => {}
            "False" => {
                return Report::Refused {
                    condition: wanted.into(),
                    reason: str_of(condition, "reason").into(),
                    message: str_of(condition, "message").into(),
                };
            }
            _ => {
                return Report::Waiting(Waiting::Condition {
                    condition: wanted.into(),
                });
            }
        }
    }
    Report::Good
}

/// A parentRef with the Gateway API's defaults filled in: group `gateway.networking.k8s.io`,
/// kind `Gateway`, the route's namespace. sectionName and port must be equal, absent included.
#[derive(Debug, PartialEq, Eq)]
struct ParentKey<'a> {
    group: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    section: Option<&'a str>,
    port: Option<i64>,
}

impl<'a> ParentKey<'a> {
    fn of(parent: &'a Value, route_namespace: &'a str) -> Self {
        let field = |key| parent.get(key).and_then(Value::as_str);
        ParentKey {
            group: field("group").unwrap_or(GATEWAY_GROUP),
            kind: field("kind").unwrap_or("Gateway"),
            namespace: field("namespace").unwrap_or(route_namespace),
            name: field("name").unwrap_or_default(),
            section: field("sectionName"),
            port: parent.get("port").and_then(Value::as_i64),
        }
    }
}

/// `gateways/web`, `gateways/web (listener http, port 8000)`; other kinds than Gateway named.
impl fmt::Display for ParentKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != "Gateway" {
            write!(f, "{} ", self.kind)?;
        }
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)?;
        } else {
            write!(f, "{}/{}", self.namespace, self.name)?;
        }
        let mut details = Vec::new();
        if let Some(section) = self.section {
            details.push(format!("listener {section}"));
        }
        if let Some(port) = self.port {
            details.push(format!("port {port}"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
