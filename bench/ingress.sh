#!/usr/bin/env bash
# The zone-ingress benchmark, on loopback, everything in one run:
#
# 1. The ingress's relay against a direct connection: h2load (HTTP/1.1 over
#    TLS, SNI raw.default.mesh) to an HTTPS nginx, straight or through
#    hypha-ingress, which reads the ClientHello and relays the ciphertext,
#    once per --relay mode (adaptive, the default; splice; copy), each with
#    one relay thread, adaptive again with two, and through HAProxy in TCP
#    mode (one thread) for a reference relay.
#    Requests/s flat out over kept-alive connections, p50/p99 at 1k
#    requests/s, a new TLS connection per request, a 64 MiB download, and
#    what the relay costs per request flat out (its CPU time and system
#    calls: figures the load of a shared machine moves less than req/s).
# 2. A call through sidecars within a zone against the same call across
#    zones: wrk and h2load to web's outbound listener; web-2 (zone west)
#    reaches backend-1 (west) directly, web-1 (zone east) through west's
#    ingress. Both end at the same nginx over HTTP.
#
# Rewrites the results:ingress section of bench/README.md.
#
# usage: bench/ingress.sh [--no-write] [--seconds S] [--dir D]
#   --no-write   print the results, leave README.md alone
#   --seconds S  duration of each row (HYPHA_BENCH_INGRESS_SECONDS, default 10)
#   --dir D      where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# Installs missing Debian packages (wrk, nghttp2-client, nginx...) when run as root.
set -euo pipefail

write=1
seconds=${HYPHA_BENCH_INGRESS_SECONDS:-10}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --seconds) seconds=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "ingress.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
case "$seconds" in '' | *[!0-9]* | 0) echo "ingress.sh: --seconds must be a positive integer" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build="build-bench"
readme=bench/README.md
# shellcheck source=deploy/local/deps.sh
. deploy/local/deps.sh
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl jq openssl wrk nghttp2-client nginx haproxy linux-perf

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-global hypha-zone hypha-ingress hypha-dp hyphactl -j "$(nproc)"
bin="$root/$build/bin"

tmp=$(mktemp -d "$dir/hypha-bench-ingress-XXXXXX")
chmod 755 "$tmp"
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bg() { # LOG CMD...: start in the background, pid into pids
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    pids+=($!)
}
url_in() { grep -o "$2 on [a-z]*://[^ ]*" "$1" | tail -n 1 | sed "s/$2 on //"; }

# ---- nginx: HTTP for the sidecars, HTTPS for the raw relay rows
mkdir -p "$tmp/www" "$tmp/nginx"
printf 'hello from the backend, sixty-four bytes of body for the bench\n' >"$tmp/www/small"
head -c $((64 << 20)) /dev/urandom >"$tmp/www/big"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=raw \
    -keyout "$tmp/nginx/key.pem" -out "$tmp/nginx/cert.pem" 2>/dev/null
NGINX=$(hy_free_port) NGINX_TLS=$(hy_free_port)
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
    server { listen 127.0.0.1:$NGINX; root $tmp/www; }
    server {
        listen 127.0.0.1:$NGINX_TLS ssl; root $tmp/www;
        ssl_certificate $tmp/nginx/cert.pem; ssl_certificate_key $tmp/nginx/key.pem;
        ssl_protocols TLSv1.3;
    }
}
EOF
bg "$tmp/nginx.log" nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log"
wait_for 10 curl -sfk "https://127.0.0.1:$NGINX_TLS/small"

# ---- a global CP, zones east and west
KDS=$(hy_free_port)
bg "$tmp/global.log" "$bin/hypha-global" --data-dir "$tmp/global" --api-address 127.0.0.1:0 \
    --kds-address "127.0.0.1:$KDS"
wait_for 20 grep -q 'API listening on http://' "$tmp/global.log"
GLOBAL=$(url_in "$tmp/global.log" "API listening")
gctl() { "$bin/hyphactl" --cp "$GLOBAL" "$@"; }
gctl apply -f - >/dev/null <<'YAML'
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
declare -A ZONE DP
for z in east west; do
    gctl generate zone-token --zone "$z" --valid-for 1h >"$tmp/$z.token"
    DP[$z]=$(hy_free_port)
    bg "$tmp/zone-$z.log" "$bin/hypha-zone" --zone "$z" --data-dir "$tmp/zone-$z" \
        --api-address 127.0.0.1:0 --dp-address "127.0.0.1:${DP[$z]}" \
        --global-address "wss://127.0.0.1:$KDS" --global-ca-file "$tmp/global/kds/ca.pem" \
        --zone-token-file "$tmp/$z.token"
    wait_for 20 grep -q 'API listening on http://' "$tmp/zone-$z.log"
    ZONE[$z]=$(url_in "$tmp/zone-$z.log" "API listening")
    wait_for 20 curl -sf "${ZONE[$z]}/meshes/default/meshissuers/ca-1"
