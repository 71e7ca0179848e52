#!/usr/bin/env bash
# The controller's memory per live version of rainbow Applications, across the sandbox's three
# clusters: APPS Applications (1 replica each, `schedule: {clusters: 3}`, `versions.max: VERSIONS`,
# gatewayAPI traffic through an HTTPRoute per application and cluster, each version on its own
# hostname `{version}.<app>.bench.test`) are installed, then rolled out VERSIONS-1 times, so that
# VERSIONS versions of each live at once in every cluster (a Deployment, its pod, a Service, its
# EndpointSlice and an HTTPRoute per version and cluster). Prints the controller's RSS at rest with
# one live version and with VERSIONS, and the difference per live version and cluster.
#
#   scripts/bench-rainbow-memory.sh [--apps N] [--versions N] [--deadline SECONDS]
#   PRISM=target/debug/prism scripts/bench-rainbow-memory.sh   # a given binary, not built here
#
# Defaults: 10 applications, 8 versions, a deadline of 300 s for each revision to complete.
# Exit status: 0 when every Release completed; 1 otherwise. Everything the script created is
# deleted on exit, failure or interrupt included. Run one benchmark at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-fleet-lib.sh

APPS=10
VERSIONS=8
DEADLINE=300
SETTLE=${SETTLE:-20}  # seconds after completion before RSS "at rest" is read
while (($#)); do
  case $1 in
    --apps) APPS=$2; shift 2 ;;
    --versions) VERSIONS=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$APPS" =~ ^[1-9][0-9]*$ ]] || { echo "--apps takes a positive number" >&2; exit 2; }
[[ "$VERSIONS" =~ ^[0-9]+$ ]] && ((VERSIONS >= 2 && VERSIONS <= 16)) \
  || { echo "--versions takes 2 to 16 (versions.max)" >&2; exit 2; }

NS=bench-rainbow
LABEL=prism.dev/bench=rainbow
PREFIX=bench-rainbow
WORK="$(mktemp -d /tmp/prism-bench-rainbow.XXXXXX)"

cleanup() {
  local status=$?
  step "cleaning up: controller, Clusters $PREFIX-c1..c3, namespace $NS in c1..c3"
  fleet_cleanup
  wait_namespace_gone "$NS" 600 2>/dev/null || echo "namespace $NS still terminating; it goes on by itself" >&2
  if ((status == 0)); then rm -rf "$WORK"; else echo "kept the controller's log: $WORK/controller.log" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

name() { printf 'app-%02d' "$1"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$controller_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$controller_pid/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# The HTTPRoute of every application, in cluster $1 (the Gateway the sandbox made there).
routes() {
  local i app gateway
  gateway=$(cat ".sandbox/$1/gateway")
  for ((i = 1; i <= APPS; i++)); do
    app=$(name "$i")
    cat <<EOF
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: $app, namespace: $NS}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: ${gateway%/*}, name: ${gateway#*/}}]
  hostnames: [$app.bench.test]
  rules: [{backendRefs: [{name: $app, port: 80}]}]
EOF
  done
}

# Every Application at revision $1's image.
applications() {
  local i app
  for ((i = 1; i <= APPS; i++)); do
    app=$(name "$i")
    cat <<EOF
---
apiVersion: prism.dev/v1alpha1
kind: Application
metadata: {name: $app, namespace: $NS}
spec:
  template:
    manifests:
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: $app}
        spec:
          replicas: 1
          selector: {matchLabels: {app: $app}}
          template:
            metadata: {labels: {app: $app}}
            spec: {containers: [{name: app, image: "bench:$1"}]}
      - apiVersion: v1
        kind: Service
        metadata: {name: $app}
        spec: {selector: {app: $app}, ports: [{port: 80}]}
  traffic: {provider: gatewayAPI, httpRoutes: [$app]}
  versions: {max: $VERSIONS, name: "v{revision}"}
  schedule: {clusters: 3}
  strategy:
    steps:
      - name: preview
        capacity: {contender: "100%"}
        traffic:
          contender: 0
          routes: [{name: by-version, to: each, match: {subdomain: "{version}"}}]
      - {name: live, traffic: {contender: 100}}
EOF
  done
}

# Waits until revision $1 of every application is Complete.
wait_complete() {
  local start=$SECONDS complete
  while :; do
    complete=$(k "$MANAGEMENT" get releases.prism.dev -n "$NS" --no-headers 2>/dev/null \
      | awk -v r="$1" '$3 == r && $(NF - 1) == "Complete"' | wc -l)
    ((complete == APPS)) && break
    kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited: $(tail -5 "$WORK/controller.log")"
    if ((SECONDS - start >= DEADLINE)); then
      controller_problems >&2
      fail "revision $1: $complete/$APPS Releases Complete after ${DEADLINE}s"
    fi
    sleep 2
  done
  printf 'revision %s: %s/%s Complete in %ss; RSS %s MiB\n' "$1" "$complete" "$APPS" \
    $((SECONDS - start)) "$(mib "$(rss_kib)")" >&2
}

# Live versions of the applications (Deployments) in every cluster.
live_versions() {
  local c total=0
  for c in "${CLUSTERS[@]}"; do
    total=$((total + $(k "$c" get deployments -n "$NS" --no-headers 2>/dev/null | wc -l)))
  done
  echo "$total"
}

prism=$(prism_binary)

fleet_setup "$prism"
for c in "${CLUSTERS[@]}"; do
  routes "$c" | k "$c" apply --server-side --field-manager=bench -f - >/dev/null
done
step "starting the controller as prism-controller (-n $NS --cluster-selector $LABEL)"
fleet_start_controller "$prism"
fleet_wait_reachable 60

step "installing $APPS Applications (versions.max $VERSIONS, gatewayAPI, 3 clusters each)"
applications 1 | k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null
wait_complete 1
sleep "$SETTLE"
rss_one=$(rss_kib)
live_one=$(live_versions)

for ((revision = 2; revision <= VERSIONS; revision++)); do
  step "revision $revision of every application"
  applications "$revision" | k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null
  wait_complete "$revision"
done
sleep "$SETTLE"
rss_all=$(rss_kib)
live_all=$(live_versions)
((live_all == APPS * VERSIONS * ${#CLUSTERS[@]})) \
  || fail "$live_all versions live in the clusters, not $((APPS * VERSIONS * ${#CLUSTERS[@]}))"

step "results"
added=$((live_all - live_one))
cat <<EOF
applications:                    $APPS (1 replica, gatewayAPI, each version on its own hostname, 3 clusters)
live versions, all clusters:     $live_one, then $live_all ($VERSIONS per application and cluster)
RSS at rest, one version each:   $(mib "$rss_one") MiB
RSS at rest, $VERSIONS versions each:    $(mib "$rss_all") MiB
peak RSS (VmHWM):                $(mib "$(hwm_kib)") MiB
per live version and cluster:    $(awk -v a="$rss_all" -v b="$rss_one" -v n="$added" 'BEGIN {printf "%.1f KiB", (a - b) / n}') ((RSS with $VERSIONS - RSS with 1) / $added versions added)
EOF
