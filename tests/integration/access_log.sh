#!/usr/bin/env bash
# MeshAccessLog against a real global CP, zone and sidecars: web-1 calls
# backend-1 (HTTP apps, tests/tools/http_app.py) and tcpc-1 calls tcpsvc-1
# (a TCP echo). Checked: a format with an unknown command operator is
# refused by name; File backends in plain and json, line by line against
# the requests made (method, path, status, source and destination
# service, upstream); Kuma's default TCP line per connection; a Tcp
# backend to a collector (tests/tools/alog_collector.py); a collector that
# stops reading costs the calls nothing (they all complete, lines are
# dropped and counted); the sidecar reconnects when the collector is back;
# no MeshAccessLog: the stderr access line, as before.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }
command -v jq >/dev/null || { hy_log "no jq"; exit 77; }

hy_start_mesh_zone 1h
ports4() { hy_free_ports 4; }
B_PORT=$(ports4)
W_PORT=$(ports4)
ready() { curl -sf "$1/ready" >/dev/null; }
cfg_version() { curl -s "$1/config" | jq -r .version; }
pol_apply() { # pol_apply ADMIN...: the policy on stdin, then waits for each ADMIN to take a new config
    local a v=()
    for a in "$@"; do v+=("$(cfg_version "$a")"); done
    ctl apply -f - >/dev/null
    local i=0
    for a in "$@"; do
        hy_wait_for 15 bash -c "[ \"\$(curl -s '$a/config' | jq -r .version)\" != '${v[$i]}' ]"
        i=$((i + 1))
    done
}
lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
has_lines() { [ "$(lines "$1")" -ge "$2" ]; }

hy_start_http_app $((B_PORT + 1)) b1
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B_PORT" v1
B_ADMIN=$DP_ADMIN B_LOG=$DP_LOG B_PID=$DP_PID
hy_start_http_dp web-1 web "$W_PORT" v1
W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG W_PID=$DP_PID
hy_check "the sidecars become ready" hy_wait_for 20 ready "$B_ADMIN"
hy_wait_for 20 ready "$W_ADMIN"
eps() { curl -s "$W_ADMIN/config" | jq -e "[.outbounds[] | select(.service == \"backend\") | .endpoints[]? | select(.port == $B_PORT)] | length == 1" >/dev/null; }
hy_check "web-1 lists backend-1" hy_wait_for 15 eps
OUT=http://127.0.0.1:$((W_PORT + 2))

# ---- no MeshAccessLog: today's stderr line
hy_eq "a call goes through" "hello from b1" "$(curl -s "$OUT/before")"
hy_check "without a MeshAccessLog the sidecar writes its stderr access line" \
    hy_wait_for 10 grep -q 'INFO.*http direction=outbound.*path=/before' "$W_LOG"

# ---- validation: formats are parsed when written
bad=$(ctl apply -f - 2>&1 <<'YAML' || true
type: MeshAccessLog
mesh: default
name: bad
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file: {path: /tmp/x.log, format: {type: Plain, plain: "%START_TIME% %NOT_AN_OPERATOR%"}}
YAML
)
hy_contains "an unknown command operator is refused by name" "unknown command operator %NOT_AN_OPERATOR%" "$bad"
hy_contains "at its field" "spec.to[0].default.backends[0].file.format.plain" "$bad"

