//! What the controller does in the management cluster, declared like what it touches in
//! application clusters ([`super::all`]): each kind, subresource, verb and why. The chart's
//! ClusterRole is [`cluster_rules`] (these, the dry runs of every kind a provider applies, and the
//! application clusters' rules, since without a Cluster object the management cluster is itself
//! the application cluster `local`), and its namespaced Role is [`lease_rules`] (leader
//! election). `prism rbac` prints both; a test keeps the chart's copy fresh.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Resource;
use kube::core::ApiResource;
use prism_api::{
    Application, Cluster, ClusterMetricTemplate, ClusterStrategy, MetricTemplate, Release,
    RolloutBlock, SideVersion, Strategy,
};

use super::{Grant, Rule, Verb};
use crate::workload::objects::OPTIONAL;

/// One kind (or one of its subresources) the controller touches in the management cluster.
#[derive(Clone, Copy, Debug)]
pub struct ManagementTouch {
    /// The kind, from its Rust type, so that the rule follows a renamed resource.
    pub resource: fn() -> ApiResource,
    /// `status` for the status subresource; `None` for the objects themselves.
    pub subresource: Option<&'static str>,
    pub verbs: &'static [Verb],
    pub why: &'static str,
}

pub(super) fn kind<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Everything the controller reads and writes in the management cluster, but leader election.
pub const TOUCHES: &[ManagementTouch] = &[
    ManagementTouch {
        resource: kind::<Application>,
        subresource: None,
        verbs: &[Verb::WatchAll, Verb::Get],
        why: "watched: each Application is reconciled; read once by name before the cleanup sweep deletes what a deleted one left (a cache alone must never delete a live version)",
    },
    ManagementTouch {
        resource: kind::<Application>,
        subresource: Some("status"),
        verbs: &[Verb::Patch],
        why: "the Application's status (contender, incumbent, phase, conditions), server-side applied",
    },
    ManagementTouch {
        resource: kind::<Release>,
        subresource: None,
        verbs: &[
            Verb::WatchAll,
            Verb::Get,
            Verb::Apply,
            Verb::Patch,
            Verb::Delete,
        ],
        why: "each template change becomes a Release (applied), a strategy change or a retirement is a merge patch of the one rolling out, pruned and retired Releases are deleted; read once by name before the cleanup sweep deletes a deleted Release's version",
    },
    ManagementTouch {
        resource: kind::<Release>,
        subresource: Some("status"),
        verbs: &[Verb::Patch],
        why: "each Release's progress (step, phase, clusters, analysis, gate), server-side applied",
    },
    ManagementTouch {
        resource: kind::<Strategy>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "the strategies Applications name, watched so that a change reaches the Release rolling out",
    },
    ManagementTouch {
        resource: kind::<ClusterStrategy>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "likewise, cluster-wide",
    },
    ManagementTouch {
        resource: kind::<RolloutBlock>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "blocks in every namespace (the global namespace's stop every Application)",
    },
    ManagementTouch {
        resource: kind::<RolloutBlock>,
        subresource: Some("status"),
        verbs: &[Verb::Patch],
        why: "a block records the overrides that passed it",
    },
    ManagementTouch {
        resource: kind::<SideVersion>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "each SideVersion becomes a Release of its own",
    },
    ManagementTouch {
        resource: kind::<SideVersion>,
        subresource: Some("status"),
        verbs: &[Verb::Patch],
        why: "the SideVersion's status (Valid, Ready)",
    },
    ManagementTouch {
        resource: kind::<MetricTemplate>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "the metrics a step's analysis names",
    },
    ManagementTouch {
        resource: kind::<ClusterMetricTemplate>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "likewise, cluster-wide",
    },
    ManagementTouch {
        resource: kind::<Cluster>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "the fleet: one member per Cluster the selector picks",
    },
    ManagementTouch {
        resource: kind::<Cluster>,
        subresource: Some("status"),
        verbs: &[Verb::Patch],
        why: "whether each Cluster's API server answers (Reachable, Ready, lastSeen, version)",
    },
    ManagementTouch {
        resource: kind::<Service>,
        subresource: None,
        verbs: &[Verb::WatchAll],
        why: "the Services Applications target (spec.target.service), the user's and unlabelled",
    },
    ManagementTouch {
        resource: kind::<Secret>,
        subresource: None,
        verbs: &[Verb::Get],
        why: "read by name, never listed: a Cluster's kubeconfig (spec.credentials.secretRef), a webhook's signing secret and a chart's values file (spec.template.chart.valuesFrom)",
    },
    ManagementTouch {
        resource: kind::<ConfigMap>,
        subresource: None,
        verbs: &[Verb::Get],
        why: "read by name, never listed: a chart's values file (spec.template.chart.valuesFrom)",
    },
    ManagementTouch {
        resource: kind::<Event>,
        subresource: None,
        verbs: &[Verb::Create, Verb::Patch],
        why: "Events on Applications and Releases (events.k8s.io, kube's Recorder: created, then patched as a series when repeated)",
    },
];

/// Leader election: a Lease in the controller's own namespace, a namespaced Role.
pub const LEADER_ELECTION: &[ManagementTouch] = &[ManagementTouch {
    resource: kind::<Lease>,
    subresource: None,
    verbs: &[Verb::WatchAll, Verb::Get, Verb::Create, Verb::Patch],
    why: "the shards' Leases (leadership.rs): watched for who holds each and until when (the write fence), read, created by the first replica, renewed and taken over by patches (kube-lease-manager)",
}];

