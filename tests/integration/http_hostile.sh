#!/usr/bin/env bash
# Hostile HTTP clients against every HTTP server Hypha runs: the global CP's
# HTTP and HTTPS API, the zone CP's API, the sidecar's admin server
# (hypha-dp) and the ingress's (hypha-ingress), all net/http_server.c.
#
# Finding 2: pipelined requests in one TCP segment (GET+GET, GET+POST,
# POST+POST, POST+GET, four in a row, HEAD first, a body split across
# segments, chunked transfer-encoding, a Content-Length that lies or is
# garbage, a body over the limit) once wedged the event loop at 100 % CPU
# (libwebsockets 4.1 re-read a pipelined request's header bytes as its body,
# for ever) and the process ignored SIGTERM. After every variant the server
# must answer a fresh request; at the end each process must exit on
# SIGTERM; and a loop that is stuck anyway (here: blocked writing to a log
# pipe nobody reads) must not keep the process alive past --shutdown-timeout.
# Finding 8: an unauthenticated request is refused on its headers (401,
# Connection: close) before any body byte is buffered, and the connections
# that have not been authorized are capped per listener (refused, logged,
# counted in a metric), while the same process's other listener answers.
# Finding 4: the HTTPS API asks for the admin token even from loopback;
# loopback trust on plain HTTP is --api-localhost-is-admin (default true).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG HYPHA_AUTH_TOKEN
command -v python3 >/dev/null || { echo "skip: needs python3"; exit 77; }

# ---- the raw client: writes a whole variant with one send (or in the
# segments it names), then reads until the server closes or 10 s pass.
# Prints one line per status line received, then EOF or OPEN.
cat >"$HY_TMP/raw.py" <<'PY'
import socket, ssl, sys, time
host, port, tls, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
auth = ("Authorization: Bearer %s\r\n" % sys.argv[5]) if len(sys.argv) > 5 else ""
H = "Host: x\r\n" + auth

def req(method, path="/metrics", body=None, extra=""):
    head = "%s %s HTTP/1.1\r\n%s%s" % (method, path, H, extra)
    if body is None:
        return (head + "\r\n").encode()
    return (head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body

B = b'{"zone":"east","validFor":"1h"}'
SPLIT = object()  # a pause between segments, so they arrive apart
V = {
    "get-get": [req("GET") + req("GET")],
    "get-post": [req("GET") + req("POST", "/tokens/zone", B)],
    "post-post": [req("POST", "/tokens/zone", B) + req("POST", "/tokens/zone", B)],
    "post-get": [req("POST", "/tokens/zone", B) + req("GET")],
    "four": [req("GET") + req("GET") + req("POST", "/tokens/zone", B) + req("GET")],
    "head-post": [req("HEAD") + req("POST", "/tokens/zone", B)],
    "split-body": [req("GET") + req("POST", "/tokens/zone", B)[:-10], SPLIT,
                   B[-10:] + req("POST", "/tokens/zone", B)],
    "split-headers": [b"POST /tokens/zone HTTP/1.1\r\nHost: x\r\n", SPLIT,
                      ("%sContent-Length: %d\r\n\r\n" % (auth, len(B))).encode() + B + req("GET")],
    "chunked": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + req("GET")],
    "cl-short": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                 b"Content-Length: 4\r\n\r\n" + B + req("GET")],
    "cl-long": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                b"Content-Length: 100000\r\n\r\n" + B],
    "cl-garbage": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                   b"Content-Length: 12abc\r\n\r\n" + B + req("GET")],
    "cl-negative": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                    b"Content-Length: -1\r\n\r\n" + B + req("GET")],
    "cl-twice": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                 b"Content-Length: 4\r\nContent-Length: 31\r\n\r\n" + B + req("GET")],
    "over-limit": [b"POST /tokens/zone HTTP/1.1\r\n" + H.encode() +
                   b"Content-Length: 2000000000\r\n\r\n" + B + req("GET")],
    "garbage-after": [req("GET") + b"\x16\x03\x01\x00\xff" + b"\xfe" * 300],
}
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s)
for part in V[variant]:
    if part is SPLIT:
        time.sleep(0.2)
    else:
        s.sendall(part)
