//! `deploy/crds/prism.dev.yaml` is what `prism crds` prints today.

use std::path::Path;

#[test]
fn the_committed_crds_are_up_to_date() {
    let committed_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/prism.dev.yaml");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    let generated = prism::crds::render().unwrap();
    assert!(
        committed == generated,
        "deploy/crds/prism.dev.yaml is stale: regenerate it with\n    cargo run -p prism -- crds > deploy/crds/prism.dev.yaml"
    );
}

#[test]
fn the_rendered_yaml_holds_every_crd() {
    let rendered = prism::crds::render().unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let names: Vec<&str> = documents
        .iter()
        .filter_map(|d| d.pointer("/metadata/name")?.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "applications.prism.dev",
            "releases.prism.dev",
            "strategies.prism.dev",
            "clusterstrategies.prism.dev",
            "clusters.prism.dev",
            "rolloutblocks.prism.dev",
            "metrictemplates.prism.dev",
            "clustermetrictemplates.prism.dev",
            "sideversions.prism.dev"
        ]
    );
}
