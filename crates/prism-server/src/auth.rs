//! Who is asking, and may they. `prism serve` checks each bearer token with the management
//! cluster's TokenReview and each read or action with a SubjectAccessReview as the caller, so a
//! caller sees and does exactly what kubectl would let them: the server's own rights are never
//! lent. `prism dashboard` is one person's: every request is the kubeconfig's user, whose rights
//! SelfSubjectAccessReviews tell.
//!
//! Answers are kept a few seconds: a page and its live updates ask the same questions many times
//! a second, and the API server should not hear each of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenReview, TokenReviewSpec, UserInfo,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Serialize;

use crate::error::ApiError;

/// The cookie the UI signs in with: EventSource cannot send an Authorization header.
pub const SESSION_COOKIE: &str = "prism_session";

/// How long a TokenReview's or an access review's answer is kept.
const KEEP: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `prism serve`: many callers, each with a bearer token.
    Serve,
    /// `prism dashboard`: the kubeconfig's user alone, on loopback.
    Dashboard,
}

/// An authenticated caller, as the API server knows them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
    #[serde(skip)]
    pub uid: Option<String>,
    #[serde(skip)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request would do in Kubernetes' terms: a verb on a resource of a group, in a namespace
/// (empty: every namespace, or a cluster-scoped resource), optionally by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: String,
    pub name: Option<String>,
}

impl Access {
    /// A verb on one of Prism's resources.
    pub fn prism(verb: &'static str, resource: &'static str, namespace: &str) -> Access {
        Access {
            verb,
            group: "prism.dev",
            resource,
            namespace: namespace.to_owned(),
            name: None,
        }
    }

    pub fn named(mut self, name: &str) -> Access {
        self.name = Some(name.to_owned());
        self
    }

    fn attributes(&self) -> ResourceAttributes {
        ResourceAttributes {
            verb: Some(self.verb.to_owned()),
            group: Some(self.group.to_owned()),
            resource: Some(self.resource.to_owned()),
            namespace: Some(self.namespace.clone()).filter(|ns| !ns.is_empty()),
            name: self.name.clone(),
            ..ResourceAttributes::default()
        }
    }

    /// For a 403's message: `patch releases.prism.dev in namespace shop`.
    pub fn describe(&self) -> String {
        let scope = if self.namespace.is_empty() {
            "in every namespace".to_owned()
        } else {
            format!("in namespace {}", self.namespace)
        };
        let name = self
            .name
            .as_ref()
            .map_or_else(String::new, |name| format!(" {name}"));
        format!(
            "{} {}.{}{name} {scope}",
            self.verb, self.resource, self.group
        )
    }
}

type Kept<T> = Mutex<HashMap<T, (Instant, bool)>>;

pub struct Auth {
    client: Client,
    pub mode: Mode,
    /// `prism dashboard`'s user, asked once at start.
    local: Option<Caller>,
    tokens: Mutex<HashMap<String, (Instant, Option<Caller>)>>,
    access: Kept<(Caller, Access)>,
}

impl Auth {
    pub async fn new(client: Client, mode: Mode) -> Result<Auth, kube::Error> {
        let local = match mode {
            Mode::Serve => None,
            Mode::Dashboard => Some(whoami(&client).await?),
        };
        Ok(Auth {
            client,
            mode,
            local,
            tokens: Mutex::default(),
            access: Mutex::default(),
        })
    }

