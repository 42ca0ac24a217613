#!/usr/bin/env bash
# The cost of the sidecar's MeshHTTPRoute table per request: builds
# hypha-bench-l7-route (Release, no sanitizers) and prints its markdown
# table (bench/l7_route.c: 100 routes, the last matching, with prefixes,
# regular expressions, headers and query parameters), headed by the date,
# the machine and the commit. Nothing is written; paste the rows where
# they belong.
#
# usage: bench/l7_route.sh [--reps N] [--scale X] [--build DIR]
#   --reps N     repetitions; medians shown (HYPHA_BENCH_REPS, default 5)
#   --scale X    multiply the 200 000 requests per row (HYPHA_BENCH_SCALE, default 1)
#   --build DIR  the build directory (HYPHA_BENCH_BUILD, default build-bench)
# About 20 seconds (plus the build) on a 2-core VM.
set -euo pipefail

reps=${HYPHA_BENCH_REPS:-5}
scale=${HYPHA_BENCH_SCALE:-1}
build=${HYPHA_BENCH_BUILD:-build-bench}
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) reps=${2:?}; shift ;;
    --scale) scale=${2:?}; shift ;;
    --build) build=${2:?}; shift ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "l7_route.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-bench-l7-route -j 2 >&2

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit + uncommitted changes"
else
    commit=uncommitted
fi
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $cpu, $(nproc) CPUs, Linux $(uname -r); commit $commit; Release build, $("${cc:-cc}" --version 2>/dev/null | head -n 1), glibc $(ldd --version 2>/dev/null | head -n 1 | awk '{ print $NF }'). Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
"$build/bin/hypha-bench-l7-route" --reps "$reps" --scale "$scale"
