//! The `prism` binary's commands; `main.rs` only parses the command line.

pub mod abort;
pub mod blocks;
pub mod cluster;
pub mod connection;
pub mod controller;
pub mod crds;
pub mod error;
pub mod history;
pub mod input;
pub mod plan;
pub mod promote;
pub mod rbac;
pub mod releases;
pub mod rollback;
pub mod status;
pub mod text;
pub mod versions;
