#!/usr/bin/env bash
# The sidecar's memory: RSS of one hypha-dp (one worker) idle after start,
# right after 1,000 new mTLS connections (one request each, h2load), and
# idle again once its worker has dropped its TLS tables (the
# hypha_dp_memory_releases_total counter says when); beside it an HAProxy
# pair's per-process RSS after the same 1,000 connections, and where the
# sidecar's resident pages are (/proc/PID/smaps by mapping). Checks the
# ceilings of issue 15 (idle <= 8 MiB, after 1,000 connections <= 12 MiB)
# and says which are met; a ceiling is a figure here, not a test.
# Rewrites the results:dp_mem section of bench/README.md.
#
# usage: bench/dp_mem.sh [--no-write] [--build DIR]
#   --no-write   print the results, leave README.md alone
#   --build DIR  the build directory (default build-bench; Release); give a
#                performance build's (-DHYPHA_WOLFSSL_ROOT) to measure it
set -euo pipefail

write=1 build=build-bench
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --build) build=${2:?}; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dp_mem.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
readme=bench/README.md
# shellcheck source=deploy/local/deps.sh
. deploy/local/deps.sh
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/dp_lib.sh
. bench/dp_lib.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES libcmocka-dev curl jq openssl nghttp2-client nginx haproxy

if [ "$build" = build-bench ]; then
    dp_build build-bench
else
    cmake --build "$build" --target hypha-zone hypha-dp hyphactl -j "$(nproc)"
    bin="$(pwd)/$build/bin"
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-mem-XXXXXX")
chmod 755 "$tmp"
pids=()

trap bench_cleanup EXIT

dp_start_nginx
dp_start_zone
dp_mtp web-to-backend backend web Allow
B_IN=$(hy_free_port) W_IN=$(hy_free_port) W_OUT=$(hy_free_port)
dp_dataplane backend-1 "in:$B_IN:$NGINX_PORT:backend" "out:$(hy_free_port):backend" >"$tmp/backend-1.yaml"
dp_dataplane web-1 "in:$W_IN:$(hy_free_port):web" "out:$W_OUT:backend" >"$tmp/web-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"
P=${DP_PID[web-1]}
released() { [ "$(dp_metric web-1 hypha_dp_memory_releases_total)" = "$1" ]; }
wait_for 20 released 1
idle=$(rss_kib "$P")
h2load --h1 -n 1000 -c 1 -m 1 -H "Connection: close" "http://127.0.0.1:$W_OUT/small" >"$tmp/h2load.log" 2>&1
grep -q '1000 succeeded' "$tmp/h2load.log" || { cat "$tmp/h2load.log" >&2; exit 1; }
busy=$(rss_kib "$P")
wait_for 20 released 2
after=$(rss_kib "$P")
awk '/^[0-9a-f]+-[0-9a-f]+ / {n = $6; if (n == "") n = "anonymous (thread arenas, stacks)"; sub(/.*\//, "", n)}
    /^Rss:/ {r[n] += $2} END {for (n in r) if (r[n] >= 256) printf "%d %s\n", r[n], n}' \
    "/proc/$P/smaps" | sort -rn >"$tmp/smaps"

dp_haproxy_tcp_pair "$NGINX_PORT"
ha_idle=$(rss_kib "${HA_PID[out]}")
h2load --h1 -n 1000 -c 1 -m 1 -H "Connection: close" "http://127.0.0.1:$H_OUT/small" >/dev/null 2>&1
ha_after=$(rss_kib "${HA_PID[out]}")

mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
meets() { awk -v k="$1" -v c="$2" 'BEGIN {print (k <= c * 1024) ? "met" : "not met"}'; }
{
    echo "Run $(date -u +%Y-%m-%d) on $(dp_machine), commit $(git rev-parse --short HEAD 2>/dev/null || echo -), build $build (wolfSSL $(pkg-config --modversion wolfssl 2>/dev/null || echo ?) as linked: $(ldd "$bin/hypha-dp" | awk '/libwolfssl/ {print $3}'))."
    echo
    echo "| process (one worker) | idle MiB | right after 1,000 mTLS connections | idle again |"
    echo "| --- | --- | --- | --- |"
    echo "| hypha-dp (outbound side) | $(mib "$idle") | $(mib "$busy") | $(mib "$after") |"
    echo "| HAProxy (outbound side) | $(mib "$ha_idle") | $(mib "$ha_after") | - |"
    echo
    echo "Ceilings: idle <= 8 MiB $(meets "$idle" 8); after 1,000 connections <= 12 MiB $(meets "$after" 12) (idle again), $(meets "$busy" 12) (right after)."
    echo
    echo "Where hypha-dp's resident pages are, idle again (KiB, mappings of 256 KiB or more):"
    echo
    echo "| KiB | mapping |"
    echo "| --- | --- |"
    awk '{k = $1; $1 = ""; sub(/^ /, ""); printf "| %d | %s |\n", k, $0}' "$tmp/smaps"
} >"$tmp/results.md"
cat "$tmp/results.md"
[ "$write" = 0 ] || bench_write_section "$readme" dp_mem "$tmp/results.md"
