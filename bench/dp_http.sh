#!/usr/bin/env bash
# The HTTP data-plane benchmark: paths side by side in one run on
# loopback, each ending at the same nginx:
#   direct     client -> nginx
#   hypha      client -> hypha-dp (outbound) =mTLS HTTP/2=> hypha-dp (inbound) -> nginx,
#              the backend's inbound tagged kuma.io/protocol: http (L7 mode)
#   haproxy    client -> HAProxy (mode http) =mTLS=> HAProxy (mode http, verify) -> nginx,
#              http-reuse always on both sides, so the hop's connections are reused
#   hypha-tcp  the hypha pair with no protocol tag (TCP mode), for the
#              keep-alive and new-connection rows only
# Both proxies get one worker thread (hypha-dp --workers 1, HAProxy
# nbthread 1) and TLS 1.3 with ECDSA P-256 certificates. Rows: small
# requests flat out over kept-alive connections (req/s, p50, p99, by wrk);
# a new connection per request (wrk, Connection: close); fixed 1k and 10k
# req/s (h2load --h1 --rps over 20 connections, which h2load fires
# together, and 1k req/s on one connection, evenly paced; p50, p99); gRPC-like unary calls over
# cleartext HTTP/2 (h2load, prior knowledge) to nginx's `listen ... http2`
# (the hypha backend tagged kuma.io/protocol: http2); gRPC unary calls
# (h2load POSTs of one 10-byte gRPC message over cleartext HTTP/2) to
# nghttpd answering one message and a grpc-status trailer (the hypha
# backend tagged kuma.io/protocol: grpc, h2c to the app); the pairs' CPU
# and RSS. Every row runs --rounds times (default 3), the paths one right
# after another in an order that rotates each round, and the tables give each
# figure's median over the rounds, with hypha/HAProxy per round beside
# them: a slow window of the VM then lands on one round of one path, not
# on a whole column. Afterwards it reads hypha_dp_http_requests_total from the caller
# sidecar's admin /metrics and fails (writing nothing) when the hypha
# column did not go through the HTTP path. Rewrites the results:dp_http
# section of bench/README.md.
#
# usage: bench/dp_http.sh [--no-write] [--seconds S] [--rounds N] [--connections N]
#                         [--dir D] [--bin DIR] [--haproxy-hop h2|h1] [--keep-going]
#   --no-write       print the results, leave README.md alone
#   --seconds S      duration of each row in each round (HYPHA_BENCH_DP_SECONDS,
#                    default 5)
#   --rounds N       rounds of all rows (HYPHA_BENCH_DP_ROUNDS, default 3)
#   --connections N  wrk connections over 2 threads, and h2load streams in all
#                    (HYPHA_BENCH_DP_CONNECTIONS, default 32)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
#   --bin DIR        use hypha-zone, hypha-dp and hyphactl from DIR instead of
#                    building this tree into build-bench (e.g. a branch's Release build)
#   --haproxy-hop P  what HAProxy speaks between its two processes: h2 (default,
#                    one multiplexed connection, like hypha's pool) or h1 (pooled
#                    HTTP/1.1 connections)
#   --keep-going     run every row even when a first request finds no HTTP path
#                    in hypha-dp (the final check still fails)
# Installs missing Debian packages (wrk, nghttp2-client for h2load, nghttp2-server for
# nghttpd, nginx, haproxy...) when run as root.
set -euo pipefail

write=1
seconds=${HYPHA_BENCH_DP_SECONDS:-5}
rounds=${HYPHA_BENCH_DP_ROUNDS:-3}
conns=${HYPHA_BENCH_DP_CONNECTIONS:-32}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
bin=""
hop=h2
keep_going=0
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --seconds) seconds=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --bin) bin=${2:?}; shift ;;
    --haproxy-hop) hop=${2:?}; shift ;;
    --keep-going) keep_going=1 ;;
    -h | --help)
        sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "dp_http.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
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

dp_check_positive dp_http.sh seconds conns rounds
[ "$conns" -ge 2 ] || { echo "dp_http.sh: --connections must be at least 2" >&2; exit 2; }
case "$hop" in h1 | h2) ;; *) echo "dp_http.sh: --haproxy-hop must be h1 or h2, not '$hop'" >&2; exit 2 ;; esac
if [ -n "$bin" ]; then
    [ -d "$bin" ] || { echo "dp_http.sh: --bin: no directory $bin" >&2; exit 2; }
    bin=$(cd "$bin" && pwd)
    for b in hypha-zone hypha-dp hyphactl; do
        [ -x "$bin/$b" ] || { echo "dp_http.sh: --bin: $bin has no executable $b" >&2; exit 2; }
    done
