#!/usr/bin/env bash
# The data-plane benchmark, three paths side by side in one run on
# loopback, each ending at the same nginx:
#   direct   wrk -> nginx
#   hypha    wrk -> hypha-dp (outbound) =mTLS=> hypha-dp (inbound) -> nginx
#   haproxy  wrk -> HAProxy (tcp) =mTLS=> HAProxy (tcp, verify) -> nginx
# Both proxies get one worker thread (hypha-dp --workers 1, HAProxy
# nbthread 1) and TLS 1.3 with ECDSA P-256 certificates. Rows: small
# requests flat out over kept-alive connections (requests/s, p50, p99, by
# wrk), the same at fixed rates of 1k and 10k requests/s (p50, p99, by
# h2load --rps over HTTP/1.1), a new connection per request (for the
# proxies: new mTLS connections/s; hypha's with TLS session resumption,
# its default, and beside it with full handshakes only: a second inbound
# sidecar started with HYPHA_DP_TLS_RESUMPTION=0), bulk download (MB/s),
# and the two proxies' CPU and RSS; then the linked wolfSSL's key exchange
# and AEAD speeds (hypha-bench-tls-prims: why the sidecar prefers what it
# does). With a performance wolfSSL (HYPHA_WOLFSSL_ROOT=PREFIX of one
# installed, or HYPHA_WOLFSSL_SRC=a source tree or tarball that
# bench/wolfssl_perf.sh builds), a fourth path, hypha-perf: the same two
# sidecars built against it (build-bench-perf, -DHYPHA_WOLFSSL_ROOT), side
# by side with Debian's; without either, only Debian's rows. Rewrites the
# results:dp section of bench/README.md.
#
# usage: bench/dp.sh [--no-write] [--seconds S] [--connections N] [--dir D]
#   --no-write       print the results, leave README.md alone
#   --seconds S      duration of each row (HYPHA_BENCH_DP_SECONDS, default 10)
#   --connections N  wrk connections over 2 threads (HYPHA_BENCH_DP_CONNECTIONS, default 32)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# Installs missing Debian packages (wrk, nghttp2-client for h2load, nginx, haproxy...) when run as root.
set -euo pipefail

write=1
seconds=${HYPHA_BENCH_DP_SECONDS:-10}
conns=${HYPHA_BENCH_DP_CONNECTIONS:-32}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --seconds) seconds=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "dp.sh: unknown argument '$1' (try --help)" >&2
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
dp_check_positive dp.sh seconds conns
[ "$conns" -ge 2 ] || { echo "dp.sh: --connections must be at least 2" >&2; exit 2; }
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES libcmocka-dev curl jq openssl wrk nghttp2-client nginx haproxy

dp_build build-bench
cmake --build build-bench --target hypha-bench-tls-prims -j "$(nproc)" >/dev/null
paths=(direct hypha haproxy)
perf_root=${HYPHA_WOLFSSL_ROOT:-}
if [ -n "${HYPHA_WOLFSSL_SRC:-}" ] && [ -z "$perf_root" ]; then
    perf_root=$(bench/wolfssl_perf.sh | tail -1)
fi
if [ -n "$perf_root" ]; then
    debian_bin=$bin
    cmake -S . -B build-bench-perf -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF \
        -DHYPHA_WOLFSSL_ROOT="$perf_root" >/dev/null
    cmake --build build-bench-perf --target hypha-dp hypha-bench-tls-prims -j "$(nproc)" >/dev/null
    perf_bin="$(pwd)/build-bench-perf/bin"
    bin=$debian_bin
    paths=(direct hypha hypha-perf haproxy)
fi

tmp=$(mktemp -d "$dir/hypha-bench-dp-XXXXXX")
chmod 755 "$tmp" # nginx's workers run as another user when we are root
pids=()
trap bench_cleanup EXIT

# ---- the app: nginx with a small body and a 64 MiB one
dp_start_nginx --big

# ---- hypha: a standalone zone and two sidecars
dp_start_zone
dp_mtp web-to-backend backend web Allow
dp_mtp web-to-backend-full backend-full web Allow
B_IN=$(hy_free_port) W_IN=$(hy_free_port) W_OUT=$(hy_free_port)
F_IN=$(hy_free_port) W_OUT_FULL=$(hy_free_port)
dp_dataplane backend-1 "in:$B_IN:$NGINX_PORT:backend" "out:$(hy_free_port):backend" >"$tmp/backend-1.yaml"
dp_dataplane web-1 "in:$W_IN:$(hy_free_port):web" "out:$W_OUT:backend" \
    "out:$W_OUT_FULL:backend-full" >"$tmp/web-1.yaml"
# the same inbound without session tickets: every connection to it is a full handshake
dp_dataplane backend-full-1 "in:$F_IN:$NGINX_PORT:backend-full" >"$tmp/backend-full-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
HYPHA_DP_TLS_RESUMPTION=0 dp_start_sidecar backend-full-1 "$tmp/backend-full-1.yaml" \
    hypha.io/service=backend-full
dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT_FULL/small"

# ---- hypha-perf: the same pair built against the performance wolfSSL
if [ -n "$perf_root" ]; then
    dp_mtp web-perf-to-backend-perf backend-perf web-perf Allow
    PB_IN=$(hy_free_port) PW_OUT=$(hy_free_port)
    dp_dataplane backend-perf-1 "in:$PB_IN:$NGINX_PORT:backend-perf" >"$tmp/backend-perf-1.yaml"
    dp_dataplane web-perf-1 "in:$(hy_free_port):$(hy_free_port):web-perf" \
        "out:$PW_OUT:backend-perf" >"$tmp/web-perf-1.yaml"
    bin=$perf_bin # dp_start_sidecar runs $bin/hypha-dp; hyphactl is the same
    cp "$debian_bin/hyphactl" "$perf_bin/hyphactl" 2>/dev/null || true
    dp_start_sidecar backend-perf-1 "$tmp/backend-perf-1.yaml" hypha.io/service=backend-perf
    dp_start_sidecar web-perf-1 "$tmp/web-perf-1.yaml" hypha.io/service=web-perf
    bin=$debian_bin
    wait_for 20 curl -sf "http://127.0.0.1:$PW_OUT/small"
fi

# ---- haproxy: the same shape, mTLS with its own CA
dp_haproxy_tcp_pair "$NGINX_PORT"

declare -A port=([direct]=$NGINX_PORT [hypha]=$W_OUT [haproxy]=$H_OUT)
declare -A procs=([direct]="" [hypha]="${DP_PID[web-1]} ${DP_PID[backend-1]}" [haproxy]="${HA_PID[out]} ${HA_PID[in]}")
if [ -n "$perf_root" ]; then
    port[hypha-perf]=$PW_OUT
    procs[hypha-perf]="${DP_PID[web-perf-1]} ${DP_PID[backend-perf-1]}"
fi
declare -A rps p50 p99 crps mbs cpu rss errs r1k r10k
for path in "${paths[@]}"; do
    echo "dp.sh: $path" >&2
    p=${port[$path]}
    # shellcheck disable=SC2086
    c0=$([ -z "${procs[$path]}" ] && echo 0 || cpu_ticks ${procs[$path]})
    wrk_run "$p"
    # shellcheck disable=SC2086
    c1=$([ -z "${procs[$path]}" ] && echo 0 || cpu_ticks ${procs[$path]})
    rps[$path]=$RPS p50[$path]=$P50 p99[$path]=$P99 errs[$path]=$ERRS
    cpu[$path]=$(cpu_pct "$c0" "$c1")
    rate_run "$p" 1000
    r1k[$path]="$P50 / $P99 ($GOT/s)"
    rate_run "$p" 10000
    r10k[$path]="$P50 / $P99 ($GOT/s)"
    wrk_run "$p" -H "Connection: close"
    crps[$path]=$RPS
    [ -z "$ERRS" ] || errs[$path]="${errs[$path]} close: $ERRS"
    if [ "$path" = hypha ]; then # full handshakes only, through the inbound without tickets
        wrk_run "$W_OUT_FULL" -H "Connection: close"
        crps_full=$RPS
        [ -z "$ERRS" ] || errs[$path]="${errs[$path]} close (full handshakes): $ERRS"
    fi
    mbs[$path]=$(bulk_mbs "$p")
    # shellcheck disable=SC2086
    rss[$path]=$([ -z "${procs[$path]}" ] && echo - || echo $(($(rss_kib ${procs[$path]}) / 1024)))
done

# ---- policy propagation: from `hyphactl apply` of a MeshTrafficPermission
# on the zone to the first new call through the sidecars that obeys it
echo "dp.sh: MeshTrafficPermission propagation" >&2
now_ms() { echo $(($(date +%s%N) / 1000000)); }
propagation() { # ACTION WANT(1: calls work, 0: they fail): ms until a call agrees
    local t0 got
    t0=$(now_ms)
    dp_mtp web-to-backend backend web "$1"
    while :; do
        got=0
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$W_OUT/small" && got=1
        [ "$got" != "$2" ] || break
        [ $(($(now_ms) - t0)) -lt 10000 ] || { echo 10000; return; }
    done
    echo $(($(now_ms) - t0))
}
deny_ms=() allow_ms=()
for i in 1 2 3 4 5 6 7; do
    deny_ms+=("$(propagation Deny 0)")
    allow_ms+=("$(propagation Allow 1)")