if variant == "cl-long":
    s.shutdown(socket.SHUT_WR)  # the rest of the body never comes
data, state = b"", "OPEN"
try:
    while True:
        d = s.recv(65536)
        if not d:
            state = "EOF"
            break
        data += d
except (socket.timeout, ssl.SSLError, ConnectionResetError):
    state = "EOF" if not isinstance(sys.exc_info()[1], socket.timeout) else "OPEN"
for line in data.split(b"\r\n"):
    if line.startswith(b"HTTP/1."):
        print(line.decode(errors="replace"))
    if line.lower().startswith(b"connection:"):
        print(line.decode(errors="replace").lower())
print(state)
PY
raw() { python3 "$HY_TMP/raw.py" "$@" 2>&1 || true; }

# answers URL [CURL ARGS...]: the status of a fresh GET, 000 when none
answers() {
    local u=$1
    shift
    curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$u" || true
}

# hostile NAME HOST PORT TLS URL [TOKEN]: every variant against one
# server; after each, the server must answer a fresh request on URL. Stops
# at the first wedge (the rest would only time out).
VARIANTS="get-get get-post post-post post-get four head-post split-body split-headers chunked
    cl-short cl-long cl-garbage cl-negative cl-twice over-limit garbage-after"
hostile() {
    local name=$1 host=$2 port=$3 tls=$4 url=$5 token=${6:-} v out code hdr=()
    [ -z "$token" ] || hdr=(-H "Authorization: Bearer $token")
    for v in $VARIANTS; do
        out=$(raw "$host" "$port" "$tls" "$v" ${token:+"$token"})
        code=$(answers "$url" "${hdr[@]}")
        if [ "$code" = 000 ]; then
            hy_fail "finding 2: $name: $v: the server no longer answers (got: $(echo "$out" | tr '\n' ' '))"
            return
        fi
        hy_ok "finding 2: $name: $v: a fresh request gets $code"
        case $v in
            get-*|four|head-post) hy_contains "finding 2: $name: $v: the first is answered, then the connection closes" \
                "$(printf '%s\n' "$out" | head -n 2 | tr '\n' ' ')$(echo "$out" | tail -n 1)" \
                "$(printf 'HTTP/1.1 200 OK connection: close EOF')" ;;
            chunked) hy_contains "finding 2: $name: chunked bodies are refused (411)" "HTTP/1.1 411" "$out" ;;
            cl-garbage|cl-negative|cl-twice) hy_contains "finding 2: $name: $v: 400" "HTTP/1.1 400" "$out" ;;
            over-limit) hy_contains "finding 2: $name: over-limit: 413" "HTTP/1.1 413" "$out" ;;
        esac
        hy_eq "finding 2: $name: $v: the server closes the connection" EOF "$(echo "$out" | tail -n 1)"
    done
}

# stop_within SECONDS PID NAME: SIGTERM, then the process must be gone
# within SECONDS (it is killed otherwise, and the check fails).
stop_within() {
    local secs=$1 pid=$2 name=$3 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    if hy_wait_for "$secs" hy_gone "$pid"; then
        wait "$pid" || rc=$?
        hy_eq "finding 2: $name exits on SIGTERM (status)" 0 "$rc"
    else
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        hy_fail "finding 2: $name ignored SIGTERM for $secs s"
    fi
    HY_PIDS=("${HY_PIDS[@]/$pid/}")
}

