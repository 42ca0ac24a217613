#!/usr/bin/env bash
# How a zone scales with its sidecars: a fresh standalone zone per row,
# driven by hypha-dp-sim (every simulated sidecar a real DP session with a
# real token and CSR). Per row: the zone's RSS per sidecar, how long a
# policy change takes until every sidecar has it (acked by all, p50 and
# p99, from the moment the PUT was sent: the API answers a write once it
# is durable, which may be after the sidecars have it), how long one more
# sidecar of svc-0 takes to reach every sidecar with an outbound to svc-0
# (join p99), the zone's CPU time and the config bytes per change, and the
# simulator's own RSS per session (so its cost is not counted as the
# zone's). With --real, one more row with REAL hypha-dp processes (one
# worker each), timed through the zone's DataplaneInsights (acked config
# versions), to check the simulator against real sidecars. The shape is the
# scale issue's: 500 services, 20 standing policies (MeshTrafficPermissions
# and MeshTimeouts, each on one service) applied before the sidecars come.
# The last two columns are the ratios to the issue's goals: zone RSS per
# sidecar <= 20 KB (KiB here), change p99 <= 50 ms up to 1000 sidecars
# and <= 500 ms at 10000 (none set in between); above 1 is a miss.
#
# usage: bench/dp_scale.sh [--big] [--real] [--changes C] [--services S] [--outbounds K]
#                          [--policies P] [--sizes "N ..."] [--real-count N] [--dir D]
#   --big           add 10000 sidecars (slow: the zone's work grows faster than N)
#   --real          add a row of --real-count (300) real hypha-dp --workers 1
#   --changes C     measured policy changes per row (default 20)
#   --services S    services (default 500); --outbounds K outbounds per sidecar (default 2)
#   --policies P    standing policies (default 20)
#   --sizes "..."   the simulated rows (default "1000 5000")
#   --dir D         where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
# HYPHA_BENCH_BUILD names the build directory (default build-bench, Release).
# Prints a markdown table; writes nothing else.
set -euo pipefail

sizes="1000 5000"
big=0
real=0
real_count=300
changes=20
services=500
outbounds=2
policies=20
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
while [ $# -gt 0 ]; do
    case "$1" in
    --big) big=1 ;;
    --real) real=1 ;;
    --real-count) real_count=${2:?}; shift ;;
    --changes) changes=${2:?}; shift ;;
    --services) services=${2:?}; shift ;;
    --outbounds) outbounds=${2:?}; shift ;;
    --policies) policies=${2:?}; shift ;;
    --sizes) sizes=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help)
        sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "dp_scale.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
[ "$big" -eq 0 ] || sizes="$sizes 10000"
for v in changes services real_count; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "dp_scale.sh: --${v//_/-} must be a positive integer" >&2; exit 2 ;; esac
done
for v in outbounds policies; do
    case "${!v}" in '' | *[!0-9]*) echo "dp_scale.sh: --$v must be an integer" >&2; exit 2 ;; esac
