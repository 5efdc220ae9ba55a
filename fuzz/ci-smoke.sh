#!/usr/bin/env bash
# Fuzz smoke test for CI, run from the repository root (`bash fuzz/ci-smoke.sh`, called by .ci/run).
#
# When `cargo +nightly` works: installs cargo-fuzz if it is missing, builds the fuzz targets, replays
# the saved regression inputs, then runs each target for FUZZ_SECONDS (default 30) from its seeds in a
# throw-away corpus. Exits non-zero when a target crashes (the input is left in fuzz/artifacts/).
#
# Without a nightly toolchain, or when cargo-fuzz cannot be installed, it says so and exits 0, unless
# SLUICE_FUZZ_REQUIRED=1, which makes that a failure.
#
# Fuzzing is pinned to CPU 0 with taskset when available (benchmarks are pinned to CPU 1).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
TARGETS=(codec template submit job_message session)

skip() {
    echo "fuzz smoke: skipped: $1"
    if [ "${SLUICE_FUZZ_REQUIRED:-0}" = "1" ]; then
        exit 1
    fi
    exit 0
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    skip "no nightly toolchain (cargo +nightly)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked >/dev/null 2>&1 && ! cargo install cargo-fuzz; then
        skip "cargo-fuzz is missing and could not be installed"
    fi
fi

PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
    PIN=(taskset -c 0)
fi

echo "fuzz smoke: building the fuzz targets"
if ! cargo +nightly fuzz build; then
    echo "fuzz smoke: build failed"
    exit 1
fi

passed=0
failed=0
for target in "${TARGETS[@]}"; do
    ok=1
    regressions=(fuzz/regressions/"$target"/*)
    if [ -e "${regressions[0]}" ]; then
        echo "fuzz smoke: $target: replaying ${#regressions[@]} regression input(s)"
        if ! "${PIN[@]}" cargo +nightly fuzz run "$target" "${regressions[@]}"; then
            ok=0
        fi
    fi
    if [ "$ok" = 1 ]; then
        corpus="$(mktemp -d)"
        echo "fuzz smoke: $target: fuzzing for ${FUZZ_SECONDS}s"
        if ! "${PIN[@]}" cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1; then
            ok=0
        fi
        rm -rf "$corpus"
    fi
    if [ "$ok" = 1 ]; then
        echo "fuzz smoke: $target: ok"
        passed=$((passed + 1))
    else
        echo "fuzz smoke: $target: CRASHED (see fuzz/artifacts/$target/)"
        failed=$((failed + 1))
    fi
done

echo "fuzz: ${passed} passed, ${failed} failed"
[ "$failed" = 0 ]
