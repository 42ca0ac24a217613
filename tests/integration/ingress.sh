#!/usr/bin/env bash
# Cross-zone calls through the zone ingress, end to end in network
# namespaces: the global CP in one, zones east and west each in their own
# with their own address on a bridge. West runs backend (an echo server
# behind its sidecar) and an ingress; east runs web's sidecar and its own
# ingress. web calls backend: east's zone routes it to west's ingress
# (learned through the global CP), which reads the SNI and relays the
# still-encrypted bytes to backend's sidecar; mTLS runs between the two
# sidecars. Then: a Deny applied on the global CP reaches west's sidecar;
# the ingress refuses plain TCP, a ClientHello without SNI and an unknown
# SNI with nothing forwarded; with west's ingress down calls fail fast and
# come back with it; with the global CP down calls go on. backend-1's
# sidecar listens on west's own bridge address, as a workload on the
# ingress's node would: the ingress relays there, never to loopback
# (security finding 4; tests/integration/ingress_pivot.sh).
. "$(dirname "$0")/lib_zones.sh"

hy_zones_net
hy_zones_global
# mtp ACTION: web -> backend, Allow or Deny, applied on the global CP
mtp() {
    gctl apply -f - >/dev/null <<YAML
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: $1}
YAML
}
mtp Allow
hy_zones_start
hy_zones_ingresses

# ---- a bad ingress file: a clear error, nothing started
printf 'type: ZoneIngress\nname: bad\nnetworking:\n  address: 10.0.0.1\n  port: 10001\n  colour: blue\n' >"$HY_TMP/bad-ingress.yaml"
rc=0
"$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:1 --ca-cert-file /dev/null \
    --ingress-file "$HY_TMP/bad-ingress.yaml" --token-file "$HY_TMP/ingress-west.token" \
    --admin-address 127.0.0.1:0 >"$HY_TMP/bad-ingress.log" 2>&1 || rc=$?
hy_eq "an ingress file with an unknown field: exit 1" 1 "$rc"
hy_check "naming the file, the line and the field" grep -q "bad-ingress.yaml:6:.*colour" "$HY_TMP/bad-ingress.log"
rc=0
"$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:1 --ca-cert-file /dev/null \
    --ingress-file "$DATA/dp/dataplane.yaml" --ingress-var name=x,service=y,port=1,app_port=2,out_port=3 \
    --token-file "$HY_TMP/ingress-west.token" --admin-address 127.0.0.1:0 >"$HY_TMP/dp-as-ingress.log" 2>&1 || rc=$?
hy_eq "a Dataplane given as the ingress file: exit 1" 1 "$rc"
hy_check "saying what was expected" grep -q "expected ZoneIngress, found Dataplane" "$HY_TMP/dp-as-ingress.log"

printf 'type: ZoneIngress\nname: wild\nnetworking:\n  address: 0.0.0.0\n  port: 10001\n' >"$HY_TMP/wild.yaml"
rc=0
"$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:1 --ca-cert-file /dev/null \
    --ingress-file "$HY_TMP/wild.yaml" --token-file "$HY_TMP/ingress-west.token" \
    --admin-address 127.0.0.1:0 >"$HY_TMP/wild.log" 2>&1 || rc=$?
hy_eq "listening on 0.0.0.0 with no advertisedAddress: exit 1" 1 "$rc"
hy_check "saying other zones need one" grep -q "advertisedAddress: required when address is 0.0.0.0" "$HY_TMP/wild.log"
printf 'type: ZoneIngress\nname: fast\nnetworking:\n  address: 127.0.0.1\n  port: 10001\n' >"$HY_TMP/fast.yaml"
rc=0
"$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:1 --ca-cert-file /dev/null \
    --ingress-file "$HY_TMP/fast.yaml" --token-file "$HY_TMP/ingress-west.token" \
    --admin-address 127.0.0.1:0 --relay=fast >"$HY_TMP/fast.log" 2>&1 || rc=$?
