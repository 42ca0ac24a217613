#!/usr/bin/env bash
# Nagle's algorithm is off on every TCP connection of the HTTP (L7) data
# path, so that no small write waits for an ACK: web-1's outbound
# (the app's connection, accepted), the pooled mTLS HTTP/2 connection to
# backend-1, backend-1's inbound (accepted) and its connection to its app.
# The accepted ones get TCP_NODELAY from their listener (Linux copies it
# to what a listener accepts; the sidecar sets it there once instead of
# once per connection). Checked on copies of the sidecars' sockets
# (tests/tools/tcp_nodelay.py, pidfd_getfd: needs ptrace rights, else
# the test is skipped).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd) # hy_start_mesh_zone's
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }
TOOL=$(cd "$(dirname "$0")/../tools" && pwd)/tcp_nodelay.py

hy_start_mesh_zone 1h
ports4() { hy_free_ports 4; }
B_PORT=$(ports4)
W_PORT=$(ports4)
ready() { curl -sf "$1/ready" >/dev/null; }
hy_start_http_app $((B_PORT + 1)) b1
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B_PORT" v1
B_PID=$DP_PID B_ADMIN=$DP_ADMIN
hy_start_http_dp web-1 web "$W_PORT" v1
W_PID=$DP_PID W_ADMIN=$DP_ADMIN
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W_ADMIN"
hy_wait_for 20 ready "$B_ADMIN"
eps() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend" and .protocol == "http") | .endpoints[]?] | length == 1' >/dev/null; }
hy_check "web-1's outbound to backend is http, with backend-1" hy_wait_for 20 eps
OUT_PORT=$((W_PORT + 2))
hy_eq "a GET through web-1 and backend-1 reaches b1" "hello from b1" "$(curl -s "http://127.0.0.1:$OUT_PORT/")"

# an app connection held open across the look, after one request on it
exec 3<>"/dev/tcp/127.0.0.1/$OUT_PORT"
printf 'GET / HTTP/1.1\r\nHost: a\r\n\r\n' >&3
first=$(timeout 5 head -c 12 <&3 || true)
hy_eq "the held connection is answered" "HTTP/1.1 200" "$first"

rc=0
w=$(python3 "$TOOL" "$W_PID") || rc=$?
[ "$rc" != 77 ] || { hy_log "cannot copy the sidecars' sockets: $w"; exec 3>&-; exit 77; }
hy_log "web-1's sockets:"$'\n'"$w"
b=$(python3 "$TOOL" "$B_PID") || true
hy_log "backend-1's sockets:"$'\n'"$b"
hy_contains "web-1 has the app's connection to its outbound" ", $OUT_PORT)" "$w"
hy_contains "and a connection to backend-1's inbound" ", $B_PORT)" "$w"
hy_contains "backend-1 has the pooled connection, accepted" "('127.0.0.1', $B_PORT)" "$b"
hy_contains "and one to its app" ", $((B_PORT + 1)))" "$b"
hy_check "no socket of web-1 has Nagle on" python3 "$TOOL" "$W_PID"
hy_check "no socket of backend-1 has Nagle on" python3 "$TOOL" "$B_PID"
exec 3>&-

hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"
hy_done
