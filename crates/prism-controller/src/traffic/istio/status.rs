//! Whether the VirtualService's current generation is served, as far as anything says.
//!
//! Nothing may report it at all: Istio's VirtualService has no acceptance condition, and
//! istiod writes a status only with its status feature on (`PILOT_ENABLE_STATUS`); the sandbox
//! runs no istiod, so there the VirtualService is in place once written. When a status carries
//! `observedGeneration` (an int or a string in the CRD), one behind `metadata.generation` means
//! istiod has not processed Prism's last write yet, and the split is pending.

use serde_json::Value;

use super::http::describe_virtual_service;

/// Why the current generation is not known to be served yet, or None.
pub fn pending(virtual_service: &Value) -> Option<String> {
    let generation = virtual_service["metadata"]["generation"].as_i64()?;
    let observed = &virtual_service["status"]["observedGeneration"];
    let observed = observed
        .as_i64()
        .or_else(|| observed.as_str().and_then(|text| text.parse().ok()))?;
    (observed < generation).then(|| {
        format!(
            "{} waits for istiod to process generation {generation}: its status.observedGeneration is {observed}",
            describe_virtual_service(virtual_service)
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_status(status: Value) -> Value {
        json!({
            "metadata": {"name": "docs", "namespace": "shop", "generation": 4},
            "status": status,
        })
    }

    #[test]
    fn without_a_status_the_virtual_service_is_in_place_once_written() {
        assert_eq!(pending(&with_status(Value::Null)), None);
        assert_eq!(pending(&with_status(json!({}))), None);
    }

    #[test]
    fn a_stale_observed_generation_is_pending_a_current_one_is_not() {
        assert_eq!(
            pending(&with_status(json!({"observedGeneration": 3}))),
            Some(
                "VirtualService shop/docs waits for istiod to process generation 4: its status.observedGeneration is 3"
                    .into()
            )
        );
        assert!(pending(&with_status(json!({"observedGeneration": "3"}))).is_some());
        assert_eq!(
            pending(&with_status(json!({"observedGeneration": 4}))),
            None
        );
        assert_eq!(
            pending(&with_status(json!({"observedGeneration": "4"}))),
            None
        );
    }
}
