//! `prism cluster join`: gives Prism's controller least-privilege access to an application
//! cluster and registers the cluster in the management cluster.
//!
//! In the application cluster: the namespace [`NAMESPACE`], the ServiceAccount
//! [`SERVICE_ACCOUNT`], the ClusterRole and ClusterRoleBinding [`CLUSTER_ROLE`] (the rules the
//! controller's providers declare, `prism_controller::touches::rules`),
//! and a long-lived token Secret [`TOKEN_SECRET`] for the ServiceAccount. In the management
//! cluster: a Secret `cluster-<name>` holding a kubeconfig with that token, and the Cluster.
//! Everything is applied server-side (field manager [`FIELD_MANAGER`], the controller's), so joining again changes
//! nothing unless a flag did.
//!
//! Building the objects and the kubeconfig is pure; [`join`] makes the requests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use prism_api::Cluster;
use prism_api::labels::{CLUSTER_LABEL, FIELD_MANAGER, MANAGED_BY};
use prism_controller::fleet::MANAGEMENT_CLUSTER;
use prism_controller::touches;
use prism_controller::workload::objects;
use prism_controller::write::Kind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use prism_ops::Error;
use prism_ops::cluster::{Management, Target};

/// The namespace of the controller's ServiceAccount in an application cluster, and the default
/// namespace of the kubeconfig Secrets in the management cluster.
pub const NAMESPACE: &str = "prism-system";
/// The controller's identity in an application cluster.
pub const SERVICE_ACCOUNT: &str = "prism-controller";
/// The ClusterRole and ClusterRoleBinding that grant the controller its rights.
pub const CLUSTER_ROLE: &str = "prism:controller";
/// The long-lived token of [`SERVICE_ACCOUNT`], in [`NAMESPACE`].
pub const TOKEN_SECRET: &str = "prism-controller-token";
/// The key of the kubeconfig in the management cluster's Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// How long the application cluster's token controller gets to fill the token Secret.
const TOKEN_DEADLINE: Duration = Duration::from_secs(60);

/// What `prism cluster join` is asked to do: its flags.
#[derive(Clone, Debug, clap::Args)]
pub struct JoinOptions {
    /// The application cluster's kubeconfig, with the rights to create namespaces, RBAC and
    /// Secrets there.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// The kubeconfig's context to use. Default: its current context.
    #[arg(long)]
    pub context: Option<String>,
    /// The Cluster's name.
    #[arg(long, value_parser = cluster_name)]
    pub name: String,
    /// The cluster's region.
    #[arg(long, value_parser = short_text)]
    pub region: String,
    /// The cluster's zone.
    #[arg(long, value_parser = short_text)]
    pub zone: Option<String>,
    /// What the cluster offers (e.g. gpu), for schedules that require it; repeatable.
    #[arg(long = "capability", value_name = "CAPABILITY", value_parser = short_text)]
    pub capabilities: Vec<String>,
    /// The cluster's chance to be chosen against the others of its region. Default: 100 for
    /// a new Cluster, else the weight it has.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub weight: Option<u32>,
    /// The management cluster's namespace for the Secret that holds the cluster's
    /// kubeconfig (created if missing).
    #[arg(long, value_name = "NAMESPACE", default_value = NAMESPACE)]
    pub secret_namespace: String,
    /// A label of the Cluster object, e.g. the one a controller's --cluster-selector picks;
    /// repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    pub labels: Vec<(String, String)>,
    /// Let the controller write objects of this kind that templates and charts carry beside
    /// their workload (ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress,
    /// NetworkPolicy); repeatable. Without it, an application whose template has one is refused
    /// by the cluster (docs/workloads.md).
    #[arg(long = "allow-kind", value_name = "KIND", value_parser = optional_kind)]
    pub allowed_kinds: Vec<Kind>,
}