done
[ "$outbounds" -lt "$services" ] || { echo "dp_scale.sh: --outbounds must be less than --services" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${HYPHA_BENCH_BUILD:-build-bench}
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-zone hypha-dp hyphactl hypha-dp-sim -j 2 >/dev/null
bin="$root/$build/bin"
command -v jq >/dev/null || { echo "dp_scale.sh: jq is required" >&2; exit 2; }

tmp=$(mktemp -d "$dir/hypha-bench-dp-scale-XXXXXX")
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
ulimit -n "$(ulimit -Hn)" # a descriptor per sidecar, in the zone and in the simulator

# start_zone NAME: a fresh standalone zone with mesh default (mTLS); sets
# ZONE_PID, ZAPI, DP_PORT, ZDATA.
start_zone() {
    ZDATA=$tmp/$1
    DP_PORT=$(hy_free_port)
    "$bin/hypha-zone" --zone bench --data-dir "$ZDATA" --api-address 127.0.0.1:0 \
        --dp-address "127.0.0.1:$DP_PORT" >"$tmp/$1.log" 2>&1 &
    ZONE_PID=$!
    pids+=("$ZONE_PID")
    wait_for 20 grep -q 'API listening on http://' "$tmp/$1.log"
    ZAPI=$(grep -o 'API listening on http://[^ ]*' "$tmp/$1.log" | sed 's/API listening on //')
    "$bin/hyphactl" --cp "$ZAPI" apply -f - >/dev/null <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
YAML
    wait_for 15 curl -sf "$ZAPI/meshes/default/meshissuers/ca-1"
}

stop_zone() {
    kill "$ZONE_PID"
    wait "$ZONE_PID" || true
    pids=("${pids[@]/$ZONE_PID/}")
}

# field FILE EVENT SELECT KEY: the KEY= value of the first line of FILE
# that starts with "EVENT " and contains SELECT ("-" when none).
field() {
    awk -v ev="$2" -v sel="$3" -v key="$4" '
        $1 == ev && index($0, sel) { for (i = 2; i <= NF; i++) { split($i, kv, "=");
            if (kv[1] == key) { print kv[2]; found = 1; exit } } }
        END { if (!found) print "-" }' "$1"
}
us_ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1000 }'; }
b_kib() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1024 }'; }
# ratio VALUE GOAL: VALUE / GOAL as "0.52x", "-" when either is "-"
ratio() { awk -v v="$1" -v g="$2" 'BEGIN { if (v == "-" || g == "-") print "-"; else printf "%.2fx", v / g }'; }
# p99_goal N: the issue's change p99 goal in ms for N sidecars, "-" when it sets none
p99_goal() { if [ "$1" -le 1000 ]; then echo 50; elif [ "$1" -ge 10000 ]; then echo 500; else echo -; fi; }

rows=$tmp/rows.md
: >"$rows"

# ---- simulated rows
for n in $sizes; do
    start_zone "zone-$n"
    out=$tmp/sim-$n.out
    echo "dp_scale.sh: $n simulated sidecars..." >&2
    # --ramp 200: the zone holds at most 256 connections waiting for their Hello
    "$bin/hypha-dp-sim" --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZDATA/dp/ca.pem" \
        --api "$ZAPI" --put-api "$ZAPI" --count "$n" --services "$services" \
        --outbounds "$outbounds" --policies "$policies" --changes "$changes" --join \
        --zone-pid "$ZONE_PID" --ramp 200 --timeout 7200s >"$out" 2>"$tmp/sim-$n.err" || {
        echo "dp_scale.sh: hypha-dp-sim failed with $n sidecars:" >&2
        tail -n 5 "$out" "$tmp/sim-$n.err" >&2
        exit 1
    }
    connect=$(awk -v v="$(field "$out" connected sessions= ms)" 'BEGIN { printf "%.1f", v / 1000 }')
    rss=$(field "$out" memory zone_ zone_per_session_kb)
    p99=$(us_ms "$(field "$out" latency 'what=all-sessions from=sent' p99_us)")
    printf '| %s | sim | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$connect" \
        "$rss" "$(us_ms "$(field "$out" latency 'what=all-sessions from=sent' p50_us)")" "$p99" \
        "$(us_ms "$(field "$out" latency 'what=join-each-watcher' p99_us)")" \
        "$(field "$out" zone-cpu pid= per_change_ms)" \
        "$(b_kib "$(field "$out" bytes what=per-change mean)")" \
        "$(field "$out" memory sim_ sim_per_session_kb)" \
        "$(ratio "$rss" 20)" "$(ratio "$p99" "$(p99_goal "$n")")" >>"$rows"
    stop_zone
done

