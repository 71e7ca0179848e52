//! The blue/green switch: the application's Service selects the pods of one version, and moving
//! traffic is changing its selector. Weights are 0 or 100 (the schema enforces it); should a
//! split ever reach this provider, the version with the larger weight gets everything.

use prism_api::labels::{APP_LABEL, RELEASE_LABEL};
use serde_json::{Map, Value};

use prism_engine::ResolvedRoute;

use super::{AppView, TrafficProvider, Weights, remove_services, service, service_is};
use crate::touches::{Touch, Verb};
use crate::write::{Kind, Write};

pub struct ServiceSelector;

impl TrafficProvider for ServiceSelector {
    fn touches(&self) -> &'static [Touch] {
        &[Touch {
            kind: Kind::Service,
            verbs: &[Verb::WatchLabelled, Verb::Apply, Verb::Delete],
            why: "serviceSelector: the application's Service selects the version that takes the traffic; deleted when the application leaves the cluster or its Application is deleted",
        }]
    }

    fn observe(&self, view: &AppView) -> Weights {
        view.observed_service
            .and_then(|service| service.spec.as_ref()?.selector.as_ref()?.get(RELEASE_LABEL))
            .map(|release| [(release.clone(), 100)].into())
            .unwrap_or_default()
    }

    fn writes(&self, view: &AppView, weights: &Weights, _routes: &[ResolvedRoute]) -> Vec<Write> {
        let Some((selected, _)) = weights
            .iter()
            .filter(|(_, weight)| **weight > 0)
            .max_by_key(|(_, weight)| **weight)
        else {
            return Vec::new();
        };
        let selector = Map::from_iter([
            (APP_LABEL.to_owned(), Value::from(view.app)),
            (RELEASE_LABEL.to_owned(), Value::from(selected.as_str())),
        ]);
        if service_is(view, &selector, &Map::new()) {
            return Vec::new();
        }
        service(view, selector, Map::new()).into_iter().collect()
    }

    fn remove(&self, view: &AppView) -> Vec<Write> {
        remove_services(view)
    }
}
