# shellcheck shell=bash
# Shared by the fleet benchmarks (scripts/bench-fleet-memory.sh, scripts/bench-fleet-requests.sh):
# a fleet of the sandbox's clusters c1..c3 as Cluster objects, and the controller that deploys to
# it, running as the prism-controller identity so that each cluster's audit log counts its requests
# (sandbox/README.md, "Identities and the audit log"). Sourced, not run.
#
# The caller sets, before `fleet_setup`:
#   NS        the namespace: in c1 it holds the Applications, Releases and the Clusters' Secrets;
#             in every cluster it receives the workloads
#   LABEL     the Clusters' label, "key=value"; the controller deploys to the Clusters it selects
#   PREFIX    the Clusters (and their Secrets) are PREFIX-c1..c3
#   WORK      a scratch directory (the controller's log)
# and may call `fleet_cleanup` from its EXIT trap.
#
# Identities: the controller runs with .sandbox/c1/controller.kubeconfig (the management side)
# and reaches c1..c3 with .sandbox/cN/controller.kubeconfig from the Clusters' Secrets. In the
# sandbox that user is in system:masters (see sandbox/README.md), so it may read the Secrets,
# Clusters, Applications and Releases on c1. Everything the script itself does goes through the
# admin kubeconfig (sandbox/sandbox kubectl), which the audit logs do not record.

CLUSTERS=(c1 c2 c3)
MANAGEMENT=c1
controller_pid=""
replica_pids=()

k() { local cluster=$1; shift; sandbox/sandbox kubectl "$cluster" "$@"; }
step() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
audit_log() { echo ".sandbox/$1/audit.log"; }
audit_size() { stat -c %s "$(audit_log "$1")"; }

# Prints "c1=LOG@OFFSET c2=..." with each log's current size, for scripts/bench-fleet.py.
audit_marks() {
  local c out=()
  for c in "${CLUSTERS[@]}"; do out+=("$c=$(audit_log "$c")@$(audit_size "$c")"); done
  echo "${out[*]}"
}

# The prism binary under test: $PRISM, else a release build of this checkout.
prism_binary() {
  if [[ -n "${PRISM:-}" ]]; then
    echo "$PRISM"
    return
  fi
  step "building prism (release)"
  cargo build --release -q -p prism --locked
  echo "${CARGO_TARGET_DIR:-target}/release/prism"
}

# The phase of each Release of revision $1 in $NS, one a line ("(unset)" before its
# first status).
release_phases() {
  k "$MANAGEMENT" get releases.prism.dev -n "$NS" \
    -o jsonpath='{range .items[*]}{.spec.revision} {.status.phase}{"\n"}{end}' 2>/dev/null \
    | awk -v r="$1" '$1 == r {print ($2 == "" ? "(unset)" : $2)}'
}

# Waits (at most $2 seconds, default 300) until namespace $1 is gone from every cluster (a
# previous run's may still terminate); returns 1 when one is still there.
wait_namespace_gone() {
  local c deadline=$((SECONDS + ${2:-300}))
  for c in "${CLUSTERS[@]}"; do
    while k "$c" get namespace "$1" >/dev/null 2>&1; do
      if ((SECONDS >= deadline)); then
        echo "namespace $1 in $c is still there (terminating?)" >&2
        return 1
      fi
      sleep 2
    done
  done
}

# The sandbox, the CRDs, the namespace in every cluster, the Secrets and the Clusters.
fleet_setup() {
  local prism=$1 c
  sandbox/sandbox up --clusters "${#CLUSTERS[@]}" >&2
  # The CRDs of the binary under test, whoever applied the ones there (the tests apply theirs with
  # their own field manager, so without --force-conflicts a changed CRD would be a conflict).
  step "installing the CRDs of $prism on $MANAGEMENT"
  "$prism" crds | k "$MANAGEMENT" apply --server-side --force-conflicts --field-manager=prism -f - >/dev/null
  k "$MANAGEMENT" wait --for condition=established --timeout=60s \
    crd/applications.prism.dev crd/releases.prism.dev crd/clusters.prism.dev >/dev/null
  step "namespace $NS in ${CLUSTERS[*]}; Secrets and Clusters $PREFIX-c1..c${#CLUSTERS[@]} ($LABEL)"
  wait_namespace_gone "$NS" || fail "namespace $NS is left from an earlier run: delete it, or wait"
  for c in "${CLUSTERS[@]}"; do
    k "$c" create namespace "$NS" >/dev/null
  done
  for c in "${CLUSTERS[@]}"; do
    k "$MANAGEMENT" create secret generic "$PREFIX-$c" -n "$NS" \
      --from-file=kubeconfig=".sandbox/$c/controller.kubeconfig" >/dev/null
    k "$MANAGEMENT" apply --server-side --field-manager=bench -f - >/dev/null <<EOF
apiVersion: prism.dev/v1alpha1
kind: Cluster
metadata:
  name: $PREFIX-$c
  labels: {${LABEL%%=*}: "${LABEL#*=}"}
spec:
  region: $(cat ".sandbox/$c/region")
  credentials: {secretRef: {name: $PREFIX-$c, namespace: $NS}}
EOF
  done
}

