#!/usr/bin/env bash
# Builds the container image of the `prism` binary without a Docker daemon: a static release
# build (musl), one layer made with umoci, written as an OCI layout, target/image/prism (tag: the
# crate's version), and the same as an OCI archive, target/image/prism-VERSION.tar.
#
# The image holds /prism (the entrypoint), /helm (the static helm the sandbox builds,
# `sandbox/sandbox helm-path`, with which the controller renders the charts of Applications),
# /etc/passwd and /etc/group naming the non-root user 65532, /etc/nsswitch.conf, and the CA
# certificates of Debian's ca-certificates. No shell, no libc: the binaries are static.
#
# Rust's musl standard library comes from rustup's server, which a machine that reaches only the
# package registries cannot download from. There (or with PRISM_IMAGE_LIBC=glibc) the binary is
# built for glibc instead, and the image carries the shared libraries it links (glibc 2.36 has
# its `files` and `dns` name services built in, so nothing is loaded by name at run time).
#
# Running it again rebuilds the layout from scratch; cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo

# umoci writes the image; musl-tools gives the C parts of dependencies (ring, mimalloc) a musl
# compiler (musl-gcc); binutils checks and strips the binary; ca-certificates is the trust store
# the image carries.
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v objcopy >/dev/null || missing+=(binutils)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]} (Debian)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# musl's resolver reads /etc/resolv.conf and /etc/hosts itself; a static glibc would need the
# NSS modules of its own glibc version at run time for names such as kubernetes.default.svc.
target="$(uname -m)-unknown-linux-musl"
if [ "${PRISM_IMAGE_LIBC:-musl}" = musl ] && ! rustup target list --installed | grep -qx "$target"; then
  step "adding Rust's $target standard library (rustup)"
  # Bounded: where the server is out of reach, rustup may retry for long.
  timeout 120 rustup target add "$target" || echo "rustup cannot download it here: building for glibc" >&2
fi
if [ "${PRISM_IMAGE_LIBC:-musl}" != musl ] || ! rustup target list --installed | grep -qx "$target"; then
  target="$(uname -m)-unknown-linux-gnu"
fi

version=$(cargo pkgid -p prism | sed 's/.*[#@]//')
step "building prism $version for $target (release)"
start=$SECONDS
cargo build --release --locked -p prism --target "$target"
binary="${CARGO_TARGET_DIR:-target}/$target/release/prism"
if [[ "$target" == *musl ]] && readelf -l "$binary" | grep -q INTERP; then
  echo "error: $binary is dynamically linked; the image has no libc" >&2
  exit 1
fi
step "built in $((SECONDS - start)) s"

# Built with CGO off (go_env in sandbox/sandbox): static, whatever the libc of prism's build.
step "finding helm (sandbox/sandbox helm-path; a first run builds it)"
helm=$(sandbox/sandbox helm-path)
if readelf -l "$helm" | grep -q INTERP; then
  echo "error: $helm is dynamically linked; the image has no libc for it" >&2
  exit 1
fi

out=target/image
rootfs="$out/rootfs"
layout="$out/prism"
archive="$out/prism-$version.tar"
step "writing the image's files to $rootfs"
rm -rf "$rootfs" "$layout" "$archive"
mkdir -p "$rootfs/etc/ssl/certs"
# Line tables are for backtraces on a developer's machine; an image is smaller without them.
objcopy --strip-debug "$binary" "$rootfs/prism"
chmod 0755 "$rootfs/prism"
cp "$helm" "$rootfs/helm"
chmod 0755 "$rootfs/helm"
echo 'prism:x:65532:65532:prism:/nonexistent:/sbin/nologin' >"$rootfs/etc/passwd"
echo 'prism:x:65532:' >"$rootfs/etc/group"
# musl ignores it; it is there for tools that read it, saying what musl does.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
if [[ "$target" == *gnu ]]; then
  # The loader and each library the binary links, at the paths it looks for them.
  for library in $(ldd "$binary" | grep -oE '/[^ ]+'); do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
  done
fi
chmod -R u=rwX,go=rX "$rootfs/etc"

# Every date in the image is the commit's: the same commit and binary make the same image (the
# same digest), so importing it again is a no-op.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
find "$rootfs" -exec touch -h -d "@$epoch" {} +

step "writing the OCI layout $layout (tag $version)"
rootless=
[ "$(id -u)" -eq 0 ] || rootless=--rootless
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci insert $rootless --image "$layout:$version" \
  --history.created "$created" --history.created_by "scripts/build-image.sh" "$rootfs" /
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The repository the image was built from, when the clone knows where it came from.
labels=()
if source=$(git remote get-url origin 2>/dev/null); then
  labels+=(--config.label "org.opencontainers.image.source=$source")
fi
umoci config --image "$layout:$version" --no-history \
  --created "$created" \
  --author "The Prism authors" \
  --config.user 65532:65532 \
  --config.entrypoint /prism \
  --config.workingdir / \
  --clear config.env \
  --config.label "org.opencontainers.image.title=prism" \
  --config.label "org.opencontainers.image.description=Progressive delivery for Kubernetes fleets: the controller (prism controller) and the CLI" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  "${labels[@]}"
umoci gc --layout "$layout"

step "writing the OCI archive $archive"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$archive" .

step "done: oci:$layout:$version ($(du -k "$archive" | cut -f1) KiB as an archive, $(du -k "$binary" | cut -f1) KiB unstripped binary)"