fi

# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES libcmocka-dev curl jq openssl wrk nghttp2-client nghttp2-server nginx haproxy
if [ -z "$bin" ]; then
    dp_build build-bench
    src=$root
else # the tree the binaries were built from, when it is a CMake build dir's bin/
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$bin/../CMakeCache.txt" 2>/dev/null || true)
fi
commit=$( { [ -n "$src" ] && git -C "$src" rev-parse --short HEAD 2>/dev/null; } || echo "unknown")
[ -z "$src" ] || [ -z "$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null)" ] ||
    commit="$commit + uncommitted changes"
branch=$( { [ -n "$src" ] && git -C "$src" rev-parse --abbrev-ref HEAD 2>/dev/null; } || echo "-")

tmp=$(mktemp -d "$dir/hypha-bench-dp-http-XXXXXX")
chmod 755 "$tmp" # nginx's workers run as another user when we are root
pids=()
trap bench_cleanup EXIT
say() { echo "dp_http.sh: $*" >&2; }
METRIC=hypha_dp_http_requests_total

# ---- the app: nginx, HTTP/1.1 on NGINX_PORT and cleartext HTTP/2 on NGINX_H2_PORT
dp_start_nginx --h2
# ---- the gRPC app: nghttpd over h2c, one 10-byte gRPC message for any
# call to /unary, then the trailer grpc-status: 0 (a unary call's shape)
GRPC_PORT=$(hy_free_port)
mkdir -p "$tmp/grpc"
printf '\0\0\0\0\5hello' >"$tmp/grpc/unary"
printf '\0\0\0\0\5hello' >"$tmp/grpc-req.bin"
nghttpd --no-tls --trailer='grpc-status: 0' -d "$tmp/grpc" "$GRPC_PORT" >"$tmp/nghttpd.log" 2>&1 &
pids+=($!)
grpc_call() { # PORT: one unary call, prior knowledge
    curl -sf --http2-prior-knowledge -X POST -H 'content-type: application/grpc' \
        --data-binary @"$tmp/grpc-req.bin" -o /dev/null "http://127.0.0.1:$1/unary"
}
wait_for 10 grpc_call "$GRPC_PORT"

# ---- hypha: a standalone zone and three backends' sidecars, two callers'
#   web-1 -> backend-1     (backend, kuma.io/protocol: http)      the L7 pair
#   web-1 -> backend-h2-1  (backend-h2, kuma.io/protocol: http2)  the gRPC-like row
#   web-tcp-1 -> backend-tcp-1 (backend-tcp, no protocol tag)     the TCP-mode pair
dp_start_zone
dp_mtp web-to-backend backend web Allow
dp_mtp web-to-backend-h2 backend-h2 web Allow
dp_mtp web-tcp-to-backend-tcp backend-tcp web-tcp Allow
dp_mtp web-to-backend-grpc backend-grpc web Allow
W_OUT=$(hy_free_port) W_OUT_H2=$(hy_free_port) W_OUT_GRPC=$(hy_free_port) T_OUT=$(hy_free_port)
dp_dataplane backend-1 "in:$(hy_free_port):$NGINX_PORT:backend:http" >"$tmp/backend-1.yaml"
dp_dataplane backend-h2-1 "in:$(hy_free_port):$NGINX_H2_PORT:backend-h2:http2" >"$tmp/backend-h2-1.yaml"
dp_dataplane backend-tcp-1 "in:$(hy_free_port):$NGINX_PORT:backend-tcp" >"$tmp/backend-tcp-1.yaml"
dp_dataplane backend-grpc-1 "in:$(hy_free_port):$GRPC_PORT:backend-grpc:grpc" >"$tmp/backend-grpc-1.yaml"
dp_dataplane web-1 "in:$(hy_free_port):$(hy_free_port):web" \
    "out:$W_OUT:backend" "out:$W_OUT_H2:backend-h2" "out:$W_OUT_GRPC:backend-grpc" >"$tmp/web-1.yaml"
