#!/usr/bin/env bash
# The HTTP (L7) path across zones, end to end in network namespaces (as
# ingress.sh): the global CP in one, zones east and west in their own.
# West runs backend (tests/tools/http_app.py behind its sidecar, protocol
# http) and a zone ingress; east runs web's sidecar and backend-v2 (an app
# and its sidecar). web-1's requests to backend go over the pooled HTTP/2
# hop through west's ingress, which routes by SNI without terminating TLS:
# calls, no new mesh connection per app connection, a MeshRetry and a
# MeshHTTPRoute split between the remote backend and the local backend-v2,
# all applied on the global CP.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
[ "$(id -u)" -eq 0 ] && command -v ip >/dev/null || { echo "skip: needs root and ip(8)"; exit 77; }
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

# ---- the network: a bridge in G, east (.2) and west (.3) on it
G=hlg$$ EA=hle$$ WE=hlw$$
for ns in $G $EA $WE; do
    ip netns add "$ns" || { echo "skip: cannot make network namespaces"; exit 77; }
    HY_CLEANUP+=("ip netns del $ns")
    ip -n "$ns" link set lo up
done
ip -n "$G" link add br0 type bridge
ip -n "$G" addr add 10.213.81.1/24 dev br0
ip -n "$G" link set br0 up
n=2
for ns in $EA $WE; do
    ip link add "v$ns" netns "$G" type veth peer name eth0 netns "$ns"
    ip -n "$G" link set "v$ns" master br0 up
    ip -n "$ns" addr add "10.213.81.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    n=$((n + 1))
done
GA=10.213.81.1 EA_IP=10.213.81.2 WE_IP=10.213.81.3

inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
start() { # start NS LOG CMD...: a process in a namespace; sets LAST_PID
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
    LAST_PID=$!
    HY_PIDS+=("$LAST_PID")
}

# ---- the global CP, two zones, west's ingress
start "$G" "$HY_TMP/global.log" "$HY_BIN/hypha-global" --data-dir "$HY_TMP/global" \
    --api-address 127.0.0.1:5681 --kds-address "$GA:5685"
