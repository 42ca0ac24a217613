#!/usr/bin/env bash
# The cost per request of access logging and tracing (issue 17), one run,
# on the L7 sidecar pair of bench/dp_http.sh:
#   client -> hypha-dp web-1 (outbound) =mTLS HTTP/2=> hypha-dp backend-1
#   (inbound, kuma.io/protocol: http) -> nginx (64-byte /small)
# Rows, each with the pair's policy changed in between (applied on the zone,
# waited for until both sidecars took the new config):
#   off              no MeshAccessLog, no MeshTrace
#   alog file        MeshAccessLog (to and from, targetRef Mesh) to a File:
#                    both sidecars append Kuma's default HTTP line per request
#   alog tcp         the same to a Tcp backend: a reader that keeps up
#                    (a Python thread per connection, recv and discard)
#   trace 1 %        MeshTrace, Zipkin, sampling overall: 1
#   trace 100 %      MeshTrace, Zipkin, every request: two spans per request
#                    (client and server) to a sink answering 202 at once
#                    (Python; spans it cannot take in time are dropped by the
#                    sidecars and counted: the table says how many)
# Per row: req/s flat out over kept-alive connections (wrk), p50/p99 at a
# fixed 1k req/s (h2load --h1 --rps, as dp_http.sh), the pair's CPU % during
# the wrk part, and the ratios to the off row. Prints a markdown table and
# rewrites the results:obs section of bench/README.md.
#
# usage: bench/obs.sh [--no-write] [--seconds S] [--connections N] [--dir D] [--bin DIR]
#   --no-write       print the results, leave README.md alone
#   --seconds S      duration of each part of a row (HYPHA_BENCH_DP_SECONDS, default 10)
#   --connections N  wrk connections over 2 threads (HYPHA_BENCH_DP_CONNECTIONS, default 32)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
#   --bin DIR        hypha-zone, hypha-dp and hyphactl from DIR instead of building
#                    this tree into build-bench
# Installs missing Debian packages (wrk, nghttp2-client for h2load, nginx,
# python3, jq) when run as root.
set -euo pipefail

write=1
seconds=${HYPHA_BENCH_DP_SECONDS:-10}
conns=${HYPHA_BENCH_DP_CONNECTIONS:-32}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --seconds) seconds=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --bin) bin=${2:?}; shift ;;
    -h | --help)
        sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "obs.sh: unknown argument '$1' (try --help)" >&2
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

dp_check_positive obs.sh seconds conns
[ "$conns" -ge 2 ] || { echo "obs.sh: --connections must be at least 2" >&2; exit 2; }
if [ -n "$bin" ]; then
    [ -d "$bin" ] || { echo "obs.sh: --bin: no directory $bin" >&2; exit 2; }
    bin=$(cd "$bin" && pwd)
    for b in hypha-zone hypha-dp hyphactl; do
        [ -x "$bin/$b" ] || { echo "obs.sh: --bin: $bin has no executable $b" >&2; exit 2; }
    done
fi

# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl jq openssl wrk nghttp2-client nginx python3
if [ -z "$bin" ]; then
    dp_build build-bench
    src=$root
else # the tree the binaries were built from, when it is a CMake build dir's bin/
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$bin/../CMakeCache.txt" 2>/dev/null || true)
fi
commit=$( { [ -n "$src" ] && git -C "$src" rev-parse --short HEAD 2>/dev/null; } || echo "unknown")
[ -z "$src" ] || [ -z "$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null)" ] ||
    commit="$commit + uncommitted changes"
branch=$( { [ -n "$src" ] && git -C "$src" rev-parse --abbrev-ref HEAD 2>/dev/null; } || echo "-")

tmp=$(mktemp -d "$dir/hypha-bench-obs-XXXXXX")
chmod 755 "$tmp" # nginx's workers run as another user when we are root
pids=()
trap bench_cleanup EXIT
say() { echo "obs.sh: $*" >&2; }

# ---- the sinks: a TCP access-log reader and a Zipkin span sink
cat >"$tmp/sinks.py" <<'PY'
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "tcp":  # reads every byte as it comes and drops it
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    print("listening", flush=True)
    def drain(c):
        while c.recv(1 << 20):
            pass
    while True:
        c, _ = s.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()
else:  # POST /api/v2/spans: the body read, 202 at once
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    print("listening", flush=True)
    srv.serve_forever()
