#!/usr/bin/env bash
# MeshTimeout's HTTP timeouts beyond requestTimeout, as Kuma places them:
# web-1 calls backend (kuma.io/protocol: http) through its outbound.
#   to.http.requestHeadersTimeout: an app that sends half a request head
#     gets 408 and the connection closed;
#   to.http.streamIdleTimeout: a response that pauses longer is cut, one
#     that keeps dripping lives on past it, a backend silent too long
#     answers 504;
#   to.http.maxStreamDuration: a long response is cut, a slow one 504;
#   to.http.maxConnectionDuration: web-1's pooled connections to
#     backend-1 are replaced as they age, no request failing;
#   from.http.maxConnectionDuration: backend-1's keep-alive connections
#     to its app are replaced likewise;
#   from.http.streamIdleTimeout: backend-1's inbound cuts an app silent
#     too long (504), not one that keeps dripping.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd) # hy_start_mesh_zone's
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_mesh_zone 1h

# ports: inbound PORT, app PORT+1, outbounds PORT+2 (backend), PORT+3 (backend-v2)
ports4() { hy_free_ports 4; }
B_PORT=$(ports4)
W_PORT=$(ports4)
ready() { curl -sf "$1/ready" >/dev/null; }

hy_start_http_app $((B_PORT + 1)) b1
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B_PORT" v1
B_PID=$DP_PID B_ADMIN=$DP_ADMIN
hy_start_http_dp web-1 web "$W_PORT" v1
W_PID=$DP_PID W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W_ADMIN"
hy_wait_for 20 ready "$B_ADMIN"
eps() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend" and .protocol == "http") | .endpoints[]?] | length == 1' >/dev/null; }
hy_check "web-1's outbound to backend is http, with backend-1" hy_wait_for 20 eps
OUT=http://127.0.0.1:$((W_PORT + 2))
hy_eq "a call goes through" "hello from b1" "$(curl -s "$OUT/")"

RAW_PY='
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
s.settimeout(float(sys.argv[2]))
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            out += b"\n<EOF>"
            break
        out += d
except socket.timeout:
    out += b"\n<TIMEOUT>"
sys.stdout.write(out.decode("latin1"))
'
raw() { python3 -c "$RAW_PY" "$1" "$2"; } # raw PORT SECONDS: sends stdin, prints what comes back until the close
timeouts() { # timeouts JSON: applies MeshTimeout backend-timeouts with to.default.http = JSON
    ctl apply -f - >/dev/null 2>"$HY_TMP/apply-t.err" <<YAML
type: MeshTimeout
mesh: default
name: backend-timeouts
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {http: $1}
YAML
}
applied() { # applied FIELD VALUE: web-1's outbound to backend has httpTimeouts.FIELD == VALUE
    curl -s "$W_ADMIN/config" | jq -e ".outbounds[] | select(.service == \"backend\") | .httpTimeouts.$1 == \"$2\"" >/dev/null
}

# ---- requestHeadersTimeout
p=$(printf 'GET / HTTP/1.1\r\nHost: a\r\n' | raw $((W_PORT + 2)) 8)
hy_contains "without requestHeadersTimeout half a head waits (no answer in 8 s)" "<TIMEOUT>" "$p"
timeouts '{requestHeadersTimeout: 1s}'
hy_eq "applying requestHeadersTimeout draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
hy_check "it reaches web-1" hy_wait_for 15 applied requestHeadersTimeout 1s
p=$(printf 'GET / HTTP/1.1\r\nHost: a\r\n' | raw $((W_PORT + 2)) 20)
hy_contains "half a head, then nothing for 1 s: 408" "HTTP/1.1 408" "$p"
hy_contains "with Connection: close" "Connection: close" "$p"
hy_contains "and the connection closed" "<EOF>" "$p"
hy_check "web-1 logs it" grep -q "request headers from .* not complete in time (requestHeadersTimeout)" "$W_LOG"
v=$(curl -sv "$OUT/" "$OUT/status/204" 2>&1)
hy_contains "whole requests on a kept-alive connection are not affected" "Re-using existing connection" "$v"
hy_contains "and answered" "HTTP/1.1 204" "$v"

# ---- streamIdleTimeout (requestTimeout off, so only the idle time cuts)
timeouts '{requestTimeout: 0s, streamIdleTimeout: 2s}'
hy_eq "applying streamIdleTimeout draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
hy_check "it reaches web-1" hy_wait_for 15 applied streamIdleTimeout 2s
hy_eq "a response dripping every 0.5 s for 4 s lives past 2 s of stream idle timeout" 8 \
    "$(curl -s "$OUT/drip/8/500" | grep -c drip)"
st=$(curl -s -o "$HY_TMP/idle.out" -w '%{http_code}' "$OUT/slow/5000")
hy_eq "a backend silent for 5 s: 504 after 2 s idle" 504 "$st"
hy_contains "saying stream timeout" "stream timeout" "$(cat "$HY_TMP/idle.out")"
out=$(curl -s "$OUT/drip/3/3000"; echo "rc=$?")
hy_contains "a response that pauses 3 s mid-body is cut: curl sees it end early" "rc=18" "$out"
hy_check "counted as timeouts" test "$(curl -s "$W_ADMIN/metrics" | awk '/^hypha_dp_http_timeouts_total/ { s += $NF } END { print s + 0 }')" -ge 2

