//! The `prism` binary's commands; `main.rs` only parses the command line.

pub mod controller;
pub mod crds;
pub mod history;
pub mod input;
pub mod plan;
