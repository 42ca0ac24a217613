#!/usr/bin/env bash
# The sidecar's proxy against a real zone: an app calls web-1's outbound
# listener, which originates mTLS to backend-1's inbound, which checks the
# caller's SPIFFE ID against MeshTrafficPermission and relays to the
# backend app (an echo server). Clients without a mesh certificate are
# refused, a Deny takes effect for new connections and lifting it restores
# them, every connection leaves an access-log line and metrics.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

KDS_PORT=$(hy_free_port)
hy_start_global g --kds-address "127.0.0.1:$KDS_PORT"
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
ctl generate zone-token --zone east --valid-for 24h >"$HY_TMP/east.token"
# leaves live 20 s here, so both sidecars renew their certificates during the test
sed 's/expiration: 1d/expiration: 20s/' "$DATA/resources/mesh.yaml" | ctl apply -f - >/dev/null
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
DP_PORT=$(hy_free_port)
hy_start_zone east --dp-address "127.0.0.1:$DP_PORT"
E=$ZONE_URL_east
issuer() { curl -sf "$E/meshes/default/meshissuers/ca-1" >/dev/null; }
hy_check "the zone has its intermediate CA" hy_wait_for 15 issuer
ZCA=$HY_TMP/zone-east/dp/ca.pem

# ports: inbound PORT, app PORT+1, outbound PORT+2 (dataplane.yaml)
B_PORT=26100
W_PORT=27100

# start_dp NAME SERVICE PORT: a sidecar; sets DP_PID and DP_ADMIN
start_dp() {
    local name=$1 svc=$2 port=$3 log=$HY_TMP/dp-$1.log
    "$HY_BIN/hyphactl" --cp "$E" generate dataplane-token --mesh default --name "$name" \
        --tag "hypha.io/service=$svc" --valid-for 1h >"$HY_TMP/$name.token"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$DATA/dp/dataplane.yaml" --dataplane-token-file "$HY_TMP/$name.token" \
        --dataplane-var "name=$name,service=$svc,port=$port,app_port=$((port + 1)),out_port=$((port + 2))" \
        --admin-address 127.0.0.1:0 >"$log" 2>&1 &
    DP_PID=$!
    HY_PIDS+=("$DP_PID")
    hy_wait_for 15 grep -q 'admin on http://' "$log"
    DP_ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}
