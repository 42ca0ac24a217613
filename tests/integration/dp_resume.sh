#!/usr/bin/env bash
# TLS 1.3 session resumption between sidecars, against a real zone: web-1's
# outbound keeps the session backend-1's inbound gave it, and the next
# connection resumes it (counted in both sidecars' metrics, resumed=1 in
# both access lines); the caller's identity travels with the session, so
# a MeshTrafficPermission Deny applied after the first handshake refuses
# the resumed connections (the ticket is refused as denied, the full
# handshake that follows is denied); certificates that renew every few
# seconds lose no call while connections resume; /config and a metric say
# which suite and key exchange group the sidecar prefers. (Tickets of
# another issuer, of an expired key or of a replaced trust bundle are
# refused: tests/unit/test_dp_resume.c, with wolfSSL contexts in memory.)
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

# leaves live 10 s: the sidecars renew their certificates all through the test
hy_start_mesh_zone 10s

# ports: inbound PORT, app PORT+1, outbound PORT+2 (dataplane.yaml)
B_PORT=$(hy_free_ports 3)
W_PORT=$(hy_free_ports 3)
while [ $((W_PORT - B_PORT)) -lt 3 ] && [ $((B_PORT - W_PORT)) -lt 3 ]; do W_PORT=$(hy_free_ports 3); done

