#!/usr/bin/env bash
# Federated: a policy written on the global CP until the last simulated
# sidecar of a zone acks the config that carries it. One hypha-global,
# --zones real hypha-zone processes federated with it (mesh default, mTLS,
# each zone's CA signed by the global CP over KDS), and one hypha-dp-sim per
# zone holding --sidecars real DP sessions (real tokens and CSRs). The
# simulator of zone-1 PUTs a MeshTrafficPermission on the GLOBAL CP
# (--put-api) --changes times, each after the previous one reached all its
# sessions, and times each from the moment the global's API answered until
# the last of its sessions acked the config carrying it; every write also
# reaches the other zones, whose simulators hold their sessions and ack
# (each of them made one write of its own at the start, then waits for a
# restart that never comes: hypha-dp-sim has no other way to hold). So the
# figure is "one global write until the last sidecar of a zone acks, while
# every zone does the same work". With --concurrent every simulator writes
# instead, all at once: a write then travels while up to --zones - 1
# others do, a much heavier load. Readiness throughout, no sleeps.
#
# usage: bench/kds_federated.sh [--zones N] [--sidecars N] [--changes N] [--concurrent]
#                               [--services S] [--outbounds K] [--dir D]
#   --zones N      federated zones (default 10)
#   --sidecars N   simulated sidecars per zone (default 100)
#   --changes N    measured global writes (default 20; per simulator with --concurrent)
#   --services S   services per zone (default 10); --outbounds K per sidecar (default 2)
#   --dir D        where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# HYPHA_BENCH_BUILD names the build directory (default build-bench, Release).
# Prints a markdown table; writes nothing else.
set -euo pipefail

zones=10
sidecars=100
changes=20
concurrent=0
services=10
outbounds=2
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --zones) zones=${2:?}; shift ;;
    --sidecars) sidecars=${2:?}; shift ;;
    --changes) changes=${2:?}; shift ;;
    --concurrent) concurrent=1 ;;
    --services) services=${2:?}; shift ;;
    --outbounds) outbounds=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "kds_federated.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
for v in zones sidecars changes services; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "kds_federated.sh: --$v must be a positive integer" >&2; exit 2 ;; esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${HYPHA_BENCH_BUILD:-build-bench}
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-global hypha-zone hyphactl hypha-dp-sim -j "$(nproc)" >/dev/null
bin="$root/$build/bin"
command -v jq >/dev/null || { echo "kds_federated.sh: jq is required" >&2; exit 2; }

tmp=$(mktemp -d "$dir/hypha-bench-kds-fed-XXXXXX")
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)"

