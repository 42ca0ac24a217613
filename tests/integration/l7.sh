#!/usr/bin/env bash
# The sidecar's HTTP (L7) data path against a real zone: apps (a small
# Python HTTP/1.1 server, tests/tools/http_app.py) behind sidecars whose
# inbounds are kuma.io/protocol: http. web-1's outbound parses the app's
# HTTP/1.1 and sends each request over a pool of long-lived mTLS HTTP/2
# connections to backend-1's inbound, which hands it to its app as
# HTTP/1.1. Checked: calls, keep-alive, many new connections costing no new
# mesh connections, request smuggling refused (400 + close), hop-by-hop
# headers, Connection: close, HTTP/1.0, an upgrade tunnel, a permission
# withdrawn while the pool stays open (403), metrics and access-log lines;
# then the policies: MeshHTTPRoute (split, header match, rewrites,
# redirect), MeshRetry, MeshTimeout, MeshFaultInjection, MeshRateLimit.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_mesh_zone 1h
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend-v2
spec:
  targetRef: {kind: MeshService, name: backend-v2}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

# ports: inbound PORT, app PORT+1, outbounds PORT+2 (backend), PORT+3 (backend-v2)
ports4() { hy_free_ports 4; }
B_PORT=$(ports4)
B2_PORT=$(ports4)
W_PORT=$(ports4)

ready() { curl -sf "$1/ready" >/dev/null; }
metric_sum() { # metric_sum ADMIN REGEX: the sum of the series matching
    curl -s "$1/metrics" | awk -v m="$2" '$1 ~ m { s += $NF } END { print s + 0 }'
}

hy_start_http_app $((B_PORT + 1)) b1
hy_start_http_app $((B2_PORT + 1)) b2
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B_PORT" v1
B_ADMIN=$DP_ADMIN B_LOG=$DP_LOG B_PID=$DP_PID
hy_start_http_dp backend-v2-1 backend-v2 "$B2_PORT" v2
B2_ADMIN=$DP_ADMIN B2_PID=$DP_PID
hy_start_http_dp web-1 web "$W_PORT" v1
W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG W_PID=$DP_PID
hy_check "the sidecars become ready" hy_wait_for 20 ready "$B_ADMIN"
hy_wait_for 20 ready "$B2_ADMIN"
hy_wait_for 20 ready "$W_ADMIN"
proto() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .protocol == "http"' >/dev/null; }
hy_check "web-1's outbound to backend is protocol http (the inbound's kuma.io/protocol)" hy_wait_for 15 proto
eps() { curl -s "$W_ADMIN/config" | jq -e "[.outbounds[] | select(.service == \"backend\") | .endpoints[]? | select(.port == $B_PORT)] | length == 1" >/dev/null; }
hy_check "and lists backend-1" hy_wait_for 15 eps
OUT=http://127.0.0.1:$((W_PORT + 2))
OUT2=http://127.0.0.1:$((W_PORT + 3))

# ---- basics
hy_eq "a GET through web-1 and backend-1 reaches b1" "hello from b1" "$(curl -s "$OUT/")"
hy_eq "a status comes back" 418 "$(curl -s -o /dev/null -w '%{http_code}' "$OUT/status/418")"
echo=$(curl -s -H 'X-Test: 1' -H 'Connection: keep-alive, X-Hop' -H 'X-Hop: secret' "$OUT/echo?q=1")
hy_eq "the app sees the path and query" "/echo?q=1" "$(jq -r .path <<<"$echo")"
hy_eq "the app sees Host" "127.0.0.1:$((W_PORT + 2))" "$(jq -r .headers.host <<<"$echo")"
hy_eq "and the request's own headers" 1 "$(jq -r '.headers["x-test"]' <<<"$echo")"
hy_eq "but no hop-by-hop header (one Connection names)" null "$(jq -r '.headers["x-hop"]' <<<"$echo")"
body=$(head -c 300000 /dev/urandom | base64 -w0)
got=$(printf '%s' "$body" | curl -s -X POST --data-binary @- "$OUT/echo" | jq -r .body)
hy_eq "a 400 kB POST body arrives whole" "${#body}" "$got"
t=$(printf '%s' "$body" | curl -s -o /dev/null -w '%{time_total}' -H 'Expect: 100-continue' -X POST --data-binary @- "$OUT/echo")
hy_check "Expect: 100-continue is answered by the sidecar at once ($t s, curl waits 1 s otherwise)" \
    awk -v t="$t" 'BEGIN { exit !(t < 0.9) }'
