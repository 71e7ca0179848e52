#!/usr/bin/env bash
# Runs every test of the project: builds the local sandbox of real Kubernetes clusters (cached after
# the first run), then every test of the Cargo workspace. The end-to-end tests start the sandbox
# themselves (or reuse a running one); it is stopped at the end unless KEEP_SANDBOX=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long the run has taken so far, so a slow CI run shows where its time went.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

if [ ! -x /usr/bin/prometheus ]; then
  # The metric-analysis tests start their own Prometheus servers (prism-testkit's prometheus.rs).
  step "installing Prometheus (Debian's prometheus package)"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package may start a system Prometheus on :9090; the tests use ports of their own, but
  # nothing should keep running by itself.
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    $sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
fi

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  # crates/prism/tests/image.rs runs the image of scripts/build-image.sh (which installs what it
  # needs itself) with podman; runc, since Debian 12's crun refuses a hybrid cgroup layout.
  step "installing podman and runc (Debian)"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc >/dev/null
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  # The browser tests drive a headless Chromium over WebDriver (prism-testkit's browser.rs).
  step "installing chromium and chromedriver (Debian)"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

step "building the sandbox (kube-apiserver, controller-manager, scheduler, etcd, kwok, traefik, data plane) and helm"
sandbox/sandbox build

step "testing the sandbox's data plane (pod server, bridges)"
(cd sandbox && PATH="$PATH:/usr/local/go/bin" GOTOOLCHAIN=local CGO_ENABLED=0 go test ./cmd/prism-dataplane)

if [ "${KEEP_SANDBOX:-0}" != 1 ]; then
  trap 'step "stopping the sandbox"; sandbox/sandbox down' EXIT
fi

step "checking formatting"
cargo fmt --all -- --check

# Incremental caches only help rebuilds on a developer machine; on CI they double the disk used.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "running the tests"
cargo test --workspace --locked
step "every test passed"
