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
#     too long (504), not one that keeps dripping;
#   from.http.requestHeadersTimeout: a caller (raw HTTP/2 over mTLS, a
#     client certificate from a MeshTrust CA) that opens a header block
#     and never ends it gets 408 and the connection closed (GOAWAY);
#   from.idleTimeout: backend-1's keep-alive connections to its app close
#     once idle that long; inspect shows the inbound's merged values;
#   rules.connectionTimeout: an app that never accepts is answered 503
#     after that long.
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
B_APP_PID=$APP_PID
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B_PORT" v1
B_PID=$DP_PID B_ADMIN=$DP_ADMIN B_LOG=$DP_LOG
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

# ---- from.http.requestHeadersTimeout, at backend-1's inbound. The caller
# is a raw HTTP/2 client over mTLS with a certificate for web from a CA a
# MeshTrust adds (as in dp_proxy.sh): it sends HEADERS without END_HEADERS
# and then no CONTINUATION, holding the header block open.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=corp \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$HY_TMP/corp.key" -out "$HY_TMP/corp.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=corp-web \
    -keyout "$HY_TMP/corp-web.key" -out "$HY_TMP/corp-web.csr" 2>/dev/null
printf 'subjectAltName=URI:spiffe://default/web,URI:kuma://hypha.io/service/web\nextendedKeyUsage=clientAuth\n' \
    >"$HY_TMP/corp-web.ext"
openssl x509 -req -in "$HY_TMP/corp-web.csr" -CA "$HY_TMP/corp.pem" -CAkey "$HY_TMP/corp.key" \
    -CAcreateserial -days 1 -extfile "$HY_TMP/corp-web.ext" -out "$HY_TMP/corp-web.pem" 2>/dev/null
{
    printf 'type: MeshTrust\nmesh: default\nname: corp\nspec:\n  trustDomain: default\n'
    printf '  caBundles:\n    - type: Pem\n      pem:\n        value: |\n'
    sed 's/^/          /' "$HY_TMP/corp.pem"
} | ctl apply -f - >/dev/null
corp_trusted() { curl -s "$B_ADMIN/config" | jq -r .trustBundle | grep -qF "$(sed -n 2p "$HY_TMP/corp.pem")"; }
hy_check "the MeshTrust's CA reaches backend-1" hy_wait_for 15 corp_trusted
curl -s "$B_ADMIN/config" | jq -r .trustBundle >"$HY_TMP/bundle.pem"
# h2_open_block WAIT: prints the frames backend-1 sends back (HEADERS with
# its status if 408, GOAWAY, RST_STREAM), then EOF or TIMEOUT after WAIT
# s, and the seconds it took.
H2_PY='
import socket, ssl, struct, sys, time
port, wait, d = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(d + "/bundle.pem")
ctx.load_cert_chain(d + "/corp-web.pem", d + "/corp-web.key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
def frame(t, flags, sid, p):
    return struct.pack(">I", len(p))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + p
# the preface, empty SETTINGS, then HEADERS (END_STREAM, no END_HEADERS):
# :method GET, :scheme http, :path / (HPACK static indexes 2, 6, 4)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 1, 1, b"\x82\x86\x84"))
t0 = time.monotonic()
s.settimeout(wait)
buf, out = b"", []
try:
    while True:
        d = s.recv(65536)
        if not d:
            out.append("EOF")
            break
        buf += d
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            t, fl, sid, p = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]
            buf = buf[9 + n:]
            if t == 1:
                out.append("HEADERS %d%s%s" % (sid, " 408" if b"408" in p else "", " END_STREAM" if fl & 1 else ""))
            elif t == 7:
                out.append("GOAWAY")
            elif t == 3:
                out.append("RST_STREAM %d" % sid)
except socket.timeout:
    out.append("TIMEOUT")
except (ssl.SSLError, OSError):
    out.append("EOF")
print(" ".join(out), "%.2f" % (time.monotonic() - t0))
'
h2_open_block() { python3 -c "$H2_PY" "$B_PORT" "$1" "$HY_TMP"; }
o=$(h2_open_block 3)
hy_contains "without requestHeadersTimeout an open header block gets no answer (3 s)" "TIMEOUT" "$o"
ctl apply -f - >/dev/null 2>"$HY_TMP/apply-t.err" <<'YAML'
type: MeshTimeout
mesh: default
name: backend-in
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default: {idleTimeout: 1s, http: {requestHeadersTimeout: 1s}}
YAML
hy_eq "applying from requestHeadersTimeout and idleTimeout draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
in_headers() { curl -s "$B_ADMIN/config" | jq -e '.inbounds[0].httpTimeouts.requestHeadersTimeout == "1s" and .inbounds[0].idleTimeout == "1s"' >/dev/null; }
hy_check "they reach backend-1" hy_wait_for 15 in_headers
timeouts_before=$(hy_metric "$B_ADMIN" hypha_dp_http_timeouts_total)
o=$(h2_open_block 10)
hy_contains "an open header block, then nothing for 1 s: 408 ending the stream, GOAWAY, the stream reset, the connection closed" \
    "HEADERS 1 408 END_STREAM GOAWAY RST_STREAM 1 EOF" "$o"