hy_eq "--relay=fast: exit 1" 1 "$rc"
hy_check "naming the modes there are" grep -q -- '--relay "fast": expected adaptive, splice or copy' "$HY_TMP/fast.log"

# ---- an ingress with another kind of token, or another ingress's, is refused
zctl "$WE" generate dataplane-token --mesh default --name ingress-x --valid-for 1h >"$HY_TMP/ingress-x.token"
zctl "$WE" generate zone-ingress-token --name ingress-west --valid-for 1h >"$HY_TMP/ingress-y.token"
rogue() { # NAME: an ingress on port 10002 presenting $HY_TMP/NAME.token
    start "$WE" "$HY_TMP/$1.log" "$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-west/dp/ca.pem" --ingress-file "$DATA/dp/ingress.yaml" \
        --ingress-var "name=$1,address=$WE_IP,advertised=$WE_IP,port=10002" --token-file "$HY_TMP/$1.token" \
        --admin-address 127.0.0.1:0
}
rogue ingress-x
hy_check "a dataplane token does not admit an ingress" hy_wait_for 10 grep -q \
    "rejected this ingress: zone-ingress token refused: this is a dataplane token; a zone-ingress token is required" "$HY_TMP/ingress-x.log"
hy_check "and it is not ready" bash -c "! grep -q 'applied routes' '$HY_TMP/ingress-x.log'"
hy_stop "$LAST_PID" || true
rogue ingress-y
hy_check "nor does another ingress's token" hy_wait_for 10 grep -q \
    "rejected this ingress: the zone-ingress token is for ZoneIngress ingress-west, not ingress-y" "$HY_TMP/ingress-y.log"
hy_stop "$LAST_PID" || true

# ---- backend in west, web in east
start "$WE" "$HY_TMP/echo.log" "$HY_BIN/hypha-test-echo" 21001
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"
DP_ADDRESS=$WE_IP start_dp backend-1 backend "$WE" west
start_dp web-1 web "$EA" east
WEB_PID=$LAST_PID
hy_check "backend-1 (west) becomes ready" hy_wait_for 15 dp_ready "$WE"
hy_check "web-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA"

available() { gctl get zoneingresses -o json | jq -e '.items[] | select(.zone == "west") | .availableServices[] | select(.tags["hypha.io/service"] == "backend" and .instances == 1)' >/dev/null; }
hy_check "the global CP sees west's ingress offering backend" hy_wait_for 15 available
remote() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e ".outbounds[0].endpoints[] | select(.zone == \"west\" and .address == \"$WE_IP\" and .port == 10001 and .priority == 1)" >/dev/null; }
hy_check "web-1's outbound lists west's ingress as a remote endpoint" hy_wait_for 15 remote
hy_eq "and its SNI names service and mesh" "backend.default.mesh" \
    "$(inns "$EA" curl -s http://127.0.0.1:9901/config | jq -r '.outbounds[0].sni')"

# call MSG: one line through web-1's outbound (in east)
call() {
    inns "$EA" bash -c 'exec 3<>/dev/tcp/127.0.0.1/21002 || exit 1
        printf "%s\n" "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf "%s\n" "$line"' _ "$1" 2>/dev/null
}
calls() { [ "$(call "$1")" = "$1" ]; }
fails() { [ "$(call "$1")" != "$1" ]; }
hy_eq "a call from east reaches backend in west and comes back" "across zones" "$(call "across zones")"
hy_check "west's ingress logs it by SNI" hy_wait_for 5 \
    grep -q "access peer=$EA_IP:.* sni=backend.default.mesh service=default/backend upstream=$WE_IP:21000 .*result=ok" "$HY_TMP/ingress-west.log"
hy_check "backend-1 saw web's SPIFFE ID: mTLS from sidecar to sidecar" \
    hy_wait_for 5 grep -q "access direction=inbound .*id=spiffe://default/web .*result=ok" "$HY_TMP/dp-backend-1.log"
