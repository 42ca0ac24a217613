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
# proxies: new mTLS connections/s), bulk download (MB/s), and the two
# proxies' CPU and RSS. Rewrites the results:dp section of bench/README.md.
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
for v in seconds conns; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "dp.sh: $v must be a positive integer" >&2; exit 2 ;; esac
done
[ "$conns" -ge 2 ] || { echo "dp.sh: --connections must be at least 2" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build="build-bench"
readme=bench/README.md

# shellcheck source=deploy/local/deps.sh
. deploy/local/deps.sh
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES libcmocka-dev curl jq openssl wrk nghttp2-client nginx haproxy

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-zone hypha-dp hyphactl -j "$(nproc)"
bin="$root/$build/bin"

tmp=$(mktemp -d "$dir/hypha-bench-dp-XXXXXX")
chmod 755 "$tmp" # nginx's workers run as another user when we are root
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT

# ---- the app: nginx with a small body and a 64 MiB one
mkdir -p "$tmp/www" "$tmp/nginx"
printf 'hello from the backend, sixty-four bytes of body for the bench\n' >"$tmp/www/small"
head -c $((64 << 20)) /dev/urandom >"$tmp/www/big"
NGINX_PORT=$(hy_free_port)
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/nginx; proxy_temp_path $tmp/nginx;
    fastcgi_temp_path $tmp/nginx; uwsgi_temp_path $tmp/nginx; scgi_temp_path $tmp/nginx;
    server { listen 127.0.0.1:$NGINX_PORT; root $tmp/www; }
}
EOF
nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
pids+=($!)
wait_for 10 curl -sf "http://127.0.0.1:$NGINX_PORT/small"

# ---- hypha: a standalone zone and two sidecars
ZONE_LOG=$tmp/zone.log
DP_PORT=$(hy_free_port)
"$bin/hypha-zone" --zone bench --data-dir "$tmp/zone" --api-address 127.0.0.1:0 \
    --dp-address "127.0.0.1:$DP_PORT" >"$ZONE_LOG" 2>&1 &
pids+=($!)
wait_for 20 grep -q 'API listening on http://' "$ZONE_LOG"
ZONE=$(grep -o 'API listening on http://[^ ]*' "$ZONE_LOG" | sed 's/API listening on //')
ctl() { "$bin/hyphactl" --cp "$ZONE" "$@"; }
ctl apply -f - >/dev/null <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
---
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
issuer() { curl -sf "$ZONE/meshes/default/meshissuers/ca-1"; }
wait_for 15 issuer
B_IN=$(hy_free_port) W_IN=$(hy_free_port) W_OUT=$(hy_free_port)
cat >"$tmp/dp.yaml" <<'YAML'
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ port }}
      servicePort: {{ app_port }}
      tags: {kuma.io/service: {{ service }}}
  outbound:
    - port: {{ out_port }}
      tags: {kuma.io/service: backend}
YAML
declare -A DP_PID
start_dp() { # NAME SERVICE PORT APP_PORT OUT_PORT
    ctl generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 24h >"$tmp/$1.token"
    "$bin/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$tmp/zone/dp/ca.pem" \
        --dataplane-file "$tmp/dp.yaml" --dataplane-token-file "$tmp/$1.token" \
        --dataplane-var "name=$1,service=$2,port=$3,app_port=$4,out_port=$5" \
        --admin-address 127.0.0.1:0 --workers 1 --log-level warn >"$tmp/dp-$1.log" 2>&1 &
    DP_PID[$1]=$!
    pids+=($!)
}
start_dp backend-1 backend "$B_IN" "$NGINX_PORT" "$(hy_free_port)"
start_dp web-1 web "$W_IN" "$(hy_free_port)" "$W_OUT"
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"

# ---- haproxy: the same shape, mTLS with its own CA
pki=$tmp/pki
mkdir -p "$pki"
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" "${@:2}" 2>/dev/null; }
ec bench-ca -x509 -days 2 -keyout "$pki/ca.key" -out "$pki/ca.pem"
for who in client server; do
    ec "$who" -keyout "$pki/$who.key" -out "$pki/$who.csr"
    openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 2 -out "$pki/$who.crt" 2>/dev/null
    cat "$pki/$who.crt" "$pki/$who.key" >"$pki/$who.pem"
