# shellcheck shell=bash
# The fleet benchmarks' Applications (scripts/bench-fleet-memory.sh, scripts/bench-shards.sh):
# app-0001..app-N, 1 replica each, one step, on all 3 clusters; generated in files, applied a few
# files at once, and waited for. Sourced after scripts/bench-fleet-lib.sh, not run. (The rainbow
# benchmark has Applications of its own, and its own names for them.)
#
# The caller sets APPS, TRAFFIC (podLabels|none), CHUNK (Applications per file), PARALLEL
# (applies at once), DEADLINE (seconds each wait may take), NS and WORK.

name() { printf 'app-%04d' "$1"; }

# Applications FROM..TO with IMAGE, as one multi-document YAML.
applications() {
  local i app
  for ((i = $1; i <= $2; i++)); do
    app=$(name "$i")
    cat <<EOF
---
apiVersion: prism.dev/v1alpha1
kind: Application
metadata: {name: $app, namespace: $NS}
spec:
  template:
    manifests:
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: $app}
        spec:
          replicas: 1
          selector: {matchLabels: {app: $app}}
          template:
            metadata: {labels: {app: $app}}
            spec: {containers: [{name: app, image: "$3"}]}
EOF
    if [[ $TRAFFIC == podLabels ]]; then
      cat <<EOF
      - apiVersion: v1
        kind: Service
        metadata: {name: $app}
        spec: {selector: {app: $app}, ports: [{port: 80}]}
  schedule: {clusters: 3}
  strategy:
    steps:
      - {name: all, capacity: {contender: "100%", incumbent: "0%"}, traffic: {contender: 100}}
EOF
    else
      cat <<EOF
  traffic: {provider: none}
  schedule: {clusters: 3}
  strategy:
    steps:
      - {name: all, capacity: {contender: "100%", incumbent: "0%"}}
EOF
    fi
  done
}

# Writes the Applications with image $1 in files of CHUNK under $WORK/$1/.
generate() {
  local from to
  mkdir -p "$WORK/$1"
  for ((from = 1; from <= APPS; from += CHUNK)); do
    to=$((from + CHUNK - 1 > APPS ? APPS : from + CHUNK - 1))
    applications "$from" "$to" "$1" >"$WORK/$1/$(printf '%05d' "$from").yaml"
  done
}

# Applies the files of generate $1, PARALLEL at a time; a file whose apply fails (an API server
# too busy answers 504) is applied again, at most 3 times in all.
apply_all() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  printf '%s\0' "$WORK/$1"/*.yaml | xargs -0 -P "$PARALLEL" -n 1 bash -c '
    for try in 1 2 3; do
      sandbox/sandbox kubectl c1 apply --server-side --field-manager=bench -f "$1" >/dev/null && exit 0
      echo "applying $1 failed (try $try of 3)" >&2
      sleep 5
    done
    exit 1' apply
}


# "; RSS N MiB" of the controller, when the caller samples it (defines rss_kib and mib).
rss_note() {
  if declare -F rss_kib >/dev/null && [[ -r /proc/$controller_pid/status ]]; then
    printf '; RSS %s MiB' "$(mib "$(rss_kib)")"
  fi
}

# "Complete 700, Progressing 200" for the Releases of revision $1.
phases() {
  release_phases "$1" | sort | uniq -c | awk '{printf "%s %d\n", $2, $1}' \
    | sort -k2,2nr | paste -sd, | sed 's/,/, /g'
}

# Waits until the Releases of revision $1 of every application are Complete, with progress.
wait_all_complete() {
  local revision=$1 start=$SECONDS last=-100 counts complete
  while :; do
    counts=$(phases "$revision") || counts="(kubectl get failed)"
    complete=$(awk '$1 == "Complete" {print $2 + 0}' RS=', ' <<<"$counts")
    complete=${complete:-0}
    if ((complete == APPS)); then
      printf '[%4ds] revision %s: %s/%s Complete%s\n' $((SECONDS - start)) "$revision" \
        "$complete" "$APPS" "$(rss_note)" >&2
      return 0
    fi
    if ((SECONDS - last >= 15)); then
      printf '[%4ds] revision %s: %s/%s Complete (%s)%s\n' $((SECONDS - start)) "$revision" \
        "$complete" "$APPS" "${counts:-no Release yet}" "$(rss_note)" >&2
      last=$SECONDS
    fi
    kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited: $(tail -5 "$WORK/controller.log")"
    if ((SECONDS - start >= DEADLINE)); then
      controller_problems >&2
      fail "revision $revision: $complete/$APPS Releases Complete after ${DEADLINE}s ($counts)"
    fi
    sleep 5
  done
}
