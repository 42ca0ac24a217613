#!/usr/bin/env bash
# The KDS benchmark: how long a change made on the global CP takes to reach
# 1, 10 and 50 zones, how long a fresh zone takes to receive 10 000
# policies, and what each connected zone costs the global CP in memory.
# Real hypha-global and hypha-zone processes on loopback; the many zones are
# hypha-kds-probe (tests/tools/), which also times the changes. Rewrites the
# results:kds section of bench/README.md.
#
# usage: bench/kds.sh [--no-write] [--changes N] [--zones "1 10 50"]
#                     [--policies N] [--reps N] [--dir D]
#   --no-write    print the results, leave README.md alone
#   --changes N   measured changes per latency row (HYPHA_BENCH_KDS_CHANGES, default 1000)
#   --zones LIST  zone counts of the latency rows (HYPHA_BENCH_KDS_ZONES, default "1 10 50";
#                 the largest is also the memory row's)
#   --policies N  policies a fresh zone resyncs (HYPHA_BENCH_KDS_POLICIES, default 10000)
#   --reps N      resync repetitions, medians shown (HYPHA_BENCH_REPS, default 3)
#   --dir D       where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# Installs missing Debian packages when run as root.
set -euo pipefail

write=1
changes=${HYPHA_BENCH_KDS_CHANGES:-1000}
zone_counts=${HYPHA_BENCH_KDS_ZONES:-1 10 50}
policies=${HYPHA_BENCH_KDS_POLICIES:-10000}
reps=${HYPHA_BENCH_REPS:-3}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --changes) changes=${2:?}; shift ;;
    --zones) zone_counts=${2:?}; shift ;;
    --policies) policies=${2:?}; shift ;;
    --reps) reps=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "kds.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
for v in changes policies reps; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "kds.sh: --$v must be a positive integer" >&2; exit 2 ;; esac
done
max_zones=0
for n in $zone_counts; do
    case "$n" in '' | *[!0-9]* | 0) echo "kds.sh: --zones takes positive integers" >&2; exit 2 ;; esac
    [ "$n" -le 1000 ] || { echo "kds.sh: at most 1000 zones" >&2; exit 2; }
    [ "$n" -le "$max_zones" ] || max_zones=$n
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=build-bench
readme=bench/README.md
batch=1000 # policies per POST /_apply when loading the resync set

. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl jq

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-global hypha-zone hyphactl hypha-kds-probe hypha-bench-store \
    -j "$(nproc)"
bin="$root/$build/bin"

tmp=$(mktemp -d "$dir/hypha-bench-kds-XXXXXX")
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "kds.sh: $*" >&2
    exit 1
}
say() { echo "kds.sh: $*" >&2; }
now_ns() { date +%s%N; }
forget_pid() {
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
# stop PID: SIGTERM and wait; fails with its exit status
stop() {
    local rc=0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || rc=$?
    forget_pid "$1"
    return "$rc"
}
# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds, or dies
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for: $*"
        sleep 0.05
    done
}
# log_url LOG TEXT: the URL after TEXT in a log ("API listening on" -> http://...)
log_url() { grep -o "$2 [a-z]*://[^ ]*" "$1" | tail -n 1 | sed 's/.* //'; }
# rss PID: "VmRSS RssAnon VmHWM" in kB
rss() {
    awk '/^(VmRSS|RssAnon|VmHWM):/ { v[$1] = $2 } END { print v["VmRSS:"], v["RssAnon:"], v["VmHWM:"] }' \
        "/proc/$1/status"
}