chunked=$(printf '%s' "$body" | curl -s -X POST -H 'Transfer-Encoding: chunked' --data-binary @- "$OUT/echo" | jq -r .body)
hy_eq "and chunked" "${#body}" "$chunked"
big=$(curl -s "$OUT/echo?$(head -c 3000 /dev/zero | tr '\0' a)" | wc -c)
hy_check "a long query goes through" test "$big" -gt 3000

# keep-alive: two requests on one connection
v=$(curl -sv "$OUT/" "$OUT/status/204" 2>&1)
hy_contains "two requests on one kept-alive connection" "Re-using existing connection" "$v"
hy_contains "the second answered" "HTTP/1.1 204" "$v"
# pipelining: two requests in one write, answered in order
RAW_PY='
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
s.settimeout(5)
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
raw() { python3 -c "$RAW_PY" "$1"; } # raw PORT: sends stdin, prints what comes back until the close (5 s at most)
p=$(printf 'GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | raw $((W_PORT + 2)))
hy_check "pipelined requests are answered in order" grep -qz 'HTTP/1.1 201.*HTTP/1.1 202' <<<"$p"
hy_contains "Connection: close asked: the answer says so" "Connection: close" "$p"
hy_contains "and the connection ends" "<EOF>" "$p"
p=$(printf 'GET / HTTP/1.0\r\nHost: a\r\n\r\n' | raw $((W_PORT + 2)))
hy_contains "HTTP/1.0 without keep-alive: answered" "hello from b1" "$p"
hy_contains "then closed" "<EOF>" "$p"
# once a Connection: close request is all in, web-1 reads the app's
# socket no more (usually never registering it with epoll): a client that
# half-closes while the backend is slow still gets its answer, and one that
# gives up (a reset) leaves no connection behind once the answer comes
GONE_PY='
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /slow/300 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
if sys.argv[2] == "fin":
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    print(out.split(b"\r\n")[0].decode())
else:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("reset")
'
hy_eq "Connection: close, the client half-closes while the backend is slow: answered" \
    "HTTP/1.1 200 OK" "$(python3 -c "$GONE_PY" $((W_PORT + 2)) fin)"
active() { hy_metric "$W_ADMIN" 'hypha_dp_active_connections{direction="outbound"}'; }
before=$(active) # the pooled mTLS connections
hy_eq "Connection: close, the client resets while the backend is slow" reset \
    "$(python3 -c "$GONE_PY" $((W_PORT + 2)) reset)"
gone_too() { [ "$(active)" = "$before" ]; }
hy_check "and web-1 holds its connection no longer than the answer takes" hy_wait_for 10 gone_too
hy_check "and logs that connection's end at info level, saying why" hy_wait_for 5 \
    grep -q "INFO dp: access direction=outbound port=$((W_PORT + 2)) .*result=error: writing to the downstream" "$W_LOG"
# after the answer and the sidecar's FIN, a client writes more: the
# sidecar's socket is already closed when the client asked for the close
# (Connection: close, nothing unread: no wait for the client's FIN, so the
# late bytes get a reset), and still draining when the sidecar decided the
# close (a smuggling attempt's 400: late bytes dropped for up to 1 s, so
# no reset can overtake the answer)
AFTER_EOF_PY='
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin1"))
s.settimeout(5)
while s.recv(65536):
    pass
state, t = "QUIET", time.monotonic()
while time.monotonic() - t < 0.5:
    try:
        s.send(b"X")
    except (BrokenPipeError, ConnectionResetError):
        state = "RESET"
        break
    time.sleep(0.05)
print(state)
'
st=$(python3 -c "$AFTER_EOF_PY" $((W_PORT + 2)) 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
hy_eq "Connection: close asked, nothing unread: closed at once, no drain (late bytes reset)" RESET "$st"
st=$(python3 -c "$AFTER_EOF_PY" $((W_PORT + 2)) 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n')
hy_eq "a close the sidecar decided (400): it drains, late bytes are dropped, no reset" QUIET "$st"

# many new connections: the pooled hop makes no new mesh connections
before=$(hy_metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}')
for i in $(seq 1 100); do curl -s -o /dev/null "$OUT/"; done
after=$(hy_metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}')
hy_check "100 new app connections: backend-1 accepted at most 2 new mTLS connections ($before -> $after)" \
    test $((after - before)) -le 2
hy_check "backend-1 has at most one pooled connection per worker of web-1" test "$after" -le 4
# an HTTP app's connection that ended well leaves no line of its own at
# info level (each request has one); one that ended badly still does (above)
hy_eq "the app's connections that ended well: no per-connection line" 0 \
    "$(grep -c "access direction=outbound port=$((W_PORT + 2)) .*result=ok" "$W_LOG" || true)"

# ---- smuggling and malformed requests: 400, Connection: close, closed
smuggle() { # smuggle WHAT REQUEST
    local r
    r=$(printf "$2" | raw $((W_PORT + 2)))
    hy_contains "$1: 400" "HTTP/1.1 400" "$r"
    hy_contains "$1: Connection: close" "Connection: close" "$r"
    hy_contains "$1: closed" "<EOF>" "$r"
}
smuggle "Content-Length and Transfer-Encoding" 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
smuggle "two different Content-Lengths" 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'
smuggle "a bad chunk size" 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'
smuggle "obs-fold" 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n'
smuggle "a space before the colon" 'GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n'
smuggle "Transfer-Encoding: chunked, not last" 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'
smuggle "a bare LF in a header" 'GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n'
r=$(printf 'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n' | raw $((W_PORT + 2)))
hy_contains "a transfer coding other than chunked: 501" "HTTP/1.1 501" "$r"
hy_eq "b1 still answers" "hello from b1" "$(curl -s "$OUT/")"

# ---- an upgrade: a byte tunnel over one HTTP/2 stream
WS_PY='
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
s.settimeout(5)
d = b""
while b"\r\n\r\n" not in d:
    d += s.recv(1000)
head, rest = d.split(b"\r\n\r\n", 1)
print(head.split(b"\r\n")[0].decode())
s.sendall(b"hello tunnel")
while len(rest) < 12:
    rest += s.recv(100)
print(rest.decode())
s.sendall(b"x" * 200000)
got = 0
while got < 200000:
    got += len(s.recv(65536))
print(got)
s.shutdown(socket.SHUT_WR)
print(s.recv(100) == b"")
'
ws=$(python3 -c "$WS_PY" $((W_PORT + 2)) 2>&1)
hy_contains "Upgrade: websocket is answered 101 through both sidecars" "HTTP/1.1 101 Switching Protocols" "$ws"
hy_contains "bytes go both ways through the tunnel" "HELLO TUNNEL" "$ws"
hy_contains "200 kB come back" 200000 "$ws"
hy_contains "and the end of one side ends the other" True "$ws"
hy_eq "plain requests still work after it" "hello from b1" "$(curl -s "$OUT/")"

# ---- a permission withdrawn: the pooled connection stays, its requests are refused
conns=$(hy_metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}')
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-deny
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
denied() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$OUT/")" = 403 ]; }
hy_check "a Deny answers 403 on the pooled connection" hy_wait_for 15 denied
hy_contains "saying which policy" "MeshTrafficPermission/web-deny" "$(curl -s "$OUT/")"
hy_eq "over the same mesh connections" "$conns" "$(hy_metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}')"
ctl delete meshtrafficpermission web-deny --mesh default >/dev/null
allowed() { [ "$(curl -s "$OUT/")" = "hello from b1" ]; }
hy_check "lifting it lets requests in again" hy_wait_for 15 allowed

# ---- metrics and access log
hy_check "requests are counted by direction, service, route and code" \
    test "$(hy_metric "$W_ADMIN" 'hypha_dp_http_requests_total{direction="outbound",service="backend",route="default",code_class="4xx",code="418"}')" -ge 1
hy_check "the inbound counts them too" \
    test "$(hy_metric "$B_ADMIN" 'hypha_dp_http_requests_total{direction="inbound",service="backend",route="",code_class="2xx",code="200"}')" -ge 100
hy_check "a duration histogram" \
    test "$(hy_metric "$W_ADMIN" 'hypha_dp_http_request_duration_seconds_count{direction="outbound",service="backend"}')" -ge 100
hy_check "one access-log line per request at the outbound" \
    grep -q "http direction=outbound port=$((W_PORT + 2)) method=GET authority=127.0.0.1:$((W_PORT + 2)) path=/status/418 status=418 .* upstream=127.0.0.1:$B_PORT service=backend route=\"default\" retries=0 id=spiffe://default/backend" "$W_LOG"
hy_check "and at the inbound, with the caller's SPIFFE ID" \
    grep -q "http direction=inbound port=$B_PORT method=GET .* path=/status/418 status=418 .* id=spiffe://default/web" "$B_LOG"
promtool_ok() { ! command -v promtool >/dev/null || curl -s "$1/metrics" | promtool check metrics >/dev/null 2>&1; }
hy_check "valid Prometheus text" promtool_ok "$W_ADMIN"

# ---- policies (the zone's policy engine fills the L7 fields)
# pol NAME: applies the policy on stdin and waits until web-1 or backend-1 has a new config
cfg_version() { curl -s "$1/config" | jq -r .version; }
pol_apply() { # pol_apply ADMIN: the policy on stdin, then waits for ADMIN's sidecar to take a new config
    local v
    v=$(cfg_version "$1")
    ctl apply -f - >/dev/null
    hy_wait_for 15 bash -c "[ \"\$(curl -s '$1/config' | jq -r .version)\" != '$v' ]"
}
pol_delete() { # pol_delete ADMIN TYPE NAME
    local v
    v=$(cfg_version "$1")
    ctl delete "$2" "$3" --mesh default >/dev/null
    hy_wait_for 15 bash -c "[ \"\$(curl -s '$1/config' | jq -r .version)\" != '$v' ]"
}
# count N URL [CURL-ARGS...]: N requests on kept-alive connections; prints each response body
count() {
    local n=$1 u=$2 urls=() i
    shift 2
    for ((i = 0; i < n; i++)); do urls+=("$u"); done
    curl -s "$@" "${urls[@]}"
}
codes() { # codes N URL: the status of N requests, one a line
    local i
    for ((i = 0; i < $1; i++)); do curl -s -o /dev/null -w '%{http_code}\n' "$2"; done
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

# MeshHTTPRoute: a 90/10 split, a header match, rewrites, a redirect
pol_apply "$W_ADMIN" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: web-routes
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
              headers:
                - {type: Exact, name: x-version, value: v2}
          default:
            backendRefs:
              - {kind: MeshService, name: backend-v2, weight: 1}
        - matches:
            - path: {type: PathPrefix, value: /api}
          default:
            filters:
              - type: URLRewrite
                urlRewrite:
                  path: {type: ReplacePrefixMatch, replacePrefixMatch: /echo}
              - type: RequestHeaderModifier
                requestHeaderModifier:
                  set: [{name: x-custom, value: xyz}]
                  remove: [x-legacy]
              - type: ResponseHeaderModifier
                responseHeaderModifier:
                  add: [{name: x-resp, value: "1"}]
        - matches:
            - path: {type: PathPrefix, value: /mirrored}
          default:
            filters:
              - type: RequestMirror
                requestMirror:
                  backendRef: {kind: MeshService, name: backend-v2}
        - matches:
            - path: {type: Exact, value: /old}
          default:
            filters:
              - type: RequestRedirect
                requestRedirect:
                  path: {type: ReplaceFullPath, replaceFullPath: /new}
                  statusCode: 301
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 90}
              - {kind: MeshService, name: backend-v2, weight: 10}
YAML
routed() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend") | .httpRoutes // .http_routes | length] | max >= 4' >/dev/null; }
if hy_check "MeshHTTPRoute reaches web-1's outbound" hy_wait_for 15 routed; then
    split=$(count 1000 "$OUT/" | sort | uniq -c)
    v2=$(awk '/from b2/ { print $1 }' <<<"$split")
    hy_check "a 90/10 split: b2 takes 10 % +- 5 % of 1000 requests (${v2:-0})" within "${v2:-0}" 50 150
    hy_eq "and b1 the rest" 1000 "$(awk '{ s += $1 } END { print s }' <<<"$split")"
    hy_eq "a header match sends every request to backend-v2" 20 \
        "$(count 20 "$OUT/" -H 'x-version: v2' | grep -c 'from b2')"
    api=$(curl -s -D "$HY_TMP/h" -H 'X-Legacy: 1' "$OUT/api/items?x=1")
    hy_eq "URLRewrite ReplacePrefixMatch: the app sees the new path, the query kept" "/echo/items?x=1" "$(jq -r .path <<<"$api")"
    hy_eq "RequestHeaderModifier set: the app sees it" xyz "$(jq -r '.headers["x-custom"]' <<<"$api")"
    hy_eq "RequestHeaderModifier remove: the app does not" null "$(jq -r '.headers["x-legacy"]' <<<"$api")"
    hy_check "ResponseHeaderModifier add: the caller sees it" grep -qi '^x-resp: 1' "$HY_TMP/h"
    r=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$OUT/old?q=2")
    hy_eq "RequestRedirect: 301 to the new path, answered by the sidecar" "301 http://127.0.0.1:$((W_PORT + 2))/new?q=2" "$r"
    b2stats() { curl -s "$OUT/" -H 'x-version: v2' >/dev/null; curl -s "$OUT2/stats" | jq -r .requests; }
    m0=$(b2stats)
    hy_eq "RequestMirror: the caller gets backend's answer" "hello from b1" "$(curl -s "$OUT/mirrored/x")"
    mirrored() { [ "$(b2stats)" -ge $((m0 + 3)) ]; }
    hy_check "and backend-v2 gets a copy" hy_wait_for 5 mirrored
    hy_check "routes are named in the metrics" \
        test "$(metric_sum "$W_ADMIN" '^hypha_dp_http_requests_total[{]direction="outbound",service="backend-v2",route="MeshHTTPRoute/web-routes')" -ge 20
fi
pol_delete "$W_ADMIN" meshhttproute web-routes

# MeshRetry: a 503 tried again until it succeeds
pol_apply "$W_ADMIN" <<'YAML'
type: MeshRetry
mesh: default
name: web-retry
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        http:
          numRetries: 3
          backOff: {baseInterval: 10ms, maxInterval: 50ms}
          retryOn: ["5xx"]
YAML
retries0=$(hy_metric "$W_ADMIN" hypha_dp_http_retries_total)
hy_contains "MeshRetry: two 503s tried again, then 200" "recovered after 2" "$(curl -s "$OUT/flaky/r1/2")"
hy_check "counted as retries" test "$(hy_metric "$W_ADMIN" hypha_dp_http_retries_total)" -ge $((retries0 + 2))
hy_check "the access log says how many" grep -q "path=/flaky/r1/2 status=200 .* retries=2 " "$W_LOG"
hy_eq "more 503s than numRetries: the last 503 stands" 503 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$OUT/flaky/r2/9")"
pol_delete "$W_ADMIN" meshretry web-retry

# MeshTimeout: requestTimeout cuts a slow backend
pol_apply "$W_ADMIN" <<'YAML'
type: MeshTimeout
mesh: default
name: web-timeout
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        http:
          requestTimeout: 500ms
YAML
t0=$(hy_metric "$W_ADMIN" hypha_dp_http_timeouts_total)
r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "$OUT/slow/3000")
hy_eq "MeshTimeout requestTimeout 500ms: a 3 s answer is cut with 504" 504 "${r% *}"
hy_check "after about 0.5 s (${r#* }s)" within "${r#* }" 0.4 2
hy_check "counted as a timeout" test "$(hy_metric "$W_ADMIN" hypha_dp_http_timeouts_total)" -gt "$t0"
hy_eq "a fast answer is not cut" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$OUT/slow/10")"
pol_delete "$W_ADMIN" meshtimeout web-timeout

