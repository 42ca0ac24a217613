#!/usr/bin/env bash
# The test command: installs what is missing (as root), checks formatting,
# builds with ASan + UBSan, runs every test with ctest, then runs each fuzz
# target for a bounded time. Exits non-zero on any failure.
#
#   HYPHA_FUZZ_SECONDS  seconds per fuzz target (default 5; 0 skips fuzzing; longer runs: e.g. 60)
#   HYPHA_TSAN_ALL      1: every sidecar suite under ThreadSanitizer too (default: 15 of them)
#   HYPHA_BUILD_DIR     sanitizer build directory (default build-tests; ThreadSanitizer
#                       builds the sidecar and what its tests start in <dir>-tsan)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES $HY_TEST_PACKAGES

build=${HYPHA_BUILD_DIR:-build-tests}
fuzz_seconds=${HYPHA_FUZZ_SECONDS:-5}
# tests/fuzz/fuzz_<name>.c, each with its seed corpus in tests/fuzz/corpus/<name>/
fuzz_targets=(codec token http_response cli_json config kds kds_changes dp sni permit dp_parts h1 h2_in cni_conf prom_merge dns h2c_front alog_format trace_headers ws_frame ws_handshake)
jobs=$(nproc)

# each step prints the run's elapsed time, so a slow step shows in the log
step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "format and source checks"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null ||
    find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print)
clang-format --dry-run -Werror "${sources[@]}"
# every source file bans the unsafe string functions (common/poison.h)
missing_poison=$(for f in "${sources[@]}"; do
    case "$f" in *.c) grep -q '#include "poison.h"' "$f" || echo "$f" ;; esac
done)
case "$missing_poison" in
    ?*) echo "these files do not include poison.h last: $missing_poison" >&2; exit 1 ;;
esac
# each folder includes only the layers below it (DESIGN.md, README "Layout")
tests/check_layers.sh

step "build ($build, ASan + UBSan)"
cmake -S . -B "$build" -DHYPHA_WERROR=ON -DHYPHA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j "$jobs"

step "optimised build ($build-release, Release, whole tree): warnings that only -O2 finds"
cmake -S . -B "$build-release" -DHYPHA_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build-release" -j "$jobs"

step "the main job: deploy/local/demo.sh --check on the optimised build (transparent pods, two zones)"
HYPHA_DEMO_BIN="$build-release/bin" deploy/local/demo.sh --check

step "ctest"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$build" && ctest --output-on-failure -j "$jobs")

step "ThreadSanitizer: the sidecar's and the ingress's worker threads, the API writer ($build-tsan)"
cmake -S . -B "$build-tsan" -DHYPHA_WERROR=ON -DHYPHA_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build-tsan" -j "$jobs" --target hypha-global hypha-zone hypha-dp hypha-ingress \
    hyphactl hypha-test-echo hypha-test-otlp-dump test_dp test_dp_resume test_cp_writer test_trace
# the sidecar and ingress tests, and the API writer's; each fails on any sanitizer line in a log.
# The minute of 10 s certificates shrinks to 10 s: TSan runs the same code, slower.
# By default the L7 suites that add policies on the same worker code (health checks, gRPC,
# load balancing, timeouts) run under ASan only, to keep the run near 20 minutes;
# HYPHA_TSAN_ALL=1 runs them under TSan too.
tsan_suites='test_dp|dp|dp_proxy|l7|l7_zones|ingress|test_cp_writer|api_writes|prom_sd|test_dp_resume|dp_resume|tp_sidecar|access_log|trace|test_trace'
[ "${HYPHA_TSAN_ALL:-0}" = 0 ] || tsan_suites="$tsan_suites|l7_health|l7_grpc|l7_lb|l7_timeouts"
(cd "$build-tsan" && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    HY_ROTATION_SECONDS=10 ctest --output-on-failure -R "^($tsan_suites)\$")

if [ "$fuzz_seconds" -gt 0 ]; then
    step "fuzz (${fuzz_seconds}s per target, ${#fuzz_targets[@]} targets, clang + libFuzzer)"
    CC=clang cmake -S . -B "$build-fuzz" -DHYPHA_WERROR=ON -DHYPHA_FUZZ=ON -DHYPHA_SANITIZE=ON \
        -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build "$build-fuzz" -j "$jobs" --target "${fuzz_targets[@]/#/fuzz_}"
    for target in "${fuzz_targets[@]}"; do
        scratch=$(mktemp -d)
        log="$top/$build-fuzz/fuzz_$target.log"
        # new inputs go to the scratch dir; the committed seed corpus stays as it is
        rc=0
        "$top/$build-fuzz/bin/fuzz_$target" -max_total_time="$fuzz_seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$top/$build-fuzz/" \
            "$scratch" "$top/tests/fuzz/corpus/$target" >"$log" 2>&1 || rc=$?
        rm -rf "$scratch"
        tail -n 12 "$log"
        [ "$rc" -eq 0 ] || { echo "fuzz_$target failed (rc $rc; input kept in $build-fuzz/)" >&2; exit 1; }
    done
fi
step "all tests passed"
