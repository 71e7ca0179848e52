//! What Prism touches in an application cluster, declared by whoever touches it: each workload
//! provider ([`crate::workload::WorkloadProvider::touches`]) and a version's own objects
//! ([`crate::workload::objects::TOUCHES`]), each traffic provider ([`crate::traffic::TrafficProvider::touches`])
//! and the controller itself (the application's namespace, [`CONTROLLER`]). One list, from which
//! follow the kinds whose writes are awaited in the fleet's caches ([`is_watched`]), the kinds the
//! cleanup sweep deletes by Release ([`deleted_by_release`]) and the RBAC rules that
//! `prism cluster join` grants ([`rules`]): a new provider is one module, and its rights come
//! with it. What the controller does in the management cluster is declared beside them
//! ([`management`]), and the chart's ClusterRole follows from both; what the HTTP server
//! (`prism serve`) does there with its own identity is declared in [`server`], from which the
//! chart's ClusterRole of the server follows.

pub mod management;
pub mod server;

use crate::traffic;
use crate::workload;
use crate::write::Kind;

/// What Prism does with a kind of object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Read one object by name.
    Get,
    /// Watched into the fleet's caches: the objects labelled with an application.
    WatchLabelled,
    /// Watched into a cache, every object of the kind: the user's own objects that a provider
    /// edits (an HTTPRoute), which carry no label of Prism's; in the management cluster, every
    /// kind the controller reads.
    WatchAll,
    /// Server-side applied: created when missing, else patched.
    Apply,
    /// Merge-patched (labels of an object that exists).
    Patch,
    /// Created (the application's namespace, once; an Event).
    Create,
    /// Created with `dryRun=All`: checked by the API server, never stored (`dry_run.rs`).
    DryRun,
    Delete,
    /// Deleted by the `prism.dev/release` label once its Release is gone (owner references do not
    /// cross API servers), by the cleanup sweep.
    DeleteByRelease,
}

impl Verb {
    /// The RBAC verbs the requests of this take.
    fn rbac(self) -> &'static [&'static str] {
        match self {
            Verb::Get => &["get"],
            Verb::WatchLabelled | Verb::WatchAll => &["list", "watch"],
            Verb::Apply => &["create", "patch"],
            Verb::Patch => &["patch"],
            Verb::Create | Verb::DryRun => &["create"],
            Verb::Delete => &["delete"],
            Verb::DeleteByRelease => &["deletecollection"],
        }
    }
}

/// One kind a provider touches, how, and why (the reason `prism cluster join` documents).
#[derive(Clone, Copy, Debug)]
pub struct Touch {
    pub kind: Kind,
    pub verbs: &'static [Verb],
    pub why: &'static str,
}

/// What the controller does by itself, whatever the providers.
pub const CONTROLLER: &[Touch] = &[Touch {
    kind: Kind::Namespace,
    verbs: &[Verb::Create],
    why: "the application's namespace, made the first time a version is installed in a cluster that lacks it",
}];

/// Every declaration: each workload provider's, a version's own objects', each traffic
/// provider's, the controller's.
pub fn all() -> impl Iterator<Item = &'static Touch> {
    workload::PROVIDERS
        .iter()
        .flat_map(|provider| provider.touches())
        .chain(workload::objects::TOUCHES)
        .chain(
            traffic::PROVIDERS
                .iter()
                .flat_map(|provider| provider.touches()),
        )
        .chain(CONTROLLER)
}

fn declares(kind: Kind, verb: Verb) -> bool {
    all().any(|touch| touch.kind == kind && touch.verbs.contains(&verb))
}

/// Whether `touches` watch every object of `kind` (a user's object a provider edits), so that the
/// provider is to be given the namespace's objects of that kind.
pub fn watches_all(touches: &[Touch], kind: Kind) -> bool {
    touches
        .iter()
        .any(|touch| touch.kind == kind && touch.verbs.contains(&Verb::WatchAll))
}

/// Whether the fleet caches `kind`, so that a write of it can be awaited in the cache.
pub fn is_watched(kind: Kind) -> bool {
    declares(kind, Verb::WatchLabelled) || declares(kind, Verb::WatchAll)
}

/// The kinds the cleanup sweep deletes by Release, in declaration order.
pub fn deleted_by_release() -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    for touch in all() {
        if touch.verbs.contains(&Verb::DeleteByRelease) && !kinds.contains(&touch.kind) {
            kinds.push(touch.kind);
        }
    }
    kinds
}