# MeshFaultInjection at backend's inbound: aborts for half the requests
pol_apply "$B_ADMIN" <<'YAML'
type: MeshFaultInjection
mesh: default
name: backend-faults
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        http:
          - abort: {httpStatus: 502, percentage: 30}
YAML
aborted=$(codes 1000 "$OUT/" | grep -c '^502$' || true)
hy_check "MeshFaultInjection abort 30 %: 30 % +- 5 % of 1000 requests answered 502 ($aborted)" within "$aborted" 250 350
hy_check "counted as faults" test "$(hy_metric "$B_ADMIN" 'hypha_dp_http_faults_total{kind="abort"}')" -ge 250
pol_delete "$B_ADMIN" meshfaultinjection backend-faults
pol_apply "$B_ADMIN" <<'YAML'
type: MeshFaultInjection
mesh: default
name: backend-delay
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        http:
          - delay: {value: 300ms, percentage: 100}
          - responseBandwidth: {limit: 10kbps, percentage: 100}
YAML
t=$(curl -s -o /dev/null -w '%{time_total}' "$OUT/" || true)
hy_check "MeshFaultInjection delay 300ms: a request takes at least 0.3 s ($t s)" within "$t" 0.3 3
t=$(curl -s -o /dev/null -w '%{time_total}' "$OUT/echo?$(head -c 6000 /dev/zero | tr '\0' a)" || true)
hy_check "responseBandwidth 10kbps (10 KiB/s, as Envoy reads it): a 6 kB answer takes 0.5 s more ($t s)" within "$t" 0.7 4
hy_check "delays counted as faults" test "$(hy_metric "$B_ADMIN" 'hypha_dp_http_faults_total{kind="delay"}')" -ge 2
pol_delete "$B_ADMIN" meshfaultinjection backend-delay