done
zctl() { local z=$1; shift; "$bin/hyphactl" --cp "${ZONE[$z]}" "$@"; }

# ---- west: backend-1 before nginx, web-2 calling it, an ingress
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
start_dp() { # NAME SERVICE ZONE PORT APP_PORT OUT_PORT
    zctl "$3" generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 1h >"$tmp/$1.token"
    bg "$tmp/dp-$1.log" "$bin/hypha-dp" run --cp-address "wss://127.0.0.1:${DP[$3]}" \
        --ca-cert-file "$tmp/zone-$3/dp/ca.pem" --dataplane-file "$tmp/dp.yaml" \
        --dataplane-token-file "$tmp/$1.token" \
        --dataplane-var "name=$1,service=$2,port=$4,app_port=$5,out_port=$6" \
        --admin-address 127.0.0.1:0 --workers 1 --log-level warn
    DP_PID[$1]=${pids[-1]}
}
W1_OUT=$(hy_free_port) W2_OUT=$(hy_free_port) ING=$(hy_free_port)
start_dp backend-1 backend west "$(hy_free_port)" "$NGINX" "$(hy_free_port)"
start_dp web-2 web west "$(hy_free_port)" "$(hy_free_port)" "$W2_OUT"
start_dp web-1 web east "$(hy_free_port)" "$(hy_free_port)" "$W1_OUT"
# the relay rows' endpoint: a Dataplane whose inbound is nginx's HTTPS port
zctl west apply -f - >/dev/null <<YAML
type: Dataplane
mesh: default
name: raw
networking:
  address: 127.0.0.1
  inbound:
    - port: $NGINX_TLS
      tags: {kuma.io/service: raw}
YAML
cat >"$tmp/ingress.yaml" <<YAML
type: ZoneIngress
name: ingress-west
networking: {address: 127.0.0.1, port: $ING, advertisedAddress: 127.0.0.1, advertisedPort: $ING}
YAML
zctl west generate zone-ingress-token --name ingress-west --valid-for 1h >"$tmp/ingress.token"
# everything here is on loopback, endpoints too: the one setup the ingress
# refuses by default (security finding 4) and --allow-local-endpoints is for.
# One relay thread, as nginx and HAProxy here have one: on two cores that
# h2load, nginx and the relay share, a second thread mostly adds context
# switches (the "2 workers" row shows it).
start_ingress() { # [ARGS]: sets ING_PID
    bg "$tmp/ingress.log" "$bin/hypha-ingress" run --cp-address "wss://127.0.0.1:${DP[west]}" \
        --ca-cert-file "$tmp/zone-west/dp/ca.pem" --ingress-file "$tmp/ingress.yaml" \
        --token-file "$tmp/ingress.token" --admin-address 127.0.0.1:0 --log-level warn \
        --allow-local-endpoints --workers "${ING_WORKERS:-1}" "$@"
    ING_PID=${pids[-1]}
}
start_ingress
wait_for 20 curl -sf "http://127.0.0.1:$W2_OUT/small"
wait_for 30 curl -sf "http://127.0.0.1:$W1_OUT/small"
wait_for 20 curl -sfk --resolve "raw.default.mesh:$ING:127.0.0.1" "https://raw.default.mesh:$ING/small"

