#!/usr/bin/env bash
# What strangers cost: the memory a control plane gives to connections that
# never authenticate (the security issue's finding 8). A Release
# hypha-global is held by N HTTP connections that announce a 1 MiB body and
# send most of it without a token, a Release standalone hypha-zone by N
# websocket connections that each start a 4 MiB frame before any Hello
# (hypha-dp-probe partial) and by N silent ones (idle). The baseline is the
# same process's RSS before, in the same run. Rewrites the results:hostile
# section of bench/README.md.
#
# usage: bench/hostile.sh [--no-write] [--conns N]
#   --no-write  print the results, leave README.md alone
#   --conns N   connections per attack (HYPHA_BENCH_HOSTILE_CONNS, default 600)
set -euo pipefail
write=1
conns=${HYPHA_BENCH_HOSTILE_CONNS:-600}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --conns) conns=${2:?}; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hostile.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$conns" in '' | *[!0-9]* | 0) echo "hostile.sh: --conns must be a positive integer" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. deploy/local/deps.sh
. deploy/local/ports.sh
. bench/lib.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES python3 curl
build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target hypha-global hypha-zone hypha-dp-probe >/dev/null
bin=$root/$build/bin
tmp=$(mktemp -d)
pids=()
trap bench_cleanup EXIT
ulimit -n 65536 2>/dev/null || true

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
wait_log() { # FILE PATTERN
    local i
    for ((i = 0; i < 400; i++)); do grep -q "$2" "$1" && return 0; sleep 0.05; done
    echo "hostile.sh: timed out waiting for '$2' in $1" >&2
    return 1
}

# ---- the global CP's HTTP API
# loopback trust off: every request here must carry the token, as a
# remote client's would
"$bin/hypha-global" --data-dir "$tmp/g" --api-address 127.0.0.1:0 --kds-address 127.0.0.1:0 \
    --api-localhost-is-admin=false --api-max-pending-connections "$conns" >"$tmp/g.log" 2>&1 &
gpid=$!
pids+=("$gpid")
wait_log "$tmp/g.log" 'API listening on http://'
gport=$(grep -o 'API listening on http://[^ ]*' "$tmp/g.log" | sed 's/.*://')
g_idle=$(rss_mib "$gpid")
g_peak=$(python3 - "$gport" "$conns" "$gpid" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) / 1024
socks, peak = [], 0.0
head = (b"POST /tokens/zone HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1048576\r\n\r\n")
chunk = b"x" * 65536
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(head)
        socks.append(s)
    except OSError:
        pass
for _ in range(15):  # 960 KiB each, as far as the server reads
    for s in socks:
        try:
            s.setblocking(False)
            s.send(chunk)
        except OSError:
            pass
    peak = max(peak, rss())
    time.sleep(0.1)
peak = max(peak, rss())
for s in socks:
    s.close()
print(f"{peak:.1f}")
PY
)

# ---- the zone's DP server (websockets before Hello)
dp_port=$(hy_free_port)
"$bin/hypha-zone" --zone bench --data-dir "$tmp/z" --api-address 127.0.0.1:0 \
    --dp-address "127.0.0.1:$dp_port" >"$tmp/z.log" 2>&1 &
zpid=$!
pids+=("$zpid")
wait_log "$tmp/z.log" 'API listening on http://'
wait_log "$tmp/z.log" 'DP server listening'
z_idle=$(rss_mib "$zpid")
probe() { # MODE OUT: runs the probe, samples the zone's RSS meanwhile, prints the peak MiB
    local mode=$1 peak=0 r
    "$bin/hypha-dp-probe" "$mode" --url "wss://127.0.0.1:$dp_port" \
        --ca-file "$tmp/z/dp/ca.pem" --count "$conns" --size 4Mi --timeout 30s >"$tmp/$2" 2>&1 &
    local p=$!
    while kill -0 "$p" 2>/dev/null; do
        r=$(rss_mib "$zpid")
        peak=$(awk -v a="$peak" -v b="$r" 'BEGIN {print (b > a) ? b : a}')
        sleep 0.05
    done
    wait "$p" || true
    echo "$peak"
}
z_partial=$(probe partial partial.out)
z_idle_peak=$(probe idle idle.out)

date=$(date -u +%Y-%m-%d)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
body=$tmp/body.md
{
    echo "Machine: $cpu, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $date; Release build; $conns connections per attack."
    echo
    echo "| attack | process | RSS before | RSS peak | per connection |"
    echo "| --- | --- | --- | --- | --- |"
    per() { awk -v a="$1" -v b="$2" -v n="$conns" 'BEGIN {printf "%.1f KiB", (b - a) * 1024 / n}'; }
    echo "| HTTP: 1 MiB body announced, 960 KiB sent, no token | hypha-global | $g_idle MiB | $g_peak MiB | $(per "$g_idle" "$g_peak") |"
    echo "| websocket: a 4 MiB frame started before Hello | hypha-zone | $z_idle MiB | $z_partial MiB | $(per "$z_idle" "$z_partial") |"
    echo "| websocket: silent after the upgrade | hypha-zone | $z_idle MiB | $z_idle_peak MiB | $(per "$z_idle" "$z_idle_peak") |"
    echo
    echo "Before the fix (commit e4c6fc4, measured once by hand with the same attacks): the HTTP attack took 585 MiB at"
    echo "600 connections (about 1 MiB each: bodies were buffered before the token was read), the"
    echo "4 MiB frames 632 MiB at 150 (4.1 MiB each), and silent connections were all held."
} >"$body"
cat "$body"
if [ "$write" = 1 ]; then
    grep -qx '<!-- results:hostile:begin -->' bench/README.md || printf '\n## Hostile peers: what strangers cost\n\n```sh\nbench/hostile.sh          # Release build, rewrite the results:hostile section below\n```\n\n<!-- results:hostile:begin -->\n<!-- results:hostile:end -->\n' >>bench/README.md
    bench_write_section bench/README.md hostile "$body"
fi
