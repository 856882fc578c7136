#!/bin/sh
# Builds the FreeBSD release archive on this Linux machine, zig being the C compiler and linker:
#
#   packaging/release.sh VERSION
#
# writes dist/nomad-pot-driver_<VERSION>_freebsd_amd64.tar.gz (the plugin, potctl, their man
# pages, LICENSE, README.md and the agent configs in driver-config/, under one directory of the
# archive's name) and dist/SHA256SUMS, then checks every binary in it with
# packaging/check-release.sh. VERSION must be Cargo.toml's. Missing tools are installed:
# cargo-zigbuild and zig from PyPI, FreeBSD's std with rustup. The archive's bytes depend only on
# the inputs (sorted names, owner root, times from the last commit). Needs python3 (with venv),
# rustup, GNU tar and readelf.
#
# Only amd64: Rust has no prebuilt std for aarch64-unknown-freebsd (a tier 3 target), so an
# aarch64 build needs a nightly toolchain with -Zbuild-std.
set -eu
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { echo "usage: $0 VERSION" >&2; exit 2; }
VERSION=$1
crate=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ "$VERSION" != "$crate" ]; then
    echo "$0: VERSION $VERSION is not Cargo.toml's version $crate" >&2
    exit 2
fi
TARGET=x86_64-unknown-freebsd
NAME=nomad-pot-driver_${VERSION}_freebsd_amd64
DIST=${DIST:-dist}

# cargo-zigbuild and zig (PyPI's ziglang, which cargo-zigbuild runs as `python3 -m ziglang`)
# go into a virtualenv under target/ when they are not installed already.
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    tools=target/release-tools
    [ -x "$tools/bin/cargo-zigbuild" ] ||
        { python3 -m venv "$tools" && "$tools/bin/pip" install --quiet ziglang cargo-zigbuild; }
    PATH=$PWD/$tools/bin:$PATH
fi
command -v rustup >/dev/null 2>&1 ||
    { echo "$0: needs rustup, for Rust's std for $TARGET" >&2; exit 1; }
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

# liblzma-sys's bundled C: FreeBSD's headers hide gettimeofday under -std=c99, so name the
# clock functions FreeBSD 14 has.
export CFLAGS_x86_64_unknown_freebsd="-DHAVE_CLOCK_GETTIME=1 -DHAVE_PTHREAD_CONDATTR_SETCLOCK=1"
cargo zigbuild --release --locked --target "$TARGET" -p nomad-pot-driver \
    --bin nomad-pot-driver --bin potctl

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$NAME/driver-config"
cp "target/$TARGET/release/nomad-pot-driver" "target/$TARGET/release/potctl" \
    packaging/man/nomad-pot-driver.8 packaging/man/potctl.8 LICENSE README.md "$stage/$NAME/"
cp driver-config/*.hcl "$stage/$NAME/driver-config/"
chmod 0755 "$stage/$NAME/nomad-pot-driver" "$stage/$NAME/potctl"

mkdir -p "$DIST"
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -cf - "$NAME" | gzip -9n > "$DIST/$NAME.tar.gz"
(cd "$DIST" && sha256sum "$NAME.tar.gz" > SHA256SUMS)

packaging/check-release.sh "$DIST/$NAME.tar.gz"
echo "$DIST/$NAME.tar.gz"
cat "$DIST/SHA256SUMS"