/// One RBAC rule: a resource, the verbs on it, and why, from every declaration of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub api_group: String,
    pub resource: String,
    pub verbs: Vec<&'static str>,
    pub why: Vec<&'static str>,
}

/// The order RBAC verbs are listed in.
const VERB_ORDER: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "patch",
    "delete",
    "deletecollection",
];

/// The rights one declaration needs, as RBAC names them: a resource (or `resource/subresource`)
/// of an API group, its verbs, and why.
struct Grant {
    api_group: String,
    resource: String,
    verbs: &'static [Verb],
    why: &'static str,
}

/// The rights the controller needs in an application cluster: one rule per kind, in order of
/// first declaration, with the verbs of every declaration of it; of the kinds that templates
/// carry only by choice ([`workload::objects::OPTIONAL`]), those in `allowed`.
pub fn rules(allowed: &[Kind]) -> Vec<Rule> {
    let granted =
        |kind: &Kind| !workload::objects::OPTIONAL.contains(kind) || allowed.contains(kind);
    merge(all().filter(|touch| granted(&touch.kind)).map(|touch| {
        let resource = touch.kind.resource();
        Grant {
            api_group: resource.group,
            resource: resource.plural,
            verbs: touch.verbs,
            why: touch.why,
        }
    }))
}

/// One rule per resource, in order of first grant, with the verbs and reasons of every grant of
/// it.
fn merge(grants: impl IntoIterator<Item = Grant>) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for grant in grants {
        let index = match rules
            .iter()
            .position(|rule| rule.api_group == grant.api_group && rule.resource == grant.resource)
        {
            Some(index) => index,
            None => {
                rules.push(Rule {
                    api_group: grant.api_group,
                    resource: grant.resource,
                    verbs: Vec::new(),
                    why: Vec::new(),
                });
                rules.len() - 1
            }
        };
        let rule = &mut rules[index];
        rule.verbs
            .extend(grant.verbs.iter().flat_map(|verb| verb.rbac()));
        rule.why.push(grant.why);
    }
    for rule in &mut rules {
        rule.verbs.sort_by_key(|verb| {
            VERB_ORDER
                .iter()
                .position(|known| known == verb)
                .unwrap_or(VERB_ORDER.len())
        });
        rule.verbs.dedup();
        rule.why.dedup();
    }
    rules
}

/// Whether the declarations allow `write`: its kind declared with the verb its request takes.
pub fn allows(write: &crate::write::Write) -> bool {
    use crate::write::Write;
    let (kind, _) = write.object();
    match write {
        Write::Apply { .. } => declares(kind, Verb::Apply),
        Write::Delete { .. } => declares(kind, Verb::Delete),
        Write::Label { .. } => declares(kind, Verb::Patch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_declared_and_every_watched_kind_is_cached_by_the_fleet() {
        for kind in Kind::ALL {
            assert!(
                all().any(|touch| touch.kind == *kind),
                "{kind:?} is written but no provider declares it"
            );
            assert_eq!(
                is_watched(*kind),
                crate::fleet::CACHED.contains(kind),
                "{kind:?}: the fleet caches exactly the watched kinds"
            );
        }
    }

    #[test]
    fn each_rule_holds_every_verb_its_declarations_need_in_order() {
        let rules = rules(workload::objects::OPTIONAL);
        for touch in all() {
            let resource = touch.kind.resource();
            let rule = rules
                .iter()
                .find(|rule| rule.api_group == resource.group && rule.resource == resource.plural)
                .expect("a rule per declared kind");
            for verb in touch.verbs.iter().flat_map(|verb| verb.rbac()) {
                assert!(
                    rule.verbs.contains(verb),
                    "{:?} lacks {verb}",
                    rule.resource
                );
            }
            assert!(rule.why.contains(&touch.why));
        }
        let deployments = &rules[0];
        assert_eq!(
            (deployments.resource.as_str(), &deployments.verbs[..]),
            (
                "deployments",
                &[
                    "list",
                    "watch",
                    "create",
                    "patch",
                    "delete",
                    "deletecollection"
                ][..]
            )
        );
    }

    #[test]
    fn no_rule_grants_everything_or_reads_secrets() {
        for rule in rules(workload::objects::OPTIONAL) {
            assert_ne!(rule.resource, "*");
            assert_ne!(rule.resource, "secrets");
            assert!(!rule.verbs.contains(&"*"));
        }
    }
}