# ---- the servers: a global CP (plain), zone east, a sidecar and an ingress
hy_start_mesh_zone 1h
G_URL=$GLOBAL_URL G_PID=$GLOBAL_PID G_LOG=$GLOBAL_LOG
hy_dp_token web-1 default web
hy_start_dp web-1 web "$(hy_free_ports 3)"
"$HY_BIN/hyphactl" --cp "$E" generate zone-ingress-token --name ingress-east --valid-for 1h \
    >"$HY_TMP/ingress-east.token"
"$HY_BIN/hypha-ingress" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --ingress-file "$DATA/dp/ingress.yaml" --token-file "$HY_TMP/ingress-east.token" \
    --ingress-var "name=ingress-east,address=127.0.0.1,advertised=127.0.0.1,port=$(hy_free_port)" \
    --admin-address 127.0.0.1:0 --workers 1 >"$HY_TMP/ingress.log" 2>&1 &
ING_PID=$!
HY_PIDS+=("$ING_PID")
hy_wait_for 15 grep -q 'admin on http://' "$HY_TMP/ingress.log"
ING_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/ingress.log" | sed 's/admin on //')

# ---- and a second global CP with an HTTPS API
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$HY_TMP/key.pem" \
    -out "$HY_TMP/cert.pem" -days 1 -subj /CN=hypha-test -addext "subjectAltName=IP:127.0.0.1" \
    2>/dev/null
hy_start_global gtls --api-tls-address 127.0.0.1:0 --api-tls-cert "$HY_TMP/cert.pem" \
    --api-tls-key "$HY_TMP/key.pem" --api-max-pending-connections 64
hy_wait_for 10 grep -q 'API listening on https://' "$GLOBAL_LOG"
T_PORT=$(grep -o 'API listening on https://[^ ]*' "$GLOBAL_LOG" | sed 's/.*://')
T_URL=https://127.0.0.1:$T_PORT T_PID=$GLOBAL_PID T_LOG=$GLOBAL_LOG
T_TOKEN=$(cat "$GLOBAL_DATA/admin-token")

port_of() { echo "${1##*:}"; }

# ---- finding 2: pipelining and broken framing, on every server
hostile "global HTTP API" 127.0.0.1 "$(port_of "$G_URL")" 0 "$G_URL/ready"
hostile "global HTTPS API" 127.0.0.1 "$T_PORT" 1 "$T_URL/ready" "$T_TOKEN"
hostile "zone API" 127.0.0.1 "$(port_of "$E")" 0 "$E/ready"
hostile "sidecar admin" 127.0.0.1 "$(port_of "$DP_ADMIN")" 0 "$DP_ADMIN/metrics"
hostile "ingress admin" 127.0.0.1 "$(port_of "$ING_ADMIN")" 0 "$ING_ADMIN/metrics"

# ---- finding 4: HTTPS always wants the token, loopback or not
hy_eq "finding 4: HTTPS from loopback without a token: 401" 401 "$(answers "$T_URL/meshes")"
hy_eq "finding 4: HTTPS from loopback with the token: 200" 200 \
    "$(answers "$T_URL/meshes" -H "Authorization: Bearer $T_TOKEN")"
hy_eq "finding 4: plain HTTP from loopback needs no token (localhost is admin)" 200 \
    "$(answers "${GLOBAL_URL}/meshes")"
hy_contains "finding 4: the refusal is logged" "refused" "$(grep 'GET /meshes' "$T_LOG")"

# ---- finding 8: refused on the headers, before the body
out=$(python3 - "$T_PORT" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10))
# announce 1 MiB and send none of it: the answer must come anyway
s.sendall(b"PUT /zones/z HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
except Exception:
    pass
print(data.decode(errors="replace").replace("\r\n", " | "))
PY
)
hy_contains "finding 8: a request without the token gets 401 before its body" "HTTP/1.1 401" "$out"
hy_contains "finding 8: with Connection: close" "connection: close" "$(echo "$out" | tr '[:upper:]' '[:lower:]')"

