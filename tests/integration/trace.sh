#!/usr/bin/env bash
# MeshTrace end to end across two zones (lib_zones.sh: a global CP, zones
# east and west in their own network namespaces, an ingress per zone). A
# call chain of three services: web (east; curl plays its app) calls
# middle (west), whose app calls back (east) through its own sidecar,
# passing on the trace headers it got as an instrumented app does
# (tests/tools/trace_app.py). A collector on the global namespace's bridge
# (tests/tools/trace_collector.py) takes both wire formats: Zipkin v2 JSON,
# and OTLP/HTTP protobuf, decoded with the schema's protobuf-c code
# (hypha-test-otlp-dump). Checked: one request makes ONE trace of four
# spans (web client, middle server, middle client, back server) with the
# right parents for each backend (Zipkin's shared span context, OTLP's
# span per hop) and Kuma's tags; a traceparent or b3 from the caller is
# continued (b3 answered in kind), a hostile one starts a new trace; a dead
# collector costs the calls nothing and its spans are counted as dropped;
# sampling random: 10 keeps 10 % +- 5 percentage points (50 to 150) of
# 1000 requests, and the callee's sidecar follows the caller's decision
# (the same traces, no more).
. "$(dirname "$0")/lib_zones.sh"
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
if ! command -v python3 >/dev/null || ! command -v jq >/dev/null; then
    hy_log "skip: needs python3 and jq"
    exit 77
fi

hy_zones_net
hy_zones_global
gctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
YAML
hy_zones_start
hy_zones_ingresses

# ---- the collector, on the bridge (10.213.80.1) both zones reach
COL=$HY_TMP/collector
mkdir -p "$COL"
COL_PORT=19411
start_collector() {
    start "$G" "$HY_TMP/collector.log" python3 "$TOOLS/trace_collector.py" "$GA" "$COL_PORT" "$COL"
    COL_PID=$LAST_PID
    hy_wait_for 10 grep -q listening "$HY_TMP/collector.log"
}
start_collector

# ---- apps and sidecars: web-1 (east; no app, curl calls its outbound),
# middle-1 (west), back-1 (east)
app() { # NS PORT NAME [NEXT]
    start "$1" "$HY_TMP/app-$3.log" python3 "$TOOLS/trace_app.py" "$2" "$3" ${4:+"$4"}
    hy_wait_for 10 grep -q listening "$HY_TMP/app-$3.log"
}
app "$WE" 21001 middle http://127.0.0.1:21002
app "$EA" 22001 back
trace_dp() { # NAME SERVICE NS ZONE PORT ADMIN_PORT NEXT
    DP_FILE=$DATA/dp/dataplane-trace.yaml DP_VARS="next=$7" start_dp "$1" "$2" "$3" "$4" "$5" "$6"
}
DP_ADDRESS=$WE_IP trace_dp middle-1 middle "$WE" west 21000 9901 back
MIDDLE_PID=$LAST_PID
DP_ADDRESS=$EA_IP trace_dp back-1 back "$EA" east 22000 9903 web
BACK_PID=$LAST_PID
trace_dp web-1 web "$EA" east 21000 9901 middle
WEB_PID=$LAST_PID
hy_check "middle-1 (west) becomes ready" hy_wait_for 15 dp_ready "$WE" 9901
hy_check "back-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9903
hy_check "web-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9901

OUT=http://127.0.0.1:21002 # web-1's outbound to middle
wcurl() { inns "$EA" curl "$@"; }
# remote_http NS ADMIN SERVICE ZONE: that sidecar's outbound to SERVICE is
# http and goes to ZONE's ingress
remote_http() {
    inns "$1" curl -s "http://127.0.0.1:$2/config" | jq -e --arg s "$3" --arg z "$4" '.outbounds[]
        | select(.service == $s and .protocol == "http") | .endpoints[] | select(.zone == $z)' >/dev/null
}
hy_check "web-1 calls middle over http through west's ingress" hy_wait_for 20 remote_http "$EA" 9901 middle west
hy_check "middle-1 calls back over http through east's ingress" hy_wait_for 20 remote_http "$WE" 9901 back east
hy_eq "the chain answers before any MeshTrace" back "$(wcurl -s "$OUT/chain" | jq -r .next.name)"
hy_eq "and without one no trace header is added" "{}" "$(wcurl -s "$OUT/chain" | jq -c .headers)"