# ---- processes -----------------------------------------------------------------
# start_global NAME: a fresh hypha-global; sets G_PID, G_URL, G_KDS, G_CA, G_LOG
start_global() {
    G_LOG="$tmp/$1.log"
    "$bin/hypha-global" --data-dir "$tmp/$1.data" --api-address 127.0.0.1:0 \
        --kds-address 127.0.0.1:0 >"$G_LOG" 2>&1 &
    G_PID=$!
    pids+=("$G_PID")
    wait_for 20 grep -q 'hypha-global .* started' "$G_LOG"
    G_URL=$(log_url "$G_LOG" "API listening on")
    G_KDS=$(log_url "$G_LOG" "KDS listening on")
    G_CA="$tmp/$1.data/kds/ca.pem"
    wait_for 10 curl -fsS -o /dev/null "$G_URL/ready"
    local code
    code=$(curl -sS -o "$tmp/mesh.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/yaml' \
        --data-binary @tests/data/resources/mesh.yaml "$G_URL/meshes/default")
    [ "$code" = 201 ] || die "PUT /meshes/default: HTTP $code $(cat "$tmp/mesh.out")"
}
# tokens PREFIX FROM TO: zone tokens $tmp/tokens/PREFIX<k>.token
tokens() {
    mkdir -p "$tmp/tokens"
    local k
    for ((k = $2; k <= $3; k++)); do
        "$bin/hyphactl" --cp "$G_URL" generate zone-token --zone "$1$k" --valid-for 24h \
            >"$tmp/tokens/$1$k.token"
    done
}
# start_zone NAME: a fresh hypha-zone federated with the current global CP;
# sets Z_PID, Z_URL, Z_LOG, Z_T0 (ns, just before it was started)
start_zone() {
    Z_LOG="$tmp/zone-$1.log"
    Z_T0=$(now_ns)
    "$bin/hypha-zone" --zone "$1" --data-dir "$tmp/zone-$1.data" --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 \
        --global-address "$G_KDS" --global-ca-file "$G_CA" \
        --zone-token-file "$tmp/tokens/$1.token" >"$Z_LOG" 2>&1 &
    Z_PID=$!
    pids+=("$Z_PID")
    wait_for 20 grep -q 'API listening on http://' "$Z_LOG"
    Z_URL=$(log_url "$Z_LOG" "API listening on")
}
# probe OUT MODE-ARGS...: hypha-kds-probe against the current global CP
probe() {
    local out=$1
    shift
    "$bin/hypha-kds-probe" zones --url "$G_KDS" --ca-file "$G_CA" --token-dir "$tmp/tokens" \
        --put-api "$G_URL" "$@" >"$out" 2>"$out.log"
}
probe_bg() {
    local out=$1
    shift
    "$bin/hypha-kds-probe" zones --url "$G_KDS" --ca-file "$G_CA" --token-dir "$tmp/tokens" \
        --put-api "$G_URL" "$@" >"$out" 2>"$out.log" &
    P_PID=$!
    pids+=("$P_PID")
}
# lat FILE WHAT FROM KEY: a field of the probe's "latency what=WHAT from=FROM" line
lat() {
    awk -v w="$2" -v f="$3" -v k="$4" '$1 == "latency" {
        delete v
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (v["what"] == w && v["from"] == f) print v[k] }' "$1"
}
# log_ms LINE: the epoch milliseconds of a log line's timestamp
log_ms() { date -d "$(cut -d' ' -f1 <<<"$1")" +%s%3N; }

# ---- formatting -------------------------------------------------------------
fmt_us() { # microseconds -> "231 µs" or "31.40 ms" or "1.20 s"
    awk -v x="$1" 'BEGIN {
        if (x < 1000) printf "%.0f µs", x
        else if (x < 1000000) printf "%.2f ms", x / 1000
        else printf "%.2f s", x / 1000000 }'
}
fmt_frac() { # microseconds -> their share of 1 s, as "1/2 500"
    local d
    d=$(awk -v x="$1" 'BEGIN { if (x > 0) printf "%.0f", 1e6 / x }')
    if [ -n "$d" ]; then echo "1/$(fmt_rate "$d")"; else echo "—"; fi
}
fmt_ratio() { awk -v x="$1" 'BEGIN { if (x >= 0.1) printf "%.2f", x; else printf "%.2g", x }'; }
fmt_mib() { awk -v x="$1" 'BEGIN { printf "%.1f MiB", x / 1024 }'; }
fmt_rate() {
    awk -v x="$1" 'BEGIN {
        s = sprintf("%.0f", x); o = ""
        while (length(s) > 3) { o = " " substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        printf "%s%s", s, o }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- the heading ----------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit + uncommitted changes"
else
    commit=uncommitted
fi
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
cc_version=$("${cc:-cc}" --version 2>/dev/null | head -n 1)
libs="libwebsockets $(pkg-config --modversion libwebsockets | sed 's/-$//'), libuv $(pkg-config --modversion libuv), LMDB $(pkg-config --modversion lmdb), protobuf-c $(pkg-config --modversion libprotobuf-c)"
heading="Run $(date -u '+%Y-%m-%d %H:%M UTC') on $cpu, $(nproc) CPUs, $mem_gib GiB RAM, Linux $(uname -r); commit $commit; Release build, $cc_version; $libs."
fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 }')
started=$(now_ns)
load_start=$(cut -d" " -f1-3 /proc/loadavg)

