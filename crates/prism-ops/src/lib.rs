//! What the CLI (`prism`) and the HTTP server (`prism-server`) both show and do. The read models
//! are pure functions of the objects (the CLI reads them with requests, the server from its watch
//! caches); the actions decide purely, then write through a client; both fail with [`Error`].

pub mod abort;
pub mod actions;
pub mod blocks;
pub mod cluster;
pub mod connection;
mod error;
pub mod history;
pub mod pods;
pub mod promote;
pub mod releases;
pub mod rollback;
pub mod status;
pub mod summary;
pub mod text;
pub mod timeline;
pub mod versions;

pub use error::Error;
