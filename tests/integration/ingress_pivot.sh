#!/usr/bin/env bash
# Security finding 4, the ingress as a pivot to zone admin: a sidecar with
# a dataplane token for any service registers a Dataplane whose inbound is
# the zone control plane's HTTPS API on the ingress host's loopback; the
# zone lists it as an endpoint of that service, and an ingress that trusts
# its routes relays any ClientHello with the service's SNI there, where the
# API sees a loopback peer and asks for no admin token.
#
# In network namespaces: Z is the zone's host (global CP, zone CP with its
# HTTPS API on 127.0.0.1, the ingress on 10.213.77.1:10001, an echo server
# on 127.0.0.1 as a witness that answers "WITNESS:" to whoever reaches it);
# R is another zone's host, where the remote callers are. The ingress must
# drop such endpoints from its routes (log, metric, /config) and relay
# nothing there; only --allow-local-endpoints (single-host development)
# brings the relay back, which shows this test can see the attack.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
ns=hyp$$
hy_netns_pair "${ns}z" "${ns}r" || { echo "skip: needs root and ip(8)"; exit 77; }
Z=${ns}z R=${ns}r ZIP=10.213.77.1
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
inz() { ip netns exec "$Z" "$@"; }
inr() { ip netns exec "$R" "$@"; }
# start LOG CMD...: a process in Z; sets LAST_PID
start() {
    local log=$1
    shift
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)"
    ip netns exec "$Z" "$@" >"$log" 2>&1 &
    LAST_PID=$!
    HY_PIDS+=("$LAST_PID")
}