done
resumed=$(dp_metric web-1 'hypha_dp_tls_handshakes_total{direction="outbound",mode="resumed"}')
full=$(dp_metric web-1 'hypha_dp_tls_handshakes_total{direction="outbound",mode="full"}')
prims=$("$bin/hypha-bench-tls-prims" 1)
prim() { awk -v k="$1" '$1 == k { print $2 }' <<<"$prims"; }
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "%s / %s", v[int((NR + 1) / 2)], v[NR]}'; }

machine=$(dp_machine)
{
    echo "Run $(date -u +%Y-%m-%d) on $machine, commit $(git rev-parse --short HEAD 2>/dev/null || echo -)."
    echo "wrk -t2 -c$conns for ${seconds}s per row; one thread per proxy; 64-byte body; bulk is 64 MiB."
    echo "Fixed rates: h2load --h1, 20 connections, ${seconds}s; the rate achieved in brackets."
    echo
    echo "| path | req/s (keep-alive) | p50 ms | p99 ms | new connections/s | bulk MB/s | proxies' CPU % | proxies' RSS MiB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for path in "${paths[@]}"; do
        echo "| $path | ${rps[$path]} | ${p50[$path]} | ${p99[$path]} | ${crps[$path]} | ${mbs[$path]} | $([ "$path" = direct ] && echo - || echo "${cpu[$path]}") | ${rss[$path]} |"
    done
    echo
    echo "New mTLS connections/s through hypha: ${crps[hypha]} with session resumption (the default), ${crps_full} with full handshakes only; HAProxy ${crps[haproxy]}. hypha / haproxy: $(ratio "${crps[hypha]}" "${crps[haproxy]}") resumed, $(ratio "$crps_full" "${crps[haproxy]}") full. web-1's outbound handshakes over the run: $resumed resumed, $full full."
    echo
    echo "Linked wolfSSL, one core (hypha-bench-tls-prims): X25519 $(prim kex_x25519) and P-256 $(prim kex_p256) key exchanges/s; AES-128-GCM $(prim aead_aes128gcm) and ChaCha20-Poly1305 $(prim aead_chacha20poly1305) MB/s; AES-NI in the build: $(prim build_aesni). The sidecar prefers $(curl -s "http://${DP_ADMIN[web-1]}/config" | jq -r '"\(.tls.suite) with \(.tls.group) (\(.tls.reason))"')."
    echo
    echo "| path | p50 / p99 ms at 1k req/s | p50 / p99 ms at 10k req/s |"
    echo "| --- | --- | --- |"
    for path in "${paths[@]}"; do
        echo "| $path | ${r1k[$path]} | ${r10k[$path]} |"
    done
    echo
    echo "hypha / haproxy: req/s $(ratio "${rps[hypha]}" "${rps[haproxy]}"), new connections/s $(ratio "${crps[hypha]}" "${crps[haproxy]}"), bulk $(ratio "${mbs[hypha]}" "${mbs[haproxy]}"), RSS $(ratio "${rss[hypha]}" "${rss[haproxy]}")."
    echo "hypha / direct: req/s $(ratio "${rps[hypha]}" "${rps[direct]}"), bulk $(ratio "${mbs[hypha]}" "${mbs[direct]}")."
    if [ -n "$perf_root" ]; then
        pprims=$("$perf_bin/hypha-bench-tls-prims" 1)
        pprim() { awk -v k="$1" '$1 == k { print $2 }' <<<"$pprims"; }
        echo
        echo "hypha-perf (wolfSSL from $perf_root: AES-NI in the build $(pprim build_aesni); AES-128-GCM $(pprim aead_aes128gcm), ChaCha20-Poly1305 $(pprim aead_chacha20poly1305) MB/s; X25519 $(pprim kex_x25519), P-256 $(pprim kex_p256) key exchanges/s; it prefers $(curl -s "http://${DP_ADMIN[web-perf-1]}/config" | jq -r '"\(.tls.suite) with \(.tls.group)"')) / haproxy: req/s $(ratio "${rps[hypha-perf]}" "${rps[haproxy]}"), new connections/s $(ratio "${crps[hypha-perf]}" "${crps[haproxy]}"), bulk $(ratio "${mbs[hypha-perf]}" "${mbs[haproxy]}"), RSS $(ratio "${rss[hypha-perf]}" "${rss[haproxy]}"); hypha-perf / hypha (Debian's wolfSSL): bulk $(ratio "${mbs[hypha-perf]}" "${mbs[hypha]}")."
    fi
    echo
    echo "MeshTrafficPermission, from \`hyphactl apply\` on the zone to the first new call that obeys it (7 times each; median / max ms, a call is a new curl): Deny $(stats "${deny_ms[@]}"), Allow $(stats "${allow_ms[@]}")."
    for path in "${paths[@]}"; do
        [ -z "${errs[$path]}" ] || echo "wrk reported for $path: ${errs[$path]}"
    done
} >"$tmp/results.md"
cat "$tmp/results.md"
[ "$write" = 0 ] || bench_write_section "$readme" dp "$tmp/results.md"
