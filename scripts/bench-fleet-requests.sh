#!/usr/bin/env bash
# The controller's API requests, per cluster, for one 3-step rollout of one Application across the
# sandbox's three clusters (a Cluster object for each of c1..c3, c1 also the management cluster):
# reads and writes per cluster, the writes per step in each, and the writes while nothing changes
# (must be 0), from each cluster's audit log, which records only the controller's identity (see
# sandbox/README.md, "Identities and the audit log"). The single-cluster figure, without Cluster
# objects: scripts/bench-api-requests.sh.
#
#   scripts/bench-fleet-requests.sh          # KEEP=1 keeps the namespace, Clusters and the log
#   PRISM=target/debug/prism scripts/bench-fleet-requests.sh   # a given binary, not built here
#
# Run one benchmark at a time: the audit logs count every request of the prism-controller user.
# Exit status: 0 when the rollout completed, no write changed nothing and the idle window had no
# write in any cluster; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-fleet-lib.sh

NS="bench-fleet-$(date +%s)"
LABEL="prism.dev/bench=$NS"
PREFIX=$NS
APP=web
DEADLINE=${DEADLINE:-180}   # seconds for one Release to complete
IDLE=${IDLE:-30}            # seconds of the idle window
# Completing a Release may still be followed by writes that report it (the Application's
# status); they belong to the rollout, not to the idle window.
SETTLE=${SETTLE:-5}
WORK="$(mktemp -d /tmp/prism-bench-fleet.XXXXXX)"

cleanup() {
  local status=$?
  if [[ "${KEEP:-0}" == 1 ]]; then
    [[ -n "$controller_pid" ]] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
    echo "kept namespace $NS (c1..c3), Clusters $LABEL; controller log $WORK/controller.log" >&2
  else
    fleet_cleanup
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

source scripts/bench-app.sh
application() { bench_application "$1" "schedule: {clusters: 3}"; }

# Prints "NAME|STEP|PHASE|CLUSTERS" of the Application's Release with this revision (empty: none yet).
release() {
  k c1 get releases.prism.dev -n "$NS" -l "prism.dev/app=$APP" \
    -o jsonpath="{range .items[?(@.spec.revision==$1)]}{.metadata.name}|{.status.stepName}|{.status.phase}|{.spec.clusters[*].name}{end}"
}

# Waits until Release REVISION is Complete, printing its step when it changes (polled every 200 ms;
# the writes per step come from the audit log, exactly).
wait_complete() {
  local revision=$1 start=$SECONDS name step phase clusters last="unset"
  while ((SECONDS - start < DEADLINE)); do
    IFS='|' read -r name step phase clusters <<<"$(release "$revision")" || true
    if [[ -n "$name" && "$step" != "$last" ]]; then
      echo "$(now) ${step:-none} (${phase:-no phase}; clusters: $clusters)" >&2
      last=$step
    fi
    [[ "$phase" == Complete ]] && return 0
    sleep 0.2
  done
  KEEP=1
  controller_problems >&2
  fail "Release revision $revision of $APP in $NS is not Complete after ${DEADLINE}s: ${name:-not created}, step '${step:-}', phase '${phase:-}'.
      Controller log: $WORK/controller.log"
}

prism=$(prism_binary)

fleet_setup "$prism"
read -r -a logs_start <<<"$(audit_marks)"
step "starting the controller as prism-controller (-n $NS --cluster-selector $LABEL)"
fleet_start_controller "$prism"
fleet_wait_reachable 60

step "first Release (revision 1): waiting until Complete"
application nginx:1.27 | k c1 apply --server-side --field-manager=bench -f - >/dev/null
wait_complete 1

step "second Release (revision 2): new image, 3 steps in 3 clusters"
read -r -a logs_roll <<<"$(audit_marks)"
started=$(now)
application nginx:1.28 | k c1 apply --server-side --field-manager=bench -f - >/dev/null
wait_complete 2
release2=$(release 2 | cut -d'|' -f1)
completed=$(now)

step "idle: ${SETTLE}s to settle, then ${IDLE}s in which nothing may be written"
sleep "$SETTLE"
read -r -a logs_idle <<<"$(audit_marks)"
idle_start=$(now)
sleep "$IDLE"
idle_end=$(now)

status=0
step "rollout of revision 2, per cluster: $started .. $idle_start (Complete at $completed)"
scripts/bench-fleet.py --namespace "$NS" "${logs_roll[@]}" --until "$idle_start" --step-of "$NS/$release2" \
  --resources --latency --fail-on-noop || status=1
step "the controller's peak memory: $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$controller_pid/status")"
step "everything since the controller started (its first lists and watches, revision 1, revision 2)"
scripts/bench-fleet.py --namespace "$NS" "${logs_start[@]}" --until "$idle_start" --fail-on-noop || status=1
step "idle window, per cluster: $idle_start .. $idle_end"
scripts/bench-fleet.py --namespace "$NS" "${logs_idle[@]}" --since "$idle_start" --until "$idle_end" --max-writes 0 || status=1
controller_problems
exit "$status"
