//! What a version installs beside its workload, whatever the workload's kind: the template's
//! other objects, each either the version's own or shared by every version.
//!
//! - **The version's own** (`<release>-<name>`, labelled with the release, deleted with the
//!   version): what its pods refer to by name — ConfigMaps, its ServiceAccount, and the Role and
//!   RoleBinding that give that ServiceAccount its rights — so that a new version's
//!   configuration or rights never change an old version's pods, and an abort finds the old
//!   version's as they were. The references in the pod template and in a RoleBinding follow the
//!   renaming.
//! - **Shared** (the name the template gives, labelled with the application alone): what fronts
//!   or governs the application as a whole and selects its pods across versions — an Ingress
//!   (to the application's Service), a PodDisruptionBudget, a NetworkPolicy. Two copies would
//!   fight over one host or count the same pods twice, so the newest version to install writes
//!   the one copy; it goes with the application (the cleanup sweep).
//!
//! Every kind but ConfigMap is written only where `prism cluster join --allow-kind` granted it:
//! an application whose template has none needs no such right (docs/workloads.md).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use prism_api::Release;
use prism_api::application::Template;
use prism_api::labels::APP_LABEL;
use serde_json::{Map, Value};

use super::{Version, object, set_metadata};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

/// How a kind of template object is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    PerVersion,
    Shared,
}

/// The template kinds this module installs, how, and as which write kind.
const KINDS: &[(&str, Kind, Scope)] = &[
    ("ConfigMap", Kind::ConfigMap, Scope::PerVersion),
    ("ServiceAccount", Kind::ServiceAccount, Scope::PerVersion),
    ("Role", Kind::Role, Scope::PerVersion),
    ("RoleBinding", Kind::RoleBinding, Scope::PerVersion),
    (
        "PodDisruptionBudget",
        Kind::PodDisruptionBudget,
        Scope::Shared,
    ),
    ("Ingress", Kind::Ingress, Scope::Shared),
    ("NetworkPolicy", Kind::NetworkPolicy, Scope::Shared),
];

/// The kinds a cluster grants only when its join allows them (`--allow-kind`).
pub const OPTIONAL: &[Kind] = &[
    Kind::ServiceAccount,
    Kind::Role,
    Kind::RoleBinding,
    Kind::PodDisruptionBudget,
    Kind::Ingress,
    Kind::NetworkPolicy,
];

/// The kinds of the objects shared by an application's versions.
pub fn shared_kinds() -> impl Iterator<Item = Kind> {
    KINDS
        .iter()
        .filter(|(.., scope)| *scope == Scope::Shared)
        .map(|(_, kind, _)| *kind)
}

const PER_VERSION: &[Verb] = &[Verb::Apply, Verb::Delete, Verb::DeleteByRelease];
/// Deleted by name when the application leaves the cluster, and by collection, by the
/// application's label, once the application is gone.
const SHARED: &[Verb] = &[Verb::Apply, Verb::Delete, Verb::DeleteByRelease];

pub const TOUCHES: &[Touch] = &[
    Touch {
        kind: Kind::ConfigMap,
        verbs: PER_VERSION,
        why: "each version gets its own copy of the template's ConfigMaps (<release>-<name>), applied with the version and deleted with it",
    },
    Touch {
        kind: Kind::ServiceAccount,
        verbs: PER_VERSION,
        why: "(--allow-kind ServiceAccount) a version's own copy of the template's ServiceAccount (<release>-<name>), which its pods run as",
    },
    Touch {
        kind: Kind::Role,
        verbs: PER_VERSION,
        why: "(--allow-kind Role) a version's own copy of the template's Role (<release>-<name>); Kubernetes lets the controller grant only rights it holds itself",
    },
    Touch {
        kind: Kind::RoleBinding,
        verbs: PER_VERSION,
        why: "(--allow-kind RoleBinding) a version's own copy of the template's RoleBinding (<release>-<name>), binding its own Role to its own ServiceAccount",
    },
    Touch {
        kind: Kind::PodDisruptionBudget,
        verbs: SHARED,
        why: "(--allow-kind PodDisruptionBudget) the application's PodDisruptionBudget, one for every version, written by the newest to install and deleted when the application leaves the cluster",
    },
    Touch {
        kind: Kind::Ingress,
        verbs: SHARED,
        why: "(--allow-kind Ingress) the application's Ingress to its Service, one for every version, written by the newest to install and deleted when the application leaves the cluster",
    },
    Touch {
        kind: Kind::NetworkPolicy,
        verbs: SHARED,
        why: "(--allow-kind NetworkPolicy) the application's NetworkPolicy, one for every version, written by the newest to install and deleted when the application leaves the cluster",
    },
];

