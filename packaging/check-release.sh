#!/bin/sh
# Checks a release archive (packaging/release.sh): the files it ships, and every ELF file in it
# with GNU readelf, as the FreeBSD hosts it is for would load it:
#
#   packaging/check-release.sh dist/nomad-pot-driver_<version>_freebsd_amd64.tar.gz
#
# - an ELF64 x86-64 executable for FreeBSD: OS/ABI "FreeBSD", or "System V" with the FreeBSD ABI
#   note, which the kernel then brands it by (zig leaves OS/ABI at 0); interpreter
#   /libexec/ld-elf.so.1;
# - NEEDED only from FreeBSD's base libraries (/lib, /usr/lib of every 14.x and 15.x);
# - its FreeBSD ABI note (NT_FREEBSD_ABI_TAG, the __FreeBSD_version it was linked for) at most
#   14.0: below 1401000, where 14.1's versions start (14.0-RELEASE is 1400097; zig writes
#   1400500, 14.0-STABLE's first, for a 14.0 target). The kernel uses the note to brand the
#   binary and to pick compatibility behaviour, not to refuse it;
# - every symbol version it needs is one 14.0's libraries define: FBSD_1.0 … FBSD_1.7
#   (freebsd-src lib/libc/Versions.def; later ones are newer releases'), never FBSDprivate_*, and every
#   symbol it needs at FBSD_1.7, the version 14.x keeps adding to, is one 14.0 already had
#   (packaging/fbsd_1.7-in-14.0.txt).
# Prints one line per binary, or what is wrong; exits 1 on any failure.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 ARCHIVE" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
FBSD_17_IN_140=$here/fbsd_1.7-in-14.0.txt
BASE_LIBS="libc.so.7 libthr.so.3 libutil.so.9 libm.so.5 libgcc_s.so.1 libexecinfo.so.1
libkvm.so.7 libprocstat.so.1 libelf.so.2 libz.so.6 libmd.so.6 libcrypt.so.5 librt.so.1"
MAX_OSREL=1400999

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$1" -C "$work"

failed=0
bad() {
    echo "FAIL $name: $*"
    failed=1
}

# What the archive ships, under one directory named as the archive.
top=$(basename "$1" .tar.gz)
name=$1
for f in nomad-pot-driver potctl nomad-pot-driver.8 potctl.8 LICENSE README.md \
    driver-config/minimal.hcl driver-config/full.hcl driver-config/dev.hcl; do
    [ -f "$work/$top/$f" ] || bad "no $top/$f"
done

binaries=0
for file in $(find "$work" -type f | sort); do
    [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = "177ELF" ] || continue
    binaries=$((binaries + 1))
    name=${file#"$work"/}
    header=$(readelf -hW "$file")
    echo "$header" | grep -q 'Class: *ELF64' || bad "not ELF64"
    echo "$header" | grep -q 'Machine: *Advanced Micro Devices X86-64' || bad "not x86-64"
    echo "$header" | grep -Eq 'Type: *(EXEC|DYN)' || bad "not an executable"

    interp=$(readelf -lW "$file" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    [ "$interp" = /libexec/ld-elf.so.1 ] || bad "interpreter '$interp', not /libexec/ld-elf.so.1"

    needed=$(readelf -dW "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    for lib in $needed; do
        echo "$BASE_LIBS" | tr ' ' '\n' | grep -qx "$lib" || bad "needs $lib, not a base library"
    done

    # The ABI tag: owner FreeBSD, type 1 (readelf names it NT_VERSION), 4 bytes little-endian.
    tag=$(readelf -nW "$file" | awk '
        $1 == "FreeBSD" && /NT_VERSION/ && /description data:/ {
            sub(/.*description data: */, "")
            print $4 $3 $2 $1
            exit
        }')
    osrel=${tag:+$((0x$tag))}
    if [ -z "$osrel" ]; then
        bad "no FreeBSD ABI note"
        echo "$header" | grep -q 'OS/ABI: *UNIX - FreeBSD' || bad "OS/ABI is not FreeBSD"
    elif [ "$osrel" -gt "$MAX_OSREL" ]; then
        bad "ABI note $osrel is above 14.0 ($MAX_OSREL): it is for a newer FreeBSD"
    fi

    versions=$(readelf -VW "$file" | sed -n 's/.*Name: \([^ ]*\) .*/\1/p' | sort -u)
    for v in $versions; do
        case $v in
        FBSD_1.[0-7]) ;;
        *) bad "needs symbol version $v, which 14.0's libraries do not define" ;;
        esac
    done
    for sym in $(readelf --dyn-syms -W "$file" | awk '$7 == "UND" { print $8 }' |
        sed -n 's/@FBSD_1\.7.*//p' | sort -u); do
        grep -qx "$sym" "$FBSD_17_IN_140" || bad "needs $sym@FBSD_1.7, which 14.0's libc lacks"
    done
    echo "ok   $name: FreeBSD x86-64, $interp, NEEDED $(echo "$needed" | paste -sd,)," \
        "ABI $osrel, versions $(echo "$versions" | paste -sd,)"
done
[ "$binaries" -ge 2 ] || { echo "FAIL $1: $binaries ELF files, expected the plugin and potctl"; failed=1; }
exit "$failed"
