//! The `gatewayAPI` traffic provider: Prism splits the backendRefs that point at the
//! application's Service in the user's HTTPRoute into one weighted backendRef per version, puts
//! a step's routes in front of the user's rules, and gives each subdomain route an HTTPRoute of
//! its own.
//!
//! The pure part works on HTTPRoute objects as the API server returns them (`serde_json::Value`,
//! server defaults filled in), so that whatever Prism does not manage round-trips exactly:
//! - [`route`]: the `spec.rules` Prism writes, and the weights a route is set to;
//! - [`hostnames`]: the HTTPRoutes Prism owns for subdomain routes;
//! - [`status`]: whether every parent Gateway accepted the route's current generation.

pub mod hostnames;
pub mod route;
pub mod status;

#[cfg(test)]
mod fixtures;
