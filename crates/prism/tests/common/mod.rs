//! The examples under `examples/`, for the tests that check them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example, by name (its file's stem) and text, in name order.
pub fn examples() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The text of the example `name`, e.g. `canary`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(dir().join(format!("{name}.yaml"))).unwrap()
}

/// The documents of the example `name`.
pub fn documents(name: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&example(name)).unwrap()
}
