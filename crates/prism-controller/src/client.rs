//! Kubernetes clients whose requests are counted, by cluster, verb, resource and code
//! (`prism_api_requests_total`): a tower layer on the client's stack, outside kube's retries, so
//! a request counts once, with the code it finally got.
//!
//! Every client the controller makes is made here ([`build`]): the management cluster's by
//! [`crate::run`], the application clusters' by [`crate::clusters`]; each also carries the
//! write fence of leader election ([`crate::leadership::Leadership::fence`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

use crate::leadership::Leadership;
use crate::metrics::{ApiRequestLabels, Metrics};

/// The code of a request that got no HTTP answer (no connection, a timeout), as client-go
/// labels it.
pub const TRANSPORT_ERROR: &str = "<error>";

/// A client of `config`'s API server whose requests count as `cluster`'s, and whose writes pass
/// the fence of `leadership` (outermost: a write fenced never leaves, and is not counted).
pub fn build(
    config: Config,
    cluster: &str,
    metrics: &Metrics,
    leadership: &Arc<Leadership>,
) -> Result<Client, kube::Error> {
    let count = CountRequests {
        cluster: cluster.to_owned(),
        requests: metrics.api_requests.clone(),
    };
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&count)
        .with_layer(&leadership.fence())
        .build())
}

/// Counts each request of the service it wraps once it is answered.
#[derive(Clone)]
struct CountRequests {
    cluster: String,
    requests: Family<ApiRequestLabels, Counter>,
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counting: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    counting: CountRequests,
}

impl<S, B, R> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (verb, resource) = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let cluster = self.counting.cluster.clone();
        let requests = self.counting.requests.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            let code = match &answer {
                Ok(response) => response.status().as_str().to_owned(),
                Err(_) => TRANSPORT_ERROR.to_owned(),
            };
            requests
                .get_or_create(&ApiRequestLabels {
                    cluster,
                    verb,
                    resource,
                    code,
                })
                .inc();
            answer
        })
    }
}

/// A request's verb and resource as the API server names them (its `RequestInfo`): the verb
/// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`; the
/// resource its plural, with the subresource after a slash (`releases/status`). A path that is
/// no resource's (`/version`, discovery) has the lowercase method for verb and no resource.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/api/{version}/...` (the core group) or `/apis/{group}/{version}/...`.
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => &[],
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    // `namespaces/{ns}/{resource}...`, but `namespaces/{name}/status` and `.../finalize` are a
    // Namespace's own subresources.
    let rest = match rest {
        ["namespaces", _, resource, ..] if !matches!(*resource, "status" | "finalize") => {
            &rest[2..]
        }
        rest => rest,
    };
    let Some(resource) = rest.first() else {
        return (plain_verb(method), String::new());
    };
    let named = rest.len() > 1;
    let resource = match rest.get(2) {
        Some(subresource) => format!("{resource}/{subresource}"),
        None => (*resource).to_owned(),
    };
    let watch = watch_path
        || query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| matches!(pair, "watch=true" | "watch=1"))
        });
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => plain_verb(method),
    };
    (verb, resource)
}

/// The verb of a request to a path that is no resource's: its method, in lowercase.
fn plain_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb_and_resource(method: Method, uri: &str) -> (&'static str, String) {
        let uri: http::Uri = uri.parse().unwrap();
        let (verb, resource) = classify(&method, uri.path(), uri.query());
        (verb, resource)
    }

    #[test]
    fn each_request_the_controller_makes_has_the_verb_and_resource_kubernetes_names() {
        let cases = [
            (
                Method::GET,
                "/apis/prism.dev/v1alpha1/namespaces/ns/releases?&limit=500",
                "list",
                "releases",
            ),
            (
                Method::GET,
                "/apis/prism.dev/v1alpha1/releases?watch=true&resourceVersion=5&timeoutSeconds=290",
                "watch",
                "releases",
            ),
            (
                Method::GET,
                "/apis/prism.dev/v1alpha1/namespaces/ns/releases/web-1",
                "get",
                "releases",
            ),
            (
                Method::PATCH,
                "/apis/prism.dev/v1alpha1/namespaces/ns/releases/web-1/status?fieldManager=prism",
                "patch",
                "releases/status",
            ),
            (
                Method::POST,
                "/apis/prism.dev/v1alpha1/namespaces/ns/releases",
                "create",
                "releases",
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/ns/deployments/web/scale",
                "update",
                "deployments/scale",
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/ns/deployments/web",
                "delete",
                "deployments",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods?labelSelector=a",
                "deletecollection",
                "pods",
            ),
            (Method::GET, "/api/v1/pods?watch=1", "watch", "pods"),
            (
                Method::GET,
                "/api/v1/watch/namespaces/ns/services",
                "watch",
                "services",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/ns/pods/web-0/eviction",
                "create",
                "pods/eviction",
            ),
            (
                Method::GET,
                "/apis/prism.dev/v1alpha1/clusters",
                "list",
                "clusters",
            ),
            (
                Method::PATCH,
                "/apis/prism.dev/v1alpha1/clusters/c1/status",
                "patch",
                "clusters/status",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/ns/events",
                "create",
                "events",
            ),
            (Method::GET, "/api/v1/namespaces/ns", "get", "namespaces"),
            (Method::GET, "/api/v1/namespaces", "list", "namespaces"),
            (
                Method::PUT,
                "/api/v1/namespaces/ns/finalize",
                "update",
                "namespaces/finalize",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/status",
                "get",
                "namespaces/status",
            ),
            (Method::GET, "/version", "get", ""),
            (Method::GET, "/apis/prism.dev/v1alpha1", "get", ""),
            (Method::GET, "/api", "get", ""),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(
                verb_and_resource(method.clone(), uri),
                (verb, resource.to_owned()),
                "{method} {uri}"
            );
        }
    }
}
