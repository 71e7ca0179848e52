//! What `prism serve` (`crates/prism-server`) does in the management cluster with its own
//! identity, declared like the controller's ([`super::management`]): each kind, verb and why. The
//! chart's ClusterRole of the server is [`rules`], printed by `prism rbac` beside the
//! controller's. The server reads and acts for others, but never lends its rights: it serves a
//! read or runs an action only after a SubjectAccessReview allowed the caller to do it.

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use prism_api::{Application, Cluster, Release, RolloutBlock};

use super::management::{ManagementTouch, grant, kind};
use super::{Rule, Verb};

/// Everything the server reads and writes in the management cluster.
pub const TOUCHES: &[ManagementTouch] = &[
    ManagementTouch {
        resource: kind::<TokenReview>,
        subresource: None,
        verbs: &[Verb::Create],
        why: "who a caller's bearer token belongs to (TokenReview)",
    },
    ManagementTouch {
        resource: kind::<SubjectAccessReview>,
        subresource: None,
        verbs: &[Verb::Create],
        why: "whether the caller may do each read and action, asked as the caller before the server does it",
    },
    ManagementTouch {
        resource: kind::<Application>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get, Verb::Patch],
        why: "watched into the cache reads are answered from; read and patched by `rollback` (prism-ops), for a caller allowed to",
    },
    ManagementTouch {
        resource: kind::<Release>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get, Verb::Patch],
        why: "watched into the cache reads are answered from; listed and patched by `promote`, `abort` and `rollback` (prism-ops), for a caller allowed to",
    },
    ManagementTouch {
        resource: kind::<Cluster>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get],
        why: "the fleet: each Cluster's status, and where its pods are watched",
    },
    ManagementTouch {
        resource: kind::<RolloutBlock>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get],
        why: "listed by `promote` and `rollback`, which a block refuses (prism-ops)",
    },
    ManagementTouch {
        resource: kind::<Event>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get],
        why: "the Events Prism's controller reported (core/v1, reportingComponent=prism), an application's history",
    },
    ManagementTouch {
        resource: kind::<Secret>,
        subresource: None,
        verbs: &[Verb::Get],
        why: "read by name, never listed: a Cluster's kubeconfig (spec.credentials.secretRef), to watch its pods",
    },
    ManagementTouch {
        resource: kind::<Pod>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "without a Cluster object the management cluster is the application cluster `local`: its pods labelled prism.dev/app, watched cluster-wide",
    },
];

/// The chart's ClusterRole of the server: one rule per resource.
pub fn rules() -> Vec<Rule> {
    super::merge(TOUCHES.iter().map(grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verbs<'a>(rules: &'a [Rule], group: &str, resource: &str) -> &'a [&'static str] {
        rules
            .iter()
            .find(|rule| rule.api_group == group && rule.resource == resource)
            .map_or(&[], |rule| &rule.verbs[..])
    }

    #[test]
    fn the_server_reads_the_fleet_reviews_callers_and_patches_only_what_actions_patch() {
        let rules = rules();
        for (group, resource) in [("prism.dev", "applications"), ("prism.dev", "releases")] {
            assert_eq!(
                verbs(&rules, group, resource),
                ["get", "list", "watch", "patch"]
            );
        }
        for (group, resource) in [
            ("prism.dev", "clusters"),
            ("prism.dev", "rolloutblocks"),
            ("", "events"),
        ] {
            assert_eq!(verbs(&rules, group, resource), ["get", "list", "watch"]);
        }
        assert_eq!(
            verbs(&rules, "authentication.k8s.io", "tokenreviews"),
            ["create"]
        );
        assert_eq!(
            verbs(&rules, "authorization.k8s.io", "subjectaccessreviews"),
            ["create"]
        );
        assert_eq!(verbs(&rules, "", "secrets"), ["get"]);
        assert_eq!(verbs(&rules, "", "pods"), ["list", "watch"]);
    }

    #[test]
    fn nothing_is_granted_wholesale_and_nothing_is_deleted_or_created_but_reviews() {
        for rule in rules() {
            assert!(!rule.resource.contains('*'), "{rule:?}");
            assert!(!rule.api_group.contains('*'), "{rule:?}");
            for verb in &rule.verbs {
                assert!(
                    ["get", "list", "watch", "patch"].contains(verb)
                        || (*verb == "create" && rule.resource.ends_with("reviews")),
                    "{rule:?}"
                );
            }
        }
    }
}
