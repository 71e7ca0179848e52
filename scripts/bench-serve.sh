#!/usr/bin/env bash
# `prism serve` at scale: N Applications (1 replica each, one step, 3 clusters each; the fleet of
# scripts/bench-fleet-lib.sh and the Applications of scripts/bench-fleet-apps.sh, rolled out by a
# release controller until Complete), then `prism serve` (release build) on loopback, read by a
# ServiceAccount allowed to get, list and watch Prism's resources. scripts/bench-serve.py measures:
#   - the fleet page (GET /api/v1/fleet) and application pages, sequential GETs, cold (the first
#     after a change of the server's caches: a fresh rendering) and warm (the shared rendering),
#     as the client sees them on loopback and as the server's Server-Timing header says;
#   - prism serve's VmRSS and VmHWM when its caches are filled and after the measurements;
#   - the delivery of changes to SSE clients: 100 on /api/v1/fleet/stream for a status change
#     of a probe Application no controller watches (the server's path alone), then those and 100
#     on one application's stream for real step changes (a manual gate promoted by raising its
#     Release's spec.targetStep: the controller's reconcile included), from the patch's
#     response to each client's update showing it.
# Prints a table and writes it, with the figures as JSON, under target/bench/.
#
#   scripts/bench-serve.sh [--apps N] [--requests N] [--clients N] [--changes N] [--deadline S]
#   PRISM=/path/to/prism scripts/bench-serve.sh   # a given release binary, not built here
#
# Defaults: 1000 applications, 200 GETs per page, 100 clients per stream, 10 changes, 900 s for
# each wait. On the 2-core machine installing 1000 Applications takes a few minutes. Run one
# benchmark at a time; other tests on the shared sandbox make noise (the server watches every
# namespace, so their changes are changes of its caches too). Everything the script created is
# deleted on exit, failure or interrupt included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-fleet-lib.sh
source scripts/bench-fleet-apps.sh

APPS=1000
REQUESTS=200
CLIENTS=100
CHANGES=10
DEADLINE=900
TRAFFIC=none      # the server's figures do not depend on the traffic provider
CHUNK=50
PARALLEL=4
PORT=${PORT:-18480}
while (($#)); do
  case $1 in
    --apps) APPS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --changes) CHANGES=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$APPS" "$REQUESTS" "$CLIENTS" "$CHANGES" "$DEADLINE"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "every option takes a positive number" >&2; exit 2; }
done

NS=bench-serve
LABEL=prism.dev/bench=serve
PREFIX=serve
# The probe Application lives apart, where no controller acts: only the benchmark changes it.
PROBE_NS=bench-serve-probe
CALLER=bench-serve-caller
GATED=gated
WORK="$(mktemp -d /tmp/prism-bench-serve.XXXXXX)"
serve_pid=""

cleanup() {
  local status=$?
  if [[ -n "$serve_pid" ]] && kill "$serve_pid" 2>/dev/null; then wait "$serve_pid" 2>/dev/null || true; fi
  step "cleaning up: prism serve, controller, Clusters $PREFIX-c1..c3, namespaces $NS and $PROBE_NS, ClusterRole(Binding) $CALLER"
  fleet_cleanup
  k "$MANAGEMENT" delete namespace "$PROBE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k "$MANAGEMENT" delete clusterrolebinding,clusterrole "$CALLER" --ignore-not-found >/dev/null 2>&1 || true
  wait_namespace_gone "$NS" 600 2>/dev/null || echo "namespace $NS still terminating; it goes on by itself" >&2
  if ((status == 0)); then rm -rf "$WORK"; else echo "kept the logs: $WORK" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Application $GATED with image $1: twelve steps, each but the last held for a person, so that
# each promotion is a real step change of a Release in flight (a first Release goes straight to
# the last step; the second waits at the first).
gated() {
  local steps="" s
  for s in $(seq 1 11); do steps+="      - {name: s$s, capacity: {contender: \"100%\"}, gate: {manual: true}}"$'\n'; done
  cat <<EOF
apiVersion: prism.dev/v1alpha1
kind: Application
metadata: {name: $GATED, namespace: $NS}
spec:
  template:
    manifests:
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: $GATED}
        spec:
          replicas: 1
          selector: {matchLabels: {app: $GATED}}
          template:
            metadata: {labels: {app: $GATED}}
            spec: {containers: [{name: app, image: "$1"}]}
  traffic: {provider: none}
  schedule: {clusters: 3}
  strategy:
    steps:
$steps      - {name: full, capacity: {contender: "100%", incumbent: "0%"}}
EOF
}