# the cap: --api-max-pending-connections 64 on the HTTPS listener; 80
# connections that never finish their headers, then a real client
python3 - "$T_PORT" 80 >"$HY_TMP/hold.out" 2>&1 <<'PY' &
import signal, socket, sys
conns = []
for i in range(int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    conns.append(s)
print("held", flush=True)
signal.pause()
PY
HOLD_PID=$!
HY_PIDS+=("$HOLD_PID")
hy_check "finding 8: 80 idle connections opened" hy_wait_for 10 grep -q held "$HY_TMP/hold.out"
hy_check "finding 8: connections over the cap are refused and logged" \
    hy_wait_for 10 grep -q 'connections not yet authorized' "$T_LOG"
hy_eq "finding 8: meanwhile the plain listener of the same process answers" 200 \
    "$(answers "$GLOBAL_URL/ready")"
refused() {
    curl -sk -H "Authorization: Bearer $T_TOKEN" "$T_URL/metrics" 2>/dev/null |
        grep -q '^hypha_api_connections_refused_total{listener="https"} [1-9]'
}
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$HOLD_PID/}")
hy_check "finding 8: and counted (hypha_api_connections_refused_total)" hy_wait_for 10 refused
hy_eq "finding 8: the HTTPS API answers once they are gone" 200 \
    "$(answers "$T_URL/ready" -H "Authorization: Bearer $T_TOKEN")"

# ---- SIGTERM: every process exits
stop_within 20 "$ING_PID" "hypha-ingress"
stop_within 20 "$DP_PID" "hypha-dp"
# shellcheck disable=SC2154 # set by hy_start_zone (printf -v)
stop_within 20 "$ZONE_PID_east" "hypha-zone"
stop_within 20 "$G_PID" "hypha-global (HTTP)"
stop_within 20 "$T_PID" "hypha-global (HTTPS)"
# shellcheck disable=SC2154
for f in "$G_LOG" "$T_LOG" "$ZONE_LOG_east" "$HY_TMP/dp-web-1.log" "$HY_TMP/ingress.log"; do
    hy_check "no sanitizer report in $(basename "$f")" bash -c "! grep -q 'Sanitizer' '$f'"
done

# ---- finding 2: a loop that is stuck anyway cannot hold the process
# hypha-global logs to a pipe nobody reads; lws debug logging fills it and
# the loop blocks in write(2). SIGTERM must still end the process within
# --shutdown-timeout (the watchdog exits with status 70).
mkfifo "$HY_TMP/log.fifo"
exec 8<>"$HY_TMP/log.fifo" # held open, never read
W_PORT=$(hy_free_port)
mkdir -p "$HY_TMP/wedge"
HY_LWS_LOG=1023 "$HY_BIN/hypha-global" --data-dir "$HY_TMP/wedge" --api-address "127.0.0.1:$W_PORT" \
    --kds-address 127.0.0.1:0 --log-level debug --shutdown-timeout 2s 2>&8 >&8 &
W_PID=$!
HY_PIDS+=("$W_PID")
listening() { (: </dev/tcp/127.0.0.1/"$W_PORT") 2>/dev/null; }
stuck() { [ "$(answers "http://127.0.0.1:$W_PORT/ready")" = 000 ]; } # connects, no answer
hy_check "the wedged global CP listens" hy_wait_for 30 listening
hy_check "then its loop blocks on its full log pipe" hy_wait_for 60 stuck
kill -TERM "$W_PID"
rc=0
if hy_wait_for 20 hy_gone "$W_PID"; then
    wait "$W_PID" || rc=$?
    hy_eq "finding 2: a stuck loop still exits after SIGTERM, by the watchdog (status 70)" 70 "$rc"
else
    kill -KILL "$W_PID"
    hy_fail "finding 2: a stuck loop kept the process alive after SIGTERM"
fi
HY_PIDS=("${HY_PIDS[@]/$W_PID/}")
exec 8>&-
hy_done