# ---- File backends, plain and json, at web-1's outbound; a Tcp one at backend-1's inbound
COL_PORT=$(hy_free_port)
COL_OUT=$HY_TMP/collector.out
start_collector() { # start_collector [--stall]: sets COL_PID
    local log=$HY_TMP/collector-$((++COL_N)).log
    python3 "$TOOLS/alog_collector.py" "$COL_PORT" "$COL_OUT" "$@" >"$log" 2>&1 &
    COL_PID=$!
    HY_PIDS+=("$COL_PID")
    COL_LOG=$log
    hy_wait_for 10 grep -q listening "$log"
}
COL_N=0
start_collector
PLAIN=$HY_TMP/web-out.log
JSON=$HY_TMP/web-out.json
BIN=$HY_TMP/backend-in.log
pol_apply "$W_ADMIN" <<YAML
type: MeshAccessLog
mesh: default
name: web-outbound
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        backends:
          - type: File
            file:
              path: $PLAIN
              format:
                type: Plain
                plain: '%KUMA_TRAFFIC_DIRECTION% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %KUMA_SOURCE_SERVICE% %KUMA_DESTINATION_SERVICE% %UPSTREAM_HOST% %KUMA_MESH% %PROTOCOL% [%REQ(X-NONE)%] 100%%'
          - type: File
            file:
              path: $JSON
              format:
                type: Json
                json:
                  - {key: method, value: '%REQ(:METHOD)%'}
                  - {key: path, value: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%'}
                  - {key: status, value: '%RESPONSE_CODE%'}
                  - {key: src, value: '%KUMA_SOURCE_SERVICE%'}
                  - {key: dst, value: '%KUMA_DESTINATION_SERVICE%'}
                  - {key: upstream, value: '%UPSTREAM_HOST%'}
                  - {key: ua, value: '%REQ(USER-AGENT)%'}
                  - {key: missing, value: '%REQ(X-NONE)%'}
                  - {key: start, value: '%START_TIME%'}
                  - {key: quoted, value: '"%REQ(X-QUOTE)%"'}
                  - {key: from, value: '%DOWNSTREAM_REMOTE_ADDRESS%'}
YAML
pol_apply "$B_ADMIN" <<YAML
type: MeshAccessLog
mesh: default
name: backend-inbound
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file: {path: $BIN}
          - type: Tcp
            tcp:
              address: 127.0.0.1:$COL_PORT
              format:
                type: Json
                json:
                  - {key: dir, value: '%KUMA_TRAFFIC_DIRECTION%'}
                  - {key: path, value: '%REQ(:PATH)%'}
                  - {key: status, value: '%RESPONSE_CODE%'}
                  - {key: src, value: '%KUMA_SOURCE_SERVICE%'}
                  - {key: dst, value: '%KUMA_DESTINATION_SERVICE%'}
                  - {key: pad, value: '%REQ(X-PAD)%'}
                omitEmptyValues: true
YAML
hy_check "web-1's config carries the outbound access log" \
    bash -c "curl -s '$W_ADMIN/config' | jq -e '.outbounds[] | select(.service == \"backend\") | .accessLog.backends | length == 2' >/dev/null"
hy_check "backend-1's inbound carries its own" \
    bash -c "curl -s '$B_ADMIN/config' | jq -e '.inbounds[0].accessLog.origin == \"MeshAccessLog/backend-inbound from[0]\"' >/dev/null"

zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
insp=$(zctl inspect dataplane backend-1 --mesh default 2>&1)
hy_contains "inspect: where backend-1's inbound logs, and which entry says so" \
    "inbound $B_PORT: logged to File $BIN, Tcp 127.0.0.1:$COL_PORT (MeshAccessLog/backend-inbound from[0])" "$insp"
insp=$(zctl inspect dataplane web-1 --mesh default 2>&1)
hy_contains "inspect: web-1's outbound to backend, with its origin" "MeshAccessLog/web-outbound to[0]" "$insp"

# the requests, one after another
curl -s -o /dev/null "$OUT/a"
curl -s -o /dev/null "$OUT/status/404"
curl -s -o /dev/null -X POST --data hello "$OUT/echo?x=1"
curl -s -o /dev/null -H 'X-Quote: say "hi"\' "$OUT/status/418"
curl -s -o /dev/null -X DELETE "$OUT/b/c"
B_UP=127.0.0.1:$B_PORT
expected=$(
    cat <<EOF
OUTBOUND GET /a 200 web backend $B_UP default HTTP/1.1 [-] 100%
OUTBOUND GET /status/404 404 web backend $B_UP default HTTP/1.1 [-] 100%
OUTBOUND POST /echo?x=1 200 web backend $B_UP default HTTP/1.1 [-] 100%
OUTBOUND GET /status/418 418 web backend $B_UP default HTTP/1.1 [-] 100%
OUTBOUND DELETE /b/c 200 web backend $B_UP default HTTP/1.1 [-] 100%
EOF
)
hy_check "the plain file gets five lines" hy_wait_for 10 has_lines "$PLAIN" 5
hy_eq "plain: each line is its request (method, path, status, services, upstream)" \
    "$(sort <<<"$expected")" "$(sort "$PLAIN")"
hy_check "the json file gets five lines" hy_wait_for 10 has_lines "$JSON" 5
hy_check "every json line is one JSON object" bash -c "jq -e . '$JSON' >/dev/null"
got=$(jq -r '[.method, .path, .status, .src, .dst, .upstream] | join(" ")' "$JSON" | sort)
want=$(printf '%s\n' "GET /a 200" "GET /status/404 404" "POST /echo?x=1 200" "GET /status/418 418" \
    "DELETE /b/c 200" | sed "s|\$| web backend $B_UP|" | sort)
hy_eq "json: each line is its request" "$want" "$got"
hy_eq "json: an absent header is null" "null" "$(jq -r .missing <"$JSON" | sort -u)"
hy_contains "json: the user agent" "curl/" "$(head -n 1 "$JSON" | jq -r .ua)"
hy_eq "json: quotes and backslashes escaped" 'say "hi"\' \
    "$(jq -r 'select(.status == "418") | .quoted' "$JSON" | sed 's/^"//; s/"$//')"
# an outbound looks its caller's address up only when asked: here, by the log
hy_eq "json: each line has the app's own address and port (DOWNSTREAM_REMOTE_ADDRESS)" 5 \
    "$(jq -r .from "$JSON" | grep -cxE '127\.0\.0\.1:[0-9]+')"
hy_check "json: START_TIME is ISO 8601 UTC with milliseconds" \
    bash -c "jq -r .start '$JSON' | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'"
hy_check "with a MeshAccessLog the stderr line goes to debug level" \
    bash -c "! grep -q 'INFO.*http direction=outbound.*path=/status/418' '$W_LOG'"

# backend-1's inbound: Kuma's default HTTP line in its file, json on the collector
hy_check "backend-1's file gets a line per request" hy_wait_for 10 has_lines "$BIN" 5
hy_check "in Kuma's default HTTP format" \
    grep -qE '^\[[0-9T:.-]+Z\] default "GET /status/404 HTTP/2" 404 - - - [0-9]+ [0-9-]+ "-" "curl/[^"]+" "-" "127.0.0.1:[0-9]+" "web" "backend" "127.0.0.1" "127.0.0.1:'$((B_PORT + 1))'"$' "$BIN"
hy_check "the collector gets a line per request" hy_wait_for 10 has_lines "$COL_OUT" 5
got=$(jq -r '[.dir, .path, .status, .src, .dst] | join(" ")' "$COL_OUT" | sort)
want=$(printf '%s\n' "/a 200" "/status/404 404" "/echo?x=1 200" "/status/418 418" "/b/c 200" |
    sed 's|^|INBOUND |; s|$| web backend|' | sort)
hy_eq "the collector's lines are the requests, as backend-1 saw them" "$want" "$got"
hy_eq "omitEmptyValues: an absent value leaves its key out" "false" "$(head -n 1 "$COL_OUT" | jq 'has("pad")')"

# ---- a collector that stops reading: calls go on, lines are dropped and counted
kill "$COL_PID"
wait "$COL_PID" 2>/dev/null || true
start_collector --stall
hy_check "the sidecar reconnects to the (now stalled) collector" hy_wait_for 30 grep -q accepted "$COL_LOG"
PAD=$(head -c 4000 /dev/zero | tr '\0' p)
N=400 # 1.6 MB of lines: more than the 1 MiB queue and the sockets hold
ok=$(for ((i = 0; i < N; i++)); do curl -s -o /dev/null -w '%{http_code}\n' -H "X-Pad: $PAD" "$OUT/stalled/$i"; done | grep -c '^200$')
hy_eq "all $N calls complete while the collector reads nothing" "$N" "$ok"
drop="hypha_dp_access_log_dropped_total{backend=\"tcp:127.0.0.1:$COL_PORT\"}"
dropped=$(hy_metric "$B_ADMIN" "$drop")
hy_check "lines that did not fit are dropped and counted ($dropped)" test "${dropped%.*}" -gt 0
hy_eq "the file backend beside it lost none" 0 "$(hy_metric "$B_ADMIN" "hypha_dp_access_log_dropped_total{backend=\"file:$BIN\"}")"
hy_check "the file has every line" hy_wait_for 10 has_lines "$BIN" $((5 + N))
promtool_ok() { ! command -v promtool >/dev/null || curl -s "$1/metrics" | promtool check metrics >/dev/null 2>&1; }
hy_check "valid Prometheus text" promtool_ok "$B_ADMIN"

# ---- the collector comes back: the sidecar reconnects and sends again
kill "$COL_PID"
wait "$COL_PID" 2>/dev/null || true
: >"$COL_OUT"
start_collector
hy_check "the sidecar reconnects to the restarted collector" hy_wait_for 30 grep -q accepted "$COL_LOG"
curl -s -o /dev/null "$OUT/after-restart"
hy_check "and its lines arrive there" hy_wait_for 15 grep -q '"/after-restart"' "$COL_OUT"
hy_contains "the sidecar said it lost the collector" "collector closed the connection" "$(cat "$B_LOG")"

# ---- OpenTelemetry: OTLP/HTTP logs (protobuf) to a receiver that decodes the wire format
OTLP_PORT=$(hy_free_port)
OTLP_OUT=$HY_TMP/otlp.jsonl
python3 "$TOOLS/otlp_receiver.py" "$OTLP_PORT" "$OTLP_OUT" >"$HY_TMP/otlp.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 10 grep -q listening "$HY_TMP/otlp.log"
ctl delete meshaccesslog web-outbound --mesh default >/dev/null
pol_apply "$W_ADMIN" <<YAML
type: MeshAccessLog
mesh: default
name: web-otel
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        backends:
          - type: OpenTelemetry
            openTelemetry:
              endpoint: 127.0.0.1:$OTLP_PORT
              body:
                kvlistValue:
                  values:
                    - key: mesh
                      value: {stringValue: "%KUMA_MESH%"}
                    - key: path
                      value: {stringValue: "%REQ(:PATH)%"}
                    - key: sampled
                      value: {boolValue: true}
                    - key: tags
                      value: {arrayValue: {values: [{stringValue: "%KUMA_SOURCE_SERVICE%"}, {intValue: 7}]}}
              attributes:
                - key: start_time
                  value: "%START_TIME%"
                - key: http.status
                  value: "%RESPONSE_CODE%"
          - type: OpenTelemetry
            openTelemetry:
              endpoint: 127.0.0.1:$OTLP_PORT
YAML
for p in /otel/1 /otel/2 /status/503; do curl -s -o /dev/null "$OUT$p"; done
otel_n() { [ -f "$OTLP_OUT" ] && [ "$(jq -s '[.[] | select(.body | type == "object")] | length' "$OTLP_OUT")" -ge 3 ]; }
hy_check "the receiver decodes a LogRecord per request" hy_wait_for 15 otel_n
got=$(jq -r 'select(.body | type == "object") | [.body.mesh, .body.path, .attributes["http.status"], .scope] | join(" ")' "$OTLP_OUT" | sort)
hy_eq "each body and attribute is the request's" "$(printf '%s\n' "default /otel/1 200 hypha-dp" "default /otel/2 200 hypha-dp" "default /status/503 503 hypha-dp")" "$got"
hy_eq "a body keeps its types (bool, array, int)" 'true ["web",7]' \
    "$(jq -c 'select(.body | type == "object") | [.body.sampled, .body.tags]' "$OTLP_OUT" | head -n 1 | jq -r '"\(.[0]) \(.[1] | tojson)"')"
hy_check "attributes: START_TIME, and the record's time is the request's start (ns)" bash -c \
    "jq -se 'map(select(.body | type == \"object\") | (.attributes.start_time | test(\"^[0-9-]+T[0-9:.]+Z$\")) and (.time > 1600000000000000000) and (.observed >= .time)) | all' '$OTLP_OUT' >/dev/null"
hy_check "no body given: Kuma's default HTTP line as a string" \
    bash -c "jq -r 'select(.body | type == \"string\") | .body' '$OTLP_OUT' | grep -q '\"GET /otel/1 HTTP/1.1\" 200'"
hy_eq "the receiver refused nothing" "" "$(grep -v listening "$HY_TMP/otlp.log" || true)"

# ---- TCP traffic: Kuma's default TCP line per connection
T_PORT=$(ports4)
C_PORT=$(ports4)
ECHO_PY='
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); print("listening", flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: return
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
'
python3 -c "$ECHO_PY" $((T_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 10 grep -q listening "$HY_TMP/echo.log"
tcp_dp() { # tcp_dp NAME SERVICE PORT OUT_SERVICE
    cat >"$HY_TMP/$1.yaml" <<YAML
type: Dataplane
mesh: default
name: $1
networking:
  address: 127.0.0.1
  inbound:
    - port: $3
      servicePort: $(($3 + 1))
      tags: {kuma.io/service: $2}
  outbound:
    - port: $(($3 + 2))
      tags: {kuma.io/service: $4}
YAML
    hy_dp_token "$1" default "$2"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$HY_TMP/$1.yaml" --dataplane-token-file "$HY_TMP/$1.token" \
        --admin-address 127.0.0.1:0 --workers 2 >"$HY_TMP/dp-$1.log" 2>&1 &
    HY_PIDS+=($!)
    hy_wait_for 15 grep -q 'admin on http://' "$HY_TMP/dp-$1.log"
    DP_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/dp-$1.log" | sed 's/admin on //')
}
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: tcpc-to-tcpsvc
spec:
  targetRef: {kind: MeshService, name: tcpsvc}
  from:
    - targetRef: {kind: MeshService, name: tcpc}
      default: {action: Allow}
YAML
TLOG=$HY_TMP/tcp.log
ctl apply -f - >/dev/null <<YAML
type: MeshAccessLog
mesh: default
name: tcp-default
spec:
  targetRef: {kind: MeshService, name: tcpc}
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file: {path: $TLOG}
YAML
tcp_dp tcpsvc-1 tcpsvc "$T_PORT" none
T_ADMIN=$DP_ADMIN
tcp_dp tcpc-1 tcpc "$C_PORT" tcpsvc
C_ADMIN=$DP_ADMIN
hy_wait_for 20 ready "$T_ADMIN"
hy_wait_for 20 ready "$C_ADMIN"
teps() { curl -s "$C_ADMIN/config" | jq -e "[.outbounds[] | select(.service == \"tcpsvc\") | .endpoints[]? | select(.port == $T_PORT)] | length == 1" >/dev/null; }
hy_check "tcpc-1 lists tcpsvc-1" hy_wait_for 15 teps
SEND_PY='
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"hello"); got = b""
while len(got) < 5:
    d = s.recv(100)
    if not d: break
    got += d
print(got.decode()); s.close()
'
hy_eq "a TCP call goes through" hello "$(python3 -c "$SEND_PY" $((C_PORT + 2)))"
hy_check "one line for the connection" hy_wait_for 10 has_lines "$TLOG" 1
hy_check "in Kuma's default TCP format: mesh, source, upstream, destination, bytes" \
    grep -qE '^\[[0-9T:.-]+Z\] - default 127\.0\.0\.1\(tcpc\)->127\.0\.0\.1:'"$T_PORT"'\(tcpsvc\) took [0-9]+ms, sent 5 bytes, received: 5 bytes$' "$TLOG"

# ---- shutdown: the writer thread joins, queues and backends are freed
hy_check "backend-1 stops cleanly" hy_stop "$B_PID"
hy_check "web-1 stops cleanly" hy_stop "$W_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/dp-*.log*"

hy_done