hy_check "web-1 checked the server's identity and logs the ingress as its upstream" \
    grep -q "access direction=outbound .*upstream=$WE_IP:10001 .*result=ok" "$HY_TMP/dp-web-1.log"

# ---- west's ingress passes over an endpoint whose connect failed
zctl "$WE" apply -f - >/dev/null <<YAML
type: Dataplane
mesh: default
name: ghost
networking:
  address: $WE_IP
  inbound:
    - port: 21900
      tags: {kuma.io/service: backend}
YAML
two_eps() { inns "$WE" curl -s http://127.0.0.1:9902/config | jq -e '.routes[] | select(.service == "backend") | .endpoints | length == 2' >/dev/null; }
hy_check "a Dataplane nobody serves joins backend's route in west's ingress" hy_wait_for 15 two_eps
retried() { grep -c "sni=backend.default.mesh .*upstream=$WE_IP:21000 attempts=2 .*result=ok" "$HY_TMP/ingress-west.log" || true; }
n0=$(retried)
ok=0
for i in $(seq 1 12); do [ "$(call "ghost-$i")" = "ghost-$i" ] && ok=$((ok + 1)); done
hy_eq "twelve calls all work" 12 "$ok"
hy_check "at most one per ingress worker (2) tried the dead endpoint first" \
    hy_wait_for 5 bash -c "[ \$(grep -c 'sni=backend.default.mesh .*result=' '$HY_TMP/ingress-west.log') -gt 0 ] && [ \$(( \$(grep -c 'sni=backend.default.mesh .*upstream=$WE_IP:21000 attempts=2 .*result=ok' '$HY_TMP/ingress-west.log') - $n0 )) -le 2 ]"
zctl "$WE" delete dataplane ghost -m default >/dev/null

# bigcall: 4 MB both ways through web-1's outbound and west's ingress; prints the echo's sha256
head -c 4000000 /dev/urandom >"$HY_TMP/big"
BIG_SUM=$(sha256sum <"$HY_TMP/big" | cut -d' ' -f1)
bigcall() {
    inns "$EA" bash -c 'exec 3<>/dev/tcp/127.0.0.1/21002 || exit 1
        cat "$1" >&3 &
        timeout 20 head -c 4000000 <&3 | sha256sum | cut -d" " -f1
        wait' _ "$HY_TMP/big" 2>/dev/null
}
hy_eq "4 MB through the ingress (adaptive, the default) come back intact" "$BIG_SUM" "$(bigcall)"
hy_check "the bulk spliced by the adaptive relay" hy_wait_for 5 grep -Eq "sent=40[0-9]{5} received=40[0-9]{5} relay=adaptive spliced=[1-9][0-9]{5,} .*result=ok" "$HY_TMP/ingress-west.log"
hy_check "small calls copied by it, nothing spliced" grep -Eq "sni=backend.default.mesh .* relay=adaptive spliced=0 .*result=ok" "$HY_TMP/ingress-west.log"

# ---- what the ingress sees is ciphertext: capture it on west's side
inns "$WE" timeout 20 tcpdump -i eth0 --immediate-mode -U -w "$HY_TMP/ingress.pcap" "tcp port 10001" \
    2>"$HY_TMP/tcpdump.log" &
TD1=$!
# the control: the same capture where backend-1's sidecar talks to the app
inns "$WE" timeout 20 tcpdump -i lo --immediate-mode -U -w "$HY_TMP/app.pcap" "tcp port 21001" \
    2>"$HY_TMP/tcpdump-app.log" &
TD2=$!
hy_wait_for 10 grep -q "listening on" "$HY_TMP/tcpdump.log"
hy_wait_for 10 grep -q "listening on" "$HY_TMP/tcpdump-app.log"
hy_eq "a call with a recognisable payload works" secret-payload-1234 "$(call secret-payload-1234)"
captured() { [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -gt 500 ]; }
hy_wait_for 5 captured "$HY_TMP/ingress.pcap"
hy_wait_for 5 captured "$HY_TMP/app.pcap"
kill "$TD1" "$TD2" 2>/dev/null
wait "$TD1" "$TD2" 2>/dev/null || true
hy_check "the app's side of backend-1's sidecar carries the payload in the clear (the control)" \
    grep -q secret-payload-1234 "$HY_TMP/app.pcap"
hy_check "the bytes through west's ingress never do" bash -c "! grep -q secret-payload-1234 '$HY_TMP/ingress.pcap'"

# ---- MeshTrafficPermission across zones: a Deny on the global CP
mtp Deny
denied() {
    inns "$WE" curl -s http://127.0.0.1:9901/config |
        jq -e '[.inbounds[0].permissions[] | select(.tags["hypha.io/service"] == "web")] | last | .action == "Deny"' >/dev/null
}
hy_check "a Deny applied on the global CP reaches backend-1 in west" hy_wait_for 15 denied
hy_check "and a cross-zone call is refused" fails refused
hy_check "backend-1 logs the denial" hy_wait_for 5 grep -q "access direction=inbound .*id=spiffe://default/web .*result=denied" "$HY_TMP/dp-backend-1.log"
hy_check "and web-1 in east logs it as denied, through the ingress" hy_wait_for 15 \
    grep -q "access direction=outbound .*result=denied: the peer refused our certificate" "$HY_TMP/dp-web-1.log"
mtp Allow
hy_check "an Allow restores it" hy_wait_for 15 calls allowed-again

# ---- MeshLoadBalancingStrategy orders the zones (localityAwareness)
lbs() { # the localityAwareness block, as YAML flow
    gctl apply -f - >/dev/null <<YAML
type: MeshLoadBalancingStrategy
mesh: default
name: zones
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        localityAwareness: $1
YAML
}
remote_prio() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -r '[.outbounds[0].endpoints[] | select(.zone == "west") | (.priority // 0)] | map(tostring) | join(",")'; }
prio_is() { [ "$(remote_prio)" = "$1" ]; }
lbs '{crossZone: {failover: [{to: {type: None}}]}}'
hy_check "failover None leaves west out of web-1's endpoints" hy_wait_for 15 prio_is ""
hy_check "and a call has nowhere to go" fails refused
hy_check "web-1 logs no_endpoints" hy_wait_for 5 grep -q "access direction=outbound .*result=no_endpoints" "$HY_TMP/dp-web-1.log"
lbs '{crossZone: {failover: [{to: {type: Only, zones: [north]}}, {to: {type: Only, zones: [west]}}]}}'
hy_check "Only north, then Only west: west comes second (priority 2)" hy_wait_for 15 prio_is 2
hy_check "and calls reach it" hy_wait_for 15 calls ordered
lbs '{disabled: true}'
hy_check "locality disabled: west is as near as east (priority 0)" hy_wait_for 15 prio_is 0
gctl delete meshloadbalancingstrategy zones -m default >/dev/null
hy_check "no strategy: west is priority 1 again" hy_wait_for 15 prio_is 1

