//! What the CLI (`prism`) and the HTTP server (`prism-server`) both show and do. The read models
//! are pure functions of the objects (the CLI reads them with requests, the server from its watch
//! caches); the actions decide purely, then write through a client; both fail with [`Error`].

pub mod pods;