hy_wait_for 20 inns "$G" curl -sf http://127.0.0.1:5681/ready
gctl() { inns "$G" "$HY_BIN/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
for z in east west; do gctl generate zone-token --zone "$z" --valid-for 1h >"$HY_TMP/$z.token"; done
gctl apply -f "$DATA/resources/mesh.yaml" >/dev/null
gctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backends
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
for z in east west; do
    ns=$EA
    [ "$z" = west ] && ns=$WE
    start "$ns" "$HY_TMP/zone-$z.log" "$HY_BIN/hypha-zone" --zone "$z" --data-dir "$HY_TMP/zone-$z" \
        --api-address 127.0.0.1:5681 --dp-address 0.0.0.0:5678 \
        --global-address "wss://$GA:5685" --global-ca-file "$HY_TMP/global/kds/ca.pem" \
        --zone-token-file "$HY_TMP/$z.token" --kds-backoff-max 1s
done
for ns in $EA $WE; do hy_wait_for 20 inns "$ns" curl -sf http://127.0.0.1:5681/ready; done
zctl() { local ns=$1; shift; inns "$ns" "$HY_BIN/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
for ns in $EA $WE; do
    hy_check "zone in $ns has its intermediate CA" \
        hy_wait_for 15 inns "$ns" curl -sf http://127.0.0.1:5681/meshes/default/meshissuers/ca-1
done
zctl "$WE" generate zone-ingress-token --name ingress-west --valid-for 1h >"$HY_TMP/ingress-west.token"
start "$WE" "$HY_TMP/ingress-west.log" "$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:5678 \
    --ca-cert-file "$HY_TMP/zone-west/dp/ca.pem" --ingress-file "$DATA/dp/ingress.yaml" \
    --ingress-var "name=ingress-west,address=$WE_IP,advertised=$WE_IP,port=10001" \
    --token-file "$HY_TMP/ingress-west.token" --admin-address 127.0.0.1:9902 --workers 2
hy_check "west's ingress becomes ready" hy_wait_for 15 inns "$WE" curl -sf http://127.0.0.1:9902/ready

# ---- apps and sidecars: backend in west, web and backend-v2 in east
# start_dp NAME SERVICE NS ZONE ADDRESS PORT ADMIN_PORT: dataplane-http.yaml on ADDRESS
start_dp() {
    local file=$HY_TMP/dataplane-$1.yaml p=$6
    sed "s/^  address: 127.0.0.1\$/  address: $5/" "$DATA/dp/dataplane-http.yaml" >"$file"
    zctl "$3" generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 1h >"$HY_TMP/$1.token"
    start "$3" "$HY_TMP/dp-$1.log" "$HY_BIN/hypha-dp" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-$4/dp/ca.pem" --dataplane-file "$file" \
        --dataplane-token-file "$HY_TMP/$1.token" \
        --dataplane-var "name=$1,service=$2,port=$p,app_port=$((p + 1)),out_port=$((p + 2)),out_port2=$((p + 3)),version=v1" \
        --admin-address "127.0.0.1:$7" --workers 2
}
start "$WE" "$HY_TMP/app-b1.log" python3 "$TOOLS/http_app.py" 21001 b1
start "$EA" "$HY_TMP/app-b2.log" python3 "$TOOLS/http_app.py" 22001 b2
hy_wait_for 10 grep -q listening "$HY_TMP/app-b1.log"
hy_wait_for 10 grep -q listening "$HY_TMP/app-b2.log"
start_dp backend-1 backend "$WE" west "$WE_IP" 21000 9901
start_dp backend-v2-1 backend-v2 "$EA" east 127.0.0.1 22000 9903
start_dp web-1 web "$EA" east 127.0.0.1 23000 9901
WEB_PID=$LAST_PID
ready() { inns "$1" curl -sf "http://127.0.0.1:$2/ready" >/dev/null; }
hy_check "the sidecars become ready" hy_wait_for 20 ready "$WE" 9901
hy_wait_for 20 ready "$EA" 9901
hy_wait_for 20 ready "$EA" 9903
remote() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e ".outbounds[] | select(.service == \"backend\" and .protocol == \"http\") | .endpoints[] | select(.zone == \"west\" and .address == \"$WE_IP\" and .port == 10001)" >/dev/null; }
hy_check "web-1's outbound to backend is http, through west's ingress" hy_wait_for 20 remote

OUT=http://127.0.0.1:23002
get() { inns "$EA" curl -s "$@"; }
hy_eq "a request from east reaches b1 in west" "hello from b1" "$(get "$OUT/")"
hy_check "backend-1 logged it with web's SPIFFE ID" hy_wait_for 5 \
    grep -q "http direction=inbound .* path=/ status=200 .* id=spiffe://default/web" "$HY_TMP/dp-backend-1.log"
conns() { inns "$WE" curl -s http://127.0.0.1:9901/metrics | awk '$1 == "hypha_dp_connections_total{direction=\"inbound\"}" { print $2 }'; }
c0=$(conns)
for i in $(seq 1 50); do get -o /dev/null "$OUT/status/200"; done
hy_check "50 new app connections cost no new connection across the zones ($c0 -> $(conns))" \
    test "$(($(conns) - c0))" -le 2

# ---- MeshRetry, applied on the global CP
gctl apply -f - >/dev/null <<'YAML'
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
retry_in() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e '.outbounds[] | select(.service == "backend") | .httpRetry' >/dev/null; }
hy_check "MeshRetry reaches web-1" hy_wait_for 20 retry_in
hy_contains "a 503 in west is tried again from east, then 200" "recovered after 2" "$(get "$OUT/flaky/z1/2")"

# ---- MeshHTTPRoute: 50/50 between backend (west) and backend-v2 (east)
gctl apply -f - >/dev/null <<'YAML'
type: MeshHTTPRoute
mesh: default
name: web-split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 50}
              - {kind: MeshService, name: backend-v2, weight: 50}
YAML
routed() { inns "$EA" curl -s http://127.0.0.1:9901/config | jq -e '[.outbounds[] | select(.service == "backend") | .httpRoutes // [] | length] | max >= 1' >/dev/null; }
hy_check "MeshHTTPRoute reaches web-1" hy_wait_for 20 routed
urls=()
for i in $(seq 1 400); do urls+=("$OUT/"); done
split=$(get "${urls[@]}" | sort | uniq -c)
west=$(awk '/from b1/ { print $1 }' <<<"$split")
hy_check "a 50/50 split across zones: b1 (west) takes 50 % +- 10 % of 400 (${west:-0})" \
    awk -v v="${west:-0}" 'BEGIN { exit !(v >= 160 && v <= 240) }'
hy_eq "and b2 (east) the rest" 400 "$(awk '{ s += $1 } END { print s }' <<<"$split")"

# the pooled connections end with web-1: west's ingress logs them then
hy_check "SIGTERM stops web-1" hy_stop "$WEB_PID"
hy_check "west's ingress relayed the pooled connections by SNI, without terminating TLS" hy_wait_for 5 \
    grep -q "sni=backend.default.mesh service=default/backend upstream=$WE_IP:21000 .*result=ok" "$HY_TMP/ingress-west.log"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\\|runtime error' '$HY_TMP'/*.log"
hy_done
