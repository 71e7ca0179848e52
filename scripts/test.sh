#!/usr/bin/env bash
# Runs every test of the project: builds the local sandbox of real Kubernetes clusters (cached after
# the first run), then every test of the Cargo workspace. The end-to-end tests start the sandbox
# themselves (or reuse a running one); it is stopped at the end unless KEEP_SANDBOX=1.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "building the sandbox (kube-apiserver, controller-manager, scheduler, etcd, kwok)"
sandbox/sandbox build

if [ "${KEEP_SANDBOX:-0}" != 1 ]; then
  trap 'step "stopping the sandbox"; sandbox/sandbox down' EXIT
fi

step "checking formatting"
cargo fmt --all -- --check

# Incremental caches only help rebuilds on a developer machine; on CI they double the disk used.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "running the tests"
cargo test --workspace --locked