# ---- the ingress is no open relay
in_conns() { inns "$WE" curl -s http://127.0.0.1:9901/metrics | awk '$1 == "hypha_dp_connections_total{direction=\"inbound\"}" {print $2}'; }
refused() { inns "$WE" curl -s http://127.0.0.1:9902/metrics | awk -v m="hypha_ingress_refused_total{reason=\"$1\"}" '$1 == m {print $2}'; }
before=$(in_conns)
inns "$EA" bash -c "exec 3<>/dev/tcp/$WE_IP/10001; printf 'GET / HTTP/1.1\r\nHost: backend.default.mesh\r\n\r\n' >&3; cat <&3" >"$HY_TMP/plain.out" 2>/dev/null || true
hy_eq "plain TCP gets nothing back" "" "$(cat "$HY_TMP/plain.out")"
hy_check "and is logged as not_tls" hy_wait_for 5 grep -q "access peer=$EA_IP:.* sni=- service=- upstream=- attempts=0 sent=0 received=0 .*result=not_tls" "$HY_TMP/ingress-west.log"
inns "$EA" timeout 10 openssl s_client -connect "$WE_IP:10001" -noservername </dev/null >"$HY_TMP/nosni.out" 2>&1 || true
hy_check "a ClientHello without SNI is logged as no_sni" hy_wait_for 5 grep -q "upstream=- attempts=0 sent=0 received=0 .*result=no_sni" "$HY_TMP/ingress-west.log"
inns "$EA" timeout 10 openssl s_client -connect "$WE_IP:10001" -servername db.default.mesh </dev/null >"$HY_TMP/unknown.out" 2>&1 || true
hy_check "an unknown SNI is logged as unknown_sni" hy_wait_for 5 grep -q "sni=db.default.mesh service=- upstream=- attempts=0 sent=0 received=0 .*result=unknown_sni" "$HY_TMP/ingress-west.log"
inns "$EA" timeout 10 openssl s_client -connect "$WE_IP:10001" -servername backend.other.mesh </dev/null >/dev/null 2>&1 || true
hy_check "so is a known service in a mesh it does not carry" hy_wait_for 5 grep -q "sni=backend.other.mesh .*result=unknown_sni" "$HY_TMP/ingress-west.log"
hy_eq "none of them reached backend-1's sidecar" "$before" "$(in_conns)"
hy_eq "each counted" "1 1 2" "$(refused not_tls) $(refused no_sni) $(refused unknown_sni)"
hy_check "promtool accepts the ingress's metrics" bash -c "ip netns exec $WE curl -s http://127.0.0.1:9902/metrics | promtool check metrics"

# ---- west's ingress down: calls fail fast; back: they work again
kill -9 "$INGRESS_WEST_PID"
wait "$INGRESS_WEST_PID" 2>/dev/null || true
start_s=$SECONDS
hy_check "with west's ingress SIGKILLed a call fails" fails refused
hy_check "fast: web-1 logs a refused connect, not a timeout" \
    hy_wait_for 5 grep -q "access direction=outbound .*result=upstream_failed: .*connection refused" "$HY_TMP/dp-web-1.log"
# back, advertising a host name (east resolves it through /etc/netns/$EA/hosts),
# and from here on with the copying relay
start_ingress west "$WE" "$WE_IP" ingress.west.hypha.test --splice=false
INGRESS_WEST_PID=$LAST_PID
hy_check "west's ingress is back" hy_wait_for 15 ing_ready "$WE"
by_name() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e '.outbounds[0].endpoints[] | select(.address == "ingress.west.hypha.test")' >/dev/null; }
hy_check "web-1 learns its advertised host name" hy_wait_for 15 by_name
hy_check "and calls work again, resolving it" hy_wait_for 15 calls back-again
gctl apply -f - >/dev/null <<'YAML'
type: MeshHealthCheck
mesh: default
name: backend-hc
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {interval: 1s, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1}
YAML
checks_passed() { inns "$EA" curl -s http://127.0.0.1:9901/metrics | awk '$1 == "hypha_dp_health_checks_total{result=\"passed\"}" {print $2}'; }
passing() { [ "$(checks_passed)" -ge 2 ] 2>/dev/null; }
hy_check "web-1 health-checks west's ingress by its host name, and the checks pass" hy_wait_for 15 passing
gctl delete meshhealthcheck backend-hc -m default >/dev/null
hy_eq "4 MB through the ingress (copying) come back intact" "$BIG_SUM" "$(bigcall)"
hy_check "relayed by copying" hy_wait_for 5 grep -Eq "sent=40[0-9]{5} received=40[0-9]{5} relay=copy spliced=0 .*result=ok" "$HY_TMP/ingress-west.log"

# ---- and with splice all the way (stopped politely this time)
hy_check "west's ingress stops on SIGTERM" hy_stop "$INGRESS_WEST_PID"
start_ingress west "$WE" "$WE_IP" ingress.west.hypha.test --relay=splice
INGRESS_WEST_PID=$LAST_PID
hy_check "west's ingress is back, splicing" hy_wait_for 15 ing_ready "$WE"
hy_check "it says so" grep -q "listening for cross-zone traffic on .*relay=splice)" "$HY_TMP/ingress-west.log"
hy_check "calls work through it" hy_wait_for 15 calls spliced
hy_eq "4 MB through the ingress (splice) come back intact" "$BIG_SUM" "$(bigcall)"
hy_check "relayed by splice" hy_wait_for 5 grep -Eq "sent=40[0-9]{5} received=40[0-9]{5} relay=splice spliced=[1-9][0-9]{6,} .*result=ok" "$HY_TMP/ingress-west.log"

# ---- the global CP down: cross-zone calls go on
hy_check "SIGKILL the global CP" kill -9 "$GLOBAL_PID"
wait "$GLOBAL_PID" 2>/dev/null || true
ok=0
for i in 1 2 3 4 5; do [ "$(call "no-global-$i")" = "no-global-$i" ] && ok=$((ok + 1)); done
hy_eq "with the global CP gone, five cross-zone calls all work" 5 "$ok"

# ---- locality: a local backend wins; when it dies, calls go to west again
start "$EA" "$HY_TMP/echo-east.log" "$HY_BIN/hypha-test-echo" 22001
hy_wait_for 5 grep -q listening "$HY_TMP/echo-east.log"
start_dp backend-2 backend "$EA" east 22000 9903
B2_PID=$LAST_PID
local_too() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e '.outbounds[0].endpoints | map(.priority // 0) | sort == [0, 1]' >/dev/null; }
hy_check "backend-2 in east joins web-1's endpoints at priority 0, west's ingress stays at 1" hy_wait_for 15 local_too
hy_wait_for 5 grep -q "inbound listener on 127.0.0.1:22000" "$HY_TMP/dp-backend-2.log"
relayed() { inns "$WE" curl -s http://127.0.0.1:9902/metrics | awk '$1 == "hypha_ingress_connections_total" {print $2}'; }
r0=$(relayed)
ok=0
for i in 1 2 3 4 5; do [ "$(call "local-$i")" = "local-$i" ] && ok=$((ok + 1)); done
hy_eq "five calls work" 5 "$ok"
hy_eq "and none crossed to west: the local endpoint is used first" "$r0" "$(relayed)"
kill -9 "$B2_PID"
wait "$B2_PID" 2>/dev/null || true
ok=0
for i in 1 2 3 4 5; do [ "$(call "failover-$i")" = "failover-$i" ] && ok=$((ok + 1)); done
hy_eq "backend-2 SIGKILLed: five calls still work" 5 "$ok"
hy_eq "all through west's ingress" 5 "$(($(relayed) - r0))"

hy_check "SIGTERM stops web-1 cleanly" hy_stop "$WEB_PID"
hy_check "SIGTERM stops west's ingress cleanly" hy_stop "$INGRESS_WEST_PID"
gone() { ! zctl "$WE" get zoneingress ingress-west >/dev/null 2>&1; }
hy_check "which deregisters it from its zone" hy_wait_for 10 gone
hy_check "SIGTERM stops east's ingress" hy_stop "$INGRESS_EAST_PID"
hy_check "SIGTERM stops zone east" hy_stop "$ZONE_EAST_PID"
hy_check "SIGTERM stops zone west" hy_stop "$ZONE_WEST_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
