#!/usr/bin/env bash
# Runs every test: unit (cmocka) and integration (the real npsd and npsctl
# against private redis-servers and the embedded broker), first in a normal
# build, then under AddressSanitizer + UndefinedBehaviorSanitizer, then the
# message-parser fuzz target for a bounded time. Installs missing packages.
#
#   bash scripts/test.sh [--quick]   (--quick: normal build only, no Release
#                                    build, no fuzz)
#   FUZZ_SECONDS=60                  fuzzing time (default 60; not NPSD_*:
#                                    npsd reads NPSD_* variables as settings
#                                    and warns about unknown ones)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

bash scripts/install-deps.sh
jobs=$(nproc)
passed=0
failed=0
broken=() # stages that could not report a count (named in the summary)

# A stage that fails to build or whose ctest prints no summary (a crash,
# a hang killed from outside) counts as one named failure; the script goes
# on with the other stages either way, so one broken stage never hides the
# results of the rest.
run_suite() { # build-dir label cmake-args...
        local dir=$1 label=$2
        shift 2
        echo "== $label: configure and build ($dir)"
        if ! cmake -S . -B "$dir" -DNPSD_TESTS=ON "$@" >/dev/null ||
                ! cmake --build "$dir" -j"$jobs" >/dev/null; then
                echo "$label: build failed" >&2
                broken+=("$label: build failed")
                failed=$((failed + 1))
                return 0
        fi
        echo "== $label: ctest"
        local log="$dir/ctest.log"
        (cd "$dir" && ctest --output-on-failure --timeout 600 2>&1) | tee "$log" || true
        local line
        line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1 || true)
        if [ -z "$line" ]; then
                echo "$label: ctest printed no summary" >&2
                broken+=("$label: ctest printed no summary")
                failed=$((failed + 1))
                return 0
        fi
        local f t
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+)/\1/')
        t=$(echo "$line" | sed -E 's/.* tests failed out of ([0-9]+)/\1/')
        passed=$((passed + t - f))
        failed=$((failed + f))
}

run_suite build "normal build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNPSD_WERROR=ON
if [ $quick -eq 0 ]; then
        # Release build: -O3 warns where RelWithDebInfo's -O2 does not.
        # Built, not tested: one pass/fail.
        echo "== Release build: configure and build (build-release)"
        if cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release \
                -DNPSD_WERROR=ON -DNPSD_TESTS=ON >/dev/null &&
           cmake --build build-release -j"$jobs" >/dev/null; then
                passed=$((passed + 1))
        else
                echo "Release build: failed" >&2
                broken+=("Release build: build failed")
                failed=$((failed + 1))
        fi

        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                run_suite build-asan "ASan+UBSan build" -DCMAKE_BUILD_TYPE=Debug -DNPSD_SANITIZE=ON \
                        -DNPSD_WERROR=ON

        echo "== fuzz: message parser (libFuzzer, ${FUZZ_SECONDS:-60} s)"
        corpus=$(mktemp -d)
        if ! CC=clang cmake -S . -B build-fuzz -DNPSD_FUZZ=ON -DNPSD_TESTS=OFF \
                -DCMAKE_BUILD_TYPE=Debug -DNPSD_WERROR=ON >/dev/null ||
                ! cmake --build build-fuzz --target fuzz_event -j"$jobs" >/dev/null; then
                broken+=("fuzz: build failed")
                failed=$((failed + 1))
        else
                cp tests/fuzz/corpus/* "$corpus"/
                if ./build-fuzz/fuzz_event -max_total_time="${FUZZ_SECONDS:-60}" \
                        -print_final_stats=1 "$corpus" > build-fuzz/fuzz.log 2>&1; then
                        passed=$((passed + 1))
                        grep -E 'stat::number_of_executed_units|Done' build-fuzz/fuzz.log | tail -2 || true
                else
                        broken+=("fuzz: fuzz_event failed")
                        failed=$((failed + 1))
                        tail -40 build-fuzz/fuzz.log
                fi
        fi
        rm -rf "$corpus"
fi

echo
for b in ${broken[@]+"${broken[@]}"}; do
        echo "FAILED stage: $b"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
