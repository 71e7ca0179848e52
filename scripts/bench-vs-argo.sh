#!/usr/bin/env bash
# Prism against Argo Rollouts on the sandbox's c1, with the side-by-side harness in
# ../shared/bench-argo (its README says what is compared): RUNS alternating runs of each tool,
# first the one 3-step canary, then APPS applications changed at once; then the harness's
# summary of every run kept in $AB/runs. Argo Rollouts is built once into $AB (default
# /tmp/argo-bench, never the project).
#
#   scripts/bench-vs-argo.sh [--runs 3] [--apps 1000] [--skip-scale]
#
# Needs the sandbox up (sandbox/sandbox up) and about 10 minutes per scale run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 APPS=1000 SCALE=1
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --apps) APPS=$2; shift 2 ;;
    --skip-scale) SCALE=0; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
HARNESS=../shared/bench-argo
[[ -d $HARNESS ]] || { echo "no $HARNESS beside the project" >&2; exit 1; }
export AB=${AB:-/tmp/argo-bench}
[[ -x $AB/bin/rollouts-controller ]] || "$HARNESS/build.sh"
cargo build --release -p prism --locked
for ((run = 1; run <= RUNS; run++)); do
  "$HARNESS/bench-rollout.sh" argo
  "$HARNESS/bench-rollout.sh" prism
done
if ((SCALE)); then
  for ((run = 1; run <= RUNS; run++)); do
    "$HARNESS/bench-scale.sh" argo "$APPS"
    "$HARNESS/bench-scale.sh" prism "$APPS"
  done
fi
python3 "$HARNESS/summarize.py"