# Starts the controller as prism-controller, on the namespace and the Clusters of the benchmark.
# With SHARDS=N (N > 0), N replicas with leader election on N shards (their Leases in $NS), so
# that each leads one: $controller_pid is the first's (its log $WORK/controller.log), the others'
# are in $replica_pids (logs $WORK/replica-K.log).
fleet_start_controller() {
  local prism=$1 k election=()
  for ((k = 0; k < ${SHARDS:-0} || k == 0; k++)); do
    if ((${SHARDS:-0} > 0)); then
      election=(--leader-elect --shards "$SHARDS" --identity "bench-replica-$k" --lease-namespace "$NS")
    fi
    KUBECONFIG=.sandbox/$MANAGEMENT/controller.kubeconfig RUST_LOG=${RUST_LOG:-info} \
      "$prism" controller -n "$NS" --cluster-selector "$LABEL" "${election[@]}" \
      >"$WORK/$( ((k == 0)) && echo controller || echo "replica-$k").log" 2>&1 &
    if ((k == 0)); then controller_pid=$!; else replica_pids+=("$!"); fi
  done
}

# Waits until the controller reports every Cluster of the benchmark Reachable.
fleet_wait_reachable() {
  local deadline=$((SECONDS + ${1:-60})) states
  while :; do
    states=$(k "$MANAGEMENT" get clusters.prism.dev -l "$LABEL" \
      -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Reachable")].status} {end}')
    [[ "$states" != *"=False"* && $(grep -o "=True" <<<"$states" | wc -l) == "${#CLUSTERS[@]}" ]] && return 0
    kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited: $(tail -5 "$WORK/controller.log")"
    ((SECONDS < deadline)) || fail "Clusters not all Reachable after ${1:-60}s: $states"
    sleep 1
  done
}

# The controller's log messages, counted (without the fields and spans that name the object),
# and the first three warnings or errors. A subshell without pipefail: `head` may close the pipe.
controller_problems() (
  set +o pipefail
  log=$WORK/controller.log
  n=$(grep -cE ' (WARN|ERROR) ' "$log" || true)
  echo "controller log: $(wc -l <"$log") lines, $n WARN/ERROR; its messages, counted:"
  # "TIME LEVEL span{fields}: target: message field=..." -> "LEVEL span: target: message".
  sed -E 's/^\S+\s+//; s/\{[^}]*\}//g; s/ [a-z_.]+=.*$//' "$log" | sort | uniq -c | sort -rn | head -15
  if ((n > 0)); then
    echo "the first WARN/ERROR lines:"
    grep -m 3 -E ' (WARN|ERROR) ' "$log" | cut -c1-400
  fi
  true
)

# Stops the controller (every replica; SIGTERM, on which a replica gives its Leases up).
fleet_stop_controller() {
  local pid
  for pid in "$controller_pid" "${replica_pids[@]}"; do
    if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
    fi
  done
  controller_pid=""
  replica_pids=()
}

# Stops the controller, then deletes the Clusters and the namespace everywhere (the Secrets,
# Applications and Releases go with c1's namespace; the workloads with each cluster's).
fleet_cleanup() {
  local c
  fleet_stop_controller
  k "$MANAGEMENT" delete clusters.prism.dev -l "$LABEL" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  for c in "${CLUSTERS[@]}"; do
    k "$c" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
}
