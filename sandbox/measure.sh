#!/usr/bin/env bash
# Re-measures the sandbox's figures: time for `up` of 3 clusters from scratch
# (binaries already built), idle RSS of one cluster per process (control plane and data plane), and how long
# a 3-replica Deployment takes to become Ready. It restarts the fleet from
# scratch and leaves it running.
set -euo pipefail

SANDBOX="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sandbox"
STATE_DIR="$(dirname "$(dirname "$SANDBOX")")/.sandbox"
IDLE_SECONDS=${IDLE_SECONDS:-60}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l | xargs printf '%.1f'; }

"$SANDBOX" build >/dev/null
"$SANDBOX" down 2>/dev/null

started=$(now)
"$SANDBOX" up --clusters 3 >/dev/null 2>&1
echo "up (3 clusters, from scratch, cached binaries): $(elapsed "$started" "$(now)") s"

echo "idle RSS of c1 after ${IDLE_SECONDS}s (anon = private memory; file = pages of the binaries, shared by all processes that run them):"
printf '  %-24s %8s %8s %8s\n' process RSS anon file
total=(0 0 0)
for component in etcd kube-apiserver kube-controller-manager kube-scheduler kwok host-bridge netns-bridge pod-server traefik; do
  pid="$(<"$STATE_DIR/c1/run/$component.pid")"
  read -r rss anon file < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print r, a, f }' "/proc/$pid/status")
  total=($((total[0] + rss)) $((total[1] + anon)) $((total[2] + file)))
  printf '  %-24s %4d MiB %4d MiB %4d MiB\n' "$component" $((rss / 1024)) $((anon / 1024)) $((file / 1024))
done
printf '  %-24s %4d MiB %4d MiB %4d MiB\n' total $((total[0] / 1024)) $((total[1] / 1024)) $((total[2] / 1024))

kubectl() { "$SANDBOX" kubectl "$@"; }
deployment_ready_seconds() {
  local cluster=$1 namespace=$2 started
  kubectl "$cluster" create namespace "$namespace" >/dev/null
  # The controller manager adds the default service account just after the
  # namespace; pods are rejected until then.
  until kubectl "$cluster" -n "$namespace" get serviceaccount default >/dev/null 2>&1; do sleep 0.1; done
  started=$(now)
  kubectl "$cluster" -n "$namespace" create deployment web --image example.com/web:1 --replicas 3 >/dev/null
  kubectl "$cluster" -n "$namespace" wait deployment/web --for=jsonpath='{.status.readyReplicas}'=3 --timeout=120s >/dev/null
  elapsed "$started" "$(now)"
  kubectl "$cluster" delete namespace "$namespace" --wait=false >/dev/null
}
for cluster in c1 c2 c3; do
  echo "3-replica Deployment Ready in $cluster: $(deployment_ready_seconds "$cluster" "measure-$RANDOM") s"
done
