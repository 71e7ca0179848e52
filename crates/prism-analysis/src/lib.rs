//! Analysis and gates: what decides whether a step of a rollout is healthy.
//!
//! - `judge`: pure verdicts on measured values (threshold ranges, contender against incumbent with a
//!   Mann-Whitney U test, a weighted score across metrics).
//! - `prometheus`: the metric source, read through its HTTP API with timeouts and retries.
//! - `query`: a metric's PromQL with its variables replaced.
//! - `webhook`: signed POSTs with a timeout and retries, for gates and notifications.

pub mod judge;
pub mod prometheus;
pub mod query;
pub mod webhook;