# ---- 12. memory: hypha-global with 0, some and all zones connected ------------------
say "memory: hypha-global with 0, $((max_zones / 5)) and $max_zones zones connected..."
start_global main
tokens zone- 1 "$max_zones"
tokens real- 1 1
curl -fsS -o /dev/null "$G_URL/metrics"
read -r m0_rss m0_anon _ <<<"$(rss "$G_PID")"
few=$((max_zones / 5))
[ "$few" -ge 1 ] || few=1
# --puts 0: only the barrier PUT, which every zone must receive: all synced
probe_bg "$tmp/mem-a.out" --zones "$few" --name-prefix mem-a- --puts 0 --warmup 1 --hold --timeout 600s
mem_a=$P_PID
wait_for 120 grep -q '^done ' "$tmp/mem-a.out"
read -r m1_rss m1_anon _ <<<"$(rss "$G_PID")"
m_rest=$((max_zones - few))
if [ "$m_rest" -gt 0 ]; then
    probe_bg "$tmp/mem-b.out" --zones "$m_rest" --first-zone $((few + 1)) --name-prefix mem-b- \
        --puts 0 --warmup 1 --hold --timeout 600s
    mem_b=$P_PID
    wait_for 120 grep -q '^done ' "$tmp/mem-b.out"
fi
read -r m2_rss m2_anon m2_hwm <<<"$(rss "$G_PID")"
probe_rss=$(rss "$mem_a" | cut -d' ' -f1)
[ "$m_rest" -le 0 ] || probe_rss=$((probe_rss + $(rss "$mem_b" | cut -d' ' -f1)))
stop "$mem_a" || die "the memory probe failed: $(cat "$tmp/mem-a.out")"
[ "$m_rest" -le 0 ] || stop "$mem_b" || die "the memory probe failed: $(cat "$tmp/mem-b.out")"
all_gone() { [ "$(grep -c 'kds: zone zone-[0-9]* disconnected' "$G_LOG")" -ge "$max_zones" ]; }
wait_for 30 all_gone
read -r m3_rss m3_anon _ <<<"$(rss "$G_PID")"
# more rounds of all zones connecting and leaving: memory kept per
# connection would grow with them, memory the allocator keeps would not
cycles=10
for ((c = 1; c <= cycles; c++)); do
    probe "$tmp/cycle.out" --zones "$max_zones" --name-prefix "cycle$c-" --puts 0 --warmup 1 \
        --timeout 120s || die "the memory probe failed: $(cat "$tmp/cycle.out")"
done
all_gone() { [ "$(grep -c 'kds: zone zone-[0-9]* disconnected' "$G_LOG")" -ge $((max_zones * (cycles + 1))) ]; }
wait_for 30 all_gone
read -r m4_rss m4_anon _ <<<"$(rss "$G_PID")"

# ---- 10. propagation latency --------------------------------------------------
lat_rows=()
put_notes=()
for n in $zone_counts; do
    say "latency: $changes changes to $n probe zone(s)..."
    out="$tmp/lat-$n.out"
    probe "$out" --zones "$n" --name-prefix "lat$n-" --puts "$changes" --warmup 10 \
        --timeout 600s --arrivals "$tmp/lat-$n.tsv" || die "the latency probe failed: $(cat "$out")"
    lat_rows+=("$n")
    put_notes+=("$n zone(s) $(fmt_us "$(lat "$out" put sent p50_us)") / $(fmt_us "$(lat "$out" put sent p99_us)")")
    d=$(awk '$1 == "zones" { sub(/.*disconnects=/, ""); print }' "$out")
    [ "$d" = 0 ] || die "$d disconnects during the $n-zone run: $(cat "$out")"
