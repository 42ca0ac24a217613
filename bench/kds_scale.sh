#!/usr/bin/env bash
# What the global CP costs with many zones and their Dataplanes synced up:
# one fresh hypha-global, then --zones probe zones (hypha-kds-probe zones
# --resources, one process, each zone its own TLS websocket) each sending
# --dataplanes Dataplanes up in Changes of --batch. Readiness, not sleeps:
# the probe prints "done" once every zone's last batch was acked, and the
# global's API must then list zones x dataplanes Dataplanes. Then the
# global's memory (/proc/PID/status: VmRSS, RssAnon, RssFile, VmHWM), its
# CPU time, its store on disk, and the time to sync; then, with everything
# stored and every zone connected, --changes policy PUTs fanned out to all
# zones (each PUT after the previous one reached every zone), p50/p99 of
# the last zone's arrival, from the moment the API answered the PUT.
#
# usage: bench/kds_scale.sh [--zones N] [--dataplanes N] [--batch N] [--changes N] [--dir D]
#   --zones N        zones (default 100, at most 1000)
#   --dataplanes N   Dataplanes per zone (default 1000)
#   --batch N        Dataplanes per Changes message (default 500)
#   --changes N      measured policy changes fanned out once synced (default 50; 0: none)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# HYPHA_BENCH_BUILD names the build directory (default build-bench, Release);
# HYPHA_BENCH_GLOBAL another hypha-global binary to measure (a before/after).
# Prints a markdown table; writes nothing else.
set -euo pipefail

zones=100
dps=1000
batch=500
changes=50
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --zones) zones=${2:?}; shift ;;
    --dataplanes) dps=${2:?}; shift ;;
    --batch) batch=${2:?}; shift ;;
    --changes) changes=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "kds_scale.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
