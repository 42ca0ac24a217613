# shellcheck shell=bash
# Shared by the data-plane benchmarks (bench/dp.sh, bench/dp_http.sh):
# the nginx app, a standalone zone and hypha-dp sidecars, a PKI and the
# head of an HAProxy configuration for the HAProxy pair, and the row
# helpers (wrk, h2load, CPU, RSS). Sourced after bench/lib.sh and
# deploy/local/ports.sh; defines functions only. They read the caller's
# tmp (a scratch directory), bin (where hypha-zone, hypha-dp and hyphactl
# are), seconds and conns (a row's duration and wrk connections), and add
# every process they start to the caller's pids array (bench_cleanup stops
# them).
# shellcheck disable=SC2154,SC2034 # reads tmp, bin, seconds, conns, pids; sets variables for the caller

# dp_check_positive PROG NAME...: each variable NAME must hold a positive
# integer; otherwise says so and exits 2.
dp_check_positive() {
    local prog=$1 v
    shift
    for v in "$@"; do
        case "${!v}" in '' | *[!0-9]* | 0) echo "$prog: $v must be a positive integer" >&2; exit 2 ;; esac
    done
}

# dp_build DIR: a Release build without sanitizers of the three binaries
# into DIR (relative to the tree the caller is in); sets bin.
dp_build() {
    cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
    cmake --build "$1" --target hypha-zone hypha-dp hyphactl -j "$(nproc)"
    bin="$(pwd)/$1/bin"
}

# dp_start_nginx [--big] [--h2]: nginx, one worker, serving $tmp/www: a
# 64-byte /small (and a 64 MiB /big with --big) over HTTP/1.1 on
# NGINX_PORT, and with --h2 the same over cleartext HTTP/2 (prior
# knowledge, nginx's `listen ... http2`) on NGINX_H2_PORT.
dp_start_nginx() {
    local big=0 h2=0 a h2_server=""
    for a in "$@"; do
        case "$a" in
        --big) big=1 ;;
        --h2) h2=1 ;;
        *) echo "dp_start_nginx: unknown argument $a" >&2; return 2 ;;
        esac
    done
    mkdir -p "$tmp/www" "$tmp/nginx"
    printf 'hello from the backend, sixty-four bytes of body for the bench\n' >"$tmp/www/small"
    [ "$big" = 0 ] || head -c $((64 << 20)) /dev/urandom >"$tmp/www/big"
    NGINX_PORT=$(hy_free_port)
    if [ "$h2" = 1 ]; then
        NGINX_H2_PORT=$(hy_free_port)
        h2_server="server { listen 127.0.0.1:$NGINX_H2_PORT http2; root $tmp/www; }"
    fi
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
    $h2_server
}
EOF
    nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
    pids+=($!)
    wait_for 10 curl -sf "http://127.0.0.1:$NGINX_PORT/small"
    [ "$h2" = 0 ] || wait_for 10 curl -sf --http2-prior-knowledge "http://127.0.0.1:$NGINX_H2_PORT/small"
}

# dp_start_zone: a standalone zone (zone "bench") and the Mesh "default"
# with builtin mTLS; waits until its CA is issued. Sets ZONE (the API
# URL) and DP_PORT; defines ctl (hyphactl against it).
dp_start_zone() {
    ZONE_LOG=$tmp/zone.log
    DP_PORT=$(hy_free_port)
    "$bin/hypha-zone" --zone bench --data-dir "$tmp/zone" --api-address 127.0.0.1:0 \
        --dp-address "127.0.0.1:$DP_PORT" >"$ZONE_LOG" 2>&1 &
    pids+=($!)
    wait_for 20 grep -q 'API listening on http://' "$ZONE_LOG"
    ZONE=$(grep -o 'API listening on http://[^ ]*' "$ZONE_LOG" | sed 's/API listening on //')
    ctl apply -f - >/dev/null <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
YAML
    wait_for 15 curl -sf "$ZONE/meshes/default/meshissuers/ca-1"
}
ctl() { "$bin/hyphactl" --cp "$ZONE" "$@"; }