# ---- measuring
# with_hosts CMD...: CMD in a mount namespace of its own where /etc/hosts
# says raw.default.mesh is 127.0.0.1 (h2load sends the URL's host as SNI
# and has no flag for another); the machine's /etc/hosts is untouched
printf '127.0.0.1 localhost raw.default.mesh\n' >"$tmp/hosts"
with_hosts() { unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$tmp/hosts" "$@"; }
# url PORT SNI: https://SNI:PORT/small, or http://127.0.0.1:PORT/small when SNI is -
url() { if [ "$2" = - ]; then echo "http://127.0.0.1:$1/small"; else echo "https://$2:$1/small"; fi; }
# h2 PORT SNI RATE [ARGS]: h2load over HTTP/1.1 (TLS with SNI unless it is
# -), 20 connections, RATE requests/s in all (0: flat out); sets RPS P50 P99
h2() {
    local port=$1 sni=$2 rate=$3 log=$tmp/h2load.log extra=()
    shift 3
    rm -f "$log"
    [ "$rate" = 0 ] || extra+=(--rps $((rate / 20)))
    with_hosts h2load --h1 -c 20 -D "$seconds" --log-file="$log" "${extra[@]}" "$@" \
        "$(url "$port" "$sni")" >/dev/null 2>&1 || true
    [ -f "$log" ] || { echo "ingress.sh: h2load wrote no log for $(url "$port" "$sni")" >&2; exit 1; }
    RPS=$(awk -v s="$seconds" '$2 == 200 {n++} END {printf "%.0f", n / s}' "$log")
    read -r P50 P99 < <(awk '$2 == 200 {print $3}' "$log" | sort -n | awk '{v[NR] = $1} END {
        if (!NR) { print "? ?"; exit }
        printf "%.3f %.3f\n", v[int(NR * 0.5 + 0.5)] / 1000, v[int(NR * 0.99 + 0.5)] / 1000 }')
}
# new connections per second: one request per connection
# (wrk: h2load does not reconnect after Connection: close)
h2_new() { # PORT SNI
    local out
    out=$(with_hosts wrk -t2 -c32 -d"${seconds}s" -H "Connection: close" "$(url "$1" "$2")")
    awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out"
}
bulk() { # URL [CURL ARGS]: median MB/s of three 64 MiB downloads
    local u=$1 i
    shift
    for i in 1 2 3; do curl -sk -o /dev/null -w '%{speed_download}\n' "$@" "$u"; done |
        sort -n | sed -n 2p | awk '{printf "%.0f", $1 / 1e6}'
}
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

declare -A r_rps r_p50 r_p99 r_1k r_new r_bulk r_cpu r_sys
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
relay_rows() { # PATH [RELAY_PID PORT]
    local path=$1 pid=${2:-} port=${3:-$NGINX_TLS} t0 sys=""
    echo "ingress.sh: relay rows, $path" >&2
    [ -z "$pid" ] || t0=$(ticks "$pid")
    if [ -n "$pid" ] && command -v perf >/dev/null; then
        perf stat -e raw_syscalls:sys_enter -x, -o "$tmp/perf.out" -p "$pid" -- sleep "$seconds" 2>/dev/null &
        sys=$!
    fi
    h2 "$port" raw.default.mesh 0
    r_rps[$path]=$RPS r_p50[$path]=$P50 r_p99[$path]=$P99
    r_cpu[$path]=- r_sys[$path]=-
    if [ -n "$pid" ]; then
        r_cpu[$path]=$(awk -v t=$(($(ticks "$pid") - t0)) -v hz="$(getconf CLK_TCK)" -v n=$((RPS * seconds)) \
            'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
    fi
    if [ -n "$sys" ]; then
        wait "$sys" || true
        r_sys[$path]=$(awk -F, -v n=$((RPS * seconds)) '/sys_enter/ && n > 0 { printf "%.1f", $1 / n }' "$tmp/perf.out")
        [ -n "${r_sys[$path]}" ] || r_sys[$path]=-
    fi
    h2 "$port" raw.default.mesh 1000
    r_1k[$path]="$P50 / $P99"
    r_new[$path]=$(h2_new "$port" raw.default.mesh)
    r_bulk[$path]=$(bulk "https://raw.default.mesh:$port/big" --resolve "raw.default.mesh:$port:127.0.0.1")
}
relay_rows direct
relay_rows adaptive "$ING_PID" "$ING"
ING_RSS=$(rss_mib "$ING_PID")

echo "ingress.sh: intra- and cross-zone calls" >&2
declare -A c_rps c_p50 c_p99 c_1k c_new
for path in intra cross; do
    port=$W2_OUT
    [ "$path" = intra ] || port=$W1_OUT
    out=$(wrk -t2 -c32 -d"${seconds}s" --latency "http://127.0.0.1:$port/small")
    c_rps[$path]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    c_p50[$path]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    c_p99[$path]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    h2 "$port" - 1000
    c_1k[$path]="$P50 / $P99"
    c_new[$path]=$(h2_new "$port" -)
done

# the same relay splicing, then copying, all the way; then adaptive with
# two threads
for mode in splice copy adaptive-2; do
    kill "$ING_PID"
    wait "$ING_PID" 2>/dev/null || true
    ING_WORKERS=1
    [ "$mode" != adaptive-2 ] || ING_WORKERS=2
    start_ingress "--relay=${mode%-2}"
    wait_for 20 curl -sfk --resolve "raw.default.mesh:$ING:127.0.0.1" "https://raw.default.mesh:$ING/small"
    relay_rows "$mode" "$ING_PID" "$ING"
done
# a reference relay: HAProxy in TCP mode, one thread
relays="direct adaptive splice copy adaptive-2"
if command -v haproxy >/dev/null; then
    HAP=$(hy_free_port)
    printf 'global\n    nbthread 1\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nfrontend f\n    bind 127.0.0.1:%s\n    default_backend b\nbackend b\n    server s1 127.0.0.1:%s\n' \
        "$HAP" "$NGINX_TLS" >"$tmp/haproxy.cfg"
    bg "$tmp/haproxy.log" haproxy -f "$tmp/haproxy.cfg" -db
    wait_for 10 curl -sfk --resolve "raw.default.mesh:$HAP:127.0.0.1" "https://raw.default.mesh:$HAP/small"
    relay_rows haproxy "${pids[-1]}" "$HAP"
    relays+=" haproxy"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }
machine="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 1024)) GiB"
{
    echo "Run $(date -u +%Y-%m-%d) on $machine, commit $(git rev-parse --short HEAD 2>/dev/null || echo -)."
    echo "${seconds}s per row; h2load --h1 -c20 (flat out, and paced to 1k requests/s); wrk -t2 -c32 (calls; new connections with Connection: close); 64-byte body; bulk is 64 MiB."
    echo
    echo "| relay (TLS to nginx) | req/s | p50 ms | p99 ms | p50 / p99 ms at 1k req/s | new TLS connections/s | bulk MB/s | relay CPU µs / req | relay syscalls / req |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for path in $relays; do
        label=$path
        case $path in
        adaptive | splice | copy) label="ingress --relay=$path" ;;
        adaptive-2) label="ingress --relay=adaptive, 2 workers" ;;
        haproxy) label="HAProxy, TCP mode, 1 thread" ;;
        esac
        echo "| $label | ${r_rps[$path]} | ${r_p50[$path]} | ${r_p99[$path]} | ${r_1k[$path]} | ${r_new[$path]} | ${r_bulk[$path]} | ${r_cpu[$path]} | ${r_sys[$path]} |"
    done
    echo
    echo "ingress (adaptive) / direct: req/s $(ratio "${r_rps[adaptive]}" "${r_rps[direct]}"), new connections/s $(ratio "${r_new[adaptive]}" "${r_new[direct]}"), bulk $(ratio "${r_bulk[adaptive]}" "${r_bulk[direct]}"); added p50 at 1k req/s $(diff_ms "${r_1k[adaptive]%% *}" "${r_1k[direct]%% *}") ms; splice / copy: bulk $(ratio "${r_bulk[splice]}" "${r_bulk[copy]}"), req/s $(ratio "${r_rps[splice]}" "${r_rps[copy]}"). The ingress's RSS after the adaptive rows: $ING_RSS MiB."
    echo
    echo "| call through sidecars | req/s (wrk) | p50 ms | p99 ms | p50 / p99 ms at 1k req/s | new connections/s |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for path in intra cross; do
        echo "| $path-zone | ${c_rps[$path]} | ${c_p50[$path]} | ${c_p99[$path]} | ${c_1k[$path]} | ${c_new[$path]} |"
    done
    echo
    echo "cross / intra: req/s $(ratio "${c_rps[cross]}" "${c_rps[intra]}"), new connections/s $(ratio "${c_new[cross]}" "${c_new[intra]}"); added p50 at 1k req/s $(diff_ms "${c_1k[cross]%% *}" "${c_1k[intra]%% *}") ms."
} >"$tmp/results.md"
cat "$tmp/results.md"
[ "$write" = 0 ] || bench_write_section "$readme" ingress "$tmp/results.md"
