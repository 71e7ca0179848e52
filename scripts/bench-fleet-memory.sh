#!/usr/bin/env bash
# The controller's memory with many Applications across the sandbox's three clusters: N
# Applications (1 replica each, one step, `schedule: {clusters: 3}`, so N Deployments per cluster)
# are installed, then all rolled out to a new image. Prints the controller's peak and at-rest RSS,
# the time to install and to roll out everything, and its API requests per cluster, from each
# cluster's audit log (see scripts/bench-fleet-lib.sh for the fleet it sets up).
#
#   scripts/bench-fleet-memory.sh [--apps N] [--traffic podLabels|none] [--deadline SECONDS] [--shards N]
#   PRISM=target/debug/prism scripts/bench-fleet-memory.sh   # a given binary, not built here
#   KEEP=1 ...   # keep the namespace, the Clusters and the controller's log (the controller stops)
#
# Defaults: 1000 applications, podLabels traffic (each application has a Service and Prism labels
# its ready pods), a deadline of 600 s for each wait once the Applications are applied. On the
# 2-core machine, 1000 take about 30 min in all (applying them is slow: the three clusters saturate
# the CPUs), 300 about 8 min. Run one benchmark at a time: the audit logs count every request of
# the prism-controller user (requests about other namespaces are left out, cluster-wide ones not).
#
# With --shards N, N replicas run with leader election on N shards of the Applications, each
# leading one (the throughput of sharding: compare the times with --shards 1 and --shards 2); the
# RSS is the first replica's.
#
# Exit status: 0 when every Release completed both times and nothing was written at rest; 1
# otherwise. Everything the script created is deleted on exit, failure or interrupt included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-fleet-lib.sh
source scripts/bench-fleet-apps.sh

APPS=1000
TRAFFIC=podLabels
DEADLINE=600
CHUNK=50           # Applications per `kubectl apply`
PARALLEL=4         # `kubectl apply`s at once
SETTLE=${SETTLE:-15}  # seconds after completion before RSS "at rest" is read
IDLE=${IDLE:-30}      # seconds of the window in which nothing may be written
while (($#)); do
  case $1 in
    --apps) APPS=$2; shift 2 ;;
    --traffic) TRAFFIC=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$APPS" =~ ^[1-9][0-9]*$ ]] || { echo "--apps takes a positive number" >&2; exit 2; }
[[ "${SHARDS:-0}" =~ ^[0-9]+$ ]] || { echo "--shards takes a number" >&2; exit 2; }
[[ "$TRAFFIC" == podLabels || "$TRAFFIC" == none ]] || { echo "--traffic: podLabels or none" >&2; exit 2; }

NS=bench-fleet
LABEL=prism.dev/bench=fleet
PREFIX=bench
WORK="$(mktemp -d /tmp/prism-bench-fleet.XXXXXX)"
sampler_pid=""

