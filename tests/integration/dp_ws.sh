#!/usr/bin/env bash
# The sidecar's own websocket client (net/ws_uv.c, no libwebsockets)
# against a hostile stand-in for the zone control plane
# (tests/tools/ws_fake_cp.py): a wrong Sec-WebSocket-Accept is refused
# before any frame, a frame announcing more than the message limit is
# answered with close 1009 before its payload, a text frame with close 1003,
# a ping with its pong, and a close with the same code. Also: hypha-dp
# itself needs neither libwebsockets nor OpenSSL, nor ldns (the DNS library
# of transparent mode, which links libcrypto: loaded when the DNS starts,
# sidecar/dns_ldns.h), and refuses a
# server whose certificate does not chain to its CA file or does not name
# the host it dialled.
. "$(dirname "$0")/lib.sh"

FAKE=$(cd "$(dirname "$0")/../tools" && pwd)/ws_fake_cp.py
if ldd "$HY_BIN/hypha-dp" | grep -qE 'libwebsockets'; then
    hy_log "hypha-dp links libwebsockets (HYPHA_DP_LITE=OFF): nothing to test here"
    exit 77
fi
libs=$(readelf -d "$HY_BIN/hypha-dp" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
hy_check "hypha-dp needs no libwebsockets, libssl, libcrypto or libldns itself ($libs)" \
    bash -c "! grep -qE 'libwebsockets|libssl|libcrypto|libldns' <<<'$libs'"

cd "$HY_TMP"
cert() { # NAME SAN CA: a P-256 certificate for SAN signed by CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
        -days 1 -extfile <(echo "subjectAltName=$2") 2>/dev/null
}
for ca in ca otherca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca.key \
        -out $ca.pem -subj "/CN=$ca" -days 1 2>/dev/null
done
cert cp "IP:127.0.0.1" ca
cert wrongname "DNS:elsewhere.example" ca
cat >dp.yaml <<'YAML'
type: Dataplane
mesh: default
name: ws-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 20001
    servicePort: 20002
    tags:
      hypha.io/service: ws
YAML
echo not-checked-here >token

# start_fake CERT MODE...: the fake CP on a fresh port (FAKE_PORT, FAKE_OUT)
start_fake() {
    local c=$1
    shift
    FAKE_PORT=$(hy_free_port)
    FAKE_OUT=$HY_TMP/fake-$FAKE_PORT.out
    python3 "$FAKE" "$FAKE_PORT" "$c.pem" "$c.key" "$FAKE_OUT" "$@" >"$FAKE_OUT.log" 2>&1 &
    FAKE_PID=$!
    HY_PIDS+=("$FAKE_PID")
    hy_wait_for 20 test -f "$FAKE_OUT.ready"
}
# start_dp CA NAME: hypha-dp against the fake CP, its log in dp-NAME.log
start_dp() {
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$FAKE_PORT" --ca-cert-file "$1.pem" \
        --dataplane-file dp.yaml --dataplane-token-file token --admin-address 127.0.0.1:0 \
        >"dp-$2.log" 2>&1 &
    DP_PID=$!
    HY_PIDS+=("$DP_PID")
}
stop_fake() { # it may have ended on its own after its last mode
    kill "$FAKE_PID" 2>/dev/null || true
    wait "$FAKE_PID" 2>/dev/null || true
}
lines() { [ -f "$FAKE_OUT" ] && [ "$(wc -l <"$FAKE_OUT")" -ge "$1" ]; }

start_fake cp badaccept oversize text pingpong
start_dp ca hostile
hy_wait_for 60 lines 4 || cat "$FAKE_OUT" "$FAKE_OUT.log" dp-hostile.log >&2
out=$(cat "$FAKE_OUT")
hy_contains "a wrong Sec-WebSocket-Accept: the client hangs up" "badaccept: closed" "$out"
hy_contains "...and says why" "websocket upgrade refused: wrong Sec-WebSocket-Accept" \
    "$(cat dp-hostile.log)"
hy_contains "a frame over 16 MiB announced: close 1009 before its payload" \
    "oversize: close 1009 message larger than the limit of 16777216 bytes" "$out"
hy_contains "a text frame: close 1003" "text: close 1003 only binary messages are accepted" "$out"
hy_contains "a ping gets its pong, a close its echo" "pingpong: pong hi; close 1000" "$out"
hy_contains "the peer's close reaches the log" "closed: 1000 bye (by the peer)" \
    "$(cat dp-hostile.log)"
hy_stop "$DP_PID"
stop_fake

# verification: another CA, then the right CA with a certificate for another name
start_fake cp pingpong
start_dp otherca otherca
hy_wait_for 30 grep -q 'cannot connect' dp-otherca.log
hy_contains "a server of another CA is refused" "TLS: certificate verify failed" \
    "$(grep -m1 'cannot connect' dp-otherca.log)"
hy_stop "$DP_PID"
stop_fake
start_fake wrongname pingpong
start_dp ca wrongname
hy_wait_for 30 grep -q 'cannot connect' dp-wrongname.log
hy_contains "a certificate for another name is refused" \
    "TLS: certificate verify failed: peer subject name mismatch" \
    "$(grep -m1 'cannot connect' dp-wrongname.log)"
hy_stop "$DP_PID"
stop_fake
hy_check "no sanitizer report" bash -c "! grep -l 'Sanitizer\|runtime error' dp-*.log"
hy_done
