#!/usr/bin/env bash
# Counts the API requests the Prism controller makes for one 3-step rollout on the sandbox, the
# writes per step, and the writes while nothing changes (must be 0), from c1's audit log, which
# records only the controller's identity (see sandbox/README.md, "Identities and the audit log").
#
#   scripts/bench-api-requests.sh          # KEEP=1 keeps the namespace and the controller's log
#   PRISM=target/debug/prism scripts/bench-api-requests.sh   # a given binary, not built here
#
# Exit status: 0 when the rollout completed, no write changed nothing and the idle window had
# no write; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="bench-$(date +%s)"
APP=web
DEADLINE=${DEADLINE:-180}   # seconds for one Release to complete
IDLE=${IDLE:-30}            # seconds of the idle window
# Completing a Release may still be followed by writes that report it (the Application's
# status); they belong to the rollout, not to the idle window.
SETTLE=${SETTLE:-5}
LOG=.sandbox/c1/audit.log
WORK="$(mktemp -d /tmp/prism-bench.XXXXXX)"

step() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
kubectl() { sandbox/sandbox kubectl c1 "$@"; }
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

controller_pid=""
cleanup() {
  [[ -n "$controller_pid" ]] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "kept namespace $NS; controller log $WORK/controller.log" >&2
  else
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

source scripts/bench-app.sh
application() { bench_application "$1"; }

# Prints "NAME|STEP|PHASE" of the Application's Release with this revision (empty: none yet).
release() {
  kubectl get releases -n "$NS" -l "prism.dev/app=$APP" -o jsonpath="{range .items[?(@.spec.revision==$1)]}{.metadata.name}|{.status.step}|{.status.phase}{end}"
}

# Waits until Release REVISION is Complete; appends "TIME STEP" to $WORK/steps when its step
# changes.
# Polling (every 200 ms) rather than watching keeps it simple; the audit log's own record of the
# Release's status (count-api-requests.py --step-of) is the exact measure of writes per step.
wait_complete() {
  local revision=$1 start=$SECONDS name step phase last="unset"
  while ((SECONDS - start < DEADLINE)); do
    IFS='|' read -r name step phase <<<"$(release "$revision")" || true
    if [[ -n "$name" && "$step" != "$last" ]]; then
      echo "$(now) ${step:-none}" | tee -a "$WORK/steps" >&2
      last=$step
    fi
    [[ "$phase" == Complete ]] && return 0
    sleep 0.2
  done
  KEEP=1
  fail "Release revision $revision of $APP in $NS is not Complete after ${DEADLINE}s: ${name:-not created}, step '${step:-}', phase '${phase:-}'.
      Controller log: $WORK/controller.log"
}

sandbox/sandbox up --clusters 1 >&2

prism=${PRISM:-}
if [[ -z "$prism" ]]; then
  step "building prism"
  cargo build --release -q -p prism
  prism=target/release/prism
fi

step "installing the CRDs, namespace $NS"
"$prism" crds | kubectl apply --server-side --force-conflicts --field-manager=prism -f - >/dev/null
kubectl wait --for condition=established --timeout=60s crd/applications.prism.dev crd/releases.prism.dev >/dev/null
kubectl create namespace "$NS" >/dev/null

step "starting the controller as prism-controller"
start_offset=$(stat -c %s "$LOG")
KUBECONFIG=.sandbox/c1/controller.kubeconfig RUST_LOG=${RUST_LOG:-info} \
  "$prism" controller -n "$NS" >"$WORK/controller.log" 2>&1 &
controller_pid=$!

step "first Release (revision 1): waiting until Complete"
application nginx:1.27 | kubectl apply --server-side --field-manager=bench -f - >/dev/null
wait_complete 1

step "second Release (revision 2): new image, 3 steps"
offset=$(stat -c %s "$LOG")
started=$(now)
application nginx:1.28 | kubectl apply --server-side --field-manager=bench -f - >/dev/null
rm -f "$WORK/steps"
wait_complete 2
release2=$(release 2 | cut -d'|' -f1)
completed=$(now)

step "idle: ${SETTLE}s to settle, then ${IDLE}s in which nothing may be written"
sleep "$SETTLE"
idle_start=$(now)
sleep "$IDLE"
idle_end=$(now)

count() { scripts/count-api-requests.py "$LOG" --offset "$offset" "$@"; }
marks=$(cut -d' ' -f1 "$WORK/steps" | paste -sd,)
status=0
step "rollout of revision 2: $started .. $idle_start (step marks: polled step changes; then Complete at $completed)"
count --until "$idle_start" --marks "$marks,$completed" --step-of "$NS/$release2" --fail-on-noop || status=1
step "the controller's peak memory: $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$controller_pid/status")"
step "everything since the controller started (its first lists and watches, revision 1, revision 2)"
scripts/count-api-requests.py "$LOG" --offset "$start_offset" --until "$idle_start" --fail-on-noop || status=1
step "idle window: $idle_start .. $idle_end"
count --since "$idle_start" --until "$idle_end" --max-writes 0 || status=1
exit "$status"
