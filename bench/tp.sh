#!/usr/bin/env bash
# The transparent-proxying benchmark (issue 16), in a network namespace of
# its own, one run, three paths to the same nginx:
#   direct        wrk -> nginx
#   explicit      wrk -> web's declared outbound 127.0.0.1:PORT =mTLS=> backend's sidecar -> nginx
#   transparent   wrk -> http://backend.mesh:8080/: DNS (the sidecar's) gives the VIP,
#                 iptables redirects to web's transparent outbound =mTLS=> the same
# The client (wrk, h2load) runs as another uid, whose traffic the rules
# (written here as `hypha-dp install transparent-proxy` would, for that
# uid only) redirect. Rows: small requests flat out over kept-alive
# connections (requests/s, p50, p99, by wrk), the same at 1k requests/s
# (p50, p99, by h2load --rps) and the latency each sidecar path adds to the
# direct one; then the sidecar's DNS resolver: answers/s and p50/p99 of a
# closed loop of A queries for backend.mesh (hypha-bench-dns, 64 in
# flight), and dnsperf's queries/s beside it when Debian's dnsperf is
# installed. Prints markdown; writes nothing else.
#
# usage: bench/tp.sh [--seconds S] [--connections N] [--dir D]
#   --seconds S      duration of each row (HYPHA_BENCH_TP_SECONDS, default 10)
#   --connections N  wrk connections over 2 threads (HYPHA_BENCH_TP_CONNECTIONS, default 32)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
#   --build B        the build directory (HYPHA_BENCH_TP_BUILD, default build-bench, Release)
# Needs root (a network namespace, iptables); installs missing Debian
# packages (wrk, nghttp2-client, nginx, dnsperf...).
set -euo pipefail

seconds=${HYPHA_BENCH_TP_SECONDS:-10}
conns=${HYPHA_BENCH_TP_CONNECTIONS:-32}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
build=${HYPHA_BENCH_TP_BUILD:-build-bench}
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --build) build=${2:?}; shift ;;
    -h | --help)
        sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "tp.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
APP_UID=65534 # the client's uid: the rules redirect its traffic only

if [ -z "${HY_BENCH_TP_NS:-}" ]; then # the outer run: build, make the namespace, run inside it
    [ "$(id -u)" -eq 0 ] || { echo "tp.sh: run it as root (a network namespace, iptables)" >&2; exit 2; }
    # shellcheck source=deploy/local/deps.sh
    . deploy/local/deps.sh
    # shellcheck disable=SC2086
    hy_install_packages $HY_BUILD_PACKAGES curl jq iptables iproute2 util-linux wrk nghttp2-client \
        nginx dnsperf >&2
    if [ -f "$build/CMakeCache.txt" ]; then
        cmake -S . -B "$build" >/dev/null # as it was configured
    else
        cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
    fi
    cmake --build "$build" --target hypha-zone hypha-dp hyphactl hypha-bench-dns -j "$(nproc)" >&2
    ns=hybtp$$
    ip netns add "$ns"
    mkdir -p "/etc/netns/$ns"
    echo "nameserver 10.78.0.1" >"/etc/netns/$ns/resolv.conf"
    echo "hosts: files dns" >"/etc/netns/$ns/nsswitch.conf"
    rc=0
    ip netns exec "$ns" env HY_BENCH_TP_NS="$ns" bash "$0" --seconds "$seconds" \
        --connections "$conns" --dir "$dir" --build "$build" || rc=$?
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
    exit "$rc"
fi

# ---- inside the namespace
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/dp_lib.sh
. bench/dp_lib.sh
dp_check_positive tp.sh seconds conns
[ "$conns" -ge 2 ] || { echo "tp.sh: --connections must be at least 2" >&2; exit 2; }
bin="$root/$build/bin"
tmp=$(mktemp -d "$dir/hypha-bench-tp-XXXXXX")
chmod 755 "$tmp" # nginx's workers run as another user
pids=()
trap bench_cleanup EXIT

# lo, and a link with an address and a default route, so that the VIPs
# (240.0.0.0/4) are routable until the rules redirect them
ip link set lo up
ip link add hybtp0 type veth peer name hybtp1
ip link set hybtp1 up
ip addr add 10.78.0.1/24 dev hybtp0
ip link set hybtp0 up
ip route add default dev hybtp0