PY
ALOG_PORT=$(hy_free_port) SPAN_PORT=$(hy_free_port)
declare -A SINK_PID
for k in tcp http; do
    p=$([ "$k" = tcp ] && echo "$ALOG_PORT" || echo "$SPAN_PORT")
    python3 "$tmp/sinks.py" "$k" "$p" >"$tmp/sink-$k.log" 2>&1 &
    pids+=($!) SINK_PID[$k]=$!
    wait_for 10 grep -q listening "$tmp/sink-$k.log"
done

# ---- the app, the zone, the L7 pair
# shellcheck disable=SC2119 # no --big, no --h2
dp_start_nginx
dp_start_zone
dp_mtp web-to-backend backend web Allow
W_OUT=$(hy_free_port)
dp_dataplane backend-1 "in:$(hy_free_port):$NGINX_PORT:backend:http" >"$tmp/backend-1.yaml"
dp_dataplane web-1 "in:$(hy_free_port):$(hy_free_port):web" "out:$W_OUT:backend" >"$tmp/web-1.yaml"
dp_start_sidecar backend-1 "$tmp/backend-1.yaml" hypha.io/service=backend
dp_start_sidecar web-1 "$tmp/web-1.yaml" hypha.io/service=web
wait_for 20 curl -sf "http://127.0.0.1:$W_OUT/small"

# policy CMD...: runs CMD (an apply or a delete on the zone), then waits
# until both sidecars took a new config
version() { curl -sf "http://${DP_ADMIN[$1]}/config" | jq -r .version; }
policy() {
    local vw vb
    vw=$(version web-1) vb=$(version backend-1)
    "$@" >/dev/null
    moved() { [ "$(version web-1)" != "$vw" ] && [ "$(version backend-1)" != "$vb" ]; }
    wait_for 20 moved
}
alog_policy() { # BACKEND-YAML (one line, flow style)
    ctl apply -f - <<YAML
type: MeshAccessLog
mesh: default
name: bench-alog
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
      default: {backends: [$1]}
  from:
    - targetRef: {kind: Mesh}
      default: {backends: [$1]}
YAML
}
trace_policy() { # OVERALL-PERCENT
    ctl apply -f - <<YAML
type: MeshTrace
mesh: default
name: bench-trace
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
      - type: Zipkin
        zipkin: {url: "http://127.0.0.1:$SPAN_PORT/api/v2/spans", traceId128bit: true}
    sampling: {overall: $1}
YAML
}
mkdir -p "$tmp/alog"
ALOG_FILE=$tmp/alog/access.log

# ---- a warm-up (connections, pools, caches), not measured
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$W_OUT/small" >/dev/null

# ---- the rows
rows=(off alog-file alog-tcp trace-1 trace-100 off-again)
declare -A label=([off]="off" [off-again]="off, again (the machine's noise)" [alog-file]="MeshAccessLog, File" [alog-tcp]="MeshAccessLog, Tcp (a reader that keeps up)"
    [trace-1]="MeshTrace, Zipkin, 1 %" [trace-100]="MeshTrace, Zipkin, 100 %")
