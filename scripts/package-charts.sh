#!/usr/bin/env bash
# Packages the test charts (sandbox/charts/src) into the chart repository the sandbox serves
# (sandbox/charts/repo, http://127.0.0.1:8879 while the sandbox is up): each chart's .tgz and the
# repository's index.yaml. Run it after changing a chart's source, and commit what it writes.
#
# Helm stamps each archive and the index with the time, so a .tgz whose files did not change is
# kept as it was, and so is index.yaml when it lists the same charts with the same digests: a
# run that changed nothing leaves the repository untouched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/sandbox/charts/src"
REPO="$ROOT/sandbox/charts/repo"
URL=http://127.0.0.1:8879
# name:version; web is packaged twice from one source, each version its own appVersion (the
# default image tag), so that a test can move a Release from one version to the next.
CHARTS=(web:1.0.0 web:1.1.0 worker:1.0.0 pair:1.0.0 store:1.0.0 dashboards:1.0.0)

helm() { "$ROOT/sandbox/sandbox" helm "$@"; }

# Whether two chart archives hold the same files with the same contents.
same_files() {
  local a="$tmp/compare-a" b="$tmp/compare-b" same=0
  rm -rf "$a" "$b"
  mkdir -p "$a" "$b"
  tar -xmzf "$1" -C "$a"
  tar -xmzf "$2" -C "$b"
  diff -r "$a" "$b" >/dev/null || same=1
  rm -rf "$a" "$b"
  return "$same"
}

# Whether two indexes list the same charts, apart from the times Helm stamps them with.
same_index() {
  cmp -s <(grep -Ev '^\s*(created|generated):' "$1") <(grep -Ev '^\s*(created|generated):' "$2")
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/repo" "$REPO"

for chart in "${CHARTS[@]}"; do
  name="${chart%%:*}"
  version="${chart#*:}"
  file="$name-$version.tgz"
  helm lint --strict "$SRC/$name" >/dev/null || { helm lint --strict "$SRC/$name"; exit 1; }
  helm package "$SRC/$name" --version "$version" --app-version "$version" -d "$tmp/repo" >/dev/null
  if [[ -f "$REPO/$file" ]] && same_files "$REPO/$file" "$tmp/repo/$file"; then
    cp -p "$REPO/$file" "$tmp/repo/$file"
  else
    echo "packaged $file"
  fi
done

helm repo index "$tmp/repo" --url "$URL"
if [[ -f "$REPO/index.yaml" ]] && same_index "$REPO/index.yaml" "$tmp/repo/index.yaml"; then
  cp -p "$REPO/index.yaml" "$tmp/repo/index.yaml"
else
  echo "indexed ${#CHARTS[@]} charts"
fi

# The repository holds exactly what was packaged: a version dropped from CHARTS goes.
find "$REPO" -maxdepth 1 -type f \( -name '*.tgz' -o -name index.yaml \) -delete
cp -p "$tmp/repo"/* "$REPO/"
