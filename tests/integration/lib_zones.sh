# shellcheck shell=bash disable=SC2034 # the PIDs and names set here are for the test that sources it
# Two zones behind a global CP, each in its own network namespace, for the
# cross-zone tests (ingress.sh, l7_zones.sh). Source it after nothing else
# (it sources lib.sh); then call, in order:
#   hy_zones_net        namespaces G (global), EA (east, 10.213.80.2) and
#                       WE (west, 10.213.80.3) on a bridge in G; skips the
#                       test (77) without root or ip(8)
#   hy_zones_global     the global CP in G (API 127.0.0.1:5681, KDS on the
#                       bridge), zone tokens, the default mesh; defines gctl
#   hy_zones_start      zones east and west, each with its intermediate CA;
#                       defines zctl NS
#   hy_zones_ingresses  an ingress per zone (admin 127.0.0.1:9902 in its
#                       namespace), both ready
# and start sidecars with start_dp. Every process runs in a namespace,
# started by start (stopped at exit by pid).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DATA=$(cd "$(dirname "${BASH_SOURCE[0]}")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
GA=10.213.80.1 EA_IP=10.213.80.2 WE_IP=10.213.80.3

# ---- the network: a bridge in G, east (.2) and west (.3) on it
hy_zones_net() {
    [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null || {
        echo "skip: needs root and ip(8)"
        exit 77
    }
    G=hyg$$ EA=hye$$ WE=hyw$$
    local ns n=2
    for ns in $G $EA $WE; do
        ip netns add "$ns" || {
            echo "skip: cannot make network namespaces"
            exit 77
        }
        HY_CLEANUP+=("ip netns del $ns")
        ip -n "$ns" link set lo up
    done
    ip -n "$G" link add br0 type bridge
    ip -n "$G" addr add $GA/24 dev br0
    ip -n "$G" link set br0 up
    for ns in $EA $WE; do
        ip link add "v$ns" netns "$G" type veth peer name eth0 netns "$ns"
        ip -n "$G" link set "v$ns" master br0 up
        ip -n "$ns" addr add "10.213.80.$n/24" dev eth0
        ip -n "$ns" link set eth0 up
        n=$((n + 1))
    done
    # what east's processes see in /etc/hosts (ip netns exec mounts it there)
    mkdir -p "/etc/netns/$EA"
    HY_CLEANUP+=("rm -rf /etc/netns/$EA")
    printf '127.0.0.1 localhost\n%s ingress.west.hypha.test\n' "$WE_IP" >"/etc/netns/$EA/hosts"
}

inns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# start NS LOG CMD...: a process in a namespace; sets LAST_PID
start() {
    local ns=$1 log=$2
    shift 2
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)"
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
    LAST_PID=$!
    HY_PIDS+=("$LAST_PID")
}
api_of() { grep -o 'API listening on http://[^ ]*' "$1" | tail -n 1 | sed 's/API listening on //'; }
admin_of() { grep -o 'admin on http://[^ ]*' "$1" | tail -n 1 | sed 's/admin on //'; }

