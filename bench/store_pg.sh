#!/usr/bin/env bash
# The PostgreSQL store vs the LMDB store, same run, same workload through
# the store API: durable single puts, batched puts, random gets, list pages
# and a change-feed read; then global -> zone propagation on each backend
# (bench/store_pg_prop.sh, HYPHA_PROP_WRITES writes, default 200). Starts a throwaway PostgreSQL (fsync on, unix
# socket, tests/integration/lib_pg.sh), builds hypha-bench-store-pg in
# Release and prints the table (it does not edit bench/README.md).
#
# usage: bench/store_pg.sh [--build DIR] [bench options: --reps N --single N
#                           --batched N --gets N --dir D]
#   --build DIR   build directory (HYPHA_BENCH_BUILD, default build-bench)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${HYPHA_BENCH_BUILD:-build-bench}
if [ "${1:-}" = --build ]; then
    build=$2
    shift 2
fi
. "$root/tests/integration/lib_pg.sh"
hy_pg_find
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target hypha-bench-store-pg hypha-global hypha-zone hyphactl >/dev/null
trap hy_pg_destroy EXIT
HY_PG_FSYNC=on hy_pg_init
"$build/bin/hypha-bench-store-pg" --url "$HY_PG_URL" "$@"
HY_PG_URL=$HY_PG_URL HY_PG_BIN=$HY_PG_BIN "$root/bench/store_pg_prop.sh" "$build" "${HYPHA_PROP_WRITES:-200}"