    /// The caller of a request: the dashboard's user, or whoever the request's bearer token
    /// (header or session cookie) belongs to. 401 without a token the API server accepts.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(local) = &self.local {
            return Ok(local.clone());
        }
        let token = token(headers).ok_or_else(|| {
            ApiError::unauthorized(
                "no bearer token: send `Authorization: Bearer <token>`, or sign in",
            )
        })?;
        self.review(&token).await?.ok_or_else(|| {
            ApiError::unauthorized(
                "the token was not accepted by the management cluster's TokenReview",
            )
        })
    }

    /// Who `token` belongs to, if anyone (TokenReview).
    pub async fn review(&self, token: &str) -> Result<Option<Caller>, ApiError> {
        if let Some((at, caller)) = self.tokens.lock().unwrap().get(token)
            && at.elapsed() < KEEP
        {
            return Ok(caller.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let review = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::upstream(format!("TokenReview failed: {e}")))?;
        let caller = review
            .status
            .filter(|status| status.authenticated == Some(true))
            .and_then(|status| status.user)
            .map(caller_of);
        let mut tokens = self.tokens.lock().unwrap();
        tokens.retain(|_, (at, _)| at.elapsed() < KEEP);
        tokens.insert(token.to_owned(), (Instant::now(), caller.clone()));
        Ok(caller)
    }

    /// Whether `caller` may do `access`, as the API server's authorizer says.
    pub async fn allows(&self, caller: &Caller, access: &Access) -> Result<bool, ApiError> {
        let key = (caller.clone(), access.clone());
        if let Some((at, allowed)) = self.access.lock().unwrap().get(&key)
            && at.elapsed() < KEEP
        {
            return Ok(*allowed);
        }
        let allowed = match self.mode {
            Mode::Dashboard => {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(access.attributes()),
                        ..SelfSubjectAccessReviewSpec::default()
                    },
                    ..SelfSubjectAccessReview::default()
                };
                Api::<SelfSubjectAccessReview>::all(self.client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map(|review| review.status.is_some_and(|s| s.allowed))
            }
            Mode::Serve => {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(caller.user.clone()),
                        groups: Some(caller.groups.clone()),
                        uid: caller.uid.clone(),
                        extra: Some(caller.extra.clone()).filter(|extra| !extra.is_empty()),
                        resource_attributes: Some(access.attributes()),
                        ..SubjectAccessReviewSpec::default()
                    },
                    ..SubjectAccessReview::default()
                };
                Api::<SubjectAccessReview>::all(self.client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map(|review| review.status.is_some_and(|s| s.allowed))
            }
        }
        .map_err(|e| ApiError::upstream(format!("SubjectAccessReview failed: {e}")))?;
        let mut kept = self.access.lock().unwrap();
        kept.retain(|_, (at, _)| at.elapsed() < KEEP);
        kept.insert(key, (Instant::now(), allowed));
        Ok(allowed)
    }

    /// 403 naming the access, unless `caller` may do it.
    pub async fn require(&self, caller: &Caller, access: Access) -> Result<(), ApiError> {
        if self.allows(caller, &access).await? {
            Ok(())
        } else {
            Err(Auth::refusal(caller, &access))
        }
    }

    /// The 403 of `caller`, who may not do `access`.
    pub fn refusal(caller: &Caller, access: &Access) -> ApiError {
        ApiError::forbidden(format!("{} may not {}", caller.user, access.describe()))
    }
}

/// The kubeconfig's user (SelfSubjectReview).
async fn whoami(client: &Client) -> Result<Caller, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(caller_of(
        review
            .status
            .and_then(|status| status.user_info)
            .unwrap_or_default(),
    ))
}

fn caller_of(user: UserInfo) -> Caller {
    Caller {
        user: user.username.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        uid: user.uid,
        extra: user.extra.unwrap_or_default(),
    }
}

/// The bearer token of the Authorization header, else of the session cookie.
fn token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = || {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value)
    };
    bearer
        .or_else(cookie)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_header_or_else_the_session_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(token(&headers), None);
        headers.insert(COOKIE, "theme=dark; prism_session=abc".parse().unwrap());
        assert_eq!(token(&headers).as_deref(), Some("abc"));
        headers.insert(AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token(&headers).as_deref(), Some("xyz"));
    }

    #[test]
    fn a_refusal_names_what_was_asked() {
        let access = Access::prism("patch", "releases", "shop").named("web-3");
        assert_eq!(
            access.describe(),
            "patch releases.prism.dev web-3 in namespace shop"
        );
        assert_eq!(
            Access::prism("list", "applications", "").describe(),
            "list applications.prism.dev in every namespace"
        );
    }
}