/// The write kind and scope of a template object this module installs.
fn scope_of(kind: Option<&str>) -> Option<(Kind, Scope)> {
    KINDS
        .iter()
        .find(|(name, ..)| Some(*name) == kind)
        .map(|(_, kind, scope)| (*kind, *scope))
}

/// The template's objects of this module's kinds, with their write kind and scope.
fn objects(
    template: &Template,
) -> impl Iterator<Item = (&prism_api::application::Manifest, Kind, Scope)> {
    template.manifests.iter().filter_map(|manifest| {
        scope_of(manifest.kind()).map(|(kind, scope)| (manifest, kind, scope))
    })
}

/// The writes of a version's objects, made before its workload so that its pods find them.
pub fn install(version: Version<'_>) -> Vec<Write> {
    let Version {
        release,
        owner,
        app_owner,
        ..
    } = version;
    let name = release.name_any();
    let template = &release.spec.template;
    objects(template)
        .map(|(manifest, kind, scope)| {
            let mut body = manifest.object();
            match scope {
                Scope::PerVersion => {
                    let renamed = copy_name(&name, manifest.name().unwrap_or_default());
                    set_metadata(&mut body, &renamed, release, owner);
                    if kind == Kind::RoleBinding {
                        rename_binding(&mut body, &name, template);
                    }
                }
                Scope::Shared => shared_metadata(&mut body, &release.spec.application, app_owner),
            }
            Write::Apply {
                kind,
                body: Value::Object(body),
            }
        })
        .collect()
}

/// The deletes of a version's own objects; shared ones stay for the other versions.
pub fn remove(release: &Release) -> Vec<Write> {
    let name = release.name_any();
    objects(&release.spec.template)
        .filter(|(.., scope)| *scope == Scope::PerVersion)
        .map(|(manifest, kind, _)| Write::Delete {
            kind,
            name: copy_name(&name, manifest.name().unwrap_or_default()),
        })
        .collect()
}