dp_dataplane web-tcp-1 "in:$(hy_free_port):$(hy_free_port):web-tcp" "out:$T_OUT:backend-tcp" >"$tmp/web-tcp-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
dp_start_sidecar backend-h2-1 "$tmp/backend-h2-1.yaml" hypha.io/service=backend-h2
dp_start_sidecar backend-tcp-1 "$tmp/backend-tcp-1.yaml" hypha.io/service=backend-tcp
dp_start_sidecar backend-grpc-1 "$tmp/backend-grpc-1.yaml" hypha.io/service=backend-grpc
dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
dp_start_sidecar web-tcp-1 "$tmp/web-tcp-1.yaml" hypha.io/service=web-tcp
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"
# the http2-tagged path only feeds the gRPC-like row: when it does not
# answer, that row says so and the rest still runs
h2_broken=""
wait_for 20 curl -sf --http2-prior-knowledge "http://127.0.0.1:$W_OUT_H2/small" || h2_broken=1
wait_for 20 curl -sf "http://127.0.0.1:$T_OUT/small"
grpc_broken=""
wait_for 20 grpc_call "$W_OUT_GRPC" || grpc_broken=1

# l7_count SIDECAR: its hypha_dp_http_requests_total summed, "absent" when
# it exports none; waits up to 2 s for a count to show (metrics may be
# gathered from the workers lazily)
l7_count() {
    local v i
    for i in $(seq 1 40); do
        v=$(dp_metric "$1" "$METRIC") || { echo "unreachable"; return; }
        case "$v" in absent | 0) ;; *) break ;; esac
        [ "$i" = 40 ] || sleep 0.05
    done
    echo "$v"
}
no_l7() { # WHERE VALUE: the loud explanation
    echo "dp_http.sh: FAILED: $1: the caller sidecar web-1 ($bin/hypha-dp) reports $METRIC $2 after" \
        "requests through an outbound whose backend is tagged kuma.io/protocol: http, so they did not go" \
        "through the HTTP (L7) data path: the hypha column's numbers are TCP-mode numbers, not L7 ones." \
        "A hypha-dp without the HTTP data path (main before it lands) exports no such metric; point" \
        "--bin at a build that has it. Nothing written to $readme." >&2
}
# a first look, so a hypha-dp without the L7 path fails before minutes of rows
pre=$(l7_count web-1)
case "$pre" in
absent | 0 | unreachable)
    no_l7 "first request" "$pre"
    [ "$keep_going" = 1 ] || exit 1
    say "--keep-going: running the rows anyway; the final check will fail"
    ;;
esac

# ---- haproxy: the same shape in HTTP mode, mTLS with its own CA
dp_haproxy_http_pair "$([ "$hop" = h2 ] && echo "alpn h2" || echo "alpn http/1.1")" "$GRPC_PORT"
wait_for 10 grpc_call "$H_OUT_GRPC"