declare -A rps p99 r1k cpu us errs note
m() { dp_metric "$1" "$2" 2>/dev/null || echo "?"; }
m2() { # METRIC: web-1's + backend-1's
    local a b
    a=$(m web-1 "$1") b=$(m backend-1 "$1")
    [[ "$a" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ ]] && echo $((a + b)) || echo "$a/$b"
}
for row in "${rows[@]}"; do
    case "$row" in
    off) ;;
    alog-file) policy alog_policy "{type: File, file: {path: $ALOG_FILE}}" ;;
    alog-tcp) policy alog_policy "{type: Tcp, tcp: {address: '127.0.0.1:$ALOG_PORT'}}" ;;
    trace-1)
        policy ctl delete meshaccesslog bench-alog --mesh default
        policy trace_policy 1
        ;;
    trace-100) policy trace_policy 100 ;;
    off-again) policy ctl delete meshtrace bench-trace --mesh default ;;
    esac
    say "${label[$row]}"
    curl -sf -o /dev/null "http://127.0.0.1:$W_OUT/small" || say "a first call through the pair failed"
    d0=$(m2 hypha_dp_access_log_dropped_total) s0=$(m2 hypha_dp_trace_spans_sent_total)
    q0=$(m2 hypha_dp_trace_spans_dropped_total) l0=$( [ -f "$ALOG_FILE" ] && wc -l <"$ALOG_FILE" || echo 0)
    c0=$(cpu_ticks "${DP_PID[web-1]}" "${DP_PID[backend-1]}")
    k0=$(cpu_ticks "${SINK_PID[tcp]}" "${SINK_PID[http]}")
    wrk_run "$W_OUT"
    c1=$(cpu_ticks "${DP_PID[web-1]}" "${DP_PID[backend-1]}")
    sink=$(cpu_pct "$k0" "$(cpu_ticks "${SINK_PID[tcp]}" "${SINK_PID[http]}")")
    rps[$row]=$RPS cpu[$row]=$(cpu_pct "$c0" "$c1") errs[$row]=$ERRS
    # the pair's CPU time per request (µs), over the wrk part
    us[$row]=$(awk -v d=$((c1 - c0)) -v t="$(getconf CLK_TCK)" -v n="${REQS:-0}" \
        'BEGIN { if (n > 0) printf "%.1f", 1e6 * d / t / n; else print "?" }')
    reqs=${REQS:-0}
    rate_run "$W_OUT" 1000
    r1k[$row]="$P50 / $P99 ($GOT/s)" p99[$row]=$P99
    reqs=$((reqs + $(wc -l <"$tmp/h2load.log") + 1)) # wrk's, h2load's, the first call
    # what the row's requests left behind (the spans of the last batch
    # may still be on their way: a moment for the writer's 200 ms)
    sleep 0.5
    d1=$(m2 hypha_dp_access_log_dropped_total) s1=$(m2 hypha_dp_trace_spans_sent_total)
    q1=$(m2 hypha_dp_trace_spans_dropped_total) l1=$( [ -f "$ALOG_FILE" ] && wc -l <"$ALOG_FILE" || echo 0)
    delta() { [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]] && echo $(($2 - $1)) || echo "?"; }
    case "$row" in
    alog-file) note[$row]="$reqs requests: $(delta "$l0" "$l1") lines written (for about $((2 * reqs))), $(delta "$d0" "$d1") dropped" ;;
    alog-tcp) note[$row]="$reqs requests: $(delta "$d0" "$d1") lines dropped (of about $((2 * reqs))); the reader's CPU $sink %" ;;
    trace-*) note[$row]="$reqs requests: $(delta "$s0" "$s1") spans sent, $(delta "$q0" "$q1") dropped; the sink's CPU $sink %" ;;
    *) note[$row]="" ;;
    esac
done

# ---- the table: ratios against the mean of the two off rows
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (a + b) / 2 }'; }
base_rps=$(mean "${rps[off]}" "${rps[off-again]}")
base_p99=$(mean "${p99[off]}" "${p99[off-again]}")
base_us=$(mean "${us[off]}" "${us[off-again]}")
load=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "Run $(date -u +%Y-%m-%d) on $(dp_machine), load average $load at the end; hypha-dp $branch $commit$([ -z "$src" ] || [ "$src" = "$root" ] || echo " (from $src)"); $(nginx -v 2>&1 | sed 's/.*nginx\//nginx /')."
    echo "The L7 pair (one worker each, mTLS HTTP/2 between them) in front of nginx's 64-byte /small; wrk -t2 -c$conns for ${seconds}s per row; the fixed rate: h2load --h1, 20 connections, ${seconds}s (the rate achieved in brackets). Both sidecars log / trace (MeshAccessLog to and from, targetRef Mesh; MeshTrace targetRef Mesh)."
    echo
    echo "Ratios (× off) are against the mean of the two off rows, the first before and the second after the others. The pair's CPU (% of one core, and CPU time per request) is over the wrk part; the sinks' (Python, on the same cores) is in the notes, not in the pair's. Requests: wrk's and h2load's completed ones, so a line or span count can be slightly above twice that (requests in flight when wrk stops)."
    echo
    echo "| row | req/s (keep-alive) | × off | p50 / p99 ms at 1k req/s | p99 × off | pair's CPU % | pair's CPU µs per request | × off | notes |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for row in "${rows[@]}"; do
        n=${note[$row]}
        [ -z "${errs[$row]}" ] || n="${n:+$n; }errors: ${errs[$row]}"
        echo "| ${label[$row]} | ${rps[$row]} | $(ratio "${rps[$row]}" "$base_rps") | ${r1k[$row]} | $(ratio "${p99[$row]}" "$base_p99") | ${cpu[$row]} | ${us[$row]} | $(ratio "${us[$row]}" "$base_us") | ${n:--} |"
    done
} >"$tmp/results.md"
cat "$tmp/results.md"
[ "$write" = 0 ] || bench_write_section "$readme" obs "$tmp/results.md"