/// The deletes of the objects a version shares with the others, once the application leaves the
/// cluster with it.
pub fn remove_shared(release: &Release) -> Vec<Write> {
    objects(&release.spec.template)
        .filter(|(.., scope)| *scope == Scope::Shared)
        .map(|(manifest, kind, _)| Write::Delete {
            kind,
            name: manifest.name().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Points a pod spec's references to the template's objects (ConfigMaps, its ServiceAccount) at
/// the version's own copies.
pub fn rename_references(pod_spec: &mut Value, release: &str, template: &Template) {
    let config_maps = names(template, "ConfigMap");
    rename_config_maps(pod_spec, release, &config_maps);
    let accounts = names(template, "ServiceAccount");
    if let Some(Value::String(account)) = pod_spec.get_mut("serviceAccountName")
        && accounts.contains(account.as_str())
    {
        *account = copy_name(release, account);
    }
}

fn names<'t>(template: &'t Template, kind: &'t str) -> BTreeSet<&'t str> {
    template
        .of_kind(kind)
        .filter_map(|manifest| manifest.name())
        .collect()
}

/// A RoleBinding's Role and ServiceAccounts, when the template has them, as the version's own.
fn rename_binding(body: &mut Map<String, Value>, release: &str, template: &Template) {
    let roles = names(template, "Role");
    if let Some(Value::String(role)) = body.get_mut("roleRef").and_then(|r| r.get_mut("name"))
        && roles.contains(role.as_str())
    {
        *role = copy_name(release, role);
    }
    let accounts = names(template, "ServiceAccount");
    if let Some(Value::Array(subjects)) = body.get_mut("subjects") {
        for subject in subjects {
            if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(Value::String(account)) = subject.get_mut("name")
                && accounts.contains(account.as_str())
            {
                *account = copy_name(release, account);
                if let Some(subject) = subject.as_object_mut() {
                    // The copy is in the namespace the version is installed in.
                    subject.remove("namespace");
                }
            }
        }
    }
}

/// A shared object keeps its name and carries the application's label alone, so that no
/// version's removal takes it; it goes when the application leaves the cluster
/// ([`remove_shared`]), or with the Application (its owner where they share an API server, and
/// the orphan sweep elsewhere).
fn shared_metadata(body: &mut Map<String, Value>, app: &str, app_owner: Option<&OwnerReference>) {
    let metadata = object(body, "metadata");
    metadata.remove("namespace");
    object(metadata, "labels").insert(APP_LABEL.into(), app.into());
    if let Some(owner) = app_owner {
        metadata.insert(
            "ownerReferences".into(),
            Value::Array(vec![serde_json::to_value(owner).unwrap_or_default()]),
        );
    }
}

/// A version's copy of a template object: versions never share one, so a new version's
/// configuration cannot change an old version's pods.
pub fn copy_name(release: &str, name: &str) -> String {
    format!("{release}-{name}")
}

/// Points every reference to a template ConfigMap in a pod spec (volumes, projected sources,
/// envFrom, env valueFrom) at the version's copy.
fn rename_config_maps(value: &mut Value, release: &str, config_maps: &BTreeSet<&str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let is_reference = matches!(
                    key.as_str(),
                    "configMap" | "configMapRef" | "configMapKeyRef"
                );
                if is_reference
                    && let Some(Value::String(name)) = child.get_mut("name")
                    && config_maps.contains(name.as_str())
                {
                    *name = copy_name(release, name);
                } else {
                    rename_config_maps(child, release, config_maps);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rename_config_maps(item, release, config_maps);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn release(manifests: Value) -> Release {
        crate::workload::test_release(
            "web-3",
            "web",
            3,
            serde_json::from_value(json!({ "manifests": manifests })).unwrap(),
        )
    }

    fn applied(writes: &[Write], kind: Kind) -> &Value {
        writes
            .iter()
            .find_map(|write| match write {
                Write::Apply { kind: k, body } if *k == kind => Some(body),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {kind:?} applied in {writes:?}"))
    }

    #[test]
    fn a_version_gets_its_own_account_and_rights_and_shares_its_ingress() {
        let release = release(json!([
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "web-reads"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
             "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "elsewhere"},
                          {"kind": "ServiceAccount", "name": "other"}]},
            {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "x"},
             "spec": {"rules": [{"host": "web.example"}]}},
        ]));
        let app_owner = OwnerReference {
            api_version: "prism.dev/v1alpha1".into(),
            kind: "Application".into(),
            name: "web".into(),
            uid: "uid-web".into(),
            ..OwnerReference::default()
        };
        let writes = install(Version {
            release: &release,
            pod_labels: &[],
            owner: None,
            app_owner: Some(&app_owner),
            successor: None,
        });
        assert_eq!(writes.len(), 4);
        let account = applied(&writes, Kind::ServiceAccount);
        assert_eq!(account["metadata"]["name"], "web-3-web");
        assert_eq!(account["metadata"]["labels"]["prism.dev/release"], "web-3");
        let binding = applied(&writes, Kind::RoleBinding);
        assert_eq!(binding["metadata"]["name"], "web-3-web-reads");
        assert_eq!(binding["roleRef"]["name"], "web-3-reader");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "web-3-web"}, {"kind": "ServiceAccount", "name": "other"}])
        );
        let ingress = applied(&writes, Kind::Ingress);
        assert_eq!(ingress["metadata"]["name"], "web");
        assert_eq!(
            ingress["metadata"]["labels"],
            json!({"prism.dev/app": "web"})
        );
        assert_eq!(ingress["metadata"].get("namespace"), None);
        assert_eq!(
            ingress["metadata"]["ownerReferences"][0]["uid"], "uid-web",
            "the Application owns it where they share an API server"
        );

        assert_eq!(
            remove(&release),
            vec![
                Write::Delete {
                    kind: Kind::ServiceAccount,
                    name: "web-3-web".into()
                },
                Write::Delete {
                    kind: Kind::Role,
                    name: "web-3-reader".into()
                },
                Write::Delete {
                    kind: Kind::RoleBinding,
                    name: "web-3-web-reads".into()
                },
            ],
            "the shared Ingress stays for the other versions"
        );
        assert_eq!(
            remove_shared(&release),
            vec![Write::Delete {
                kind: Kind::Ingress,
                name: "web".into()
            }],
            "until the application leaves the cluster"
        );
    }

    #[test]
    fn a_pod_runs_as_its_version_s_own_account() {
        let release = release(json!([
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}},
        ]));
        let mut pod = json!({"serviceAccountName": "web", "containers": []});
        rename_references(&mut pod, "web-3", &release.spec.template);
        assert_eq!(pod["serviceAccountName"], "web-3-web");
        let mut other = json!({"serviceAccountName": "default"});
        rename_references(&mut other, "web-3", &release.spec.template);
        assert_eq!(other["serviceAccountName"], "default", "not the template's");
    }
}
