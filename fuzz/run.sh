#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: fuzz/run.sh [SECONDS] [TARGET...]
# SECONDS defaults to 60 per target; with no TARGET, every target in fuzz/Cargo.toml runs.
# Installs cargo-fuzz when missing. Only a stable toolchain is needed: cargo-fuzz's nightly
# flags (-Z sanitizer, coverage instrumentation) are enabled with RUSTC_BOOTSTRAP=1.
# The checked-in seeds in fuzz/corpus/<target>/ are read, never written: new inputs go to
# fuzz/target/corpus/<target>/ and crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    work=fuzz/target/corpus/$t
    mkdir -p "$work"
    echo "== $t: ${secs}s"
    log=fuzz/target/$t.log
    if cargo fuzz run "$t" "$work" "fuzz/corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' '
        echo "corpus $(find "$work" -type f | wc -l) inputs"
    else
        tail -n 40 "$log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s without a crash"