# dp_mtp NAME TO FROM ACTION: applies MeshTrafficPermission NAME letting
# (Allow) or not (Deny) service FROM call service TO.
dp_mtp() {
    ctl apply -f - >/dev/null <<YAML
type: MeshTrafficPermission
mesh: default
name: $1
spec:
  targetRef: {kind: MeshService, name: $2}
  from:
    - targetRef: {kind: MeshService, name: $3}
      default: {action: $4}
YAML
}

# dp_dataplane NAME SPEC...: prints a Dataplane on 127.0.0.1 for mesh
# default. Each SPEC is in:PORT:APP_PORT:SERVICE[:PROTOCOL] (an inbound,
# tagged kuma.io/protocol: PROTOCOL when given) or out:PORT:SERVICE.
dp_dataplane() {
    local s f ins="" outs=""
    for s in "${@:2}"; do
        IFS=: read -r -a f <<<"$s"
        case "${f[0]}" in
        in)
            ins+="    - port: ${f[1]}
      servicePort: ${f[2]}
      tags: {kuma.io/service: ${f[3]}${f[4]:+, kuma.io/protocol: ${f[4]}}}
"
            ;;
        out)
            outs+="    - port: ${f[1]}
      tags: {kuma.io/service: ${f[2]}}
"
            ;;
        *) echo "dp_dataplane: bad spec $s" >&2; return 2 ;;
        esac
    done
    printf 'type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n' "$1"
    [ -z "$ins" ] || printf '  inbound:\n%s' "$ins"
    [ -z "$outs" ] || printf '  outbound:\n%s' "$outs"
}

# dp_start_sidecar NAME FILE [TAG...]: hypha-dp for the Dataplane in FILE
# (one worker thread, log level warn, log in $tmp/dp-NAME.log) with a
# token for NAME granting each TAG (KEY=VALUE). Sets DP_PID[NAME] and
# DP_ADMIN[NAME] (its admin address, HOST:PORT).
declare -A DP_PID DP_ADMIN
dp_start_sidecar() {
    local name=$1 file=$2 t targs=()
    for t in "${@:3}"; do targs+=(--tag "$t"); done
    ctl generate dataplane-token --mesh default --name "$name" "${targs[@]}" \
        --valid-for 24h >"$tmp/$name.token"
    DP_ADMIN[$name]=127.0.0.1:$(hy_free_port)
    "$bin/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$tmp/zone/dp/ca.pem" \
        --dataplane-file "$file" --dataplane-token-file "$tmp/$name.token" \
        --admin-address "${DP_ADMIN[$name]}" --workers 1 --log-level warn >"$tmp/dp-$name.log" 2>&1 &
    DP_PID[$name]=$!
    pids+=($!)
}

# dp_metric NAME METRIC: the sum of every sample of METRIC (any labels) on
# sidecar NAME's admin /metrics; prints "absent" when it has none, fails
# when the admin endpoint does not answer.
dp_metric() {
    local text
    text=$(curl -sf --max-time 5 "http://${DP_ADMIN[$1]}/metrics") || return 1
    awk -v m="$2" '
        $1 == m || index($1, m "{") == 1 { s += $NF; n++ }
        END { if (n) printf "%.0f\n", s; else print "absent" }' <<<"$text"
}

# dp_pki: a CA and two ECDSA P-256 certificates signed by it, for the
# HAProxy pair: $pki/ca.pem, $pki/client.pem, $pki/server.pem (cert + key).
dp_pki() {
    pki=$tmp/pki
    mkdir -p "$pki"
    local who
    ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" "${@:2}" 2>/dev/null; }
    ec bench-ca -x509 -days 2 -keyout "$pki/ca.key" -out "$pki/ca.pem"
    for who in client server; do
        ec "$who" -keyout "$pki/$who.key" -out "$pki/$who.csr"
        openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
            -days 2 -out "$pki/$who.crt" 2>/dev/null
        cat "$pki/$who.crt" "$pki/$who.key" >"$pki/$who.pem"
    done
}

# dp_haproxy_head [MODE]: the global and defaults sections both HAProxy
# processes share: one thread, TLS 1.3 only, MODE tcp (default) or http.
dp_haproxy_head() {
    cat <<EOF
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode ${1:-tcp}
    timeout connect 5s
    timeout client 1h
    timeout server 1h
EOF
}