hy_check "after 1 s, not before (${o##* } s)" awk -v v="${o##* }" 'BEGIN { exit !(v >= 0.95 && v < 5) }'
hy_check "backend-1 logs it" grep -q "inbound $B_PORT: request headers from spiffe://default/web not complete in time (requestHeadersTimeout)" "$B_LOG"
hy_check "and counts it as a timeout" test "$(hy_metric "$B_ADMIN" hypha_dp_http_timeouts_total)" -gt "$timeouts_before"
hy_eq "whole requests are not affected" "hello from b1" "$(curl -s "$OUT/")"

# ---- from.idleTimeout: backend-1's idle keep-alive connections to its app
app_open() { ss -Htn state established "( dport = :$((B_PORT + 1)) )" | wc -l; }
hy_eq "a call" "hello from b1" "$(curl -s "$OUT/")"
t0=$(date +%s%N)
n=$(app_open)
hy_check "leaves backend-1 kept-alive connections to its app ($n)" test "$n" -ge 1
no_app_conn() { [ "$(app_open)" -eq 0 ]; }
hy_check "all closed once idle 1 s" hy_wait_for 10 no_app_conn
ms=$((($(date +%s%N) - t0) / 1000000))
hy_check "after 1 s, not before ($ms ms)" test "$ms" -ge 950 -a "$ms" -lt 5000
hy_eq "the next call opens a new one" "hello from b1" "$(curl -s "$OUT/")"

# ---- inspect shows what backend-1's inbound gets, and from where
o=$("$HY_BIN/hyphactl" --cp "$E" inspect dataplane backend-1 --type=rules)
hy_check "inspect --type=rules: the inbound's requestHeadersTimeout, from backend-in" \
    grep -qE "http\.requestHeadersTimeout +1s +MeshTimeout/backend-in from\[0\]" <<<"$o"
hy_check "and its idleTimeout" grep -qE "^ +idleTimeout +1s +MeshTimeout/backend-in from\[0\]" <<<"$o"

# ---- rules.connectionTimeout: an app that never accepts
ctl apply -f - >/dev/null 2>"$HY_TMP/apply-t.err" <<'YAML'
type: MeshTimeout
mesh: default
name: backend-in
spec:
  targetRef: {kind: MeshService, name: backend}
  rules:
    - default: {connectionTimeout: 1s, http: {requestTimeout: 0s}}
YAML
hy_eq "applying rules connectionTimeout draws no warning" "" "$(cat "$HY_TMP/apply-t.err")"
in_connect() { curl -s "$B_ADMIN/config" | jq -e '.inbounds[0].connectTimeout == "1s"' >/dev/null; }
hy_check "it reaches backend-1" hy_wait_for 15 in_connect
kill "$B_APP_PID"
wait "$B_APP_PID" 2>/dev/null || true
python3 "$(dirname "$0")/../tools/full_backlog.py" $((B_PORT + 1)) >"$HY_TMP/full.log" 2>&1 &
HY_PIDS+=($!)
hy_check "backend-1's app now never accepts (its accept queue is full)" hy_wait_for 10 grep -q "full after" "$HY_TMP/full.log"
timeouts_before=$(hy_metric "$B_ADMIN" hypha_dp_http_timeouts_total)
st=$(curl -s -o "$HY_TMP/connect.out" -w '%{http_code} %{time_total}' "$OUT/")
hy_eq "a call: 503, as for an app that is down" 503 "${st% *}"
hy_check "after 1 s, not web-1's 15 s request timeout (${st#* } s)" awk -v v="${st#* }" 'BEGIN { exit !(v >= 1 && v < 10) }'
hy_contains "saying why" "no connection within 1000 ms (connectionTimeout)" "$(cat "$HY_TMP/connect.out")"
hy_check "backend-1 logs it" grep -q "inbound: cannot connect to the app at 127.0.0.1:$((B_PORT + 1)): no connection within 1000 ms (connectionTimeout)" "$B_LOG"
hy_check "and counts it as a timeout" test "$(hy_metric "$B_ADMIN" hypha_dp_http_timeouts_total)" -gt "$timeouts_before"

# ---- the end
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"

hy_done
