#!/usr/bin/env bash
# Chaos: rollouts of three strategies (a canary and a blue/green through each cluster's gateway,
# capacity steps for a headless worker) across the sandbox's 3 clusters under a load of requests,
# while the leader of two `prism controller --leader-elect` replicas is killed with SIGKILL at N
# seeded random moments and started again. Asserts that every Release completes, each transition
# is reported once, no request fails and nothing is left behind; prints each takeover's time and
# their median and maximum. The same seed kills at the same moments.
#
#   scripts/chaos.sh [--kills N] [--seed S]      (defaults: 3 kills, seed 1; CI runs the defaults)
#
# The test is crates/prism/tests/chaos.rs; the sandbox starts if it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=3
seed=1
while (($#)); do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (--kills N, --seed S)" >&2; exit 2 ;;
  esac
done
[[ "$kills" =~ ^[0-9]+$ && "$seed" =~ ^[0-9]+$ ]] || { echo "chaos.sh: --kills and --seed take numbers" >&2; exit 2; }

sandbox/sandbox build >/dev/null
echo "==> chaos: $kills kills, seed $seed"
PRISM_CHAOS_KILLS="$kills" PRISM_CHAOS_SEED="$seed" \
  cargo test --locked -p prism --test chaos -- --nocapture 2>&1 |
  # The replicas' logs, which a failure prints, stay in target/tmp/restart/.
  grep --line-buffered -v -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}T|^ +(at |[0-9]+: )|Compiling|has been running for over'

