#!/usr/bin/env bash
# The throughput of shards: N Applications (1 replica each, one step, podLabels traffic, 3
# clusters each) are installed once, then rolled out to a new image with the controller on one
# shard (one replica, leader election on), then to another image with the controller on two
# shards (two replicas, each leading one). Prints how long each rollout took, from the first
# apply until every Release is Complete, and the Releases completed per second.
#
#   scripts/bench-shards.sh [--apps N] [--deadline SECONDS]
#   PRISM=target/release/prism scripts/bench-shards.sh   # a given binary, not built here
#
# Defaults: 1000 applications, 900 s for each wait. Every replica watches every Application and
# cluster; shards spread the deciding and the writing. On the 2-core machine the three clusters'
# API servers share the cores with the controller, which bounds what a second shard can add.
# Everything the script created is deleted on exit, failure or interrupt included.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-fleet-lib.sh
source scripts/bench-fleet-apps.sh

APPS=1000
TRAFFIC=podLabels
DEADLINE=900
CHUNK=50
PARALLEL=4
while (($#)); do
  case $1 in
    --apps) APPS=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$APPS" =~ ^[1-9][0-9]*$ ]] || { echo "--apps takes a positive number" >&2; exit 2; }

NS=bench-shards
LABEL=prism.dev/bench=shards
PREFIX=shards
WORK="$(mktemp -d /tmp/prism-bench-shards.XXXXXX)"

cleanup() {
  local status=$?
  step "cleaning up: controller, Clusters $PREFIX-c1..c3, namespace $NS in c1..c3"
  fleet_cleanup
  wait_namespace_gone "$NS" 600 2>/dev/null || echo "namespace $NS still terminating; it goes on by itself" >&2
  if ((status == 0)); then rm -rf "$WORK"; else echo "kept the controllers' logs: $WORK" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until each of the $1 shards' Leases has a holder, and prints the holders.
wait_leaders() {
  local shards=$1 deadline=$((SECONDS + 60)) holders
  while :; do
    holders=$(for ((s = 0; s < shards; s++)); do
      k "$MANAGEMENT" get lease -n "$NS" "prism-shard-$s" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true
      echo
    done | paste -sd' ')
    if [[ $(wc -w <<<"$holders") == "$shards" && $(tr ' ' '\n' <<<"$holders" | sort -u | wc -l) == "$shards" ]]; then
      echo "$holders"
      return 0
    fi
    ((SECONDS < deadline)) || fail "the $shards shards have no distinct leaders after 60 s: $holders"
    sleep 1
  done
}

# Rolls every Application out to revision $1's image with the controller on $2 shards; prints
# the seconds it took.
timed_rollout() {
  local revision=$1 shards=$2 start
  step "rolling all $APPS out to bench:$revision.0 on $shards shard(s)"
  start=$SECONDS
  apply_all "bench:$revision.0"
  wait_all_complete "$revision"
  echo $((SECONDS - start))
}

prism=$(prism_binary)
fleet_setup "$prism"
SHARDS=1
step "starting the controller: one replica, one shard"
fleet_start_controller "$prism"
fleet_wait_reachable 60
wait_leaders 1 >/dev/null
for revision in 1 2 3; do generate "bench:$revision.0"; done
step "installing $APPS Applications"
apply_all bench:1.0
wait_all_complete 1
one=$(timed_rollout 2 1)

fleet_stop_controller
SHARDS=2
step "starting the controller: two replicas, two shards"
fleet_start_controller "$prism"
leaders=$(wait_leaders 2)
two=$(timed_rollout 3 2)

step "results"
rate() { awk -v n="$APPS" -v s="$1" 'BEGIN {printf "%.1f", n / s}'; }
cat <<EOF
applications:          $APPS (1 replica each, one step, $TRAFFIC traffic, schedule: 3 clusters)
1 shard  (1 replica):  ${one}s to roll all out ($(rate "$one") Releases completed per second)
2 shards (2 replicas): ${two}s to roll all out ($(rate "$two") Releases completed per second; leaders $leaders)
EOF
controller_problems
