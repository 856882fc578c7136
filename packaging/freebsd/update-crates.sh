#!/bin/sh
# Writes the port's crate list and checksums from Cargo.lock, as the ports framework's
# `make cargo-crates` and `make makesum` would (Mk/Uses/cargo.mk), without a ports tree:
#
#   packaging/freebsd/update-crates.sh
#
# - Makefile.crates: CARGO_CRATES, one `name-version` per crates.io package of Cargo.lock, in
#   the lock file's order (cargo.mk includes it from the port's directory);
# - distinfo: SHA256 and SIZE of every crate's file `rust/crates/<name>-<version>.crate`, taken
#   from cargo's cache after `cargo fetch --locked`.
# The GitHub source archive's own lines are added by `make makesum` once the release is tagged.
# Run it after every change of Cargo.lock; tests/packaging.rs fails until then.
set -eu
cd "$(dirname "$0")/../.."
port=packaging/freebsd

cargo fetch --locked --quiet
cache=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -maxdepth 1 -type d \
    -name 'index.crates.io-*' | head -n 1)
[ -n "$cache" ] || { echo "$0: no crates.io cache under ${CARGO_HOME:-$HOME/.cargo}" >&2; exit 1; }

crates=$(awk '
    /^\[\[package\]\]/ { name = ""; version = "" }
    /^name = /         { gsub(/"/, "", $3); name = $3 }
    /^version = /      { gsub(/"/, "", $3); version = $3 }
    /^source = "registry\+https:\/\/github.com\/rust-lang\/crates.io-index"/ {
        print name "-" version
    }' Cargo.lock)

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    else
        sha256 -q "$1"
    fi
}

{
    printf 'CARGO_CRATES='
    first=yes
    for crate in $crates; do
        [ "$first" = yes ] || printf ' \\\n\t'
        printf '\t%s' "$crate"
        first=no
    done
    printf '\n'
} > "$port/Makefile.crates"

{
    echo "TIMESTAMP = $(date +%s)"
    for crate in $crates; do
        file=$cache/$crate.crate
        [ -f "$file" ] || { echo "$0: $file is missing after cargo fetch" >&2; exit 1; }
        echo "SHA256 (rust/crates/$crate.crate) = $(sha256_of "$file")"
        echo "SIZE (rust/crates/$crate.crate) = $(wc -c < "$file" | tr -d ' ')"
    done
} > "$port/distinfo"
echo "$port/Makefile.crates, $port/distinfo: $(echo "$crates" | wc -l | tr -d ' ') crates"