# h2_run PORT [PATH [H2LOAD-ARGS...]]: unary calls flat out for the row:
# h2load over cleartext HTTP/2 (prior knowledge), $conns streams in all
# over max(1, $conns / 8) connections, to PATH (default /small); sets RPS
# P50 P99 (ms) and ERRS
h2_run() {
    local port=$1 path=${2:-/small} log=$tmp/h2load-h2.log c m out
    shift $(($# < 2 ? $# : 2))
    c=$((conns / 8)) && [ "$c" -ge 1 ] || c=1
    m=$(((conns + c - 1) / c))
    rm -f "$log"
    out=$(timeout $((seconds + 60)) h2load -c "$c" -m "$m" -D "$seconds" --log-file="$log" "$@" \
        "http://127.0.0.1:$port$path" 2>&1) || true
    [ -f "$log" ] || : >"$log"
    RPS=$(awk -v s="$seconds" 'END {printf "%.0f", NR / s}' "$log")
    read -r P50 P99 < <(log_pcts "$log")
    # "requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout"
    ERRS=$(awk '/^requests:/ { if ($10 + $12 > 0) printf "%s failed, %s errored", $10, $12 }' <<<"$out")
    local non2xx
    non2xx=$(awk '/^status codes:/ { print $5 + $7 + $9 }' <<<"$out")
    [ "${non2xx:-0}" = 0 ] || ERRS="${ERRS:+$ERRS, }$non2xx non-2xx"
}
# h2_streams: "C connections x M streams" as h2_run uses them
h2_streams() {
    local c m
    c=$((conns / 8)) && [ "$c" -ge 1 ] || c=1
    m=$(((conns + c - 1) / c))
    echo "$c connections × $m streams"
}

# ---- measuring
paths=(direct hypha haproxy hypha-tcp)
declare -A port=([direct]=$NGINX_PORT [hypha]=$W_OUT [haproxy]=$H_OUT [hypha-tcp]=$T_OUT)
declare -A h2port=([direct]=$NGINX_H2_PORT [hypha]=$W_OUT_H2 [haproxy]=$H_OUT_H2)
declare -A gport=([direct]=$GRPC_PORT [hypha]=$W_OUT_GRPC [haproxy]=$H_OUT_GRPC)
declare -A procs=([direct]="" [hypha]="${DP_PID[web-1]} ${DP_PID[backend-1]}"
    [haproxy]="${HA_PID[out]} ${HA_PID[in]}" [hypha-tcp]="${DP_PID[web-tcp-1]} ${DP_PID[backend-tcp-1]}")
declare -A rps p50 p99 crps cpu ccpu rss errs r1k r10k grps gp50 gp99 qrps qp50 qp99 sent \
    r1k_50 r1k_99 r1k_got r10k_50 r10k_99 r10k_got r1e_50 r1e_99 r1e_got r1e
ticks_of() { # PATH: its pair's CPU ticks (0 for direct)
    # shellcheck disable=SC2086
    if [ -z "${procs[$1]}" ]; then echo 0; else cpu_ticks ${procs[$1]}; fi
}
h2_l7=""
add() { # ARRAY PATH VALUE: VALUE appended to the round's list ARRAY[PATH]
    # shellcheck disable=SC2178 # a names an associative array
    local -n a=$1
    a[$2]="${a[$2]:+${a[$2]} }$3"
}
median() { # VALUES...: their median ("-" when none is a number; whole
    # numbers stay whole, others keep three decimals)
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{v[NR] = $1; if ($1 ~ /\./) f = 1} END {
        if (!NR) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf(f ? "%.3f\n" : "%.0f\n", m) }'
}
measure() { # ROW PATH: one round of one row on one path, appended to the lists
    local row=$1 path=$2 p=${port[$2]} c0 c1
    case "$row" in
    ka)
        c0=$(ticks_of "$path")
        wrk_run "$p"
        c1=$(ticks_of "$path")
        add rps "$path" "$RPS"
        add p50 "$path" "$P50"
        add p99 "$path" "$P99"
        add cpu "$path" "$(cpu_pct "$c0" "$c1")"
        [ -z "$ERRS" ] || errs[$path]="${errs[$path]} $ERRS"
        sent[$path]=$((${sent[$path]:-0} + ${REQS:-0}))
        ;;
    close)
        c0=$(ticks_of "$path")
        wrk_run "$p" -H "Connection: close"
        c1=$(ticks_of "$path")
        add crps "$path" "$RPS"
        add ccpu "$path" "$(cpu_pct "$c0" "$c1")"
        sent[$path]=$((${sent[$path]:-0} + ${REQS:-0}))
        [ -z "$ERRS" ] || errs[$path]="${errs[$path]} close: $ERRS"
        ;;
    r1k | r10k | r1e)
        case "$row" in
        r1k) rate_run "$p" 1000 ;;
        r10k) rate_run "$p" 10000 ;;
        r1e) rate_run "$p" 1000 1 ;;
        esac
        add "${row}_50" "$path" "$P50"
        add "${row}_99" "$path" "$P99"
        add "${row}_got" "$path" "$GOT"
        ;;
    h2)
        [ "$path" != hypha ] || before_h2=$(l7_count web-1)
        if [ "$path" = hypha ] && [ -n "$h2_broken" ]; then
            [ "$round" != 1 ] || errs[$path]="${errs[$path]} h2: the http2-tagged backend did not answer a first call, row skipped"
        else
            h2_run "${h2port[$path]}"
            add grps "$path" "$RPS"
            add gp50 "$path" "$P50"
            add gp99 "$path" "$P99"
            [ -z "$ERRS" ] || errs[$path]="${errs[$path]} h2: $ERRS"
        fi
        if [ "$path" = hypha ]; then
            after_h2=$(l7_count web-1)
            # did the http2-tagged backend's calls count as HTTP requests?
            if [[ "$before_h2" =~ ^[0-9]+$ && "$after_h2" =~ ^[0-9]+$ ]] && [ "$after_h2" -gt "$before_h2" ]; then
                h2_l7=1
            fi
        fi
        ;;
    grpc)
        if [ "$path" = hypha ] && [ -n "$grpc_broken" ]; then
            [ "$round" != 1 ] || errs[$path]="${errs[$path]} grpc: the grpc-tagged backend did not answer a first call, row skipped"
        else
            h2_run "${gport[$path]}" /unary -d "$tmp/grpc-req.bin" -H 'content-type: application/grpc' -H 'te: trailers'
            add qrps "$path" "$RPS"
            add qp50 "$path" "$P50"
            add qp99 "$path" "$P99"
            [ -z "$ERRS" ] || errs[$path]="${errs[$path]} grpc: $ERRS"
        fi
        ;;
    esac
}
for path in "${paths[@]}"; do errs[$path]=""; done
for ((round = 1; round <= rounds; round++)); do
    say "round $round of $rounds"
    # row by row, the paths one right after another (what is compared is
    # measured seconds apart), starting one path further on each round: no
    # path always runs first, or always right after the same other one
    for row in ka close r1k r10k r1e h2 grpc; do
        for ((k = 0; k < ${#paths[@]}; k++)); do
            path=${paths[$(((k + round - 1) % ${#paths[@]}))]}
            case "$row:$path" in ka:* | close:* | *:direct | *:hypha | *:haproxy) measure "$row" "$path" ;; esac
        done
    done
done
# per round, hypha / haproxy of the list ARRAY: "r1, r2, r3"
per_round() {
    local -n a=$1
    local -a h q
    local i out=""
    read -r -a h <<<"${a[hypha]:-}"
    read -r -a q <<<"${a[haproxy]:-}"
    for ((i = 0; i < ${#h[@]} && i < ${#q[@]}; i++)); do
        out+="${out:+, }$(ratio "${h[$i]}" "${q[$i]}")"
    done
    echo "${out:--}"
}
round_line="Per round, hypha (L7) / haproxy (http mode): keep-alive $(per_round rps); new connection $(per_round crps); gRPC-like $(per_round grps); gRPC $(per_round qrps); p50 at 1k req/s $(per_round r1k_50); p50 at 10k req/s $(per_round r10k_50); p50 at 1k req/s on one connection $(per_round r1e_50)."
for path in "${paths[@]}"; do # the medians
    for a in rps p50 p99 cpu crps ccpu grps gp50 gp99 qrps qp50 qp99 r1k_50 r1k_99 r1k_got \
        r10k_50 r10k_99 r10k_got r1e_50 r1e_99 r1e_got; do
        # shellcheck disable=SC2178,SC2004,SC2086 # arr names an associative array
        declare -n arr=$a
        [ -z "${arr[$path]+x}" ] || arr[$path]=$(median ${arr[$path]})
        unset -n arr
    done
    if [ "$path" != hypha-tcp ]; then
        r1k[$path]="${r1k_50[$path]} / ${r1k_99[$path]} (${r1k_got[$path]}/s)"
        r10k[$path]="${r10k_50[$path]} / ${r10k_99[$path]} (${r10k_got[$path]}/s)"
        r1e[$path]="${r1e_50[$path]} / ${r1e_99[$path]} (${r1e_got[$path]}/s)"
    fi
    for a in grps gp50 gp99 qrps qp50 qp99; do
        # shellcheck disable=SC2178,SC2004 # arr names an associative array
        declare -n arr=$a
        [ -n "${arr[$path]+x}" ] || [ "$path" = hypha-tcp ] || arr[$path]=-
        unset -n arr
    done
    # shellcheck disable=SC2086
    rss[$path]=$([ -z "${procs[$path]}" ] && echo - || echo $(($(rss_kib ${procs[$path]}) / 1024)))
done

# ---- the check: did the hypha column go through the HTTP data path?
l7_total=$(l7_count web-1)
tcp_total=$(l7_count web-tcp-1)
failed=0
case "$l7_total" in
absent | 0 | unreachable)
    no_l7 "after the run" "$l7_total"
    failed=1
    ;;
esac
# every request the wrk rows completed went through the caller's outbound;
# a count below that means some took another way (the metric is gathered
# on scrape, so it should not lag)
short=""
if [[ "$l7_total" =~ ^[0-9]+$ ]] && [ "$l7_total" -lt "${sent[hypha]}" ]; then
    short="WARNING: the caller counted fewer HTTP requests ($l7_total) than the wrk rows completed through it (${sent[hypha]})."
    echo "dp_http.sh: $short" >&2
fi
case "$tcp_total" in
absent | 0) ;;
*)
    echo "dp_http.sh: FAILED: the TCP-mode caller web-tcp-1 reports $METRIC $tcp_total: its backend has" \
        "no protocol tag, so its calls should have stayed TCP; the hypha-tcp column is not a TCP-mode baseline." >&2
    failed=1
    ;;
esac

# ---- the table
num() { [[ "$1" =~ ^[0-9.]+$ ]]; }
le() { num "$1" && num "$2" && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
verdict() { if "$@"; then echo met; else echo missed; fi; }
first() { echo "${1%% *}"; }                  # "p50 / p99 (got/s)" -> p50
second() { awk '{print $3}' <<<"$1"; }       # -> p99
got() { sed 's/.*(\([0-9]*\)\/s).*/\1/' <<<"$1"; } # -> got
if [ -n "$h2_broken" ]; then
    h2_label="hypha (http2: no answer)"
elif [ -n "$h2_l7" ]; then
    h2_label="hypha (http2, L7)"
else
    h2_label="hypha (http2 proxied as TCP this round)"
fi
label() { # PATH: its name in the tables
    case "$1" in
    hypha) echo "hypha (http, L7)" ;;
    haproxy) echo "haproxy (http mode)" ;;
    hypha-tcp) echo "hypha (tcp)" ;;
    *) echo "$1" ;;
    esac
}
rates_ok() { # RATE_COLUMN(r1k|r10k) TARGET: hypha held the rate, its p50 and p99 <= haproxy's
    local -n col=$1
    awk -v g="$(got "${col[hypha]}")" -v t="$2" 'BEGIN { exit !(g >= 0.95 * t) }' &&
        le "$(first "${col[hypha]}")" "$(first "${col[haproxy]}")" &&
        le "$(second "${col[hypha]}")" "$(second "${col[haproxy]}")"
}
rate_note() { # RATE_COLUMN TARGET: a note when a path fell short of the rate
    local -n col=$1
    local p s=""
    for p in direct hypha haproxy; do
        awk -v g="$(got "${col[$p]}")" -v t="$2" 'BEGIN { exit !(g < 0.95 * t) }' && s+=" $(label "$p") reached only $(got "${col[$p]}")/s;"
    done
    echo "$s"
}
{
    echo "Run $(date -u +%Y-%m-%d) on $(dp_machine); hypha-dp $branch $commit$([ -z "$src" ] || [ "$src" = "$root" ] || echo " (from $src)"); $(haproxy -v | awk 'NR == 1 {print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's/.*nginx\//nginx /')."
    echo "Each figure is the median of $rounds rounds of ${seconds}s per row; in a round each row runs on the paths one right after another (the order rotated each round); RSS after the last round."
    echo "wrk -t2 -c$conns; one thread per proxy; 64-byte body. HAProxy: mode http, http-reuse always, $hop between its two processes."
    echo "Fixed rates: h2load --h1, 20 connections (h2load sends on all 20 at once, every 20 ms at 1k req/s), and one connection at 1k req/s (a request every millisecond); the rate achieved in brackets. gRPC-like: h2load over cleartext HTTP/2, $(h2_streams), GET of the 64-byte body."
    echo
    echo "| path | req/s (keep-alive) | p50 ms | p99 ms | new connection per request, req/s | pair's CPU % keep-alive / new-conn | pair's RSS MiB |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for path in "${paths[@]}"; do
        c=$([ "$path" = direct ] && echo - || echo "${cpu[$path]} / ${ccpu[$path]}")
        echo "| $(label "$path") | ${rps[$path]} | ${p50[$path]} | ${p99[$path]} | ${crps[$path]} | $c | ${rss[$path]} |"
    done
    echo
    echo "| path | p50 / p99 ms at 1k req/s | p50 / p99 ms at 10k req/s | p50 / p99 ms at 1k req/s, one connection (evenly paced) |"
    echo "| --- | --- | --- | --- |"
    for path in direct hypha haproxy; do
        echo "| $(label "$path") | ${r1k[$path]} | ${r10k[$path]} | ${r1e[$path]} |"
    done
    echo
    echo "| gRPC-like unary calls, h2c | req/s | p50 ms | p99 ms |"
    echo "| --- | --- | --- | --- |"
    for path in direct hypha haproxy; do
        l=$(label "$path")
        [ "$path" != hypha ] || l=$h2_label
        echo "| $l | ${grps[$path]} | ${gp50[$path]} | ${gp99[$path]} |"
    done
    echo
    echo "| gRPC unary calls, h2c (POST of one message; one message and a grpc-status trailer back, nghttpd) | req/s | p50 ms | p99 ms |"
    echo "| --- | --- | --- | --- |"
    for path in direct hypha haproxy; do
        l=$(label "$path")
        [ "$path" != hypha ] || l="hypha (grpc, L7)"
        echo "| $l | ${qrps[$path]} | ${qp50[$path]} | ${qp99[$path]} |"
    done
    echo
    echo "hypha (L7) / haproxy (http mode): keep-alive req/s $(ratio "${rps[hypha]}" "${rps[haproxy]}"), new-connection req/s $(ratio "${crps[hypha]}" "${crps[haproxy]}"), gRPC-like req/s $(ratio "${grps[hypha]}" "${grps[haproxy]}"), gRPC req/s $(ratio "${qrps[hypha]}" "${qrps[haproxy]}"), RSS $(ratio "${rss[hypha]}" "${rss[haproxy]}")."
    echo "hypha (L7) / direct: keep-alive req/s $(ratio "${rps[hypha]}" "${rps[direct]}"), new-connection req/s $(ratio "${crps[hypha]}" "${crps[direct]}"), gRPC-like req/s $(ratio "${grps[hypha]}" "${grps[direct]}"), gRPC req/s $(ratio "${qrps[hypha]}" "${qrps[direct]}")."
    echo "haproxy (http mode) / direct: keep-alive req/s $(ratio "${rps[haproxy]}" "${rps[direct]}"), new-connection req/s $(ratio "${crps[haproxy]}" "${crps[direct]}"), gRPC-like req/s $(ratio "${grps[haproxy]}" "${grps[direct]}")."
    echo "hypha L7 / hypha TCP mode: new-connection req/s $(ratio "${crps[hypha]}" "${crps[hypha-tcp]}"), keep-alive req/s $(ratio "${rps[hypha]}" "${rps[hypha-tcp]}")."
    echo "$round_line"
    echo "L7 check: the caller sidecar's $METRIC is $l7_total after the run; the wrk rows completed ${sent[hypha]} requests through it, the fixed-rate$([ -z "$h2_l7" ] || echo " and gRPC-like") rows more. The TCP-mode caller's: $tcp_total."
    echo
    echo "Goals (issue 14), this run's medians:"
    echo "keep-alive req/s ≥ HAProxy's: $(verdict le "${rps[haproxy]}" "${rps[hypha]}") (${rps[hypha]} vs ${rps[haproxy]});"
    echo "p50/p99 at 1k req/s ≤ HAProxy's: $(verdict rates_ok r1k 1000) (${r1k[hypha]%% (*} vs ${r1k[haproxy]%% (*});$(rate_note r1k 1000)"
    echo "p50/p99 at 10k req/s ≤ HAProxy's: $(verdict rates_ok r10k 10000) (${r10k[hypha]%% (*} vs ${r10k[haproxy]%% (*});$(rate_note r10k 10000)"
    echo "p50/p99 at 1k req/s evenly paced (one connection) ≤ HAProxy's: $(verdict rates_ok r1e 1000) (${r1e[hypha]%% (*} vs ${r1e[haproxy]%% (*});$(rate_note r1e 1000)"
    echo "new-connection req/s ≥ HAProxy HTTP mode's: $(verdict le "${crps[haproxy]}" "${crps[hypha]}") (${crps[hypha]} vs ${crps[haproxy]});"
    echo "new-connection req/s ≥ 3× the TCP-mode pair's: $(verdict le "$(awk -v t="${crps[hypha-tcp]}" 'BEGIN {print 3 * t}')" "${crps[hypha]}") (${crps[hypha]} vs 3 × ${crps[hypha-tcp]})."
    [ -z "$short" ] || echo "$short"
    for path in "${paths[@]}"; do
        [ -z "${errs[$path]}" ] || echo "Errors reported for $(label "$path"): ${errs[$path]}"
    done
} >"$tmp/results.md"
cat "$tmp/results.md"
if [ "$failed" = 1 ]; then
    echo "dp_http.sh: FAILED: the check of the L7 path (above); these numbers are not L7 numbers and were not written." >&2
    exit 1
fi
[ "$write" = 0 ] || bench_write_section "$readme" dp_http "$tmp/results.md"