# MeshCircuitBreaker: maxRequests in flight, then 503 from the sidecar
pol_apply "$W_ADMIN" <<'YAML'
type: MeshCircuitBreaker
mesh: default
name: web-cb
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        connectionLimits: {maxRequests: 2}
YAML
cb_pids=()
for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{http_code}\n' "$OUT/slow/700" >>"$HY_TMP/cb" &
    cb_pids+=($!)
done
wait "${cb_pids[@]}"
hy_check "maxRequests 2: of 6 concurrent slow requests some are refused 503" grep -q '^503$' "$HY_TMP/cb"
hy_check "and at least 2 pass" test "$(grep -c '^200$' "$HY_TMP/cb")" -ge 2
pol_delete "$W_ADMIN" meshcircuitbreaker web-cb
# outlierDetection: consecutive 5xx eject the endpoint (the only one: Envoy
# still sends to it, as the sidecar does, but it is counted and logged)
pol_apply "$W_ADMIN" <<'YAML'
type: MeshCircuitBreaker
mesh: default
name: web-outlier
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        outlierDetection:
          disabled: false
          detectors:
            totalFailures: {consecutive: 3}
YAML
ej0=$(hy_metric "$W_ADMIN" hypha_dp_http_ejections_total)
codes 3 "$OUT/status/500" >/dev/null
hy_check "outlierDetection: 3 consecutive 500s eject backend-1" \
    test "$(hy_metric "$W_ADMIN" hypha_dp_http_ejections_total)" -gt "$ej0"