dp_start_nginx
dp_start_zone
dp_mtp web-to-backend backend web Allow
B_IN=$(hy_free_port) W_OUT=$(hy_free_port)
dp_dataplane backend-1 "in:$B_IN:$NGINX_PORT:backend" >"$tmp/backend-1.yaml"
# backend's inbound port is the one the transparent call names (backend.mesh:8080 is
# any port of its VIP; 8080 as in the README)
dp_dataplane web-1 "in:$(hy_free_port):$(hy_free_port):web" "out:$W_OUT:backend" >"$tmp/web-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
HYPHA_TRANSPARENT=true dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"

# the rules, for the client's uid: TCP to anything but loopback to web's
# transparent outbound (15001), DNS to its resolver (15053)
iptables -t nat -A OUTPUT -p tcp -m owner --uid-owner "$APP_UID" ! -d 127.0.0.0/8 \
    -j REDIRECT --to-ports 15001
iptables -t nat -A OUTPUT -p udp --dport 53 -m owner --uid-owner "$APP_UID" \
    -j REDIRECT --to-ports 15053
iptables -t nat -A OUTPUT -p tcp --dport 53 -m owner --uid-owner "$APP_UID" \
    -j REDIRECT --to-ports 15053
app() { setpriv --reuid="$APP_UID" --regid="$APP_UID" --clear-groups "$@"; }
wait_for 20 app curl -sf "http://backend.mesh:8080/small"

declare -A url=([direct]="http://127.0.0.1:$NGINX_PORT/small"
    [explicit]="http://127.0.0.1:$W_OUT/small" [transparent]="http://backend.mesh:8080/small")
declare -A rps p50 p99 r50 r99 errs
mkdir -m 777 "$tmp/client" # h2load's logs, written as the client's uid
for path in direct explicit transparent; do
    echo "tp.sh: $path" >&2
    out=$(app wrk -t2 -c"$conns" -d"${seconds}s" --latency "${url[$path]}")
    rps[$path]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    p50[$path]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99[$path]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errs[$path]=$(grep "Non-2xx\|Socket errors" <<<"$out" | tr -s ' ' | paste -sd';' || true)
    log=$tmp/client/h2load-$path.log
    app h2load --h1 -c 20 --rps 50 -D "$seconds" --log-file="$log" "${url[$path]}" >/dev/null 2>&1 || true
    read -r r50[$path] r99[$path] < <(log_pcts "$log")
done
added() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?" || b == "?") print "?"; else printf "%+.3f", a - b }'; }

echo "tp.sh: DNS" >&2
dns=$("$bin/hypha-bench-dns" 127.0.0.1 15053 backend.mesh "$seconds" 64)
dperf="(dnsperf not installed)"
if command -v dnsperf >/dev/null; then
    echo "backend.mesh A" >"$tmp/queries"
    dperf=$(dnsperf -s 127.0.0.1 -p 15053 -d "$tmp/queries" -l "$seconds" -q 64 2>&1 |
        awk '/Queries per second:/ {printf "%.0f", $4}')
fi
loc=$(dp_metric web-1 'hypha_dp_dns_queries_total')

cat <<EOF
Transparent proxying: $(awk -F'=' '$1 == "CMAKE_BUILD_TYPE:STRING" {print $2}' "$build/CMakeCache.txt") build, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(date -u +%Y-%m-%d), ${seconds} s a row, wrk -t2 -c$conns; one worker per sidecar.

| path | req/s | p50 ms | p99 ms | p50 ms @1k/s | p99 ms @1k/s | added p50 @1k/s |
|---|---|---|---|---|---|---|
EOF
for path in direct explicit transparent; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$path" "${rps[$path]}" "${p50[$path]}" \
        "${p99[$path]}" "${r50[$path]}" "${r99[$path]}" \
        "$([ "$path" = direct ] && echo - || added "${r50[$path]}" "${r50[direct]}")"
done
for path in direct explicit transparent; do
    [ -z "${errs[$path]}" ] || echo "($path: ${errs[$path]})"
done
read -r _ n _ aps _ d50 _ d99 _ lost <<<"$dns"
cat <<EOF

| sidecar DNS (UDP, backend.mesh A) | answers/s | p50 ms | p99 ms |
|---|---|---|---|
| hypha-bench-dns, 64 in flight | $aps | $d50 | $d99 |
| dnsperf -q 64 | $dperf | | |

($n answers, $lost lost; the sidecar counted $loc queries)
EOF