done
H_OUT=$(hy_free_port) H_IN=$(hy_free_port)
haproxy_cfg() { # NAME: the shared head
    cat <<EOF
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
EOF
}
{
    haproxy_cfg
    cat <<EOF
frontend outbound
    bind 127.0.0.1:$H_OUT
    default_backend peer
backend peer
    server peer 127.0.0.1:$H_IN ssl crt $pki/client.pem ca-file $pki/ca.pem verify required sni str(server)
EOF
} >"$tmp/haproxy-out.cfg"
{
    haproxy_cfg
    cat <<EOF
frontend inbound
    bind 127.0.0.1:$H_IN ssl crt $pki/server.pem ca-file $pki/ca.pem verify required
    default_backend app
backend app
    server app 127.0.0.1:$NGINX_PORT
EOF
} >"$tmp/haproxy-in.cfg"
declare -A HA_PID
for side in out in; do
    haproxy -f "$tmp/haproxy-$side.cfg" -db >"$tmp/haproxy-$side.log" 2>&1 &
    HA_PID[$side]=$!
    pids+=($!)
done
wait_for 10 curl -sf "http://127.0.0.1:$H_OUT/small"

# ---- measuring
ticks=$(getconf CLK_TCK)
cpu_ticks() { # PID...: utime + stime
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
rss_kib() { # PID...: summed VmRSS
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    done
    echo "$t"
}
# wrk_run PORT [ARGS...]: sets RPS P50 P99
wrk_run() {
    local port=$1 out
    shift
    out=$(wrk -t2 -c"$conns" -d"${seconds}s" --latency "$@" "http://127.0.0.1:$port/small")
    RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    P50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    P99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        ERRS=$(grep "Non-2xx\|Socket errors" <<<"$out" | tr -s ' ' | paste -sd';')
    else
        ERRS=""
    fi
}
# rate_run PORT RATE: small requests at RATE/s for the row's duration
# (h2load, HTTP/1.1, 20 connections each paced at RATE/20); sets P50 P99
# (ms) and GOT (requests/s achieved)
rate_run() {
    local port=$1 rate=$2 log=$tmp/h2load.log
    rm -f "$log"
    h2load --h1 -c 20 --rps $((rate / 20)) -D "$seconds" --log-file="$log" \
        "http://127.0.0.1:$port/small" >/dev/null 2>&1 || true
    GOT=$(awk -v s="$seconds" 'END {printf "%.0f", NR / s}' "$log")
    read -r P50 P99 < <(cut -f3 "$log" | sort -n | awk '{v[NR] = $1} END {
        if (!NR) { print "? ?"; exit }
        printf "%.3f %.3f\n", v[int(NR * 0.5 + 0.5)] / 1000, v[int(NR * 0.99 + 0.5)] / 1000 }')
}
bulk_mbs() { # PORT: median MB/s of three 64 MiB downloads
    local port=$1 i
    for i in 1 2 3; do
        curl -s -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$port/big"
    done | sort -n | sed -n 2p | awk '{printf "%.0f", $1 / 1e6}'
}

declare -A port=([direct]=$NGINX_PORT [hypha]=$W_OUT [haproxy]=$H_OUT)
declare -A procs=([direct]="" [hypha]="${DP_PID[web-1]} ${DP_PID[backend-1]}" [haproxy]="${HA_PID[out]} ${HA_PID[in]}")
declare -A rps p50 p99 crps mbs cpu rss errs r1k r10k
for path in direct hypha haproxy; do
    echo "dp.sh: $path" >&2
    p=${port[$path]}
    # shellcheck disable=SC2086
    c0=$([ -z "${procs[$path]}" ] && echo 0 || cpu_ticks ${procs[$path]})
    wrk_run "$p"
    # shellcheck disable=SC2086
    c1=$([ -z "${procs[$path]}" ] && echo 0 || cpu_ticks ${procs[$path]})
    rps[$path]=$RPS p50[$path]=$P50 p99[$path]=$P99 errs[$path]=$ERRS
    cpu[$path]=$(awk -v d=$((c1 - c0)) -v t="$ticks" -v s="$seconds" 'BEGIN {printf "%.0f", 100 * d / t / s}')
    rate_run "$p" 1000
    r1k[$path]="$P50 / $P99 ($GOT/s)"
    rate_run "$p" 10000
    r10k[$path]="$P50 / $P99 ($GOT/s)"
    wrk_run "$p" -H "Connection: close"
    crps[$path]=$RPS
    [ -z "$ERRS" ] || errs[$path]="${errs[$path]} close: $ERRS"
    mbs[$path]=$(bulk_mbs "$p")
    # shellcheck disable=SC2086
    rss[$path]=$([ -z "${procs[$path]}" ] && echo - || echo $(($(rss_kib ${procs[$path]}) / 1024)))
done

# ---- policy propagation: from `hyphactl apply` of a MeshTrafficPermission
# on the zone to the first new call through the sidecars that obeys it
echo "dp.sh: MeshTrafficPermission propagation" >&2
now_ms() { echo $(($(date +%s%N) / 1000000)); }
mtp() { # ACTION
    ctl apply -f - >/dev/null <<YAML
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: $1}
YAML
}
propagation() { # ACTION WANT(1: calls work, 0: they fail): ms until a call agrees
    local t0 got
    t0=$(now_ms)
    mtp "$1"
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
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {printf "%s / %s", v[int((NR + 1) / 2)], v[NR]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
machine="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 1024)) GiB"
{
    echo "Run $(date -u +%Y-%m-%d) on $machine, commit $(git rev-parse --short HEAD 2>/dev/null || echo -)."
    echo "wrk -t2 -c$conns for ${seconds}s per row; one thread per proxy; 64-byte body; bulk is 64 MiB."
    echo "Fixed rates: h2load --h1, 20 connections, ${seconds}s; the rate achieved in brackets."
    echo
    echo "| path | req/s (keep-alive) | p50 ms | p99 ms | new connections/s | bulk MB/s | proxies' CPU % | proxies' RSS MiB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for path in direct hypha haproxy; do
        echo "| $path | ${rps[$path]} | ${p50[$path]} | ${p99[$path]} | ${crps[$path]} | ${mbs[$path]} | $([ "$path" = direct ] && echo - || echo "${cpu[$path]}") | ${rss[$path]} |"
    done
    echo
    echo "| path | p50 / p99 ms at 1k req/s | p50 / p99 ms at 10k req/s |"
    echo "| --- | --- | --- |"
    for path in direct hypha haproxy; do
        echo "| $path | ${r1k[$path]} | ${r10k[$path]} |"
    done
    echo
    echo "hypha / haproxy: req/s $(ratio "${rps[hypha]}" "${rps[haproxy]}"), new connections/s $(ratio "${crps[hypha]}" "${crps[haproxy]}"), bulk $(ratio "${mbs[hypha]}" "${mbs[haproxy]}"), RSS $(ratio "${rss[hypha]}" "${rss[haproxy]}")."
    echo "hypha / direct: req/s $(ratio "${rps[hypha]}" "${rps[direct]}"), bulk $(ratio "${mbs[hypha]}" "${mbs[direct]}")."
    echo
    echo "MeshTrafficPermission, from \`hyphactl apply\` on the zone to the first new call that obeys it (7 times each; median / max ms, a call is a new curl): Deny $(stats "${deny_ms[@]}"), Allow $(stats "${allow_ms[@]}")."
    for path in direct hypha haproxy; do
        [ -z "${errs[$path]}" ] || echo "wrk reported for $path: ${errs[$path]}"
    done
} >"$tmp/results.md"
cat "$tmp/results.md"
[ "$write" = 0 ] || bench_write_section "$readme" dp "$tmp/results.md"