# Waits until Release $1 of $NS is in phase $2.
wait_release_phase() {
  local deadline=$((SECONDS + DEADLINE)) phase
  while phase=$(k "$MANAGEMENT" get releases.prism.dev -n "$NS" "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true)
        [[ "$phase" != "$2" ]]; do
    ((SECONDS < deadline)) || fail "Release $1 is ${phase:-without a phase}, not $2, after ${DEADLINE}s"
    sleep 1
  done
}

prism=$(prism_binary)
fleet_setup "$prism"
step "starting the controller as prism-controller (-n $NS --cluster-selector $LABEL)"
fleet_start_controller "$prism"
fleet_wait_reachable 60

generate bench:1.0
step "installing $APPS Applications (1 replica, 3 clusters each; $PARALLEL kubectl applies of $CHUNK at once)"
t0=$SECONDS
apply_all bench:1.0
wait_all_complete 1
install=$((SECONDS - t0))

step "Application $GATED: revision 1, then revision 2 held at its first step"
gated gated:1 | k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null
wait_release_phase "$GATED-1" Complete
gated gated:2 | k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null
wait_release_phase "$GATED-2" WaitingForCommand

step "the probe Application in $PROBE_NS (no controller there); the caller $CALLER"
k "$MANAGEMENT" create namespace "$PROBE_NS" >/dev/null
NS=$PROBE_NS applications 1 1 probe:1 | k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null
k "$MANAGEMENT" create serviceaccount "$CALLER" -n "$NS" >/dev/null
k "$MANAGEMENT" create clusterrole "$CALLER" --verb=get,list,watch --resource='*.prism.dev' >/dev/null
k "$MANAGEMENT" create clusterrolebinding "$CALLER" --clusterrole="$CALLER" \
  --serviceaccount="$NS:$CALLER" >/dev/null
k "$MANAGEMENT" create token "$CALLER" -n "$NS" --duration=2h >"$WORK/token"

step "starting prism serve on 127.0.0.1:$PORT (the admin's kubeconfig: TokenReview, SubjectAccessReview)"
KUBECONFIG=.sandbox/$MANAGEMENT/kubeconfig RUST_LOG=${RUST_LOG:-info} \
  "$prism" serve --address "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
serve_pid=$!
deadline=$((SECONDS + 60))
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz')" 2>/dev/null; do
  kill -0 "$serve_pid" 2>/dev/null || fail "prism serve exited: $(tail -5 "$WORK/serve.log")"
  ((SECONDS < deadline)) || fail "prism serve does not answer on 127.0.0.1:$PORT after 60 s"
  sleep 0.2
done

step "measuring"
mkdir -p target/bench
out=target/bench/serve-$(date -u +%Y%m%dT%H%M%SZ)
scripts/bench-serve.py --port "$PORT" --token-file "$WORK/token" --pid "$serve_pid" \
  --kubeconfig ".sandbox/$MANAGEMENT/kubeconfig" --namespace "$NS" --apps "$APPS" \
  --detail "$(name 1)" "$(name $(((APPS + 1) / 2)))" "$(name "$APPS")" "$GATED" \
  --probe "$PROBE_NS/$(name 1)" --gated "$GATED" \
  --requests "$REQUESTS" --clients "$CLIENTS" --changes "$CHANGES" --out "$out.json" \
  | tee "$out.txt"
{
  echo "applications: $APPS (installed and Complete in ${install}s); machine: $(nproc) cores, $(uptime | sed 's/.*load/load/')"
  echo "figures: $out.json"
} | tee -a "$out.txt"
