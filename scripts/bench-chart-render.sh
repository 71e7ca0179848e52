#!/usr/bin/env bash
# The render time of the test charts `web` and `dashboards` (megabytes of ConfigMaps): the median
# of 10 `helm template` runs through prism_chart::Helm::render, against the sandbox's chart
# repository on loopback, and the size of their objects, as JSON and compressed as a Release
# keeps them. Runs the one test alone, so that no other test shares the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test -q -p prism-chart --test render -- --exact render_time_and_size --nocapture --test-threads 1 2>&1 |
  grep -E '^(web|dashboards) '