# ---- maxStreamDuration
timeouts '{requestTimeout: 0s, maxStreamDuration: 2s}'
hy_check "maxStreamDuration reaches web-1" hy_wait_for 15 applied maxStreamDuration 2s
hy_eq "applying it draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
out=$(curl -s "$OUT/drip/10/500"; echo "rc=$?")
hy_contains "a response still dripping after 2 s is cut" "rc=18" "$out"
n=$(grep -c drip <<<"$out")
hy_check "after some of it ($n of 10 lines)" test "$n" -lt 10
st=$(curl -s -o "$HY_TMP/max.out" -w '%{http_code}' "$OUT/slow/4000")
hy_eq "a backend answering after 4 s: 504" 504 "$st"
hy_contains "upstream max stream duration reached" "upstream max stream duration reached" "$(cat "$HY_TMP/max.out")"
hy_eq "a quick call is not affected" "hello from b1" "$(curl -s "$OUT/")"

# ---- maxConnectionDuration, to: the pooled connections web-1 -> backend-1
inbound_conns() { hy_metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}'; }
timeouts '{requestTimeout: 5s}'
hy_check "without maxConnectionDuration" hy_wait_for 15 applied requestTimeout 5s
before=$(inbound_conns)
for i in $(seq 1 20); do curl -s -o /dev/null "$OUT/"; sleep 0.1; done
hy_check "20 calls over 2 s open no new pooled connection ($before -> $(inbound_conns))" \
    test "$(inbound_conns)" -le $((before + 1))
timeouts '{maxConnectionDuration: 1s}'
hy_check "maxConnectionDuration reaches web-1" hy_wait_for 15 applied maxConnectionDuration 1s
hy_eq "applying it draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
before=$(inbound_conns)
fails=0
renewed() { # a call, then: has backend-1 seen 3 more connections?
    [ "$(curl -s "$OUT/")" = "hello from b1" ] || fails=$((fails + 1))
    [ "$(inbound_conns)" -ge $((before + 3)) ]
}
hy_check "calls made while connections age: backend-1 sees the pooled connections replaced" hy_wait_for 30 renewed
hy_eq "and no call failed" 0 "$fails"

# ---- maxConnectionDuration, from: backend-1's connections to its app
ctl delete meshtimeout backend-timeouts -m default >/dev/null
app_conns() { curl -s "http://127.0.0.1:$((B_PORT + 1))/stats" | jq -r .connections; }
before=$(app_conns)
for i in $(seq 1 20); do curl -s -o /dev/null "$OUT/"; sleep 0.1; done
hy_check "20 calls over 2 s reuse backend-1's connections to its app ($before -> $(app_conns))" \
    test "$(app_conns)" -le $((before + 2))
ctl apply -f - >/dev/null 2>"$HY_TMP/apply-t.err" <<'YAML'
type: MeshTimeout
mesh: default
name: backend-in
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default: {http: {maxConnectionDuration: 1s}}
YAML
hy_eq "applying from maxConnectionDuration draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
in_applied() { curl -s "$B_ADMIN/config" | jq -e '.inbounds[0].httpTimeouts.maxConnectionDuration == "1s"' >/dev/null; }
hy_check "it reaches backend-1" hy_wait_for 15 in_applied
before=$(app_conns)
fails=0
app_renewed() {
    [ "$(curl -s "$OUT/")" = "hello from b1" ] || fails=$((fails + 1))
    [ "$(app_conns)" -ge $((before + 4)) ]
}
hy_check "calls made while they age: the app sees new connections" hy_wait_for 30 app_renewed
hy_eq "and no call failed" 0 "$fails"

# ---- streamIdleTimeout, from: backend-1's inbound cuts a silent app
ctl apply -f - >/dev/null 2>"$HY_TMP/apply-t.err" <<'YAML'
type: MeshTimeout
mesh: default
name: backend-in
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default: {http: {requestTimeout: 0s, streamIdleTimeout: 2s}}
YAML
hy_eq "applying from streamIdleTimeout draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
in_idle() { curl -s "$B_ADMIN/config" | jq -e '.inbounds[0].httpTimeouts.streamIdleTimeout == "2s"' >/dev/null; }
hy_check "it reaches backend-1" hy_wait_for 15 in_idle
st=$(curl -s -o "$HY_TMP/in-idle.out" -w '%{http_code}' "$OUT/slow/5000")
hy_eq "an app silent for 5 s: backend-1 answers 504 after 2 s idle" 504 "$st"
hy_contains "saying stream timeout" "stream timeout" "$(cat "$HY_TMP/in-idle.out")"
hy_eq "a response dripping every 0.5 s for 4 s lives on" 8 "$(curl -s "$OUT/drip/8/500" | grep -c drip)"

# ---- the end
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"

hy_done