/// Why the management cluster's API server is asked to create what a provider applies.
const DRY_RUN_WHY: &str = "a new template's objects are dry-run created in the Application's namespace before its Release is made (dry_run.rs)";

/// Why the management cluster holds the application clusters' rules too.
const LOCAL_WHY: &str = "without a Cluster object, the management cluster is the application cluster `local`: the rights `prism cluster join` grants (docs/fleet.md)";

pub(super) fn grant(touch: &ManagementTouch) -> Grant {
    let resource = (touch.resource)();
    Grant {
        api_group: resource.group,
        resource: match touch.subresource {
            Some(subresource) => format!("{}/{subresource}", resource.plural),
            None => resource.plural,
        },
        verbs: touch.verbs,
        why: touch.why,
    }
}

/// The dry-run creates: every kind a provider applies, but those templates carry by choice,
/// which are checked offline alone (`dry_run.rs`).
fn dry_runs() -> impl Iterator<Item = Grant> {
    let mut kinds = Vec::new();
    for touch in super::all() {
        if touch.verbs.contains(&Verb::Apply)
            && !kinds.contains(&touch.kind)
            && !OPTIONAL.contains(&touch.kind)
        {
            kinds.push(touch.kind);
        }
    }
    kinds.into_iter().map(|kind| {
        let resource = kind.resource();
        Grant {
            api_group: resource.group,
            resource: resource.plural,
            verbs: &[Verb::DryRun],
            why: DRY_RUN_WHY,
        }
    })
}

/// What the management cluster needs for itself alone: [`TOUCHES`] and the dry runs.
pub fn own_rules() -> Vec<Rule> {
    super::merge(TOUCHES.iter().map(grant).chain(dry_runs()))
}

/// The chart's ClusterRole: [`own_rules`] and the application clusters' rules, one rule per
/// resource; the kinds templates carry by choice are granted apart (docs/workloads.md).
pub fn cluster_rules() -> Vec<Rule> {
    let local = super::all()
        .filter(|touch| !OPTIONAL.contains(&touch.kind))
        .map(|touch| {
            let resource = touch.kind.resource();
            Grant {
                api_group: resource.group,
                resource: resource.plural,
                verbs: touch.verbs,
                why: LOCAL_WHY,
            }
        });
    super::merge(TOUCHES.iter().map(grant).chain(dry_runs()).chain(local))
}

/// The chart's Role in the controller's namespace.
pub fn lease_rules() -> Vec<Rule> {
    super::merge(LEADER_ELECTION.iter().map(grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
        rules.iter().any(|rule| {
            rule.api_group == group && rule.resource == resource && rule.verbs.contains(&verb)
        })
    }

    #[test]
    fn every_kind_the_controller_watches_is_listed_and_watched() {
        let rules = cluster_rules();
        let watched = [
            kind::<Application>(),
            kind::<Release>(),
            kind::<Strategy>(),
            kind::<ClusterStrategy>(),
            kind::<RolloutBlock>(),
            kind::<SideVersion>(),
            kind::<MetricTemplate>(),
            kind::<ClusterMetricTemplate>(),
            kind::<Cluster>(),
            kind::<Service>(),
        ];
        for resource in watched {
            for verb in ["list", "watch"] {
                assert!(
                    grants(&rules, &resource.group, &resource.plural, verb),
                    "{} lacks {verb}",
                    resource.plural
                );
            }
        }
    }

    #[test]
    fn every_status_the_controller_writes_is_patchable() {
        let rules = cluster_rules();
        for resource in [
            kind::<Application>(),
            kind::<Release>(),
            kind::<Cluster>(),
            kind::<SideVersion>(),
            kind::<RolloutBlock>(),
        ] {
            let status = format!("{}/status", resource.plural);
            assert!(
                grants(&rules, &resource.group, &status, "patch"),
                "{status}"
            );
        }
        assert!(grants(&rules, "events.k8s.io", "events", "create"));
        assert!(grants(&rules, "events.k8s.io", "events", "patch"));
    }

    #[test]
    fn the_cluster_role_holds_every_application_cluster_rule() {
        let rules = cluster_rules();
        for rule in super::super::rules(&[]) {
            for verb in &rule.verbs {
                assert!(
                    grants(&rules, &rule.api_group, &rule.resource, verb),
                    "{} {verb}",
                    rule.resource
                );
            }
        }
    }

    #[test]
    fn secrets_are_read_by_name_only_and_nothing_is_granted_wholesale() {
        let rules = cluster_rules();
        let secrets = rules
            .iter()
            .find(|rule| rule.resource == "secrets")
            .expect("a rule for Secrets");
        assert_eq!(secrets.verbs, ["get"]);
        for rule in rules.iter().chain(&lease_rules()) {
            assert!(!rule.resource.contains('*'), "{rule:?}");
            assert!(!rule.api_group.contains('*'), "{rule:?}");
            assert!(!rule.verbs.contains(&"*"), "{rule:?}");
            assert!(!rule.verbs.contains(&"escalate"), "{rule:?}");
            assert!(!rule.verbs.contains(&"impersonate"), "{rule:?}");
        }
        assert_eq!(
            lease_rules()
                .iter()
                .map(|rule| (
                    rule.api_group.as_str(),
                    rule.resource.as_str(),
                    &rule.verbs[..]
                ))
                .collect::<Vec<_>>(),
            [(
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "patch"][..]
            )]
        );
    }
}
