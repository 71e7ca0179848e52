//! The `prism` binary's commands; `main.rs` only parses the command line. What the commands
//! on an Application show and do is `prism-ops`'s, shared with the HTTP server.

pub mod cluster;
pub mod controller;
pub mod crds;
pub mod exit;
pub mod input;
pub mod plan;
pub mod rbac;
pub mod serve;
