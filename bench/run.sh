#!/bin/sh
# Builds the benchmarks in Release without sanitizers, runs them, and rewrites
# the results sections of bench/README.md (between the results:* markers)
# with the tables, headed by date, machine and commit.
#
# usage: bench/run.sh [--no-write] [--no-api] [--no-policy]
#   --no-write   print the results, leave README.md alone
#   --no-api     skip the HTTP API benchmark (bench/api.sh, about 2 minutes)
#   --no-policy  skip the policy engine benchmark (bench/policy.sh, about 10 minutes)
# The benchmarks also read HYPHA_BENCH_SCALE, HYPHA_BENCH_REPS and
# HYPHA_BENCH_DIR (see `build-bench/bin/hypha-bench-store --help`).
# Then runs bench/policy.sh and bench/api.sh, which write their own
# sections (see their --help).
set -eu

write=1
api=1
policy=1
for arg in "$@"; do
    case "$arg" in
    --no-write) write=0 ;;
    --no-api) api=0 ;;
    --no-policy) policy=0 ;;
    -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. bench/lib.sh
build="build-bench"
readme=bench/README.md

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-bench-store hypha-bench-codec -j "$(nproc)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-run-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- the heading: when, where, what --------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit + uncommitted changes"
else
    commit=uncommitted
fi
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
cc_version=$("${cc:-cc}" --version 2>/dev/null | head -n 1)
libs="LMDB $(pkg-config --modversion lmdb), libyaml $(pkg-config --modversion yaml-0.1), protobuf-c $(pkg-config --modversion libprotobuf-c)"
heading="Run $(date -u '+%Y-%m-%d %H:%M UTC') on $cpu, $(nproc) CPUs, $mem_gib GiB RAM, Linux $(uname -r); commit $commit; Release build, $cc_version; $libs."

# ---- run ----------------------------------------------------------------
for b in store codec; do
    echo "run.sh: running hypha-bench-$b..." >&2
    {
        echo "$heading"
        echo
        "$build/bin/hypha-bench-$b"
    } >"$tmp/$b.md"
done

if [ "$write" = 0 ]; then
    cat "$tmp/store.md" "$tmp/codec.md"
    [ "$policy" = 0 ] || bash bench/policy.sh --no-write
    [ "$api" = 0 ] || bash bench/api.sh --no-write
    exit 0
fi

# ---- rewrite README between markers --------------------------------------
for b in store codec; do
    bench_write_section "$readme" "$b" "$tmp/$b.md" || exit 1
done
cat "$tmp/store.md" "$tmp/codec.md"
echo "run.sh: results written to $readme" >&2
[ "$policy" = 0 ] || bash bench/policy.sh
[ "$api" = 0 ] || bash bench/api.sh
