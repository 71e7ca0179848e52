#!/usr/bin/env bash
# Sets up everything and runs Prism's main job on the local sandbox: three real clusters, Prism's
# CRDs on the management cluster (c1), an Application with a vanguard strategy accepted by the real
# API server, and the rollout it asks for, step by step across the fleet.
#
# The controller that carries the rollout out on the clusters is foundation 3 (issue 4); until it
# lands, the rollout is shown as the engine plans it (`prism plan`), on the real fleet's names.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
kubectl() { sandbox/sandbox kubectl c1 "$@"; }

step "building the sandbox (cached after the first run; the first takes about 15 minutes)"
sandbox/sandbox build

step "starting three clusters"
sandbox/sandbox up --clusters 3

step "building prism"
cargo build --release --locked -p prism
prism=target/release/prism

step "installing Prism's CRDs on the management cluster c1"
"$prism" crds | kubectl apply --server-side --field-manager=prism -f -
kubectl wait --for condition=established --timeout=60s \
  crd/applications.prism.dev crd/releases.prism.dev crd/strategies.prism.dev \
  crd/clusterstrategies.prism.dev crd/clusters.prism.dev crd/rolloutblocks.prism.dev

step "applying the vanguard Application (examples/vanguard.yaml)"
kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side --field-manager=prism -f examples/vanguard.yaml
kubectl get applications.prism.dev,strategies.prism.dev -n shop

step "the rollout across c1..c3, step by step"
"$prism" plan -f examples/vanguard.yaml --clusters 3

step "done; the sandbox keeps running (sandbox/sandbox status, sandbox/sandbox down)"