for v in zones dps batch; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "kds_scale.sh: --$v must be a positive integer" >&2; exit 2 ;; esac
done
case "$changes" in '' | *[!0-9]*) echo "kds_scale.sh: --changes must be an integer" >&2; exit 2 ;; esac
[ "$zones" -le 1000 ] || { echo "kds_scale.sh: at most 1000 zones" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${HYPHA_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-global hyphactl hypha-kds-probe -j "$(nproc)" >/dev/null
bin="$root/$build/bin"
command -v jq >/dev/null || { echo "kds_scale.sh: jq is required" >&2; exit 2; }

tmp=$(mktemp -d "$dir/hypha-bench-kds-scale-XXXXXX")
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" # a descriptor per zone, in the global CP and in the probe

die() {
    echo "kds_scale.sh: $*" >&2
    exit 1
}
say() { echo "kds_scale.sh: $*" >&2; }
now_ms() { date +%s%3N; }
# mem PID: "VmRSS RssAnon RssFile VmHWM" in kB
mem() {
    awk '/^(VmRSS|RssAnon|RssFile|VmHWM):/ { v[$1] = $2 }
        END { print v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["VmHWM:"] }' "/proc/$1/status"
}
# cpu PID: user + system seconds
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$1/stat"; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
field() { # field FILE EVENT KEY: KEY=value of the last EVENT line
    awk -v e="$2" -v k="$3" '$1 == e { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v = kv[2] } }
        END { print v }' "$1"
}

# ---- the global CP -------------------------------------------------------------
G_LOG=$tmp/global.log
G_DATA=$tmp/global.data
"${HYPHA_BENCH_GLOBAL:-$bin/hypha-global}" --data-dir "$G_DATA" --api-address 127.0.0.1:0 --kds-address 127.0.0.1:0 \
    >"$G_LOG" 2>&1 &
G_PID=$!
pids+=("$G_PID")
wait_for 20 grep -q 'hypha-global .* started' "$G_LOG" || die "hypha-global did not start: $(tail -n 5 "$G_LOG")"
G_URL=$(grep -o 'API listening on http://[^ ]*' "$G_LOG" | tail -n 1 | sed 's/.* //')
G_KDS=$(grep -o 'KDS listening on wss://[^ ]*' "$G_LOG" | tail -n 1 | sed 's/.* //')
wait_for 10 curl -fsS -o /dev/null "$G_URL/ready"
code=$(curl -sS -o "$tmp/mesh.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/yaml' \
    --data-binary @tests/data/resources/mesh.yaml "$G_URL/meshes/default")
[ "$code" = 201 ] || die "PUT /meshes/default: HTTP $code $(cat "$tmp/mesh.out")"
mkdir -p "$tmp/tokens"
for ((k = 1; k <= zones; k++)); do
    "$bin/hyphactl" --cp "$G_URL" generate zone-token --zone "zone-$k" --valid-for 24h \
        >"$tmp/tokens/zone-$k.token"
done
read -r m0_rss m0_anon m0_file _ <<<"$(mem "$G_PID")"
c0=$(cpu "$G_PID")

# ---- zones x dataplanes, synced up -------------------------------------------------
say "$zones zones sending $dps Dataplanes each..."
t0=$(now_ms)
"$bin/hypha-kds-probe" zones --url "$G_KDS" --ca-file "$G_DATA/kds/ca.pem" --token-dir "$tmp/tokens" \
    --zones "$zones" --resources tests/data/resources/dataplane.yaml --copies "$dps" --batch "$batch" \
    --hold --timeout 3600s >"$tmp/up.out" 2>"$tmp/up.log" &
P_PID=$!
pids+=("$P_PID")
wait_for 3600 grep -q '^done ' "$tmp/up.out" || die "the zones did not sync: $(tail -n 5 "$tmp/up.out")"
t_sync=$(($(now_ms) - t0))
refused=$(awk '$1 == "uploaded" { for (i = 2; i <= NF; i++) if ($i ~ /^refused=/) { sub(/.*=/, "", $i); s += $i } } END { print s + 0 }' "$tmp/up.out")
total=$(curl -fsS "$G_URL/meshes/default/dataplanes?size=1" | jq -r .total)
[ "$total" = $((zones * dps)) ] || die "the global CP lists $total Dataplanes, not $((zones * dps)) ($refused refused)"
connected=$(curl -fsS "$G_URL/metrics" | awk '$1 == "hypha_kds_zones_connected" { print $2 }')
read -r m1_rss m1_anon m1_file m1_hwm <<<"$(mem "$G_PID")"
c1=$(cpu "$G_PID")
store_mib=$(du -sk "$G_DATA" | awk '{ printf "%.1f", $1 / 1024 }')
slowest=$(awk '$1 == "uploaded" { for (i = 2; i <= NF; i++) if ($i ~ /^ms_since_welcome=/) { sub(/.*=/, "", $i); if ($i > m) m = $i } } END { printf "%.0f", m }' "$tmp/up.out")
probe_rss=$(mem "$P_PID" | cut -d' ' -f1)

# ---- a policy change fanned out to every zone, everything stored ------------------------
lat_p50=— lat_p99=— lat_max=— each_p99=—
if [ "$changes" -gt 0 ]; then
    say "$changes policy changes fanned out to the $zones zones..."
    kill "$P_PID"
    wait "$P_PID" || true
    pids=("${pids[@]/$P_PID/}")
    gone() { [ "$(curl -fsS "$G_URL/metrics" | awk '$1 == "hypha_kds_zones_connected" { print $2 }')" = 0 ]; }
    wait_for 60 gone || die "the zones did not disconnect"
    "$bin/hypha-kds-probe" zones --url "$G_KDS" --ca-file "$G_DATA/kds/ca.pem" --token-dir "$tmp/tokens" \
        --zones "$zones" --put-api "$G_URL" --mesh default --name-prefix fan- --puts "$changes" \
        --warmup 5 --timeout 1200s --arrivals "$tmp/fan.tsv" >"$tmp/fan.out" 2>"$tmp/fan.log" ||
        die "the fan-out probe failed: $(tail -n 5 "$tmp/fan.out")"
    lat() { awk -v w="$1" -v k="$2" '$1 == "latency" && $2 == "what=" w && $3 == "from=ack" { for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) printf "%.1f", kv[2] / 1000 } }' "$tmp/fan.out"; }
    lat_p50=$(lat all-zones p50_us)
    lat_p99=$(lat all-zones p99_us)
    lat_max=$(lat all-zones max_us)
    each_p99=$(lat each-zone p99_us)
    # fairness: each zone's mean arrival, and the zone most often the last
    spread=$(awk -F'\t' '!/^#/ { s[$2] += $4; n[$2]++ } END { lo = -1; for (z in s) { m = s[z] / n[z]; if (lo < 0 || m < lo) lo = m; if (m > hi) hi = m } printf "%.1f–%.1f", lo / 1000, hi / 1000 }' "$tmp/fan.tsv")
    most_last=$(awk -F'\t' '!/^#/ { if (!($1 in t) || $4 > t[$1]) { t[$1] = $4; z[$1] = $2 } } END { for (c in z) k[z[c]]++; for (x in k) if (k[x] > m) { m = k[x]; w = x } printf "%s, %d of %d", w, m, length(z) }' "$tmp/fan.tsv")
fi
read -r _ _ _ m2_hwm <<<"$(mem "$G_PID")"
# the kernel updates VmHWM lazily: never report it below an RSS seen
m2_hwm=$(awk -v a="$m2_hwm" -v b="$m1_rss" 'BEGIN { print (a > b ? a : b) }')

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
n_dp=$((zones * dps))
per_dp=$(awk -v a="$m1_rss" -v b="$m0_rss" -v n="$n_dp" 'BEGIN { printf "%.2f", (a - b) / n }')
kuma=$(awk -v a="$m1_rss" -v n="$n_dp" 'BEGIN { printf "%.0f", n * 1024 / a }')
kuma_per=$(awk -v a="$m1_rss" -v b="$m0_rss" -v n="$n_dp" 'BEGIN { printf "%.0f", 1024 * n / (a - b) }')
goal=$(awk -v h="$m2_hwm" 'BEGIN { if (h < 1048576) printf "met (%.0f%% of 1 GiB)", h / 10485.76; else printf "missed by %.0f MiB", (h - 1048576) / 1024 }')
echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on ${cpu_model:-$(uname -m)}, $(nproc) CPUs, Linux $(uname -r); commit $(git rev-parse --short HEAD 2>/dev/null || echo ?); Release build."
echo
echo "| zones × Dataplanes | time to sync s | global VmRSS MiB | RssAnon MiB | RssFile MiB | VmHWM MiB | KiB / Dataplane (over 0) | store on disk MiB | global CPU s | goal < 1 GiB |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
echo "| 0 (Mesh only) | — | $(mib "$m0_rss") | $(mib "$m0_anon") | $(mib "$m0_file") | — | — | — | $c0 | — |"
echo "| $zones × $dps = $n_dp | $(awk -v t="$t_sync" 'BEGIN { printf "%.1f", t / 1000 }') | $(mib "$m1_rss") | $(mib "$m1_anon") | $(mib "$m1_file") | $(mib "$m2_hwm") | $per_dp | $store_mib | $(awk -v a="$c1" -v b="$c0" 'BEGIN { printf "%.1f", a - b }') | $goal |"
echo
echo "All $zones zones connected at the end ($connected by hypha_kds_zones_connected), $refused Dataplanes refused, the slowest zone synced ${slowest} ms after its Welcome. Batches of $batch. Kuma's published figure, about 1 MB of control-plane memory per data plane, would be $(awk -v n="$n_dp" 'BEGIN { printf "%.0f", n / 1024 }') GiB here: the global's whole VmRSS is 1/$kuma of it, and its growth per Dataplane 1/$kuma_per of 1 MB. Global CPU: what syncing them cost it, after start-up. The probe holding the $zones zones: $(mib "$probe_rss") MiB VmRSS. VmHWM is taken at the end (after the fan-out rows)."
if [ "$changes" -gt 0 ]; then
    echo
    echo "| fan-out, $n_dp Dataplanes stored | changes | last of $zones zones p50 ms | p99 ms | max ms | each (change, zone) p99 ms | zones' mean arrival, fastest–slowest ms | most often last |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    echo "| a MeshTrafficPermission PUT → every zone has it | $changes | $lat_p50 | $lat_p99 | $lat_max | $each_p99 | $spread | $most_last |"
fi