die() {
    echo "kds_federated.sh: $*" >&2
    exit 1
}
# cpu_ms PID...: user + system milliseconds of the processes, summed
cpu_ms() {
    local p t=0 hz
    hz=$(getconf CLK_TCK)
    for p in "$@"; do
        t=$((t + $(awk -v hz="$hz" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%d", (f[12] + f[13]) * 1000 / hz }' "/proc/$p/stat")))
    done
    echo "$t"
}
url_in() { grep -o "$2 [a-z]*://[^ ]*" "$1" | tail -n 1 | sed 's/.* //'; }

# ---- the global CP and its zones ---------------------------------------------------
"$bin/hypha-global" --data-dir "$tmp/global" --api-address 127.0.0.1:0 --kds-address 127.0.0.1:0 \
    >"$tmp/global.log" 2>&1 &
G_PID=$!
pids+=("$G_PID")
wait_for 20 grep -q 'KDS listening on wss://' "$tmp/global.log" || die "hypha-global did not start"
G_URL=$(url_in "$tmp/global.log" "API listening on")
G_KDS=$(url_in "$tmp/global.log" "KDS listening on")
wait_for 10 curl -fsS -o /dev/null "$G_URL/ready"
"$bin/hyphactl" --cp "$G_URL" apply -f tests/data/resources/mesh.yaml >/dev/null
declare -a Z_PID Z_API Z_DP
for ((k = 1; k <= zones; k++)); do
    "$bin/hyphactl" --cp "$G_URL" generate zone-token --zone "zone-$k" --valid-for 24h >"$tmp/zone-$k.token"
    Z_DP[k]=$(hy_free_port)
    "$bin/hypha-zone" --zone "zone-$k" --data-dir "$tmp/zone-$k" --api-address 127.0.0.1:0 \
        --dp-address "127.0.0.1:${Z_DP[k]}" --global-address "$G_KDS" \
        --global-ca-file "$tmp/global/kds/ca.pem" --zone-token-file "$tmp/zone-$k.token" \
        >"$tmp/zone-$k.log" 2>&1 &
    Z_PID[k]=$!
    pids+=("${Z_PID[k]}")
done
for ((k = 1; k <= zones; k++)); do
    wait_for 30 grep -q 'API listening on http://' "$tmp/zone-$k.log" || die "zone-$k did not start"
    Z_API[k]=$(url_in "$tmp/zone-$k.log" "API listening on")
    # the mesh came down over KDS and the zone's CA is signed: sidecars can get certificates
    wait_for 60 curl -fsS -o /dev/null "${Z_API[k]}/meshes/default/meshissuers/ca-1" ||
        die "zone-$k has no CA for mesh default: $(tail -n 3 "$tmp/zone-$k.log")"
done

# ---- one simulator per zone ------------------------------------------------------
declare -a S_PID
# sim K CHANGES NAME [ARGS...]: zone-K's simulator in the background
sim() {
    local k=$1 n=$2 name=$3
    shift 3
    "$bin/hypha-dp-sim" --cp-address "wss://127.0.0.1:${Z_DP[k]}" --ca-cert-file "$tmp/zone-$k/dp/ca.pem" \
        --api "${Z_API[k]}" --put-api "$G_URL" --count "$sidecars" --services "$services" \
        --outbounds "$outbounds" --changes "$n" --change-name "$name" --zone-pid "${Z_PID[k]}" \
        --ramp 64 --trace "$@" >"$tmp/sim-$k.out" 2>"$tmp/sim-$k.err" &
    S_PID[k]=$!
    pids+=("${S_PID[k]}")
}
if [ "$concurrent" = 1 ]; then
    echo "kds_federated.sh: $zones zones x $sidecars simulated sidecars, $changes global writes each, all at once..." >&2
    for ((k = 1; k <= zones; k++)); do sim "$k" "$changes" "fed-zone-$k" --timeout 1800s; done
    measured=$(seq 1 "$zones")
else
    echo "kds_federated.sh: $zones zones x $sidecars simulated sidecars, $changes global writes one at a time..." >&2
    for ((k = 2; k <= zones; k++)); do sim "$k" 1 "hold-zone-$k" --restarts 1 --timeout 3600s; done
    for ((k = 2; k <= zones; k++)); do
        wait_for 600 grep -q '^waiting-for-reconnect ' "$tmp/sim-$k.out" ||
            die "zone-$k's sidecars did not settle: $(tail -n 3 "$tmp/sim-$k.out" "$tmp/sim-$k.err")"
    done
    sim 1 "$changes" fed-write --timeout 1800s
    measured=1
    # CPU is counted from the moment its sessions all have their first config
    wait_for 600 grep -q '^connected ' "$tmp/sim-1.out" || die "zone-1's sidecars did not connect"
fi
g_cpu0=$(cpu_ms "$G_PID")
z_cpu0=$(cpu_ms "${Z_PID[@]}")
for k in $measured; do
    wait "${S_PID[k]}" || die "hypha-dp-sim of zone-$k failed: $(tail -n 3 "$tmp/sim-$k.out" "$tmp/sim-$k.err")"
done
g_cpu=$(($(cpu_ms "$G_PID") - g_cpu0))
z_cpu=$(($(cpu_ms "${Z_PID[@]}") - z_cpu0))
g_rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$G_PID/status")

# every write's time until all of its zone's sessions acked it, all zones together
awk '$1 == "change" { for (i = 2; i <= NF; i++) if ($i ~ /^all_ms=/) { sub(/.*=/, "", $i); print $i } }' \
    $(for k in $measured; do echo "$tmp/sim-$k.out"; done) | sort -g >"$tmp/all.txt"
n=$(wc -l <"$tmp/all.txt")
expect=$changes
[ "$concurrent" = 0 ] || expect=$((zones * changes))
[ "$n" -eq "$expect" ] || die "$n samples, not $expect"
pct() { awk -v p="$1" '{ v[NR] = $1 } END { r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; printf "%.1f", v[r] }' "$tmp/all.txt"; }
cpu_per_change=$(awk '$1 == "zone-cpu" { for (i = 2; i <= NF; i++) if ($i ~ /^per_change_ms=/) { sub(/.*=/, "", $i); s += $i; k++ } } END { if (k) printf "%.0f", s / k; else print "—" }' $(for k in $measured; do echo "$tmp/sim-$k.out"; done))
how="one at a time"
[ "$concurrent" = 0 ] || how="$zones at once"
echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs; commit $(git rev-parse --short HEAD 2>/dev/null || echo ?); Release build."
echo
echo "| zones × simulated sidecars | global writes ($how) | write → last sidecar of its zone acks, p50 ms | p90 ms | p99 ms | max ms | zone CPU / change ms (mean) | all zones' CPU / write ms | global CPU / write ms | global VmRSS MiB | goal p99 ≤ 100 ms |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
p99=$(pct 99)
echo "| $zones × $sidecars | $n | $(pct 50) | $(pct 90) | $p99 | $(tail -n 1 "$tmp/all.txt") | $cpu_per_change | $((z_cpu / n)) | $((g_cpu / n)) | $g_rss | $(awk -v p="$p99" 'BEGIN { if (p <= 100) print "met"; else printf "missed (%.1fx)", p / 100 }') |"