hy_check "and the sidecar says so" grep -q "endpoint 127.0.0.1:$B_PORT ejected" "$W_LOG"
hy_eq "a service whose endpoints are all out still gets its requests" "hello from b1" "$(curl -s "$OUT/")"
pol_delete "$W_ADMIN" meshcircuitbreaker web-outlier

# MeshRateLimit at backend's inbound: 5 requests per 10 s, then 429
pol_apply "$B_ADMIN" <<'YAML'
type: MeshRateLimit
mesh: default
name: backend-limit
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        local:
          http:
            requestRate: {num: 5, interval: 10s}
            onRateLimit:
              status: 429
              headers:
                add: [{name: x-limited, value: "yes"}]
YAML
lim=$(codes 10 "$OUT/")
hy_eq "MeshRateLimit 5 per 10 s: 5 of 10 requests pass" 5 "$(grep -c '^200$' <<<"$lim")"
hy_eq "and 5 are answered 429" 5 "$(grep -c '^429$' <<<"$lim")"
hy_check "with the configured header" bash -c "curl -s -D - -o /dev/null '$OUT/' | grep -qi '^x-limited: yes'"
hy_check "counted as rate-limited" test "$(hy_metric "$B_ADMIN" 'hypha_dp_rate_limited_total{kind="http"}')" -ge 5
pol_delete "$B_ADMIN" meshratelimit backend-limit
hy_eq "without it every request passes again" "hello from b1" "$(curl -s "$OUT/")"

