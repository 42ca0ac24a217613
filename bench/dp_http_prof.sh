#!/usr/bin/env bash
# What one request costs each proxy of the HTTP data-plane pairs of
# bench/dp_http.sh: the hypha L7 pair (outbound web-1, inbound backend-1,
# and backend-h2-1 for the h2c row) and the HAProxy pair in HTTP mode,
# set up as dp_http.sh does. For each row (keep-alive, a new connection
# per request, h2c GETs) and each proxy: CPU µs per request (on-CPU time
# of all its threads, /proc/PID/task/*/schedstat, over the requests the
# load generator completed) and system calls per request (perf stat -e
# raw_syscalls:sys_enter, a second run of the row), and with --syscalls
# the hypha proxies' calls by name (perf trace -s). Steadier than req/s on
# a shared machine. With --perf DIR, a perf record -g of each hypha proxy
# per row into DIR (perf report --no-children -i DIR/ROW-SIDE.data).
#
# usage: bench/dp_http_prof.sh [--bin DIR] [--seconds S] [--rows "ka close h2"]
#                              [--syscalls] [--perf DIR] [--dir D]
#   --bin DIR    hypha-zone, hypha-dp and hyphactl from DIR (default: build
#                this tree into build-bench)
#   --seconds S  each run of a row (default 5)
#   --rows R     which rows: ka (keep-alive), close (Connection: close),
#                h2 (h2c, 4 connections x 8 streams); default all three
#   --syscalls   also the calls by name, per request (perf trace -s; slows
#                the proxies while it runs, so a run of its own)
#   --perf DIR   perf record -g of each hypha proxy per row into DIR
# PROF_HOOK: shell code eval'ed once both pairs answer, before the rows
# (an ad-hoc look at the processes: DP_PID[web-1], HA_PID[out], ...).
# Needs root for perf (or perf_event_paranoid <= 0); installs what
# dp_http.sh does.
set -euo pipefail

seconds=5
rows="ka close h2"
dir=${TMPDIR:-/tmp}
bin=""
perfdir=""
bycall=0
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --rows) rows=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --perf) perfdir=${2:?}; shift ;;
    --syscalls) bycall=1 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dp_http_prof.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
conns=32
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=deploy/local/deps.sh
. deploy/local/deps.sh
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/dp_lib.sh
. bench/dp_lib.sh
dp_check_positive dp_http_prof.sh seconds
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl jq openssl wrk nghttp2-client nginx haproxy linux-perf
if [ -z "$bin" ]; then
    dp_build build-bench
else
    bin=$(cd "$bin" && pwd)
fi
[ -z "$perfdir" ] || { mkdir -p "$perfdir" && perfdir=$(cd "$perfdir" && pwd); }
tmp=$(mktemp -d "$dir/hypha-bench-dp-prof-XXXXXX")
chmod 755 "$tmp"
pids=()
trap bench_cleanup EXIT
say() { echo "dp_http_prof.sh: $*" >&2; }

dp_start_nginx --h2
dp_start_zone
dp_mtp web-to-backend backend web Allow
dp_mtp web-to-backend-h2 backend-h2 web Allow
W_OUT=$(hy_free_port) W_OUT_H2=$(hy_free_port)
dp_dataplane backend-1 "in:$(hy_free_port):$NGINX_PORT:backend:http" >"$tmp/backend-1.yaml"
dp_dataplane backend-h2-1 "in:$(hy_free_port):$NGINX_H2_PORT:backend-h2:http2" >"$tmp/backend-h2-1.yaml"
dp_dataplane web-1 "in:$(hy_free_port):$(hy_free_port):web" \
    "out:$W_OUT:backend" "out:$W_OUT_H2:backend-h2" >"$tmp/web-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
dp_start_sidecar backend-h2-1 "$tmp/backend-h2-1.yaml" hypha.io/service=backend-h2
dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"
wait_for 20 curl -sf --http2-prior-knowledge "http://127.0.0.1:$W_OUT_H2/small"

dp_haproxy_http_pair "alpn h2"

# a hook for ad-hoc looks at the running pairs (pids in DP_PID, HA_PID)
[ -z "${PROF_HOOK:-}" ] || eval "$PROF_HOOK"