# apply_trace JQ: the MeshTrace on stdin applied on the global CP; waits
# until all three sidecars took a config whose .trace satisfies JQ
has_trace() { inns "$1" curl -s "http://127.0.0.1:$2/config" | jq -e ".trace | $3" >/dev/null; }
all_have() { has_trace "$EA" 9901 "$1" && has_trace "$EA" 9903 "$1" && has_trace "$WE" 9901 "$1"; }
apply_trace() {
    gctl apply -f - >/dev/null
    hy_wait_for 20 all_have "$1"
}
zipkin_policy() { # SAMPLING-YAML
    cat <<YAML
type: MeshTrace
mesh: default
name: tracing
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
      - type: Zipkin
        zipkin: {url: "http://$GA:$COL_PORT/api/v2/spans", traceId128bit: true}
    tags:
      - {name: team, literal: core}
      - name: tenant
        header: {name: x-tenant, default: none}
    $1
YAML
}

# ---- (1) Zipkin: one trace, B3's shared spans
hy_check "a Zipkin MeshTrace applied on the global CP reaches the three sidecars" \
    apply_trace '.type == "Zipkin" and .zone != null' < <(zipkin_policy "")
inns "$EA" curl -s http://127.0.0.1:9901/config | jq -c .trace >"$HY_TMP/web-trace.json"
hy_eq "web-1's trace config names its service and zone" "web east" \
    "$(jq -r '.service + " " + .zone' "$HY_TMP/web-trace.json")"
insp=$(zctl "$EA" inspect dataplane web-1 --mesh default 2>&1)
printf '%s\n' "$insp" >"$HY_TMP/inspect-web-1.txt"
hy_contains "inspect dataplane shows web-1's MeshTrace, its backend and origin" \
    "MeshTrace/tracing" "$insp"
hy_contains "and the Zipkin url" "http://$GA:$COL_PORT/api/v2/spans" "$insp"
r=$(wcurl -s "$OUT/chain")
T=$(jq -r .headers['"x-b3-traceid"'] <<<"$r")
A=$(jq -r .headers['"x-b3-spanid"'] <<<"$r")
B=$(jq -r .next.headers['"x-b3-spanid"'] <<<"$r")
hy_check "middle's app got a 128-bit trace id in B3 (${T})" grep -Eq '^[0-9a-f]{32}$' <<<"$T"
hy_eq "and the same context as traceparent, sampled" "00-$T-$A-01" "$(jq -r .headers.traceparent <<<"$r")"
hy_eq "back's app got the same trace, middle's client span as its parent's child" "$T $A" \
    "$(jq -r '.next.headers["x-b3-traceid"] + " " + .next.headers["x-b3-parentspanid"]' <<<"$r")"
spans_of() { jq -c --arg t "$1" 'select(.traceId == $t)' "$COL/zipkin.jsonl" 2>/dev/null; }
nspans() { [ "$(spans_of "$1" | wc -l)" -ge "$2" ]; }
hy_check "the collector gets the trace's four spans" hy_wait_for 15 nspans "$T" 4
spans_of "$T" >"$HY_TMP/z1.jsonl"
hy_eq "exactly four, all of this trace" 4 "$(wc -l <"$HY_TMP/z1.jsonl")"
# span SERVICE KIND: the span of that service and kind (one line)
span() { jq -c --arg s "$1" --arg k "$2" 'select(.localEndpoint.serviceName == $s and .kind == $k)' "$HY_TMP/z1.jsonl"; }
hy_eq "web's client span is the root, id A" "$A null" "$(span web CLIENT | jq -r '.id + " " + (.parentId | tostring)')"
hy_eq "middle's server span shares it (B3)" "$A null true" \
    "$(span middle SERVER | jq -r '.id + " " + (.parentId | tostring) + " " + (.shared | tostring)')"
hy_eq "middle's client span is its child, id B" "$B $A" "$(span middle CLIENT | jq -r '.id + " " + .parentId')"
hy_eq "back's server span shares B" "$B true" "$(span back SERVER | jq -r '.id + " " + (.shared | tostring)')"
hy_eq "web's client span: Kuma's tags" "default east web middle GET 200 core none http://127.0.0.1:21002/chain" \
    "$(span web CLIENT | jq -r '.tags | [.mesh, .zone, .service, .upstream_cluster, .["http.method"],
        .["http.status_code"], .team, .tenant, .["http.url"]] | join(" ")')"
hy_eq "and its remote endpoint" middle "$(span web CLIENT | jq -r .remoteEndpoint.serviceName)"
hy_eq "back's server span: its zone and service" "east back 200" \
    "$(span back SERVER | jq -r '.tags | [.zone, .service, .["http.status_code"]] | join(" ")')"