start_dp() {
    hy_dp_token "$1" default "$2"
    hy_start_dp "$@"
}
ready() { curl -sf "$1/ready" >/dev/null; }
metric() { hy_metric "$@"; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

"$HY_BIN/hypha-test-echo" $((B_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"

start_dp backend-1 backend $B_PORT
B_ADMIN=$DP_ADMIN B_LOG=$HY_TMP/dp-backend-1.log
start_dp web-1 web $W_PORT
W_ADMIN=$DP_ADMIN W_LOG=$HY_TMP/dp-web-1.log
hy_check "both sidecars become ready" hy_wait_for 15 ready "$B_ADMIN"
hy_wait_for 15 ready "$W_ADMIN"
endpoint() { curl -s "$W_ADMIN/config" | jq -e ".outbounds[0].endpoints[] | select(.name == \"backend-1\" and .port == $B_PORT)" >/dev/null; }
hy_check "web-1's outbound lists backend-1's inbound" hy_wait_for 10 endpoint
hy_wait_for 5 grep -q "inbound listener on 127.0.0.1:$B_PORT" "$B_LOG"
hy_wait_for 5 grep -q "outbound listener on 127.0.0.1:$((W_PORT + 2))" "$W_LOG"

CALL_PORT=$((W_PORT + 2))
call() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$CALL_PORT" || exit 1
        printf '%s\n' "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
calls() { [ "$(call "$1")" = "$1" ]; }
fails() { [ "$(call "$1")" != "$1" ]; }

# ---- the cheapest safe primitives, visible
suite=$(curl -s "$W_ADMIN/config" | jq -r .tls.suite)
group=$(curl -s "$W_ADMIN/config" | jq -r .tls.group)
hy_check "/config names the preferred TLS 1.3 suite ($suite)" \
    grep -qE '^TLS13-(CHACHA20-POLY1305-SHA256|AES128-GCM-SHA256)$' <<<"$suite"
hy_check "and the key exchange group ($group)" grep -qE '^(X25519|P-256)$' <<<"$group"
info_one() { # (the page captured first: grep -q ending early would fail curl under pipefail)
    local m
    m=$(curl -s "$W_ADMIN/metrics")
    grep -q "^hypha_dp_tls_cipher_info{suite=\"$suite\",group=\"$group\",reason=\"[a-z_]*\"} 1$" <<<"$m"
}
hy_check "and hypha_dp_tls_cipher_info says the same" info_one

# ---- a second connection resumes the first one's session
OUT_RESUMED='hypha_dp_tls_handshakes_total{direction="outbound",mode="resumed"}'
IN_RESUMED='hypha_dp_tls_handshakes_total{direction="inbound",mode="resumed"}'
OUT_FULL='hypha_dp_tls_handshakes_total{direction="outbound",mode="full"}'
hy_eq "a first call goes through" first "$(call first)"
hy_check "its handshake was a full one" ge "$(metric "$W_ADMIN" "$OUT_FULL")" 1
# the ticket comes after the handshake: a call until one resumes (the
# sidecars may renew their certificates in between: then the next does)
resumed_out() { calls again && ge "$(metric "$W_ADMIN" "$OUT_RESUMED")" 1; }
hy_check "a later call resumes the session (web-1 counts it)" hy_wait_for 20 resumed_out
resumed_in() { ge "$(metric "$B_ADMIN" "$IN_RESUMED")" 1; }
hy_check "and backend-1 counts a resumed inbound handshake" hy_wait_for 5 resumed_in
hy_check "web-1's access line says resumed=1" hy_wait_for 5 \
    grep -q "access direction=outbound .*id=spiffe://default/backend .*resumed=1 result=ok" "$W_LOG"
hy_check "backend-1's names web's SPIFFE ID with resumed=1" hy_wait_for 5 \
    grep -q "access direction=inbound .*id=spiffe://default/web .*sent=6 received=6 .*resumed=1 result=ok" "$B_LOG"
hy_check "full handshakes say resumed=0" \
    grep -q "access direction=outbound .*resumed=0 result=ok" "$W_LOG"

# ---- certificates renewing every few seconds lose no call
renewals() { metric "$1" hypha_dp_cert_renewals_total; }
wr0=$(renewals "$W_ADMIN")
br0=$(renewals "$B_ADMIN")
r0=$(metric "$W_ADMIN" "$OUT_RESUMED")
lost=0 n=0
renewed_both() { ge "$(renewals "$W_ADMIN")" $((wr0 + 1)) && ge "$(renewals "$B_ADMIN")" $((br0 + 1)); }
# calls one after another until both sidecars renewed twice (bounded)
deadline=$((SECONDS + 90))
while [ $SECONDS -lt $deadline ]; do
    n=$((n + 1))
    calls "renew-$n" || lost=$((lost + 1))
    if ge "$(renewals "$W_ADMIN")" $((wr0 + 2)) && ge "$(renewals "$B_ADMIN")" $((br0 + 2)); then break; fi
done
hy_check "both sidecars renewed their certificates during the calls" renewed_both
hy_eq "no call lost across the renewals ($n calls)" 0 "$lost"
hy_check "and calls kept resuming" ge "$(metric "$W_ADMIN" "$OUT_RESUMED")" $((r0 + 2))

# ---- a Deny after the first handshake stops the resumed connections
hy_check "a call before the Deny goes through (its session is kept)" calls pre-deny
denied0=$(metric "$B_ADMIN" 'hypha_dp_tls_tickets_refused_total{reason="denied"}')
ok_resumed() { grep -c "access direction=inbound .*id=spiffe://default/web .*resumed=1 result=ok" "$B_LOG" || true; }
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: deny-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
hy_check "with a Deny for web, a call fails (within 15 s)" hy_wait_for 15 fails denied
resumed_before=$(ok_resumed)
hy_check "the next calls fail too" fails denied-2
hy_check "and again" fails denied-3
hy_check "backend-1 refused web's session ticket as denied" \
    ge "$(metric "$B_ADMIN" 'hypha_dp_tls_tickets_refused_total{reason="denied"}')" $((denied0 + 1))
hy_check "and denied the full handshake that followed" \
    grep -q "access direction=inbound .*id=spiffe://default/web .*result=denied" "$B_LOG"
hy_eq "no resumed connection of web's got through after the Deny" "$resumed_before" "$(ok_resumed)"
ctl delete MeshTrafficPermission deny-web -m default >/dev/null
hy_check "deleting the Deny lets web in again (within 15 s)" hy_wait_for 15 calls allowed-again
r1=$(metric "$W_ADMIN" "$OUT_RESUMED")
resumes_again() { calls once-more && ge "$(metric "$W_ADMIN" "$OUT_RESUMED")" $((r1 + 1)); }
hy_check "and its connections resume again" hy_wait_for 20 resumes_again

# ---- the switch: on (the default) or off, nothing else
# a second backend with resumption off: web-1 takes turns between the two;
# every connection to it is a full handshake, and every call works
P_PORT=$(hy_free_ports 3)
hy_dp_token plain-1 default backend
HYPHA_DP_TLS_RESUMPTION=0 hy_start_dp plain-1 backend "$P_PORT"
P_ADMIN=$DP_ADMIN P_LOG=$HY_TMP/dp-plain-1.log
hy_check "a sidecar with HYPHA_DP_TLS_RESUMPTION=0 becomes ready" hy_wait_for 15 ready "$P_ADMIN"
hy_check "and says resumption is off" grep -q "TLS session resumption is off" "$P_LOG"
both_eps() { [ "$(curl -s "$W_ADMIN/config" | jq '.outbounds[0].endpoints | length')" -ge 2 ]; }
hy_check "web-1's outbound lists both backends" hy_wait_for 15 both_eps
"$HY_BIN/hypha-test-echo" $((P_PORT + 1)) >"$HY_TMP/echo-plain.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 5 grep -q listening "$HY_TMP/echo-plain.log"
lost=0
for i in 1 2 3 4 5 6; do calls "plain-$i" || lost=$((lost + 1)); done
hy_eq "six calls over both backends all work" 0 "$lost"
hy_check "plain-1 took calls, each with a full handshake" \
    ge "$(metric "$P_ADMIN" 'hypha_dp_tls_handshakes_total{direction="inbound",mode="full"}')" 2
hy_eq "and resumed none" 0 \
    "$(metric "$P_ADMIN" 'hypha_dp_tls_handshakes_total{direction="inbound",mode="resumed"}')"
hy_dp_token bad-1 default web
HYPHA_DP_TLS_RESUMPTION=maybe "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" \
    --ca-cert-file "$ZCA" --dataplane-file "$DATA/dp/dataplane.yaml" \
    --dataplane-token-file "$HY_TMP/bad-1.token" --admin-address 127.0.0.1:0 \
    --dataplane-var "name=bad-1,service=web,port=$(hy_free_port),app_port=1,out_port=$(hy_free_port)" \
    >"$HY_TMP/dp-bad-1.log" 2>&1 &
BAD_PID=$!
HY_PIDS+=("$BAD_PID")
gone() { ! kill -0 "$BAD_PID" 2>/dev/null; }
hy_check "a sidecar with HYPHA_DP_TLS_RESUMPTION=maybe does not start" hy_wait_for 15 gone
hy_check "and says why" grep -q 'HYPHA_DP_TLS_RESUMPTION="maybe": expected on or off' "$HY_TMP/dp-bad-1.log"

hy_done