done
say "latency: $changes changes to one real hypha-zone (its API polled)..."
start_zone real-1
wait_for 10 curl -fsS -o /dev/null "$Z_URL/ready"
probe "$tmp/lat-real.out" --zones 0 --zone-api "$Z_URL" --name-prefix lat-real- --puts "$changes" \
    --warmup 10 --timeout 600s --arrivals "$tmp/lat-real.tsv" ||
    die "the real-zone latency probe failed: $(cat "$tmp/lat-real.out")"
put_notes+=("real zone $(fmt_us "$(lat "$tmp/lat-real.out" put sent p50_us)") / $(fmt_us "$(lat "$tmp/lat-real.out" put sent p99_us)")")
real_applies=$(grep -c 'applied .* from the global control plane' "$Z_LOG" || true)
stop "$Z_PID" || die "hypha-zone real-1 did not stop cleanly: $(tail -n 5 "$Z_LOG")"
# the slowest samples, to say what the tail is made of
worst() {
    sort -t$'\t' -k4,4 -g -r "$1" |
        awk -F'\t' -v n="$2" '!/^#/ && k++ < n { printf "%s#%s %.2f ms; ", $2, $1, $4 / 1000 }'
}
worst_note=$(worst "$tmp/lat-$max_zones.tsv" 5)
stop "$G_PID" || die "hypha-global did not stop cleanly: $(tail -n 5 "$G_LOG")"

# ---- 11. full resync of $policies policies ----------------------------------
say "resync: a global CP holding $policies policies; $reps fresh hypha-zones and $reps probe zones..."
start_global resync
awk -v n="$policies" -v b="$batch" -v dir="$tmp" 'BEGIN {
    for (i = 1; i <= n; i++) {
        f = sprintf("%s/resync-%06d.yaml", dir, int((i - 1) / b))
        printf "---\ntype: MeshTrafficPermission\nmesh: default\nname: resync-%06d\nspec:\n  targetRef: {kind: MeshService, name: backend}\n  from:\n    - targetRef: {kind: MeshService, name: web}\n      default: {action: Allow}\n", i >f
    } }'
for f in "$tmp"/resync-*.yaml; do
    code=$(curl -sS -o "$f.out" -w '%{http_code}' -X POST -H 'Content-Type: application/yaml' \
        -H 'Expect:' --data-binary "@$f" "$G_URL/_apply")
    [ "$code" = 200 ] || die "POST /_apply $f: HTTP $code $(head -c 300 "$f.out")"
