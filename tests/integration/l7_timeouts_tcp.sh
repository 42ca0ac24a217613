#!/usr/bin/env bash
# MeshTimeout's TCP timeouts on the inbound side, as Kuma places them
# (the inbound's tcp_proxy idle timeout and its cluster's connect
# timeout): web-1 calls backend (TCP) through its outbound.
#   from.idleTimeout: backend-1 closes a relayed connection quiet for that
#     long, measured from the last byte, and not one that keeps talking;
#   rules.connectionTimeout: backend-1 gives up on an app that never
#     accepts after that long (the caller's connection closes, as for an
#     app that is down), and logs why.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_mesh_zone 1h

# ports: inbound PORT, app PORT+1, outbound PORT+2 (dataplane.yaml)
B_PORT=$(hy_free_ports 3)
W_PORT=$(hy_free_ports 3)
while [ $((W_PORT - B_PORT)) -lt 3 ] && [ $((B_PORT - W_PORT)) -lt 3 ]; do W_PORT=$(hy_free_ports 3); done
ready() { curl -sf "$1/ready" >/dev/null; }

"$HY_BIN/hypha-test-echo" $((B_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
ECHO_PID=$!
HY_PIDS+=("$ECHO_PID")
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"
hy_dp_token backend-1 default backend
hy_start_dp backend-1 backend "$B_PORT"
B_PID=$DP_PID B_ADMIN=$DP_ADMIN B_LOG=$HY_TMP/dp-backend-1.log
hy_dp_token web-1 default web
hy_start_dp web-1 web "$W_PORT"
W_PID=$DP_PID W_ADMIN=$DP_ADMIN
hy_check "both sidecars become ready" hy_wait_for 15 ready "$B_ADMIN"
hy_wait_for 15 ready "$W_ADMIN"
endpoint() { curl -s "$W_ADMIN/config" | jq -e ".outbounds[0].endpoints[] | select(.name == \"backend-1\")" >/dev/null; }
hy_check "web-1's outbound lists backend-1" hy_wait_for 10 endpoint
OUT=$((W_PORT + 2))

# session PORT KEEP [WAIT]: one line echoed, then KEEP more lines a second
# apart, then nothing until the connection closes (WAIT s, default 30, at
# most). Prints "echo"
# (or "no echo"), "alive N" and the seconds from the last byte to the close.
SESSION_PY='
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
def line(msg):
    s.sendall(msg)
    got = b""
    while not got.endswith(b"\n"):
        d = s.recv(64)
        if not d:
            return False
        got += d
    return got == msg
print("echo" if line(b"hello\n") else "no echo")
n = 0
for i in range(int(sys.argv[2])):
    time.sleep(1)
    if line(b"still here\n"):
        n += 1
print("alive", n)
t0 = time.monotonic()
wait = int(sys.argv[3]) if len(sys.argv) > 3 else 30
s.settimeout(wait)
try:
    d = s.recv(1)
    print("closed after %.2f" % (time.monotonic() - t0) if not d else "data")
except socket.timeout:
    print("open after %d s" % wait)
'
session() { python3 -c "$SESSION_PY" "$@"; }
# secs OUTPUT: the seconds of "closed after S"
secs() { sed -n 's/^closed after //p' <<<"$1"; }
between() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v >= lo && v < hi) }'; }

timeout_policy() { # applies MeshTimeout backend-in, its entries given as YAML
    ctl apply -f - >/dev/null 2>"$HY_TMP/apply.err" <<YAML
type: MeshTimeout
mesh: default
name: backend-in
spec:
  targetRef: {kind: MeshService, name: backend}
$1
YAML
}
in_conf() { curl -s "$B_ADMIN/config" | jq -e ".inbounds[0].$1 == \"$2\"" >/dev/null; }

# ---- from.idleTimeout
o=$(session $OUT 0 4)
hy_eq "without a policy a quiet connection stays open (1 h)" "echo
alive 0
open after 4 s" "$o"
timeout_policy '  from:
    - targetRef: {kind: Mesh}
      default: {idleTimeout: 2s}'
hy_eq "from.idleTimeout draws no warning" "" "$(cat "$HY_TMP/apply.err")"
hy_check "it reaches backend-1's inbound" hy_wait_for 15 in_conf idleTimeout 2s
o=$(session $OUT 0)
hy_contains "a call goes through" "echo" "$o"
hy_check "a connection quiet for 2 s is closed 2 s after its last byte, not before ($(secs "$o") s)" \
    between "$(secs "$o")" 1.95 4
o=$(session $OUT 4)
hy_contains "one with a line every second lives on past 2 s" "alive 4" "$o"
hy_check "and is closed 2 s after it falls quiet ($(secs "$o") s)" between "$(secs "$o")" 1.95 4
hy_check "backend-1 logs why" grep -q "access direction=inbound .*result=idle: nothing either way for 2000 ms" "$B_LOG"

# ---- rules.connectionTimeout: an app that never accepts
kill "$ECHO_PID"
wait "$ECHO_PID" 2>/dev/null || true
python3 "$TOOLS/full_backlog.py" $((B_PORT + 1)) >"$HY_TMP/full.log" 2>&1 &
HY_PIDS+=($!)
hy_check "the app's accept queue is full (connects to it hang)" hy_wait_for 10 grep -q "full after" "$HY_TMP/full.log"
timeout_policy '  rules:
    - default: {connectionTimeout: 1s}'
hy_eq "rules.connectionTimeout draws no warning" "" "$(cat "$HY_TMP/apply.err")"
hy_check "it reaches backend-1's inbound" hy_wait_for 15 in_conf connectTimeout 1s
o=$(session $OUT 0)
hy_contains "the caller sees its connection closed" "closed after" "$o"
hy_contains "with nothing echoed" "no echo" "$o"
hy_check "backend-1 logs the connect timeout" \
    grep -q "access direction=inbound .*result=upstream_failed: cannot connect to the app at 127.0.0.1:$((B_PORT + 1)): no connection within 1000 ms (connectionTimeout)" "$B_LOG"
d=$(grep "no connection within 1000 ms" "$B_LOG" | tail -n 1 | sed 's/.*duration=\([0-9.]*\)s.*/\1/')
hy_check "after 1 s, not the default 5 s ($d s)" between "$d" 1 3

# ---- the end
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"

hy_done
