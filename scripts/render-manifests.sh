#!/usr/bin/env bash
# Regenerates what is derived from the code and the chart, and committed:
#   deploy/crds/prism.dev.yaml and deploy/helm/prism/crds/prism.dev.yaml   (`prism crds`)
#   deploy/helm/prism/files/rbac.yaml                                       (`prism rbac`)
#   deploy/manifests/prism.yaml   (`helm template` of the chart, release "prism" in prism-system)
# crates/prism/tests/chart/ fails while any of them is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

prism() { cargo run --quiet --locked -p prism -- "$@"; }

prism crds >deploy/crds/prism.dev.yaml
cp deploy/crds/prism.dev.yaml deploy/helm/prism/crds/prism.dev.yaml
prism rbac >deploy/helm/prism/files/rbac.yaml
mkdir -p deploy/manifests
sandbox/sandbox helm template prism deploy/helm/prism --namespace prism-system \
  --set createNamespace=true >deploy/manifests/prism.yaml
echo "rendered deploy/crds, deploy/helm/prism/crds, deploy/helm/prism/files/rbac.yaml, deploy/manifests" >&2