/// A kind `--allow-kind` may grant.
pub fn optional_kind(text: &str) -> Result<Kind, String> {
    objects::OPTIONAL
        .iter()
        .copied()
        .find(|kind| kind.resource().kind == text)
        .ok_or_else(|| {
            let names: Vec<String> = objects::OPTIONAL
                .iter()
                .map(|kind| kind.resource().kind)
                .collect();
            format!(
                "{text:?} is not a kind templates may carry by choice: one of {}",
                names.join(", ")
            )
        })
}

/// A label given as `KEY=VALUE`.
pub fn label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

/// A name for a Cluster: a DNS-1123 subdomain short enough for its Secret `cluster-<name>`.
pub fn cluster_name(text: &str) -> Result<String, String> {
    let max = 253 - "cluster-".len();
    let valid_chars = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if text.is_empty()
        || text.len() > max
        || !valid_chars
        || !ends_alphanumeric(text.chars().next())
        || !ends_alphanumeric(text.chars().last())
    {
        return Err(format!(
            "a cluster name is at most {max} lowercase letters, digits, '-' and '.', starting \
             and ending with a letter or digit"
        ));
    }
    if text == MANAGEMENT_CLUSTER {
        return Err(format!(
            "{MANAGEMENT_CLUSTER:?} is the name the controller gives the management cluster: \
             pick another"
        ));
    }
    Ok(text.to_owned())
}

/// A region, zone or capability: 1 to 63 characters, as the Cluster's schema requires.
pub fn short_text(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().count() > 63 {
        return Err("expected 1 to 63 characters".to_owned());
    }
    Ok(text.to_owned())
}

/// Where the application cluster's API server is and how to trust it, from its kubeconfig.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The context used.
    pub context: String,
    pub server: String,
    /// The CA bundle, base64-encoded as in a kubeconfig; absent when the kubeconfig has none.
    pub certificate_authority_data: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
}

/// The context `context` (default: the current one) of the kubeconfig read from `file`, and its
/// cluster entry. A CA given as a file is read and inlined.
pub fn endpoint(
    kubeconfig: &Kubeconfig,
    file: &Path,
    context: Option<&str>,
) -> Result<Endpoint, String> {
    let file = file.display();
    let contexts = || {
        let names: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("it has: {}", names.join(", "))
        }
    };
    let name = match context.or(kubeconfig.current_context.as_deref()) {
        Some(name) => name,
        None => {
            return Err(format!(
                "{file} has no current context: pick one with --context ({})",
                contexts()
            ));
        }
    };
    let named = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            format!(
                "{file} has no context {name:?}: pick one with --context ({})",
                contexts()
            )
        })?;
    let cluster_name = named
        .context
        .as_ref()
        .map(|c| c.cluster.as_str())
        .unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            format!("context {name:?} of {file} names the cluster {cluster_name:?}, which {file} does not define")
        })?;
    let server = cluster
        .server
        .clone()
        .filter(|server| !server.is_empty())
        .ok_or_else(|| format!("the cluster {cluster_name:?} of {file} has no server address"))?;
    let certificate_authority_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) if !data.is_empty() => Some(data.clone()),
        (_, Some(path)) if !path.is_empty() => {
            let pem = std::fs::read(path).map_err(|error| {
                format!("cannot read {path}, the CA file of the cluster {cluster_name:?} of {file}: {error}")
            })?;
            Some(base64(pem))
        }
        _ => None,
    };
    Ok(Endpoint {
        context: name.to_owned(),
        server,
        certificate_authority_data,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
        tls_server_name: cluster.tls_server_name.clone(),
    })
}

fn base64(bytes: Vec<u8>) -> String {
    match serde_json::to_value(ByteString(bytes)) {
        Ok(Value::String(text)) => text,
        _ => unreachable!("a ByteString serializes as a base64 string"),
    }
}

fn metadata(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
        ..ObjectMeta::default()
    }
}

pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: metadata(name, None),
        ..Namespace::default()
    }
}

pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(SERVICE_ACCOUNT, Some(NAMESPACE)),
        ..ServiceAccount::default()
    }
}

