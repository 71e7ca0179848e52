//! Prism's Kubernetes API, group `prism.dev`, version `v1alpha1`.

pub mod strategy;
