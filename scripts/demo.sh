#!/usr/bin/env bash
# Sets up everything and runs Prism's main job on the local sandbox: three real clusters in two
# regions joined as one fleet (`prism cluster join`), Prism's CRDs and controller on the
# management cluster (c1), the quickstart Application (examples/quickstart.yaml) on every
# cluster, and a new version of it rolled out through three steps (a canary in one cluster
# first), shown live until it completes, with requests through each cluster's gateway counted by
# the version that answered them before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
kubectl() { sandbox/sandbox kubectl c1 "$@"; }
export KUBECONFIG="$PWD/.sandbox/c1/kubeconfig"
NS=demo

step "building the sandbox (cached after the first run; the first takes about 25 minutes)"
sandbox/sandbox build

step "starting three clusters"
sandbox/sandbox up --clusters 3

step "building prism"
cargo build --release --locked -p prism
prism=target/release/prism

step "installing Prism's CRDs on the management cluster c1"
"$prism" crds | kubectl apply --server-side --force-conflicts --field-manager=prism -f -
kubectl wait --for condition=established --timeout=60s \
  crd/applications.prism.dev crd/releases.prism.dev crd/strategies.prism.dev \
  crd/clusterstrategies.prism.dev crd/clusters.prism.dev crd/rolloutblocks.prism.dev

step "joining c1 (eu-west), c2 (us-east) and c3 (eu-west) to the fleet"
for cluster in c1 c2 c3; do
  # A fresh start: what an earlier demo left in its namespace goes.
  sandbox/sandbox kubectl "$cluster" delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  "$prism" cluster join --kubeconfig ".sandbox/$cluster/kubeconfig" --name "$cluster" \
    --region "$(cat ".sandbox/$cluster/region")" --label prism.dev/fleet=demo
done
# The Application's namespace in every cluster (Prism would make it, but the HTTPRoutes below
# are the user's own).
for cluster in c1 c2 c3; do
  sandbox/sandbox kubectl "$cluster" create namespace "$NS" --dry-run=client -o yaml |
    sandbox/sandbox kubectl "$cluster" apply -f - >/dev/null
done

HOST=web.demo.example
# The version that answers one request through a cluster's real gateway (Traefik, see
# sandbox/README.md "Data plane"), or "failed".
answer() {
  curl -s -o /dev/null -D - -H "Host: $HOST" "http://$(cat ".sandbox/$1/gateway-address")/" |
    awk -F': ' '/^HTTP/ && $0 !~ / 200/ { print "failed"; exit }
      tolower($1) == "x-prism-release" { print $2 }' | tr -d '\r'
}
# Whether 20 answers in a row through the cluster's gateway come from version $2.
serves() {
  local _
  for _ in $(seq 20); do [ "$(answer "$1")" = "$2" ] || return 1; done
}
# 200 requests through each cluster's gateway, counted by the version that answered them.
requests() {
  local cluster
  for cluster in c1 c2 c3; do
    printf '  %s: ' "$cluster"
    for _ in $(seq 200); do answer "$cluster"; done |
      sort | uniq -c | awk '{ printf "%s %s, ", $2, $1 } END { print "of 200 requests" }'
  done
}

step "starting the controller (log: .sandbox/demo-controller.log)"
# Only the demo's Clusters, whatever else the sandbox's management cluster holds.
RUST_LOG=info "$prism" controller -n "$NS" --cluster-selector prism.dev/fleet=demo \
  >.sandbox/demo-controller.log 2>&1 &
controller=$!
# The web UI for the person running the demo: the kubeconfig's identity, on loopback only.
"$prism" dashboard --address 127.0.0.1:${PRISM_DASHBOARD_PORT:-3100} \
  --cluster-selector prism.dev/fleet=demo >.sandbox/demo-dashboard.log 2>&1 &
dashboard=$!
trap 'kill "$controller" "$dashboard" 2>/dev/null || true' EXIT
until grep -q "Prism dashboard:" .sandbox/demo-dashboard.log; do
  kill -0 "$dashboard" 2>/dev/null || { cat .sandbox/demo-dashboard.log; exit 1; }
  sleep 0.2
done
dashboard_url=$(sed -n 's/^Prism dashboard: \([^ ]*\).*/\1/p' .sandbox/demo-dashboard.log)
echo "The dashboard (web UI) of the fleet: $dashboard_url"

step "the quickstart Application, version 1.0.0 (the first release goes straight to its last step)"
kubectl apply --server-side --force-conflicts --field-manager=demo -f examples/quickstart.yaml
"$prism" status web -n "$NS" --watch --timeout 3m

step "the user's HTTPRoute in every cluster: $HOST through the cluster's gateway to the Service web"
for cluster in c1 c2 c3; do
  gateway=$(cat ".sandbox/$cluster/gateway")
  sandbox/sandbox kubectl "$cluster" apply --server-side --field-manager=demo -f - >/dev/null <<ROUTE
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: $NS}
spec:
  parentRefs: [{name: ${gateway#*/}, namespace: ${gateway%/*}}]
  hostnames: [$HOST]
  rules: [{backendRefs: [{name: web, port: 80}]}]
ROUTE
  until serves "$cluster" web-1; do sleep 0.5; done
done
requests

"$prism" cluster list

step "a new version, 1.1.0: a quarter of the pods and traffic in one cluster, then half everywhere, then all"
echo "Follow it in the dashboard: ${dashboard_url}#/namespaces/$NS/applications/web"
sed 's/web:1.0.0/web:1.1.0/' examples/quickstart.yaml |
  kubectl apply --server-side --force-conflicts --field-manager=demo -f -
"$prism" status web -n "$NS" --watch --timeout 5m

step "requests through each cluster's gateway, once each serves the new version alone"
for cluster in c1 c2 c3; do
  until serves "$cluster" web-2; do sleep 0.5; done
done
requests

step "the Releases, and the fleet"
kubectl get releases.prism.dev -n "$NS"
"$prism" history web -n "$NS"
"$prism" cluster list

step "done; the sandbox keeps running (sandbox/sandbox status, sandbox/sandbox down)"
echo "The dashboard stops with this script; run it again with: $prism dashboard --cluster-selector prism.dev/fleet=demo"
echo "Run it again by hand: $prism controller -n $NS &  then edit the image in examples/quickstart.yaml"