# load ROW PORT: the row's load for $seconds; sets REQS (completed)
load() {
    local out
    case "$1" in
    ka) out=$(wrk -t2 -c$conns -d"${seconds}s" "http://127.0.0.1:$2/small") ;;
    close) out=$(wrk -t2 -c$conns -d"${seconds}s" -H "Connection: close" "http://127.0.0.1:$2/small") ;;
    h2) out=$(h2load -c4 -m8 -D "$seconds" "http://127.0.0.1:$2/small" 2>&1) ;;
    esac
    if [ "$1" = h2 ]; then
        REQS=$(awk '/^requests:/ {print $8}' <<<"$out")
    else
        REQS=$(awk '/requests in/ {print $1; exit}' <<<"$out")
    fi
    if grep -q "Non-2xx\|Socket errors" <<<"$out" ||
        { [ "$1" = h2 ] && ! awk '/^requests:/ {exit !($10 + $12 == 0)}' <<<"$out"; }; then
        say "errors in row $1 on port $2: $(grep -i "non-2xx\|socket errors\|^requests:" <<<"$out" | tr -s ' ' | paste -sd';')"
    fi
}
oncpu_ns() { # PID: on-CPU ns of all its threads
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
declare -A port=([hypha:ka]=$W_OUT [hypha:close]=$W_OUT [hypha:h2]=$W_OUT_H2
    [haproxy:ka]=$H_OUT [haproxy:close]=$H_OUT [haproxy:h2]=$H_OUT_H2)
declare -A res
side_pids() { # PATH ROW: "front back" pids
    case "$1:$2" in
    hypha:h2) echo "${DP_PID[web-1]} ${DP_PID[backend-h2-1]}" ;;
    hypha:*) echo "${DP_PID[web-1]} ${DP_PID[backend-1]}" ;;
    haproxy:*) echo "${HA_PID[out]} ${HA_PID[in]}" ;;
    esac
}
for row in $rows; do
    for path in hypha haproxy; do
        read -r fp bp < <(side_pids "$path" "$row")
        p=${port[$path:$row]}
        load "$row" "$p" # warm: the pool, caches
        # CPU
        f0=$(oncpu_ns "$fp") b0=$(oncpu_ns "$bp")
        load "$row" "$p"
        f1=$(oncpu_ns "$fp") b1=$(oncpu_ns "$bp")
        n=$REQS
        res[$path:$row:rps]=$((n / seconds))
        res[$path:$row:fcpu]=$(awk -v d=$((f1 - f0)) -v n="$n" 'BEGIN {printf "%.1f", d / 1000 / n}')
        res[$path:$row:bcpu]=$(awk -v d=$((b1 - b0)) -v n="$n" 'BEGIN {printf "%.1f", d / 1000 / n}')
        # system calls
        perf stat -x, -e raw_syscalls:sys_enter -p "$fp" -o "$tmp/f.stat" &
        ps1=$!
        perf stat -x, -e raw_syscalls:sys_enter -p "$bp" -o "$tmp/b.stat" &
        ps2=$!
        sleep 0.3
        load "$row" "$p"
        kill -INT "$ps1" "$ps2"
        wait "$ps1" "$ps2" || true
        n=$REQS
        for s in f b; do
            res[$path:$row:${s}sys]=$(awk -F, -v n="$n" '/raw_syscalls/ {printf "%.1f", $1 / n}' "$tmp/$s.stat")
        done
        if [ "$bycall" = 1 ]; then
            for s in f b; do
                pid=$fp && [ $s = f ] || pid=$bp
                timeout -s INT $((seconds + 1)) perf trace -s -p "$pid" -o "$tmp/$s.trace" &
                tr=$!
                sleep 0.5
                load "$row" "$p"
                wait "$tr" || true
                echo "== $row $path $([ $s = f ] && echo front || echo back): $REQS requests"
                awk -v n="$REQS" '$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ {c[$1] += $2}
                    END {for (k in c) printf "  %-16s %6.2f\n", k, c[k] / n}' "$tmp/$s.trace" | sort -k2 -rn | head -20
            done
        fi
        if [ "$path" = hypha ] && [ -n "$perfdir" ]; then
            for s in f b; do
                pid=$fp && [ $s = f ] || pid=$bp
                perf record -g -p "$pid" -o "$perfdir/$row-$s.data" -- sleep "$seconds" 2>/dev/null &
                pr=$!
                load "$row" "$p"
                wait "$pr" || true
            done
        fi
    done
done
echo "| row | path | req/s | front CPU µs/req | back CPU µs/req | front syscalls/req | back syscalls/req |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for row in $rows; do
    for path in hypha haproxy; do
        echo "| $row | $path | ${res[$path:$row:rps]} | ${res[$path:$row:fcpu]} | ${res[$path:$row:bcpu]} | ${res[$path:$row:fsys]} | ${res[$path:$row:bsys]} |"
    done
done