# ---- global and zone west in Z; the zone's HTTPS API on Z's loopback only
KDS_PORT=5685
HY_NETNS=$Z hy_start_global g --kds-address "127.0.0.1:$KDS_PORT"
gctl() { inz "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
gctl generate zone-token --zone west --valid-for 1h >"$HY_TMP/west.token"
gctl apply -f "$DATA/resources/mesh.yaml" >/dev/null
(cd "$HY_TMP" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout api-key.pem -out api-cert.pem -days 1 -subj /CN=zone-west \
    -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null)
API_TLS_PORT=5682
start "$HY_TMP/zone-west.log" "$HY_BIN/hypha-zone" --zone west --data-dir "$HY_TMP/zone-west" \
    --api-address 127.0.0.1:5681 --api-tls-address "127.0.0.1:$API_TLS_PORT" \
    --api-tls-cert "$HY_TMP/api-cert.pem" --api-tls-key "$HY_TMP/api-key.pem" \
    --dp-address 127.0.0.1:5678 --global-address "wss://127.0.0.1:$KDS_PORT" \
    --global-ca-file "$GLOBAL_DATA/kds/ca.pem" --zone-token-file "$HY_TMP/west.token" \
    --kds-backoff-max 1s
ZONE_PID=$LAST_PID
hy_wait_for 20 inz curl -sf http://127.0.0.1:5681/ready
hy_check "the zone's HTTPS API listens on the zone host's loopback" \
    hy_wait_for 10 grep -q "API listening on https://127.0.0.1:$API_TLS_PORT" "$HY_TMP/zone-west.log"
zctl() { inz "$HY_BIN/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
hy_check "the zone has its intermediate CA" \
    hy_wait_for 15 inz curl -sf http://127.0.0.1:5681/meshes/default/meshissuers/ca-1

# ---- the witness: a plain echo server on Z's loopback
WITNESS_PORT=7070
start "$HY_TMP/echo.log" "$HY_BIN/hypha-test-echo" "$WITNESS_PORT" "WITNESS:"
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"

# ---- the attacker: dataplane tokens for ordinary services, and sidecars
# whose Dataplanes claim inbounds on Z's loopback (their own listeners
# there fail, the ports being taken: that does not unregister them)
evil_dp() { # NAME SERVICE ADDRESS PORT
    zctl generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 1h >"$HY_TMP/$1.token"
    cat >"$HY_TMP/$1.yaml" <<YAML
type: Dataplane
mesh: default
name: $1
networking:
  address: $3
  inbound:
    - port: $4
      servicePort: 9
      tags:
        kuma.io/service: $2
YAML
    start "$HY_TMP/dp-$1.log" "$HY_BIN/hypha-dp" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-west/dp/ca.pem" --dataplane-file "$HY_TMP/$1.yaml" \
        --dataplane-token-file "$HY_TMP/$1.token" --admin-address 127.0.0.1:0 --workers 1
}
# the zone refuses an inbound that names its own listener by IP literal...
evil_dp direct backend 127.0.0.1 "$API_TLS_PORT"
hy_check "finding 4 (zone): a Dataplane whose inbound is the zone's HTTPS API is refused" \
    hy_wait_for 15 grep -q "this zone control plane's own listener" "$HY_TMP/dp-direct.log"
# ...so the attacker names it by host name, which only the ingress resolves
evil_dp pivot backend localhost "$API_TLS_PORT"
evil_dp witness witness 127.0.0.1 "$WITNESS_PORT"
# and the same through the zone's API: other spellings of this host, and
# the addresses the rule lets through
put_dp() { # NAME SERVICE ADDRESS PORT
    zctl apply -f - >/dev/null <<YAML
type: Dataplane
mesh: default
name: $1
networking:
  address: "$3"
  inbound:
    - port: $4
      tags: {kuma.io/service: $2}
YAML
}
put_dp mapped mapped ::ffff:127.0.0.1 "$WITNESS_PORT"
put_dp unspec unspec 0.0.0.0 "$WITNESS_PORT"
put_dp metadata metadata 169.254.169.254 80
put_dp loop loop "$ZIP" 10001             # the ingress's own port: a loop
put_dp node node "$ZIP" 7071              # the node's own address: a sidecar may well be there
put_dp later later 10.213.77.9 10001      # not this host's address... yet
registered() { [ "$(zctl get dataplanes -m default -o json | jq '.items | length')" = 8 ]; }
hy_check "eight Dataplanes registered, two of them by sidecars with dataplane tokens" \
    hy_wait_for 15 registered

# ---- the ingress, as deployed: no flag
zctl generate zone-ingress-token --name ingress-west --valid-for 1h >"$HY_TMP/ingress.token"
start_ingress() { # [ARGS...]
    start "$HY_TMP/ingress.log" "$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-west/dp/ca.pem" --ingress-file "$DATA/dp/ingress.yaml" \
        --ingress-var "name=ingress-west,address=$ZIP,advertised=$ZIP,port=10001" \
        --token-file "$HY_TMP/ingress.token" --admin-address 127.0.0.1:9902 --workers 2 "$@"
    INGRESS_PID=$LAST_PID
}
start_ingress
config() { inz curl -sf http://127.0.0.1:9902/config; }
eps() { config | jq -c "[.routes[] | select(.service == \"$1\") | .endpoints[]? | \"\(.address):\(.port)\"]"; }
refused_as() { config | jq -e ".refusedEndpoints[] | select(.name == \"$1\" and .reason == \"$2\")" >/dev/null; }
metric() { inz curl -s http://127.0.0.1:9902/metrics | awk -v m="hypha_ingress_endpoints_refused_total{reason=\"$1\"}" '$1 == m {print $2}'; }
has_routes() { config | jq -e '[.routes[].service] | index("later")' >/dev/null; }
hy_check "the ingress gets the zone's routes" hy_wait_for 15 has_routes

hy_check "the witness's endpoint is dropped as loopback" refused_as witness loopback
hy_check "and the ingress logs why" grep -q \
    "refused endpoint 127.0.0.1:$WITNESS_PORT of witness.default.mesh (Dataplane witness): reason=loopback" \
    "$HY_TMP/ingress.log"
hy_check "an IPv4-mapped loopback address too" refused_as mapped loopback
hy_check "0.0.0.0 as unspecified" refused_as unspec unspecified
hy_check "169.254.169.254 as link_local" refused_as metadata link_local
hy_check "the ingress's own port on its own address as ingress_listener" refused_as loop ingress_listener
hy_eq "the node's own address on another port is kept: workloads live there" "[\"$ZIP:7071\"]" "$(eps node)"
hy_eq "and an address not this host's" "[\"10.213.77.9:10001\"]" "$(eps later)"
hy_eq "counted by reason" "2 1 1 1" "$(metric loopback) $(metric unspecified) $(metric link_local) $(metric ingress_listener)"
hy_eq "each endpoint logged once" 1 "$(grep -c "Dataplane witness): reason=loopback" "$HY_TMP/ingress.log")"
hy_check "promtool accepts the metrics" bash -c "ip netns exec $Z curl -s http://127.0.0.1:9902/metrics | promtool check metrics"

# the remote callers, in R
witness() { # SNI: what comes back (8 bytes at most) for a ClientHello naming SNI
    hy_client_hello "$1" >"$HY_TMP/hello-$1"
    inr timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/10001" || exit 1
        cat "$2" >&3
        head -c 8 <&3' _ "$ZIP" "$HY_TMP/hello-$1" 2>/dev/null || true
}
api_via_ingress() { # the HTTP status of the token request through the ingress (000: none)
    rm -f "$HY_TMP/api.out"
    inr curl -sk -o "$HY_TMP/api.out" -w '%{http_code}' --max-time 10 \
        --resolve "backend.default.mesh:10001:$ZIP" -X POST -H 'Content-Type: application/json' \
        --data '{"mesh":"default","name":"payments-1","validFor":"1h","tags":{"hypha.io/service":"payments"}}' \
        https://backend.default.mesh:10001/tokens/dataplane || true
}
api_cert() { # the subject of the certificate a TLS client gets through the ingress with SNI backend.default.mesh
    inr timeout 10 openssl s_client -connect "$ZIP:10001" -servername backend.default.mesh \
        </dev/null 2>/dev/null | grep -o 'CN *= *zone-west' | head -n 1 || true
}
hy_eq "finding 4: a ClientHello naming witness.default.mesh reaches nothing" "" "$(witness witness.default.mesh)"
hy_check "the ingress closes it as a service with no endpoint" hy_wait_for 5 grep -q \
    "sni=witness.default.mesh service=- upstream=- attempts=0 sent=0 received=0 .*result=unknown_sni: the service has no endpoint" "$HY_TMP/ingress.log"
inr timeout 10 openssl s_client -connect "$ZIP:10001" -servername witness.default.mesh </dev/null >"$HY_TMP/s_client.out" 2>&1 || true
hy_check "so does openssl s_client's" hy_wait_for 5 bash -c \
    "[ \$(grep -c 'sni=witness.default.mesh .*upstream=- .*result=unknown_sni' '$HY_TMP/ingress.log') -ge 2 ]"
hy_eq "finding 4: a TLS client naming backend.default.mesh never meets the zone CP's API" "" "$(api_cert)"
hy_eq "finding 4: the token request through the ingress gets no answer" 000 "$(api_via_ingress)"
hy_check "the zone issued no token for it" bash -c "! grep -q 'payments-1' '$HY_TMP/zone-west.log'"
hy_check "nor did any other local endpoint" bash -c "! grep -q 'upstream=127.0.0.1' '$HY_TMP/ingress.log'"
hy_check "finding 4: a Dataplane's host name is never dialled (the zone checked only literals)" \
    grep -q "sni=backend.default.mesh .*upstream=localhost:$API_TLS_PORT .*not an IP address" \
    "$HY_TMP/ingress.log"

# a caller for "node" is relayed: the connect is tried (and refused, nobody listens there)
witness node.default.mesh >/dev/null
hy_check "node.default.mesh is relayed to the node's address" hy_wait_for 5 grep -q \
    "sni=node.default.mesh .*upstream=$ZIP:7071 attempts=1 .*result=upstream_failed.*connection refused" "$HY_TMP/ingress.log"

# an address joins this host: the ingress learns it (netlink) and re-checks its routes
inz ip addr add 10.213.77.9/32 dev lo
hy_check "10.213.77.9 given to the host: 10.213.77.9:10001 becomes a loop, dropped" \
    hy_wait_for 10 refused_as later ingress_listener
hy_eq "from later's route" "[]" "$(eps later)"
inz ip addr del 10.213.77.9/32 dev lo
back() { [ "$(eps later)" = '["10.213.77.9:10001"]' ]; }
hy_check "and taken away: it is back" hy_wait_for 10 back

# ---- with --allow-local-endpoints (single-host development): the attack is there to see
hy_check "SIGTERM stops the ingress" hy_stop "$INGRESS_PID"
start_ingress --allow-local-endpoints
hy_check "the flag is loud about what it allows" hy_wait_for 10 grep -q \
    "allow-local-endpoints: relaying to loopback" "$HY_TMP/ingress.log"
relayed() { [ "$(eps witness)" = "[\"127.0.0.1:$WITNESS_PORT\"]" ]; }
hy_check "with the flag, the loopback endpoints stay" hy_wait_for 15 relayed
hy_eq "and the witness answers a remote caller through the ingress" "WITNESS:" "$(witness witness.default.mesh)"
# the zone CP's API stays out of reach even so: the zone refused its address
# as a literal, and the ingress dials no Dataplane host name
hy_eq "and the zone CP's API is still not reached through it" "" "$(api_cert)"
hy_check "the ingress's own port stays refused even so" refused_as loop ingress_listener
hy_eq "with the flag only the loop is refused" "0 0 0 1" "$(metric loopback) $(metric unspecified) $(metric link_local) $(metric ingress_listener)"

hy_check "SIGTERM stops the ingress cleanly" hy_stop "$INGRESS_PID"
hy_check "SIGTERM stops the zone cleanly" hy_stop "$ZONE_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