hy_eq "middle's spans: west" "west west" \
    "$(jq -r 'select(.localEndpoint.serviceName == "middle") | .tags.zone' "$HY_TMP/z1.jsonl" | paste -sd' ')"
hy_check "every span lasts and starts sometime" test "$(jq -s 'map(select(.duration > 0 and .timestamp > 1600000000000000)) | length' "$HY_TMP/z1.jsonl")" = 4

# ---- (2) what the caller sent is continued
r=$(wcurl -s -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' -H 'tracestate: k=v' "$OUT/chain")
hy_eq "a caller's traceparent is continued, its span the parent" "0af7651916cd43dd8448eb211c80319c" \
    "$(jq -r .headers['"x-b3-traceid"'] <<<"$r")"
hy_eq "and tracestate passes unchanged" "k=v" "$(jq -r .headers.tracestate <<<"$r")"
caller_span() {
    jq -c 'select(.traceId == "0af7651916cd43dd8448eb211c80319c" and .kind == "CLIENT"
        and .localEndpoint.serviceName == "web")' "$COL/zipkin.jsonl" 2>/dev/null | grep -q '"parentId": *"b7ad6b7169203331"'
}
if hy_wait_for 15 caller_span; then
    hy_ok "web's client span names the caller's span as parent"
else
    hy_fail "web's client span names the caller's span as parent"
    grep 0af7651916cd43dd8448eb211c80319c "$COL/zipkin.jsonl" >&2
    grep -i trace "$HY_TMP/dp-web-1.log" | tail -5 >&2
fi
r=$(wcurl -s -H 'b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1' "$OUT/chain")
hy_eq "a caller's b3 (single header) is answered in kind" "80f198ee56343ba864fe8b2a57d3eff7 null" \
    "$(jq -r '(.headers.b3 | split("-")[0]) + " " + (.headers["x-b3-traceid"] | tostring)' <<<"$r")"
r=$(wcurl -s -H 'traceparent: 00-zzzz' -H 'x-b3-traceid: 123' -H 'b3: -' "$OUT/chain")
hy_check "hostile trace headers: the call works and a new trace starts" \
    grep -Eq '^00-[0-9a-f]{32}-[0-9a-f]{16}-01$' <<<"$(jq -r .headers.traceparent <<<"$r")"
r=$(wcurl -s -H 'x-b3-sampled: 0' "$OUT/chain")
hy_eq "a caller's 'not sampled' is passed on" "0 0" "$(jq -r '.headers["x-b3-sampled"] + " " + .next.headers["x-b3-sampled"]' <<<"$r")"

# ---- (3) OpenTelemetry: OTLP/HTTP protobuf, a span per hop
hy_check "an OpenTelemetry MeshTrace reaches the three sidecars" apply_trace '.type == "OpenTelemetry"' <<YAML
type: MeshTrace
mesh: default
name: tracing
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
      - type: OpenTelemetry
        openTelemetry: {endpoint: "$GA:$COL_PORT"}
    tags:
      - name: tenant
        header: {name: x-tenant, default: none}
YAML
r=$(wcurl -s -H 'x-tenant: acme' "$OUT/chain")
T2=$(jq -r '.headers.traceparent | split("-")[1]' <<<"$r")
otlp_spans() { "$HY_BIN/hypha-test-otlp-dump" "$COL"/otlp-*.bin 2>/dev/null | jq -c --arg t "$T2" 'select(.traceId == $t)'; }
otlp_n() { [ "$(otlp_spans | wc -l)" -ge 4 ]; }
hy_check "the collector gets the trace's four spans as OTLP protobuf" hy_wait_for 15 otlp_n
hy_check "every OTLP body decodes with the schema" bash -c "'$HY_BIN/hypha-test-otlp-dump' '$COL'/otlp-*.bin >/dev/null"
otlp_spans >"$HY_TMP/o1.jsonl"
ospan() { jq -c --arg s "$1" --arg k "$2" 'select(.service == $s and .kind == $k)' "$HY_TMP/o1.jsonl"; }
WC=$(ospan web CLIENT | jq -r .spanId)
MS=$(ospan middle SERVER | jq -r .spanId)
MC=$(ospan middle CLIENT | jq -r .spanId)
BS=$(ospan back SERVER | jq -r .spanId)
hy_eq "four distinct spans" 4 "$(printf '%s\n' "$WC" "$MS" "$MC" "$BS" | grep -E '^[0-9a-f]{16}$' | sort -u | wc -l)"
hy_eq "web's client span is the root" "" "$(ospan web CLIENT | jq -r .parentSpanId)"
hy_eq "middle's server span is its child" "$WC" "$(ospan middle SERVER | jq -r .parentSpanId)"
hy_eq "middle's client span is the server span's child" "$MS" "$(ospan middle CLIENT | jq -r .parentSpanId)"
hy_eq "back's server span is middle's client span's child" "$MC" "$(ospan back SERVER | jq -r .parentSpanId)"
hy_eq "the app saw middle's server span as its parent" "$MS" "$(jq -r '.headers.traceparent | split("-")[2]' <<<"$r")"
hy_eq "OTLP attributes: Kuma's tags and the header tag" "default east middle 200 acme hypha-dp" \
    "$(ospan web CLIENT | jq -r '[.attributes.mesh, .attributes.zone, .attributes.upstream_cluster,
        .attributes["http.status_code"], .attributes.tenant, .scope] | join(" ")')"