/// The ClusterRole of what the controller's providers declare they touch: what the controller
/// does in an application cluster, and nothing more; of the kinds templates carry by choice,
/// those `allowed`.
pub fn cluster_role(allowed: &[Kind]) -> ClusterRole {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    ClusterRole {
        metadata: metadata(CLUSTER_ROLE, None),
        rules: Some(
            touches::rules(allowed)
                .into_iter()
                .map(|rule| PolicyRule {
                    api_groups: Some(vec![rule.api_group]),
                    resources: Some(vec![rule.resource]),
                    verbs: strings(&rule.verbs),
                    ..PolicyRule::default()
                })
                .collect(),
        ),
        ..ClusterRole::default()
    }
}

pub fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(CLUSTER_ROLE, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: CLUSTER_ROLE.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SERVICE_ACCOUNT.to_owned(),
            namespace: Some(NAMESPACE.to_owned()),
            ..Subject::default()
        }]),
    }
}

/// The Secret the token controller fills with a token of [`SERVICE_ACCOUNT`] that does not
/// expire.
pub fn token_secret() -> Secret {
    let mut metadata = metadata(TOKEN_SECRET, Some(NAMESPACE));
    metadata.annotations = Some(
        [(
            "kubernetes.io/service-account.name".to_owned(),
            SERVICE_ACCOUNT.to_owned(),
        )]
        .into(),
    );
    Secret {
        metadata,
        type_: Some("kubernetes.io/service-account-token".to_owned()),
        ..Secret::default()
    }
}

/// The token and CA bundle (base64) the token controller put in the token Secret, once it has.
pub fn token_of(secret: &Secret) -> Option<(String, Option<String>)> {
    let data = secret.data.as_ref()?;
    let token = String::from_utf8(data.get("token")?.0.clone()).ok()?;
    if token.is_empty() {
        return None;
    }
    let ca = data
        .get("ca.crt")
        .filter(|ca| !ca.0.is_empty())
        .map(|ca| base64(ca.0.clone()));
    Some((token, ca))
}

/// The kubeconfig the controller uses for the Cluster `name`: the application cluster's server,
/// trusted with its kubeconfig's CA or else the token Secret's (`token_ca`), and the token.
pub fn kubeconfig(
    name: &str,
    endpoint: &Endpoint,
    token: &str,
    token_ca: Option<&str>,
) -> Result<String, Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct File<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        clusters: [Named<'a, ClusterEntry<'a>>; 1],
        users: [Named<'a, User<'a>>; 1],
        contexts: [Named<'a, Context<'a>>; 1],
        current_context: &'a str,
    }
    #[derive(Serialize)]
    struct Named<'a, T> {
        name: &'a str,
        #[serde(flatten)]
        value: T,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct ClusterEntry<'a> {
        cluster: ClusterFields<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct ClusterFields<'a> {
        server: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        certificate_authority_data: Option<&'a str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        insecure_skip_tls_verify: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        tls_server_name: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct User<'a> {
        user: Token<'a>,
    }
    #[derive(Serialize)]
    struct Token<'a> {
        token: &'a str,
    }
    #[derive(Serialize)]
    struct Context<'a> {
        context: ContextFields<'a>,
    }
    #[derive(Serialize)]
    struct ContextFields<'a> {
        cluster: &'a str,
        user: &'a str,
    }

    let ca = endpoint.certificate_authority_data.as_deref().or(
        // A kubeconfig that skips verification does not say which CA the server's certificate
        // comes from; the token Secret's is the cluster's root CA, not necessarily that one.
        if endpoint.insecure_skip_tls_verify {
            None
        } else {
            token_ca
        },
    );
    let file = File {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name,
            value: ClusterEntry {
                cluster: ClusterFields {
                    server: &endpoint.server,
                    certificate_authority_data: ca,
                    insecure_skip_tls_verify: ca.is_none() && endpoint.insecure_skip_tls_verify,
                    tls_server_name: endpoint.tls_server_name.as_deref(),
                },
            },
        }],
        users: [Named {
            name: SERVICE_ACCOUNT,
            value: User {
                user: Token { token },
            },
        }],
        contexts: [Named {
            name,
            value: Context {
                context: ContextFields {
                    cluster: name,
                    user: SERVICE_ACCOUNT,
                },
            },
        }],
        current_context: name,
    };
    serde_saphyr::to_string(&file)
        .map_err(|error| Error::Api(format!("writing the kubeconfig: {error}")))
}