done
# the newest resource: a zone holding it holds everything before it
code=$(curl -sS -o "$tmp/marker.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/yaml' \
    --data-binary $'type: MeshTrafficPermission\nmesh: default\nname: resync-marker\nspec:\n  targetRef: {kind: Mesh}\n  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n' \
    "$G_URL/meshes/default/meshtrafficpermissions/resync-marker")
[ "$code" = 201 ] || die "PUT resync-marker: HTTP $code $(cat "$tmp/marker.out")"
expect_mtp=$((policies + 1))
total_mtp() { curl -fsS "$1/meshes/default/meshtrafficpermissions?size=1" | jq -r .total; }
[ "$(total_mtp "$G_URL")" = "$expect_mtp" ] || die "the global CP does not hold $expect_mtp policies"
tokens resync- 1 "$reps"
tokens presync- 1 "$reps"
has_all() { [ "$(total_mtp "$Z_URL")" = "$expect_mtp" ]; }
r_sync=() r_start=() r_msgs=() p_sync=() p_msgs=()
for ((r = 1; r <= reps; r++)); do
    start_zone "resync-$r"
    wait_for 120 has_all
    hello=$(grep -m 1 'sending Hello' "$Z_LOG")
    last=$(grep 'applied .* from the global control plane' "$Z_LOG" | tail -n 1)
    if [ -z "$hello" ] || [ -z "$last" ]; then die "resync-$r: no Hello or apply in its log"; fi
    t_last=$(log_ms "$last")
    r_sync+=($((t_last - $(log_ms "$hello"))))
    r_start+=($((t_last - Z_T0 / 1000000)))
    r_msgs+=("$(grep -c 'applied .* from the global control plane' "$Z_LOG")")
    stop "$Z_PID" || die "hypha-zone resync-$r did not stop cleanly"
    out="$tmp/presync-$r.out"
    "$bin/hypha-kds-probe" zones --url "$G_KDS" --ca-file "$G_CA" --token-dir "$tmp/tokens" \
        --zones 1 --zone-prefix presync- --first-zone "$r" --expect-name resync-marker \
        --timeout 120s >"$out" 2>"$out.log" || die "the resync probe failed: $(cat "$out")"
    p_sync+=("$(awk '$1 == "synced" { for (i = 2; i <= NF; i++) if ($i ~ /^ms_since_open=/) { sub(/.*=/, "", $i); print $i } }' "$out")")
    p_msgs+=("$(awk '$1 == "synced" { for (i = 2; i <= NF; i++) if ($i ~ /^messages=/) { sub(/.*=/, "", $i); print $i } }' "$out")")
done
stop "$G_PID" || die "hypha-global did not stop cleanly: $(tail -n 5 "$G_LOG")"

# the baseline: the store's own batched put rate (bench_store row 2), same disk
say "resync baseline: hypha-bench-store batched puts..."
"$bin/hypha-bench-store" --dir "$tmp" --single 10 --total 20000 --batch "$batch" --gets 1000 \
    --changes 1000 --read-reps 1 --page-total 1000 --page-size 100 --reps 5 \
    >"$tmp/store.md" 2>/dev/null || die "hypha-bench-store failed"
store_rate=$(awk -F'|' '$2 ~ /2\. Batched puts/ { gsub(/[^0-9]/, "", $4); print $4 }' "$tmp/store.md")
[ -n "$store_rate" ] || die "no batched-put row in hypha-bench-store's output"

elapsed=$(awk -v d=$(($(now_ns) - started)) 'BEGIN { printf "%.0f", d / 1e9 }')

# ---- the tables -------------------------------------------------------------------
lat_row() { # lat_row LABEL SAMPLES-DESC FILE WHAT
    local f=$3 w=$4 p50 p99
    p50=$(lat "$f" "$w" ack p50_us)
    p99=$(lat "$f" "$w" ack p99_us)
    printf '| %s | %s | %s | %s | %s | %s | %s / %s | 1 s | %s · %s |\n' "$1" "$2" \
        "$(fmt_us "$p50")" "$(fmt_us "$(lat "$f" "$w" ack p90_us)")" "$(fmt_us "$p99")" \
        "$(fmt_us "$(lat "$f" "$w" ack max_us)")" "$(fmt_us "$(lat "$f" "$w" sent p50_us)")" \
        "$(fmt_us "$(lat "$f" "$w" sent p99_us)")" "$(fmt_frac "$p50")" "$(fmt_frac "$p99")"
}
mem_row() { # mem_row LABEL ZONES RSS ANON
    local per="—"
    [ "$2" = 0 ] || per=$(awk -v a="$3" -v b="$m0_rss" -v n="$2" 'BEGIN { printf "%.0f KiB", (a - b) / n }')
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$(fmt_mib "$3")" "$(fmt_mib "$4")" \
        "$(awk -v a="$3" -v b="$m0_rss" 'BEGIN { printf "%+.1f MiB", (a - b) / 1024 }')" "$per"
}
m_r_sync=$(median "${r_sync[@]}")
m_r_start=$(median "${r_start[@]}")
m_p_sync=$(median "${p_sync[@]}")
floor_ms=$(awk -v n="$expect_mtp" -v r="$store_rate" 'BEGIN { printf "%.1f", n / r * 1000 }')
letter() { local l=abcdefghijklmnopqrstuvwxyz; echo "${l:$1:1}"; }

{
    echo "$heading"
    echo
    echo "| Propagation (from the PUT's answer) | Samples | p50 | p90 | p99 | max | from the PUT's send, p50 / p99 | Baseline (Kuma's KDS refresh) | p50 · p99 as a share of it |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|"
    i=0
    for n in "${lat_rows[@]}"; do
        f="$tmp/lat-$n.out"
        lat_row "10$(letter $i). $n probe zone(s), each" "$((n * changes)) (change, zone)" "$f" each-zone
        i=$((i + 1))
        if [ "$n" -gt 1 ]; then
            lat_row "10$(letter $i). $n probe zones, the last of each change" "$changes changes" "$f" all-zones
            i=$((i + 1))
        fi
    done
    lat_row "10$(letter $i). 1 real hypha-zone, API polled" "$changes changes" "$tmp/lat-real.out" real-zone
    echo
    echo "Each change is a new MeshTrafficPermission PUT on hypha-global (durable), sent once the previous one reached every zone; $changes measured after 10 unmeasured. PUT round trip p50 / p99: $(IFS=';'; notes="${put_notes[*]}"; echo "${notes//;/; }"). Slowest samples of the $max_zones-zone run (zone#change, from the answer): ${worst_note%; }. The real zone applied $real_applies KDS messages in all (its initial sync included). No disconnects. Data on $fs. Load average at the start: $load_start."
    echo
    echo "| Full resync, $expect_mtp policies | Hypha (median of $reps) | per policy | Messages | Baseline | Baseline time | Baseline / Hypha |"
    echo "|---|--:|--:|--:|---|--:|--:|"
    printf '| 11a. Fresh hypha-zone: Hello → last apply | %s ms | %s µs | %s | hy_store_apply, %s per txn, %s puts/s | %s ms | %s |\n' \
        "$m_r_sync" "$(awk -v m="$m_r_sync" -v n="$expect_mtp" 'BEGIN { printf "%.0f", m * 1000 / n }')" \
        "$(median "${r_msgs[@]}")" "$batch" "$(fmt_rate "$store_rate")" "$floor_ms" \
        "$(fmt_ratio "$(awk -v a="$floor_ms" -v b="$m_r_sync" 'BEGIN { print a / b }')")"
    printf '| 11b. The same, from the process start | %s ms | %s µs | — | the same | %s ms | %s |\n' \
        "$m_r_start" "$(awk -v m="$m_r_start" -v n="$expect_mtp" 'BEGIN { printf "%.0f", m * 1000 / n }')" \
        "$floor_ms" "$(fmt_ratio "$(awk -v a="$floor_ms" -v b="$m_r_start" 'BEGIN { print a / b }')")"
    printf '| 11c. Probe zone (no store): Hello → newest received | %s ms | %s µs | %s | the same | %s ms | %s |\n' \
        "$m_p_sync" "$(awk -v m="$m_p_sync" -v n="$expect_mtp" 'BEGIN { printf "%.0f", m * 1000 / n }')" \
        "$(median "${p_msgs[@]}")" "$floor_ms" \
        "$(fmt_ratio "$(awk -v a="$floor_ms" -v b="$m_p_sync" 'BEGIN { print a / b }')")"
    echo
    echo "Runs: hypha-zone $(IFS=' '; echo "${r_sync[*]}") ms (from the process start: ${r_start[*]} ms); probe ${p_sync[*]} ms. 11a/11b come from the zone's own log (ms timestamps): its Hello line and its last \"applied\" line; the zone's API then reported all $expect_mtp policies. Baseline: hypha-bench-store row 2 (20 000 puts in transactions of $batch, median of 5) on the same disk; its time is $expect_mtp / that rate."
    echo
    echo "| hypha-global memory | VmRSS | RssAnon | VmRSS − 0 zones | per zone |"
    echo "|---|--:|--:|--:|--:|"
    mem_row "12a. No zone connected" 0 "$m0_rss" "$m0_anon"
    mem_row "12b. $few zones connected and synced" "$few" "$m1_rss" "$m1_anon"
    mem_row "12c. $max_zones zones connected and synced" "$max_zones" "$m2_rss" "$m2_anon"
    mem_row "12d. After all $max_zones disconnected" 0 "$m3_rss" "$m3_anon"
    mem_row "12e. After $cycles more rounds of $max_zones connecting and leaving" 0 "$m4_rss" "$m4_anon"
    echo
    echo "From /proc/PID/status of one hypha-global holding the Mesh (its trust) and nothing else; zones are probe zones, each its own TLS websocket. VmHWM at 12c: $(fmt_mib "$m2_hwm"). The probe processes holding the $max_zones zones: $(fmt_mib "$probe_rss") VmRSS. $elapsed s in all."
} >"$tmp/kds.md"

if [ "$write" = 0 ]; then
    cat "$tmp/kds.md"
    exit 0
fi
bench_write_section "$readme" kds "$tmp/kds.md" || exit 1
cat "$tmp/kds.md"
say "results written to $readme"
