//! The cluster of the current kubeconfig, in one namespace: what the CLI's commands read (an
//! Application and its Releases) and write (merge patches), each failure mapped to a
//! [`Error`] whose message says what to do.

use std::fmt::Debug;

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, Config, Resource};
use prism_api::labels::APP_LABEL;
use prism_api::{Application, Release, RolloutBlock};
use serde::de::DeserializeOwned;

use crate::Error;

/// The field manager of the CLI's writes, apart from the controller's `prism`: `managedFields`
/// tell a person's command from the controller's work.
pub const FIELD_MANAGER: &str = "prism-cli";

pub struct Connection {
    client: Client,
    namespace: String,
    target: Target,
}

/// A client from the current kubeconfig (or the in-cluster service account), and the
/// configuration it was made from.
pub async fn current_kubeconfig() -> Result<(Client, Config), Error> {
    let config = Config::infer()
        .await
        .map_err(|e| Error::Api(format!("no Kubernetes configuration: {e}")))?;
    let client = Client::try_from(config.clone())
        .map_err(|e| Error::Api(format!("no Kubernetes client: {e}")))?;
    Ok((client, config))
}

/// What to run to install the CRDs, for messages.
const INSTALL_CRDS: &str = "run `prism crds | kubectl apply --server-side -f -` against it";

/// A cluster the `cluster` commands talk to, for messages: which one, where, and what to do when
/// access is denied.
pub struct Target {
    /// `the management cluster`, `the application cluster`.
    pub name: String,
    /// The API server's address.
    pub url: String,
    /// Appended to an access-denied message: the rights the command needs there.
    pub needs: &'static str,
}

impl Target {
    /// `error` of the request described by `what`, as the exit code and message a person or a
    /// script can act on.
    pub fn explain(&self, what: &str, error: kube::Error) -> Error {
        let Target { name, url, needs } = self;
        match error {
            kube::Error::Api(status) if status.is_not_found() => {
                Error::NotFound(format!("{what}: {}", status.message))
            }
            kube::Error::Api(status) if status.is_forbidden() => Error::Forbidden(format!(
                "{what}: access denied on {name} at {url}: {}; {needs}",
                status.message
            )),
            kube::Error::Api(status) if status.is_conflict() || status.is_invalid() => {
                Error::Refused(format!("{what}: {}", status.message))
            }
            kube::Error::Api(status) => Error::Api(format!("{what}: {}", status.message)),
            error => Error::Api(format!(
                "cannot reach {name} at {url}: {error}; check that it runs and that this machine \
                 can reach it"
            )),
        }
    }

    /// As [`Target::explain`], for a list of one of Prism's resource types: a 404 means that the
    /// type is missing, so the CRDs are.
    pub fn explain_list(&self, what: &str, error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) if status.is_not_found() => Error::Api(format!(
                "{what}: Prism's CRDs are not installed on {} at {}: {INSTALL_CRDS}",
                self.name, self.url
            )),
            error => self.explain(what, error),
        }
    }
}

impl Connection {
    /// A client from the current kubeconfig (or the in-cluster service account), working in
    /// `namespace` or else the context's namespace.
    pub async fn new(namespace: Option<String>) -> Result<Connection, Error> {
        let (client, config) = current_kubeconfig().await?;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        Ok(Connection {
            client,
            namespace,
            target: Target {
                name: "the cluster".to_owned(),
                url: config.cluster_url.to_string(),
                needs: "the command needs rights on Prism's resources in the namespace",
            },
        })
    }

    /// A connection through `client` (the HTTP server's), working in `namespace`; `cluster`
    /// names the cluster in messages.
    pub fn with_client(client: Client, namespace: &str, cluster: &str) -> Connection {
        Connection {
            client,
            namespace: namespace.to_owned(),
            target: Target {
                name: cluster.to_owned(),
                url: String::new(),
                needs: "the server needs rights on Prism's resources in the namespace",
            },
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn applications(&self) -> Api<Application> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn releases(&self) -> Api<Release> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Objects of a kind Prism has no type for (a user's HTTPRoute), in the namespace.
    pub fn dynamic(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, resource)
    }

    pub fn rollout_blocks(&self) -> Api<RolloutBlock> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The label selector of the Application `app`'s Releases.
    pub fn releases_of(app: &str) -> String {
        format!("{APP_LABEL}={app}")
    }

    /// The Application `app` and its Releases, in no particular order.
    pub async fn read(&self, app: &str) -> Result<(Application, Vec<Release>), Error> {
        let namespace = &self.namespace;
        // Listing first: a missing resource type is a 404 on a list, where a get could not tell
        // it from a missing Application.
        let releases = self
            .releases()
            .list(&ListParams::default().labels(&Self::releases_of(app)))
            .await
            .map_err(|error| match error {
                kube::Error::Api(status) if status.is_not_found() => Error::Api(
                    "Prism's CRDs are not installed: run `prism crds | kubectl apply --server-side -f -`"
                        .to_owned(),
                ),
                error => self.explain(&format!("listing Releases in {namespace}"), error),
            })?;
        let application = self
            .applications()
            .get_opt(app)
            .await
            .map_err(|e| self.explain(&format!("reading Application {namespace}/{app}"), e))?
            .ok_or_else(|| Error::NotFound(format!("application {namespace}/{app} not found")))?;
        Ok((application, releases.items))
    }

    /// Merges `patch` (RFC 7386) into the object `name` of `api`: only the fields it names
    /// change, and the controller's ownership of the others stays as it is.
    pub async fn merge_patch<K>(
        &self,
        api: &Api<K>,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        api.patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| {
            let kind = K::kind(&());
            self.explain(&format!("patching {kind} {}/{name}", self.namespace), e)
        })?;
        Ok(())
    }

    /// See [`Target::explain`].
    pub fn explain(&self, what: &str, error: kube::Error) -> Error {
        self.target.explain(what, error)
    }
}