/// The management cluster's Secret that holds the kubeconfig of the Cluster `name`.
pub fn secret_name(name: &str) -> String {
    format!("cluster-{name}")
}

pub fn kubeconfig_secret(name: &str, namespace: &str, kubeconfig: &str) -> Secret {
    let mut metadata = metadata(&secret_name(name), Some(namespace));
    metadata
        .labels
        .get_or_insert_default()
        .insert(CLUSTER_LABEL.to_owned(), name.to_owned());
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(
            [(
                KUBECONFIG_KEY.to_owned(),
                ByteString(kubeconfig.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    }
}

/// The Cluster as join applies it: only the fields the flags set, so that a weight left out
/// keeps the Cluster's, and cordoning (spec.unschedulable) is never undone by joining again.
pub fn cluster(options: &JoinOptions) -> Value {
    let mut spec = json!({
        "region": options.region,
        "credentials": {
            "secretRef": {"name": secret_name(&options.name), "namespace": options.secret_namespace},
            "key": KUBECONFIG_KEY,
        },
    });
    if let Some(zone) = &options.zone {
        spec["zone"] = json!(zone);
    }
    if !options.capabilities.is_empty() {
        spec["capabilities"] = json!(options.capabilities);
    }
    if let Some(weight) = options.weight {
        spec["weight"] = json!(weight);
    }
    let mut labels = serde_json::Map::new();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    for (key, value) in &options.labels {
        labels.insert(key.clone(), value.clone().into());
    }
    json!({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": options.name, "labels": labels},
        "spec": spec,
    })
}

/// What an apply did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// Changed.
    Configured,
    Unchanged,
}

impl Outcome {
    /// From the object's resourceVersion before (None: it did not exist) and after the apply.
    pub fn of(before: Option<&str>, after: Option<&str>) -> Outcome {
        match before {
            None => Outcome::Created,
            Some(before) if Some(before) == after => Outcome::Unchanged,
            Some(_) => Outcome::Configured,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// One line of join's report: `application cluster: ClusterRole prism:controller created`.
pub fn line(
    cluster: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    outcome: Outcome,
) -> String {
    match namespace {
        Some(namespace) => format!("{cluster}: {kind} {namespace}/{name} {outcome}"),
        None => format!("{cluster}: {kind} {name} {outcome}"),
    }
}

/// One of the two clusters, for requests and messages.
struct Side {
    client: Client,
    target: Target,
    /// For report lines.
    label: &'static str,
}

impl Side {
    /// Server-side applies `body` as the `K` named `name` (in `api`'s namespace) and reports the
    /// outcome.
    async fn apply<K>(
        &self,
        api: Api<K>,
        name: &str,
        body: &(impl Serialize + fmt::Debug),
        report: &mut impl FnMut(String),
    ) -> Result<K, Error>
    where
        K: Resource<DynamicType = ()> + Clone + fmt::Debug + DeserializeOwned,
    {
        let kind = K::kind(&());
        let namespace = api.namespace().map(str::to_owned);
        let what = match &namespace {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        };
        let before = api
            .get_opt(name)
            .await
            .map_err(|e| self.target.explain(&format!("reading {what}"), e))?;
        let after = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(|e| self.target.explain(&format!("applying {what}"), e))?;
        let outcome = Outcome::of(
            before
                .as_ref()
                .and_then(|b| b.meta().resource_version.as_deref()),
            after.meta().resource_version.as_deref(),
        );
        report(line(self.label, &kind, namespace.as_deref(), name, outcome));
        Ok(after)
    }

    /// Creates the namespace `name` unless it exists: an existing namespace is left as it is.
    async fn ensure_namespace(
        &self,
        name: &str,
        report: &mut impl FnMut(String),
    ) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| self.target.explain(&format!("reading Namespace {name}"), e))?;
        match existing {
            Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                Err(Error::Refused(format!(
                    "namespace {name} of {} is being deleted: wait until it is gone, then join \
                     again",
                    self.target.name
                )))
            }
            Some(_) => {
                report(line(
                    self.label,
                    "Namespace",
                    None,
                    name,
                    Outcome::Unchanged,
                ));
                Ok(())
            }
            None => {
                self.apply(api, name, &namespace(name), report).await?;
                Ok(())
            }
        }
    }
}

/// Joins the cluster: see the module's documentation. `report` hears one line per object.
pub async fn join(options: &JoinOptions, mut report: impl FnMut(String)) -> Result<(), Error> {
    let file = options.kubeconfig.display();
    let file_config = Kubeconfig::read_from(&options.kubeconfig).map_err(|error| {
        Error::Api(format!(
            "cannot read the application cluster's kubeconfig {file}: {error}; pass a readable \
             kubeconfig with --kubeconfig"
        ))
    })?;
    let endpoint = endpoint(
        &file_config,
        &options.kubeconfig,
        options.context.as_deref(),
    )
    .map_err(Error::Api)?;
    let config = Config::from_custom_kubeconfig(
        file_config,
        &KubeConfigOptions {
            context: Some(endpoint.context.clone()),
            ..KubeConfigOptions::default()
        },
    )
    .await
    .map_err(|error| {
        Error::Api(format!(
            "cannot use context {:?} of {file}: {error}",
            endpoint.context
        ))
    })?;
    let client = Client::try_from(config).map_err(|error| {
        Error::Api(format!(
            "no client for context {:?} of {file}: {error}",
            endpoint.context
        ))
    })?;
    let app = Side {
        client,
        target: Target {
            name: format!(
                "the application cluster (context {:?} of {file})",
                endpoint.context
            ),
            url: endpoint.server.clone(),
            needs: "joining needs the rights to create namespaces, ServiceAccounts, Secrets, \
                    ClusterRoles and ClusterRoleBindings there (cluster-admin)",
        },
        label: "application cluster",
    };

    // Both clusters answer, and the management cluster has the CRDs, before anything is written.
    let management = Management::new().await?;
    management.check_crds().await?;
    let management = Side {
        client: management.client(),
        target: Target {
            name: management.target().name.clone(),
            url: management.target().url.clone(),
            needs: "joining needs the rights to create Secrets and Clusters there",
        },
        label: "management cluster",
    };
    app.client
        .apiserver_version()
        .await
        .map_err(|e| app.target.explain("reading the server's version", e))?;

    app.ensure_namespace(NAMESPACE, &mut report).await?;
    app.apply(
        Api::<ServiceAccount>::namespaced(app.client.clone(), NAMESPACE),
        SERVICE_ACCOUNT,
        &service_account(),
        &mut report,
    )
    .await?;
    app.apply(
        Api::<ClusterRole>::all(app.client.clone()),
        CLUSTER_ROLE,
        &cluster_role(&options.allowed_kinds),
        &mut report,
    )
    .await?;
    app.apply(
        Api::<ClusterRoleBinding>::all(app.client.clone()),
        CLUSTER_ROLE,
        &cluster_role_binding(),
        &mut report,
    )
    .await?;
    let secret = app
        .apply(
            Api::<Secret>::namespaced(app.client.clone(), NAMESPACE),
            TOKEN_SECRET,
            &token_secret(),
            &mut report,
        )
        .await?;
    let (token, token_ca) = match token_of(&secret) {
        Some(token) => token,
        None => wait_for_token(&app).await?,
    };

    let config_text = kubeconfig(&options.name, &endpoint, &token, token_ca.as_deref())?;
    management
        .ensure_namespace(&options.secret_namespace, &mut report)
        .await?;
    management
        .apply(
            Api::<Secret>::namespaced(management.client.clone(), &options.secret_namespace),
            &secret_name(&options.name),
            &kubeconfig_secret(&options.name, &options.secret_namespace, &config_text),
            &mut report,
        )
        .await?;
    let joined = management
        .apply(
            Api::<Cluster>::all(management.client.clone()),
            &options.name,
            &cluster(options),
            &mut report,
        )
        .await?;
    report(format!(
        "cluster {} joined: region {}, weight {}{}",
        options.name,
        joined.spec.region,
        joined.spec.weight,
        if joined.spec.unschedulable {
            " (cordoned)"
        } else {
            ""
        }
    ));
    Ok(())
}

/// Polls the token Secret until the application cluster's token controller filled it.
async fn wait_for_token(app: &Side) -> Result<(String, Option<String>), Error> {
    let api: Api<Secret> = Api::namespaced(app.client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + TOKEN_DEADLINE;
    loop {
        let secret = api.get_opt(TOKEN_SECRET).await.map_err(|e| {
            app.target
                .explain(&format!("reading Secret {NAMESPACE}/{TOKEN_SECRET}"), e)
        })?;
        if let Some(token) = secret.as_ref().and_then(token_of) {
            return Ok(token);
        }
        if tokio::time::Instant::now() >= deadline {
            let name = secret.as_ref().map_or_else(String::new, |s| s.name_any());
            return Err(Error::Api(format!(
                "the token controller of {} did not fill Secret {NAMESPACE}/{name} with a token \
                 of ServiceAccount {SERVICE_ACCOUNT} within {}s: check that \
                 kube-controller-manager runs there with --service-account-private-key-file \
                 and --root-ca-file, then join again",
                app.target.name,
                TOKEN_DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str =
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmZha2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

    /// docs/fleet.md's table of the rights the controller gets says what the ClusterRole grants.
    #[test]
    fn the_documented_rights_are_the_granted_ones() {
        let docs = include_str!("../../../../docs/fleet.md");
        let table = docs
            .split("| API group | resource | verbs | why |")
            .nth(1)
            .expect("docs/fleet.md has the table of rights");
        let documented: Vec<(String, String, String)> = table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let unquote = |cell: &str| cell.trim_matches('`').replace("\"\"", "");
                (unquote(cells[1]), unquote(cells[2]), cells[3].to_owned())
            })
            .collect();
        let granted: Vec<(String, String, String)> = cluster_role(objects::OPTIONAL)
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| {
                (
                    rule.api_groups.unwrap_or_default().join(","),
                    rule.resources.unwrap_or_default().join(","),
                    rule.verbs.join(", "),
                )
            })
            .collect();
        assert_eq!(documented, granted);
    }

    fn options() -> JoinOptions {
        JoinOptions {
            kubeconfig: "c3.kubeconfig".into(),
            context: None,
            name: "eu-2".into(),
            region: "eu-west".into(),
            zone: None,
            capabilities: Vec::new(),
            weight: None,
            secret_namespace: NAMESPACE.into(),
            labels: Vec::new(),
            allowed_kinds: Vec::new(),
        }
    }

    fn file(text: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(text).unwrap()
    }

    const TWO_CONTEXTS: &str = "
apiVersion: v1
kind: Config
clusters:
- name: c3
  cluster: {server: 'https://127.10.0.3:6443', certificate-authority-data: LS0tCg==}
- name: c4
  cluster: {server: 'https://c4.example:6443', insecure-skip-tls-verify: true, tls-server-name: c4}
users: [{name: admin, user: {token: secret}}]
contexts:
- {name: c3, context: {cluster: c3, user: admin}}
- {name: c4, context: {cluster: c4, user: admin}}
- {name: broken, context: {cluster: c9, user: admin}}
current-context: c3
";

    #[test]
    fn the_endpoint_is_the_contexts_cluster_entry() {
        let kubeconfig = file(TWO_CONTEXTS);
        let path = Path::new("c3.kubeconfig");
        assert_eq!(
            endpoint(&kubeconfig, path, None).unwrap(),
            Endpoint {
                context: "c3".into(),
                server: "https://127.10.0.3:6443".into(),
                certificate_authority_data: Some("LS0tCg==".into()),
                insecure_skip_tls_verify: false,
                tls_server_name: None,
            }
        );
        let c4 = endpoint(&kubeconfig, path, Some("c4")).unwrap();
        assert_eq!(c4.server, "https://c4.example:6443");
        assert!(c4.insecure_skip_tls_verify);
        assert_eq!(c4.tls_server_name.as_deref(), Some("c4"));
    }

    #[test]
    fn a_missing_context_or_cluster_entry_is_named_with_the_fix() {
        let kubeconfig = file(TWO_CONTEXTS);
        let path = Path::new("c3.kubeconfig");
        assert_eq!(
            endpoint(&kubeconfig, path, Some("c5")).unwrap_err(),
            "c3.kubeconfig has no context \"c5\": pick one with --context (it has: c3, c4, broken)"
        );
        assert_eq!(
            endpoint(&kubeconfig, path, Some("broken")).unwrap_err(),
            "context \"broken\" of c3.kubeconfig names the cluster \"c9\", which c3.kubeconfig does not define"
        );
        let mut no_current = kubeconfig.clone();
        no_current.current_context = None;
        assert!(
            endpoint(&no_current, path, None)
                .unwrap_err()
                .starts_with("c3.kubeconfig has no current context: pick one with --context")
        );
    }

    #[test]
    fn a_ca_file_is_inlined() {
        let dir = std::env::temp_dir().join(format!("prism-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "PEM").unwrap();
        std::fs::write(
            dir.join("config"),
            "clusters: [{name: c, cluster: {server: 'https://c', certificate-authority: ca.crt}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
",
        )
        .unwrap();
        let kubeconfig = Kubeconfig::read_from(dir.join("config")).unwrap();
        let endpoint = endpoint(&kubeconfig, &dir.join("config"), None).unwrap();
        assert_eq!(endpoint.certificate_authority_data.as_deref(), Some("UEVN"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_controller_gets_exactly_these_rights() {
        insta::assert_snapshot!(serde_saphyr::to_string(&cluster_role(&[])).unwrap());
    }

    #[test]
    fn the_binding_grants_the_role_to_the_service_account() {
        let binding = serde_json::to_value(cluster_role_binding()).unwrap();
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "prism:controller"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "prism-controller", "namespace": "prism-system"}])
        );
    }

    #[test]
    fn the_token_secret_names_the_service_account() {
        let secret = serde_json::to_value(token_secret()).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/service-account-token");
        assert_eq!(
            secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
            "prism-controller"
        );
        assert_eq!(secret["metadata"]["namespace"], "prism-system");
        assert!(
            secret.get("data").is_none(),
            "the token controller fills it"
        );
    }

    #[test]
    fn the_token_is_read_once_the_token_controller_filled_it() {
        let mut secret = token_secret();
        assert_eq!(token_of(&secret), None);
        secret.data = Some(
            [
                ("token".to_owned(), ByteString(b"eyJ".to_vec())),
                ("ca.crt".to_owned(), ByteString(b"PEM".to_vec())),
            ]
            .into(),
        );
        assert_eq!(
            token_of(&secret),
            Some(("eyJ".to_owned(), Some("UEVN".to_owned())))
        );
    }

    fn c3() -> Endpoint {
        Endpoint {
            context: "c3".into(),
            server: "https://127.10.0.3:6443".into(),
            certificate_authority_data: Some(CA.into()),
            insecure_skip_tls_verify: false,
            tls_server_name: None,
        }
    }

    #[test]
    fn the_kubeconfig_holds_the_server_its_ca_and_the_token() {
        let text = kubeconfig("eu-2", &c3(), "eyJtoken", Some("b3RoZXI=")).unwrap();
        insta::assert_snapshot!(text);
        let parsed = Kubeconfig::from_yaml(&text).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.10.0.3:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some(CA));
        assert_eq!(parsed.current_context.as_deref(), Some("eu-2"));
        assert_eq!(parsed.api_version.as_deref(), Some("v1"));
    }

    #[test]
    fn without_a_ca_in_the_kubeconfig_the_token_secrets_is_used() {
        let endpoint = Endpoint {
            certificate_authority_data: None,
            ..c3()
        };
        let text = kubeconfig("eu-2", &endpoint, "t", Some("b3RoZXI=")).unwrap();
        let parsed = Kubeconfig::from_yaml(&text).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some("b3RoZXI=")
        );
        assert_eq!(cluster.insecure_skip_tls_verify, None);

        let insecure = Endpoint {
            certificate_authority_data: None,
            insecure_skip_tls_verify: true,
            ..c3()
        };
        let text = kubeconfig("eu-2", &insecure, "t", Some("b3RoZXI=")).unwrap();
        let parsed = Kubeconfig::from_yaml(&text).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.certificate_authority_data, None);
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
    }

    #[test]
    fn the_kubeconfig_secret_is_named_after_the_cluster() {
        let secret =
            serde_json::to_value(kubeconfig_secret("eu-2", "prism-system", "yaml")).unwrap();
        assert_eq!(secret["metadata"]["name"], "cluster-eu-2");
        assert_eq!(secret["metadata"]["namespace"], "prism-system");
        assert_eq!(secret["metadata"]["labels"]["prism.dev/cluster"], "eu-2");
        assert_eq!(secret["data"]["kubeconfig"], "eWFtbA==");
    }

    #[test]
    fn the_cluster_holds_only_what_the_flags_say() {
        assert_eq!(
            cluster(&options())["spec"],
            json!({
                "region": "eu-west",
                "credentials": {"secretRef": {"name": "cluster-eu-2", "namespace": "prism-system"}, "key": "kubeconfig"},
            })
        );
        let all = JoinOptions {
            zone: Some("eu-west-a".into()),
            capabilities: vec!["gpu".into(), "arm64".into()],
            weight: Some(50),
            secret_namespace: "fleet".into(),
            labels: vec![label("prism.dev/fleet=demo").unwrap()],
            allowed_kinds: Vec::new(),
            ..options()
        };
        assert_eq!(
            cluster(&all)["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "prism", "prism.dev/fleet": "demo"})
        );
        assert!(label("no-value").is_err() && label("=x").is_err());
        let spec = &cluster(&all)["spec"];
        assert_eq!(spec["zone"], "eu-west-a");
        assert_eq!(spec["capabilities"], json!(["gpu", "arm64"]));
        assert_eq!(spec["weight"], 50);
        assert_eq!(spec["credentials"]["secretRef"]["namespace"], "fleet");
        assert!(spec.get("unschedulable").is_none());
        // What the API would make of it.
        let parsed: Cluster = serde_json::from_value(cluster(&all)).unwrap();
        assert_eq!(parsed.spec.weight, 50);
    }

    #[test]
    fn names_are_checked_before_anything_is_written() {
        assert_eq!(cluster_name("eu-2").unwrap(), "eu-2");
        assert_eq!(cluster_name("a.b-c").unwrap(), "a.b-c");
        for bad in ["", "EU", "-a", "a-", "a_b", "local", &"a".repeat(246)] {
            assert!(cluster_name(bad).is_err(), "{bad:?}");
        }
        assert!(short_text("").is_err());
        assert!(short_text(&"x".repeat(64)).is_err());
        assert_eq!(short_text("eu-west").unwrap(), "eu-west");
    }

    #[test]
    fn outcomes_come_from_resource_versions() {
        assert_eq!(Outcome::of(None, Some("5")), Outcome::Created);
        assert_eq!(Outcome::of(Some("5"), Some("5")), Outcome::Unchanged);
        assert_eq!(Outcome::of(Some("5"), Some("6")), Outcome::Configured);
        assert_eq!(
            line(
                "application cluster",
                "ServiceAccount",
                Some("prism-system"),
                "prism-controller",
                Outcome::Unchanged
            ),
            "application cluster: ServiceAccount prism-system/prism-controller unchanged"
        );
    }
}