# dp_start_haproxy SIDE FILE: HAProxy in the foreground on config FILE,
# log in $tmp/haproxy-SIDE.log. Sets HA_PID[SIDE].
declare -A HA_PID
dp_start_haproxy() {
    haproxy -f "$2" -db >"$tmp/haproxy-$1.log" 2>&1 &
    HA_PID[$1]=$!
    pids+=($!)
}

# dp_haproxy_http_pair HOP_ALPN [GRPC_APP_PORT]: the HAProxy pair in HTTP
# mode (mTLS with its own CA from dp_pki, http-reuse always): an outbound
# for HTTP/1.1 (H_OUT, its hop speaking HOP_ALPN, e.g. "alpn h2") and one
# for h2c (H_OUT_H2), each to an inbound (H_IN, H_IN_H2) that verifies the
# client and reaches nginx (NGINX_PORT, NGINX_H2_PORT); with GRPC_APP_PORT
# also an h2c outbound H_OUT_GRPC to H_IN_GRPC and that app. Waits until
# the HTTP/1.1 and h2c calls go through.
dp_haproxy_http_pair() {
    local hop_alpn=$1 grpc=${2:-} peer_tls in_tls
    [ -n "${pki:-}" ] || dp_pki
    H_OUT=$(hy_free_port) H_OUT_H2=$(hy_free_port) H_IN=$(hy_free_port) H_IN_H2=$(hy_free_port)
    peer_tls="ssl crt $pki/client.pem ca-file $pki/ca.pem verify required sni str(server)"
    in_tls="ssl crt $pki/server.pem ca-file $pki/ca.pem verify required"
    {
        dp_haproxy_head http
        cat <<EOF
frontend outbound
    bind 127.0.0.1:$H_OUT
    default_backend peer
frontend outbound_h2
    bind 127.0.0.1:$H_OUT_H2 proto h2
    default_backend peer_h2
backend peer
    http-reuse always
    server peer 127.0.0.1:$H_IN $peer_tls $hop_alpn
backend peer_h2
    http-reuse always
    server peer 127.0.0.1:$H_IN_H2 $peer_tls alpn h2
EOF
    } >"$tmp/haproxy-out.cfg"
    {
        dp_haproxy_head http
        cat <<EOF
frontend inbound
    bind 127.0.0.1:$H_IN $in_tls alpn h2,http/1.1
    default_backend app
frontend inbound_h2
    bind 127.0.0.1:$H_IN_H2 $in_tls alpn h2
    default_backend app_h2
backend app
    http-reuse always
    server app 127.0.0.1:$NGINX_PORT
backend app_h2
    http-reuse always
    server app 127.0.0.1:$NGINX_H2_PORT proto h2
EOF
    } >"$tmp/haproxy-in.cfg"
    if [ -n "$grpc" ]; then
        H_OUT_GRPC=$(hy_free_port) H_IN_GRPC=$(hy_free_port)
        cat >>"$tmp/haproxy-out.cfg" <<EOF
frontend outbound_grpc
    bind 127.0.0.1:$H_OUT_GRPC proto h2
    default_backend peer_grpc
backend peer_grpc
    http-reuse always
    server peer 127.0.0.1:$H_IN_GRPC $peer_tls alpn h2
EOF
        cat >>"$tmp/haproxy-in.cfg" <<EOF
frontend inbound_grpc
    bind 127.0.0.1:$H_IN_GRPC $in_tls alpn h2
    default_backend app_grpc
backend app_grpc
    http-reuse always
    server app 127.0.0.1:$grpc proto h2
EOF
    fi
    dp_start_haproxy out "$tmp/haproxy-out.cfg"
    dp_start_haproxy in "$tmp/haproxy-in.cfg"
    wait_for 10 curl -sf "http://127.0.0.1:$H_OUT/small"
    wait_for 10 curl -sf --http2-prior-knowledge "http://127.0.0.1:$H_OUT_H2/small"
}