# ---- the global CP (in G, KDS on the bridge); sets GLOBAL_PID
gctl() { inns "$G" "$HY_BIN/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
hy_zones_global() {
    start "$G" "$HY_TMP/global.log" "$HY_BIN/hypha-global" --data-dir "$HY_TMP/global" \
        --api-address 127.0.0.1:5681 --kds-address "$GA:5685"
    GLOBAL_PID=$LAST_PID
    hy_wait_for 20 inns "$G" curl -sf http://127.0.0.1:5681/ready
    local z
    for z in east west; do gctl generate zone-token --zone "$z" --valid-for 1h >"$HY_TMP/$z.token"; done
    gctl apply -f "$DATA/resources/mesh.yaml" >/dev/null
}

# ---- two zones; sets ZONE_EAST_PID and ZONE_WEST_PID
start_zone() { # NAME NS
    start "$2" "$HY_TMP/zone-$1.log" "$HY_BIN/hypha-zone" --zone "$1" --data-dir "$HY_TMP/zone-$1" \
        --api-address 127.0.0.1:5681 --dp-address 0.0.0.0:5678 \
        --global-address "wss://$GA:5685" --global-ca-file "$HY_TMP/global/kds/ca.pem" \
        --zone-token-file "$HY_TMP/$1.token" --kds-backoff-max 1s
}
zctl() {
    local ns=$1
    shift
    inns "$ns" "$HY_BIN/hyphactl" --cp http://127.0.0.1:5681 "$@"
}
hy_zones_start() {
    start_zone east "$EA"
    ZONE_EAST_PID=$LAST_PID
    start_zone west "$WE"
    ZONE_WEST_PID=$LAST_PID
    local ns
    for ns in $EA $WE; do hy_wait_for 20 inns "$ns" curl -sf http://127.0.0.1:5681/ready; done
    for ns in $EA $WE; do
        hy_check "zone in $ns has its intermediate CA" \
            hy_wait_for 15 inns "$ns" curl -sf http://127.0.0.1:5681/meshes/default/meshissuers/ca-1
    done
}

# ---- ingresses, one per zone; sets INGRESS_WEST_PID and INGRESS_EAST_PID
start_ingress() { # ZONE NS ADDRESS ADVERTISED [ARGS...]
    local z=$1 ns=$2 ip=$3 adv=$4
    shift 4
    zctl "$ns" generate zone-ingress-token --name "ingress-$z" --valid-for 1h >"$HY_TMP/ingress-$z.token"
    start "$ns" "$HY_TMP/ingress-$z.log" "$HY_BIN/hypha-ingress" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-$z/dp/ca.pem" --ingress-file "$DATA/dp/ingress.yaml" \
        --ingress-var "name=ingress-$z,address=$ip,advertised=$adv,port=10001" \
        --token-file "$HY_TMP/ingress-$z.token" --admin-address 127.0.0.1:9902 --workers 2 "$@"
}
ing_ready() { inns "$1" curl -sf http://127.0.0.1:9902/ready >/dev/null; }
hy_zones_ingresses() {
    start_ingress west "$WE" "$WE_IP" "$WE_IP"
    INGRESS_WEST_PID=$LAST_PID
    start_ingress east "$EA" "$EA_IP" "$EA_IP"
    INGRESS_EAST_PID=$LAST_PID
    hy_check "west's ingress becomes ready" hy_wait_for 15 ing_ready "$WE"
    hy_check "east's ingress becomes ready" hy_wait_for 15 ing_ready "$EA"
}

# start_dp NAME SERVICE NS ZONE [PORT [ADMIN_PORT]]: a sidecar of DP_FILE
# (default tests/data/dp/dataplane.yaml), inbound PORT (21000), app +1,
# outbound +2, and any further DP_VARS (name=value,...); the inbound on
# DP_ADDRESS when set (else 127.0.0.1, for local callers only). Sets LAST_PID.
start_dp() {
    local p=${5:-21000} file=${DP_FILE:-$DATA/dp/dataplane.yaml}
    if [ -n "${DP_ADDRESS:-}" ]; then
        sed "s/^  address: 127.0.0.1\$/  address: $DP_ADDRESS/" "$file" >"$HY_TMP/dataplane-$1.yaml"
        file=$HY_TMP/dataplane-$1.yaml
    fi
    zctl "$3" generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 1h >"$HY_TMP/$1.token"
    start "$3" "$HY_TMP/dp-$1.log" "$HY_BIN/hypha-dp" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$HY_TMP/zone-$4/dp/ca.pem" --dataplane-file "$file" \
        --dataplane-token-file "$HY_TMP/$1.token" \
        --dataplane-var "name=$1,service=$2,port=$p,app_port=$((p + 1)),out_port=$((p + 2))${DP_VARS:+,$DP_VARS}" \
        --admin-address "127.0.0.1:${6:-9901}" --workers 2
}
# dp_ready NS [ADMIN_PORT]: the sidecar with that admin port (9901) in NS is ready
dp_ready() { inns "$1" curl -sf "http://127.0.0.1:${2:-9901}/ready" >/dev/null; }