ready() { curl -sf "$1/ready" >/dev/null; }
# metric ADMIN NAME{LABELS}: its value, 0 when absent
metric() {
    curl -s "$1/metrics" | awk -v m="$2" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# the backend app: an echo server
"$HY_BIN/hypha-test-echo" $((B_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"

start_dp backend-1 backend $B_PORT
B_PID=$DP_PID B_ADMIN=$DP_ADMIN B_LOG=$HY_TMP/dp-backend-1.log
start_dp web-1 web $W_PORT
W_PID=$DP_PID W_ADMIN=$DP_ADMIN W_LOG=$HY_TMP/dp-web-1.log
hy_check "both sidecars become ready" hy_wait_for 15 ready "$B_ADMIN"
hy_wait_for 15 ready "$W_ADMIN"
endpoint() { curl -s "$W_ADMIN/config" | jq -e ".outbounds[0].endpoints[] | select(.name == \"backend-1\" and .port == $B_PORT)" >/dev/null; }
hy_check "web-1's outbound lists backend-1's inbound" hy_wait_for 10 endpoint
hy_check "backend-1 listens on its inbound port" hy_wait_for 5 grep -q "inbound listener on 127.0.0.1:$B_PORT" "$B_LOG"
hy_check "web-1 listens on its outbound port" hy_wait_for 5 grep -q "outbound listener on 127.0.0.1:$((W_PORT + 2))" "$W_LOG"

# call MSG: one line through web-1's outbound; prints what came back
call() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$((W_PORT + 2))" || exit 1
        printf '%s\n' "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
calls() { [ "$(call "$1")" = "$1" ]; }
fails() { [ "$(call "$1")" != "$1" ]; }

# ---- end to end
hy_eq "an echo through web-1's outbound and backend-1's inbound comes back" "hello mesh" \
    "$(call "hello mesh")"
hy_eq "and again (a new connection)" "second" "$(call second)"
big=$HY_TMP/big
head -c 4000000 /dev/urandom >"$big"
bigcall() {
    exec 3<>"/dev/tcp/127.0.0.1/$((W_PORT + 2))"
    cat "$big" >&3 &
    local w=$!
    timeout 20 head -c 4000000 <&3 | sha256sum | cut -d' ' -f1
    wait "$w"
    exec 3<&-
}
hy_eq "4 MB both ways arrive intact (backpressure on both sides)" \
    "$(sha256sum <"$big" | cut -d' ' -f1)" "$(bigcall)"
accessed() { grep -q "access direction=$2 .*result=ok" "$1"; }
hy_check "web-1 logs an outbound access line" hy_wait_for 5 accessed "$W_LOG" outbound
hy_check "backend-1 logs an inbound access line naming web's SPIFFE ID" hy_wait_for 5 \
    grep -q "access direction=inbound .*id=spiffe://default/web upstream=127.0.0.1:$((B_PORT + 1)) attempts=1 sent=11 received=11 .*result=ok" "$B_LOG"
hy_check "web-1 checked backend's SPIFFE ID" \
    grep -q "access direction=outbound .*id=spiffe://default/backend upstream=127.0.0.1:$B_PORT .*result=ok" "$W_LOG"

# ---- clients without a mesh certificate
curl -s "$B_ADMIN/config" | jq -r .trustBundle >"$HY_TMP/bundle.pem"
fails_before=$(metric "$B_ADMIN" 'hypha_dp_tls_handshake_failures_total{direction="inbound"}')
# sclient MSG [ARGS...]: sends MSG to backend-1's inbound with openssl s_client; fails if
# it came back (the echo behind the sidecar answered)
sclient() {
    local msg=$1
    shift
    printf '%s\n' "$msg" | timeout 10 openssl s_client -connect "127.0.0.1:$B_PORT" -tls1_3 \
        -CAfile "$HY_TMP/bundle.pem" -quiet "$@" >"$HY_TMP/sclient.out" 2>&1 || true
    ! grep -q "^$msg\$" "$HY_TMP/sclient.out"
}
hy_check "a TLS client without a certificate gets nothing through" sclient nocert
hy_check "and backend-1's certificate verified against the mesh bundle" \
    grep -q "verify return:1" "$HY_TMP/sclient.out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=web \
    -addext "subjectAltName=URI:spiffe://default/web" -keyout "$HY_TMP/evil.key" \
    -out "$HY_TMP/evil.pem" 2>/dev/null
hy_check "a client certificate from another CA (claiming web's ID) gets nothing through" \
    sclient evil -cert "$HY_TMP/evil.pem" -key "$HY_TMP/evil.key"
tls_failed() { ge "$(metric "$B_ADMIN" 'hypha_dp_tls_handshake_failures_total{direction="inbound"}')" $((fails_before + 2)); }
hy_check "both count as inbound TLS handshake failures" hy_wait_for 5 tls_failed
hy_check "and leave access lines" hy_wait_for 5 grep -q "access direction=inbound .*result=tls_failed" "$B_LOG"
hy_eq "the mesh still works after them" "still" "$(call still)"

# ---- a Deny takes effect for new connections; lifting it restores them
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
hy_check "with a Deny for web, a new call fails (within 15 s)" hy_wait_for 15 fails denied
hy_check "backend-1 logs the denial" grep -q "access direction=inbound .*id=spiffe://default/web .*result=denied" "$B_LOG"
hy_check "and counts it" ge "$(metric "$B_ADMIN" hypha_dp_inbound_denied_total)" 1
ctl delete MeshTrafficPermission deny-web -m default >/dev/null
hy_check "deleting the Deny lets web in again (within 15 s)" hy_wait_for 15 calls allowed-again

# ---- max_connections (MeshCircuitBreaker) caps concurrent connections
ctl apply -f - >/dev/null <<'YAML'
type: MeshCircuitBreaker
mesh: default
name: one-at-a-time
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        connectionLimits: {maxConnections: 1}
YAML
capped() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[0].maxConnections == 1' >/dev/null; }
hy_check "a MeshCircuitBreaker of 1 connection reaches web-1" hy_wait_for 15 capped
exec 4<>"/dev/tcp/127.0.0.1/$((W_PORT + 2))"
printf 'held\n' >&4
IFS= read -r -t 5 held <&4 || held=
hy_eq "one connection is held open" held "$held"
hy_check "a second one is refused while it is" fails second-while-held
hy_check "web-1 logs it as overflow" grep -q "access direction=outbound .*result=overflow" "$W_LOG"
exec 4>&-
hy_check "once it closed, a call goes through again" hy_wait_for 5 calls after-held
ctl delete MeshCircuitBreaker one-at-a-time -m default >/dev/null
uncapped() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[0].maxConnections == null' >/dev/null; }
hy_wait_for 15 uncapped

# ---- certificate renewal: new connections use the new certificate, open ones carry on
serial() { openssl x509 -noout -serial < <(curl -s "$1/config" | jq -r .cert); }
sb=$(serial "$B_ADMIN")
sw=$(serial "$W_ADMIN")
exec 5<>"/dev/tcp/127.0.0.1/$((W_PORT + 2))"
printf 'before\n' >&5
IFS= read -r -t 5 before <&5 || before=
renewed() { [ "$(serial "$B_ADMIN")" != "$sb" ] && [ "$(serial "$W_ADMIN")" != "$sw" ]; }
hy_check "both sidecars renew their certificates" hy_wait_for 25 renewed
hy_eq "a new call works with the renewed certificates" renewed "$(call renewed)"
printf 'after\n' >&5
IFS= read -r -t 5 after <&5 || after=
hy_eq "a connection opened before the renewal still relays both ways" "before after" "$before $after"
exec 5>&-

# ---- metrics
hy_check "web-1 counts outbound connections" ge "$(metric "$W_ADMIN" 'hypha_dp_connections_total{direction="outbound"}')" 4
hy_check "backend-1 counts inbound connections" ge "$(metric "$B_ADMIN" 'hypha_dp_connections_total{direction="inbound"}')" 4
hy_check "bytes are counted" ge "$(metric "$W_ADMIN" 'hypha_dp_bytes_total{direction="outbound"}')" 8000000
hy_check "upstream connect times are observed" ge "$(metric "$W_ADMIN" 'hypha_dp_upstream_connect_seconds_count{direction="outbound"}')" 4
no_active() { [ "$(metric "$W_ADMIN" 'hypha_dp_active_connections{direction="outbound"}')" = 0 ]; }
hy_check "no connection stays open" hy_wait_for 5 no_active
hy_check "promtool accepts the metrics" promtool check metrics < <(curl -s "$B_ADMIN/metrics")

# ---- a second backend: its app is missing, then it dies
start_dp backend-2 backend 28100
B2_PID=$DP_PID B2_LOG=$HY_TMP/dp-backend-2.log
two() { [ "$(curl -s "$W_ADMIN/config" | jq '.outbounds[0].endpoints | length')" = 2 ]; }
hy_check "web-1's outbound lists both backends" hy_wait_for 15 two
hy_wait_for 5 grep -q "inbound listener on 127.0.0.1:28100" "$B2_LOG"
call rr1 >/dev/null || true
call rr2 >/dev/null || true
hy_check "round robin reaches backend-2, whose app is not there: it logs upstream_failed" \
    hy_wait_for 5 grep -q "access direction=inbound .*id=spiffe://default/web upstream=127.0.0.1:28101 .*result=upstream_failed" "$B2_LOG"
kill -9 "$B2_PID"
wait "$B2_PID" 2>/dev/null || true
ok=0
for i in 1 2 3 4; do [ "$(call "after-$i")" = "after-$i" ] && ok=$((ok + 1)); done
hy_eq "with backend-2 SIGKILLed, calls still succeed (a failed connect moves to the next endpoint)" 4 "$ok"
hy_check "web-1 logged a call that needed a second attempt" \
    grep -q "access direction=outbound .*upstream=127.0.0.1:$B_PORT attempts=2 .*result=ok" "$W_LOG"

hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B_PID"
hy_check "a call with no backend left fails" fails gone
hy_check "and web-1 logs why" hy_wait_for 5 grep -Eq "access direction=outbound .*result=(upstream_failed|no_endpoints)" "$W_LOG"

hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops the zone" hy_stop "$ZONE_PID_east"
hy_check "SIGTERM stops the global CP" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