# dp_haproxy_tcp_pair APP_PORT: the HAProxy pair in TCP mode, as the
# sidecars are: an outbound listener relaying over mTLS (its own CA, from
# dp_pki) to an inbound one that verifies the client and relays to
# APP_PORT. Sets H_OUT and H_IN and waits until a call goes through.
dp_haproxy_tcp_pair() {
    [ -n "${pki:-}" ] || dp_pki
    H_OUT=$(hy_free_port) H_IN=$(hy_free_port)
    {
        dp_haproxy_head tcp
        cat <<EOF
frontend outbound
    bind 127.0.0.1:$H_OUT
    default_backend peer
backend peer
    server peer 127.0.0.1:$H_IN ssl crt $pki/client.pem ca-file $pki/ca.pem verify required sni str(server)
EOF
    } >"$tmp/haproxy-out.cfg"
    {
        dp_haproxy_head tcp
        cat <<EOF
frontend inbound
    bind 127.0.0.1:$H_IN ssl crt $pki/server.pem ca-file $pki/ca.pem verify required
    default_backend app
backend app
    server app 127.0.0.1:$1
EOF
    } >"$tmp/haproxy-in.cfg"
    local side
    for side in out in; do
        dp_start_haproxy "$side" "$tmp/haproxy-$side.cfg"
    done
    wait_for 10 curl -sf "http://127.0.0.1:$H_OUT/small"
}

# ---- measuring
# cpu_ticks PID...: utime + stime, summed
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
# cpu_pct TICKS_BEFORE TICKS_AFTER: CPU % over a row of $seconds
cpu_pct() {
    awk -v d=$(($2 - $1)) -v t="$(getconf CLK_TCK)" -v s="$seconds" 'BEGIN {printf "%.0f", 100 * d / t / s}'
}
# rss_kib PID...: summed VmRSS
rss_kib() {
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    done
    echo "$t"
}
# wrk_run PORT [ARGS...]: wrk -t2 on /small for the row; sets RPS P50 P99
# (ms), REQS (requests completed) and ERRS (wrk's error lines, or empty)
wrk_run() {
    local port=$1 out
    shift
    out=$(wrk -t2 -c"$conns" -d"${seconds}s" --latency "$@" "http://127.0.0.1:$port/small")
    RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    REQS=$(awk '/requests in/ {print $1; exit}' <<<"$out")
    P50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    P99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        ERRS=$(grep "Non-2xx\|Socket errors" <<<"$out" | tr -s ' ' | paste -sd';')
    else
        ERRS=""
    fi
}
# log_pcts LOG: "P50 P99" in ms from an h2load --log-file (µs, 3rd column)
log_pcts() {
    cut -f3 "$1" | sort -n | awk '{v[NR] = $1} END {
        if (!NR) { print "? ?"; exit }
        printf "%.3f %.3f\n", v[int(NR * 0.5 + 0.5)] / 1000, v[int(NR * 0.99 + 0.5)] / 1000 }'
}
# rate_run PORT RATE [CONNS]: small requests at RATE/s for the row's
# duration (h2load, HTTP/1.1, CONNS connections, default 20, each paced at
# RATE/CONNS: h2load fires them on one beat, so 20 send together); sets
# P50 P99 (ms) and GOT (requests/s achieved)
rate_run() {
    local port=$1 rate=$2 c=${3:-20} log=$tmp/h2load.log
    rm -f "$log"
    h2load --h1 -c "$c" --rps $((rate / c)) -D "$seconds" --log-file="$log" \
        "http://127.0.0.1:$port/small" >/dev/null 2>&1 || true
    GOT=$(awk -v s="$seconds" 'END {printf "%.0f", NR / s}' "$log")
    read -r P50 P99 < <(log_pcts "$log")
    # HYPHA_BENCH_KEEP_LOGS=DIR keeps each row's per-request log (h2load
    # --log-file: start µs, status, duration µs) for finding where the tail is
    if [ -n "${HYPHA_BENCH_KEEP_LOGS:-}" ]; then
        mkdir -p "$HYPHA_BENCH_KEEP_LOGS"
        cp "$log" "$HYPHA_BENCH_KEEP_LOGS/h2load-$port-$rate-$c.log"
    fi
}
bulk_mbs() { # PORT: median MB/s of three 64 MiB downloads
    local port=$1 i
    for i in 1 2 3; do
        curl -s -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$port/big"
    done | sort -n | sed -n 2p | awk '{printf "%.0f", $1 / 1e6}'
}
# ratio A B: A / B to two decimals, "-" when B is not positive
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# dp_machine: "N cores, CPU model, M GiB"
dp_machine() {
    echo "$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 1024)) GiB"
}