# ---- real sidecars: the same shape, timed through the zone's insights
if [ "$real" -eq 1 ]; then
    echo "dp_scale.sh: $real_count real hypha-dp..." >&2
    start_zone zone-real
    rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/$ZONE_PID/status")
    {
        echo "type: Dataplane"
        echo "mesh: default"
        echo "name: {{ name }}"
        echo "networking:"
        echo "  address: 127.0.0.1"
        echo "  inbound:"
        echo "    - port: {{ port }}"
        echo "      servicePort: {{ app_port }}"
        echo "      tags: {hypha.io/service: {{ service }}}"
        if [ "$outbounds" -gt 0 ]; then
            echo "  outbound:"
            for ((j = 0; j < outbounds; j++)); do
                echo "    - port: {{ out$j }}"
                echo "      tags: {hypha.io/service: {{ osvc$j }}}"
            done
        fi
    } >"$tmp/dp.yaml"
    t0=$(date +%s%N)
    for ((i = 0; i < real_count; i++)); do
        svc=$((i % services))
        "$bin/hyphactl" --cp "$ZAPI" generate dataplane-token --mesh default --name "real-$i" \
            --tag "hypha.io/service=svc-$svc" --valid-for 24h >"$tmp/real-$i.token"
        base=$(hy_free_ports $((2 + outbounds))) # base .. base+1+outbounds are free
        vars="name=real-$i,service=svc-$svc,port=$base,app_port=$((base + 1))"
        for ((j = 0; j < outbounds; j++)); do
            vars="$vars,out$j=$((base + 2 + j)),osvc$j=svc-$(((svc + 1 + j) % services))"
        done
        "$bin/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZDATA/dp/ca.pem" \
            --dataplane-file "$tmp/dp.yaml" --dataplane-token-file "$tmp/real-$i.token" \
            --dataplane-var "$vars" --admin-address 127.0.0.1:0 --workers 1 --log-level warn \
            >"$tmp/real-$i.log" 2>&1 &
        pids+=($!)
    done
    # versions: "name version" of every insight's last acked config
    versions() {
        curl -s "$ZAPI/meshes/default/dataplaneinsights?size=1000" |
            jq -r '.items[] | "\(.name) \(.subscriptions[-1].configVersion // "")"' | sort
    }
    all_acked() { [ "$(versions | awk '$2 != ""' | wc -l)" -eq "$real_count" ]; }
    wait_for 600 all_acked
    connect=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$ZONE_PID/status")
    hz=$(getconf CLK_TCK)
    cpu() { awk -v hz="$hz" '{ sub(/.*\) /, ""); split($0, f, " "); print (f[12] + f[13]) * 1000 / hz }' "/proc/$ZONE_PID/stat"; }
    : >"$tmp/real-lat"
    cpu_total=0
    for ((c = 0; c < changes; c++)); do
        before=$(versions)
        c0=$(cpu)
        curl -sf -X PUT -H 'Content-Type: application/json' \
            "$ZAPI/meshes/default/meshtrafficpermissions/dp-scale-real" -d \
            "{\"type\":\"MeshTrafficPermission\",\"mesh\":\"default\",\"name\":\"dp-scale-real\",\"spec\":{\"targetRef\":{\"kind\":\"Mesh\"},\"from\":[{\"targetRef\":{\"kind\":\"Mesh\"},\"default\":{\"action\":\"Allow\"}},{\"targetRef\":{\"kind\":\"MeshService\",\"name\":\"real-change-$c\"},\"default\":{\"action\":\"Deny\"}}]}}" >/dev/null
        t1=$(date +%s%N)
        # every insight's acked version differs from before (polled: an upper bound)
        changed() { [ "$(comm -12 <(echo "$before") <(versions) | wc -l)" -eq 0 ]; }
        wait_for 600 changed
        t2=$(date +%s%N)
        c1=$(cpu)
        echo $(((t2 - t1) / 1000)) >>"$tmp/real-lat"
        cpu_total=$(awk -v t="$cpu_total" -v a="$c0" -v b="$c1" 'BEGIN { print t + b - a }')
    done
    sort -n "$tmp/real-lat" >"$tmp/real-lat.sorted"
    p() { awk -v p="$1" '{ v[NR] = $1 } END { r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; printf "%.1f", v[r] / 1000 }' "$tmp/real-lat.sorted"; }
    rss=$(awk -v a="$rss0" -v b="$rss1" -v n="$real_count" 'BEGIN { printf "%.1f", (b - a) / n }')
    printf '| %s | real | %s | %s | %s | %s | - | %s | - | - | %s | %s |\n' "$real_count" \
        "$connect" "$rss" "$(p 50)" "$(p 99)" \
        "$(awk -v t="$cpu_total" -v n="$changes" 'BEGIN { printf "%.2f", t / n }')" \
        "$(ratio "$rss" 20)" "$(ratio "$(p 99)" "$(p99_goal "$real_count")")" >>"$rows"
fi

echo
echo "Zone scale ($changes changes per row, $services services, $outbounds outbounds per sidecar," \
    "$policies standing policies (simulated rows);" \
    "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(date -u +%Y-%m-%d))"
echo
echo "| sidecars | kind | connect s | zone RSS / sidecar KiB | change acked by all p50 ms | p99 ms | join p99 ms | zone CPU / change ms | config KiB / change | sim RSS / session KiB | RSS / goal | p99 / goal |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
cat "$rows"