cleanup() {
  local status=$?
  if ((status != 0)) && [[ -n "$controller_pid" && -r /proc/$controller_pid/status ]]; then
    echo "the controller's peak RSS so far: $(mib "$(hwm_kib)") MiB (VmHWM), now $(mib "$(rss_kib)") MiB" >&2
  fi
  [[ -n "$sampler_pid" ]] && kill "$sampler_pid" 2>/dev/null
  if [[ "${KEEP:-0}" == 1 ]]; then
    [[ -n "$controller_pid" ]] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
    echo "kept namespace $NS (c1..c3) and Clusters $LABEL; controller log $WORK/controller.log" >&2
    exit "$status"
  fi
  step "cleaning up: controller, Clusters $PREFIX-c1..c3, namespace $NS in c1..c3"
  fleet_cleanup
  local start=$SECONDS
  if wait_namespace_gone "$NS" 600 2>/dev/null; then
    echo "namespaces deleted in $((SECONDS - start))s" >&2
  else
    echo "namespace $NS still terminating after $((SECONDS - start))s; it goes on by itself" >&2
  fi
  if ((status == 0)); then
    rm -rf "$WORK"
  else
    echo "kept the controller's log and RSS samples (KiB, one a second): $WORK/controller.log, $WORK/rss" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$controller_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$controller_pid/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# The highest sampled RSS (KiB) between two Unix times.
peak_between() { awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b && $2 > m {m = $2} END {print m + 0}' "$WORK/rss"; }

prism=$(prism_binary)

fleet_setup "$prism"
marks_start=$(audit_marks)
step "starting the controller as prism-controller (-n $NS --cluster-selector $LABEL${SHARDS:+, $SHARDS replicas on $SHARDS shards})"
fleet_start_controller "$prism"
(
  while [[ -r /proc/$controller_pid/status ]]; do
    printf '%(%s)T %s\n' -1 "$(awk '/^VmRSS/ {print $2}' "/proc/$controller_pid/status" 2>/dev/null)"
    sleep 1
  done
) >"$WORK/rss" 2>/dev/null &
sampler_pid=$!
fleet_wait_reachable 60
rss_empty=$(rss_kib)

generate bench:1.0
generate bench:2.0
step "installing $APPS Applications (1 replica, $TRAFFIC traffic, 3 clusters each; $PARALLEL kubectl applies of $CHUNK at once)"
t0=$SECONDS; u0=$(date +%s)
apply_all bench:1.0
applied1=$((SECONDS - t0))
echo "applied in ${applied1}s" >&2
wait_all_complete 1
install=$((SECONDS - t0)); u1=$(date +%s)
sleep "$SETTLE"
rss_rest1=$(rss_kib)
marks_roll=$(audit_marks); roll_start=$(now)

step "rolling all $APPS out to a new image"
t0=$SECONDS; u2=$(date +%s)
apply_all bench:2.0
applied2=$((SECONDS - t0))
echo "applied in ${applied2}s" >&2
wait_all_complete 2
rollout=$((SECONDS - t0)); u3=$(date +%s)

step "at rest: ${SETTLE}s to settle, then ${IDLE}s in which nothing may be written"
sleep "$SETTLE"
marks_idle=$(audit_marks); idle_start=$(now)
sleep "$IDLE"
idle_end=$(now)
rss_rest2=$(rss_kib)
hwm=$(hwm_kib)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$controller_pid/stat")
cpu=$(awk -v t=$((utime + stime)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz}')
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=""
read -r -a logs_start <<<"$marks_start"
read -r -a logs_roll <<<"$marks_roll"
read -r -a logs_idle <<<"$marks_idle"

step "results"
regions=$(for c in "${CLUSTERS[@]}"; do printf '%s %s, ' "$c" "$(cat ".sandbox/$c/region")"; done)
cat <<EOF
applications:                $APPS (1 replica each, one step, $TRAFFIC traffic, schedule: 3 clusters)
controller:                  $( ((${SHARDS:-0} > 0)) && echo "$SHARDS replicas leading a shard each (leader election)" || echo "one, no leader election")
clusters:                    ${#CLUSTERS[@]} (${regions%, })
time to install all:         ${install}s (first apply until every revision 1 Complete; applying took ${applied1}s)
time to roll all out:        ${rollout}s (first apply until every revision 2 Complete; applying took ${applied2}s)
peak RSS (VmHWM):            $(mib "$hwm") MiB
peak RSS sampled, install:   $(mib "$(peak_between "$u0" "$u1")") MiB
peak RSS sampled, rollout:   $(mib "$(peak_between "$u2" "$u3")") MiB
RSS with the fleet, no apps: $(mib "$rss_empty") MiB
RSS at rest after install:   $(mib "$rss_rest1") MiB
RSS at rest after rollout:   $(mib "$rss_rest2") MiB
controller CPU time:         ${cpu}s (user + system, whole run)
EOF
controller_problems

status=0
step "API requests per cluster: controller start, install of revision 1 and ${SETTLE}s at rest"
scripts/bench-fleet.py --namespace "$NS" "${logs_start[@]}" --until "$roll_start" --resources --latency || status=1
step "API requests per cluster: rollout of revision 2 ($roll_start .. $idle_start)"
scripts/bench-fleet.py --namespace "$NS" "${logs_roll[@]}" --until "$idle_start" --resources --latency || status=1
step "API requests per cluster at rest ($idle_start .. $idle_end): no write allowed"
# With leader election, the leaders renew their Leases at rest: the only writes allowed.
scripts/bench-fleet.py --namespace "$NS" "${logs_idle[@]}" --since "$idle_start" --until "$idle_end" --max-writes 0 \
  --besides leases.coordination.k8s.io --resources || status=1
exit "$status"