# ---- (4) a dead collector costs the calls nothing; its spans are counted
wdropped() {
    wcurl -s http://127.0.0.1:9901/metrics |
        awk '$1 == "hypha_dp_trace_spans_dropped_total{reason=\"send_failed\"}" { print $2; f = 1 } END { if (!f) print 0 }'
}
kill "$COL_PID"
hy_check "the collector is gone" hy_wait_for 10 hy_gone "$COL_PID"
ok=0
for i in $(seq 1 50); do
    [ "$(wcurl -s -o /dev/null -w '%{http_code}' --max-time 10 "$OUT/chain")" = 200 ] && ok=$((ok + 1))
done
hy_eq "all 50 calls succeed with the collector gone" 50 "$ok"
dropped() { [ "$(wdropped)" -gt 0 ]; }
hy_check "web-1 counts the spans it could not send" hy_wait_for 15 dropped
promtool_ok() { ! command -v promtool >/dev/null || wcurl -s http://127.0.0.1:9901/metrics | promtool check metrics >/dev/null 2>&1; }
hy_check "its metrics page (with the trace counters) is valid Prometheus text" promtool_ok
hy_check "and says so once" hy_wait_for 5 grep -q 'trace: backend .*cannot connect' "$HY_TMP/dp-web-1.log"
start_collector

# ---- (5) sampling: random 10 %, over 1000 requests; the callee follows
hy_check "sampling random: 10 reaches the three sidecars" apply_trace '.random == 100000' \
    < <(zipkin_policy "sampling: {random: 10}")
urls=()
for ((i = 0; i < 1000; i++)); do urls+=("$OUT/leaf"); done
ok=$(wcurl -s -w '\n%{http_code}\n' "${urls[@]}" | grep -c '^200$')
hy_eq "1000 requests answered" 1000 "$ok"
leaf() { # SERVICE KIND: trace ids of /leaf spans
    jq -r --arg s "$1" --arg k "$2" 'select(.localEndpoint.serviceName == $s and .kind == $k
        and (.tags["http.url"] | endswith("/leaf"))) | .traceId' "$COL/zipkin.jsonl" 2>/dev/null | sort
}
settled() { # both sides reported the same number, twice in a row a moment apart
    local a b
    a=$(leaf web CLIENT | wc -l)
    b=$(leaf middle SERVER | wc -l)
    [ "$a" -gt 0 ] && [ "$a" = "$b" ] && sleep 0.5 && [ "$(leaf web CLIENT | wc -l)" = "$a" ]
}
hy_check "the sampled spans arrive from both sides" hy_wait_for 20 settled
n=$(leaf web CLIENT | wc -l)
hy_check "10 % sampled, within 5 percentage points: 50 to 150 of 1000 ($n)" test "$n" -ge 50 -a "$n" -le 150
hy_eq "middle's sidecar sampled the very same traces (the caller's decision)" \
    "$(leaf web CLIENT | md5sum)" "$(leaf middle SERVER | md5sum)"
hy_check "web-1 dropped nothing for a full queue" test "$(wcurl -s http://127.0.0.1:9901/metrics |
    awk '$1 == "hypha_dp_trace_spans_dropped_total{reason=\"queue_full\"}" { print $2 }')" = 0

hy_check "SIGTERM stops web-1" hy_stop "$WEB_PID"
hy_check "SIGTERM stops middle-1" hy_stop "$MIDDLE_PID"
hy_check "SIGTERM stops back-1" hy_stop "$BACK_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/dp-*.log*"
hy_done