# ---- instances that disagree: one of backend's is tcp, so its callers take
# backend for TCP (Kuma's rule); backend-1's http inbound sees no HTTP/2
# preface and relays those connections as TCP
T_PORT=$(ports4)
hy_start_http_app $((T_PORT + 1)) b3
hy_dp_token backend-2 default backend
sed 's/kuma.io\/service: {{ service }}/&\n        kuma.io\/protocol: tcp/' "$DATA/dp/dataplane.yaml" >"$HY_TMP/dataplane-tcp.yaml"
"$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --dataplane-file "$HY_TMP/dataplane-tcp.yaml" --dataplane-token-file "$HY_TMP/backend-2.token" \
    --dataplane-var "name=backend-2,service=backend,port=$T_PORT,app_port=$((T_PORT + 1)),out_port=$((T_PORT + 2))" \
    --admin-address 127.0.0.1:0 --workers 2 >"$HY_TMP/dp-backend-2.log" 2>&1 &
T_PID=$!
HY_PIDS+=("$T_PID")
hy_wait_for 20 bash -c "grep -q 'admin on http://' '$HY_TMP/dp-backend-2.log'"
T_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/dp-backend-2.log" | sed 's/admin on //')
hy_wait_for 20 ready "$T_ADMIN"
tcp_now() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | (.protocol // "tcp") == "tcp" and (.endpoints | length) == 2' >/dev/null; }
hy_check "a tcp instance of backend: web-1 takes backend for TCP" hy_wait_for 20 tcp_now
both=$(for i in $(seq 1 20); do curl -s "http://127.0.0.1:$((W_PORT + 2))/"; done | sort -u | tr '\n' ' ')
hy_eq "requests over TCP reach both instances, backend-1's through its http inbound" "hello from b1 hello from b3 " "$both"
hy_check "backend-1 says it relayed a caller that speaks no HTTP/2 as TCP" \
    grep -q "speaks no HTTP/2 (it calls this service as TCP): relayed as TCP" "$B_LOG"
hy_check "SIGTERM stops backend-2" hy_stop "$T_PID"

# ---- the end
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "SIGTERM stops backend-v2-1 cleanly" hy_stop "$B2_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"

hy_done
