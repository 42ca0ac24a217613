#!/usr/bin/env bash
# The main command: installs what is missing (as root), builds, and starts
# the multi-zone demo on this machine:
#
#   a global CP            netns hy-demo-g     10.213.90.1 (a bridge)
#   zone east              netns hy-demo-east  10.213.90.2 (veth on the bridge)
#   zone west              netns hy-demo-west  10.213.90.3
#   an ingress per zone, on its zone's address, port 10001
#   web-1: a sidecar in east (the caller)
#   backend-1: an echo app behind its sidecar, in west only
#
# web calls backend: east's zone knows backend only from west's ingress
# (through the global CP), so web-1's sidecar opens mTLS to backend-1's
# sidecar through west's ingress, which routes by SNI without decrypting.
# The demo prints the answer, then stays up and says what to try.
#
#   deploy/local/demo.sh           start, show, stay up until Ctrl-C
#   deploy/local/demo.sh --check   the same in namespaces of its own, check, stop; exit 0 or 1
#
# Network namespaces need root; nothing outside them is touched.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
check=false
[ "${1:-}" = --check ] && check=true
if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: run it as root: it installs packages and makes network namespaces" >&2
    exit 1
fi

. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl iproute2 jq

echo "== building (build-demo/, optimised, no sanitizers)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYPHA_SANITIZE=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" \
    --target hypha-global hypha-zone hypha-ingress hyphactl hypha-dp hypha-test-echo >/dev/null
bin=$top/build-demo/bin

suffix=
$check && suffix=-$$
G=hy-demo-g$suffix EAST=hy-demo-east$suffix WEST=hy-demo-west$suffix
for ns in $G $EAST $WEST; do
    if ip netns list | grep -qw "$ns"; then
        echo "demo.sh: network namespace $ns exists: is a demo running? (remove it: ip netns del $ns)" >&2
        exit 1
    fi
done
work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-demo.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in $G $EAST $WEST; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== network: namespaces $G (bridge 10.213.90.1), $EAST (.2), $WEST (.3)"
for ns in $G $EAST $WEST; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$G" link add br0 type bridge
ip -n "$G" addr add 10.213.90.1/24 dev br0
ip -n "$G" link set br0 up
n=2
for ns in $EAST $WEST; do
    ip link add "veth$n$suffix" netns "$G" type veth peer name eth0 netns "$ns"
    ip -n "$G" link set "veth$n$suffix" master br0 up
    ip -n "$ns" addr add "10.213.90.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    n=$((n + 1))
done
declare -A ns_of=([global]=$G [east]=$EAST [west]=$WEST) ip_of=([east]=10.213.90.2 [west]=10.213.90.3)

# start NAME NS CMD...: runs CMD in namespace NS, logging to $work/NAME.log
start() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
# until_true CMD...: retries CMD for at most 15 s.
until_true() {
    for _ in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { in_ns "$G" "$bin/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
zctl() { local z=$1; shift; in_ns "${ns_of[$z]}" "$bin/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
ready() { in_ns "$1" curl -sf "$2/ready"; }

echo "== starting hypha-global: API 127.0.0.1:5681 in $G, KDS wss://10.213.90.1:5685"
start global "$G" "$bin/hypha-global" --data-dir "$work/global" --api-address 127.0.0.1:5681 \
    --kds-address 10.213.90.1:5685
until_true ready "$G" http://127.0.0.1:5681 || { cat "$work/global.log" >&2; exit 1; }
echo "== applying a mesh with mTLS and policies (deploy/local/demo.yaml)"
ctl apply -f - <deploy/local/demo.yaml

echo "== zones east and west, each registered with a zone token"
for z in east west; do
    ctl generate zone-token --zone "$z" --valid-for 720h >"$work/$z.token"
    start "zone-$z" "${ns_of[$z]}" "$bin/hypha-zone" --zone "$z" --data-dir "$work/zone-$z" \
        --api-address 127.0.0.1:5681 --dp-address 127.0.0.1:5678 \
        --global-address wss://10.213.90.1:5685 --global-ca-file "$work/global/kds/ca.pem" \
        --zone-token-file "$work/$z.token"
done
for z in east west; do
    until_true ready "${ns_of[$z]}" http://127.0.0.1:5681 || { cat "$work/zone-$z.log" >&2; exit 1; }
    issuer() { in_ns "${ns_of[$1]}" curl -sf http://127.0.0.1:5681/meshes/default/meshissuers/ca-1; }
    until_true issuer "$z" || echo "   (zone $z has no intermediate CA yet)"
done

echo "== an ingress per zone, on 10001 of the zone's address"
for z in east west; do
    zctl "$z" generate zone-ingress-token --name "ingress-$z" --valid-for 720h >"$work/ingress-$z.token"
    start "ingress-$z" "${ns_of[$z]}" "$bin/hypha-ingress" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$work/zone-$z/dp/ca.pem" --ingress-file tests/data/dp/ingress.yaml \
        --ingress-var "name=ingress-$z,address=${ip_of[$z]},advertised=${ip_of[$z]},port=10001" \
        --token-file "$work/ingress-$z.token" --admin-address 127.0.0.1:9902
done

echo "== the app: backend-1 (an echo server) in west, web-1 calling it from east"
# each sidecar's inbound listens on its zone's address, where the ingress
# reaches it: an ingress never relays to loopback (security finding 4)
sidecar() { # NAME SERVICE ZONE
    zctl "$3" generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for 24h >"$work/$1.token"
    sed "s/^  address: 127.0.0.1\$/  address: ${ip_of[$3]}/" tests/data/dp/dataplane.yaml >"$work/dp-$1.yaml"
    start "dp-$1" "${ns_of[$3]}" "$bin/hypha-dp" run --cp-address wss://127.0.0.1:5678 \
        --ca-cert-file "$work/zone-$3/dp/ca.pem" --dataplane-file "$work/dp-$1.yaml" \
        --dataplane-token-file "$work/$1.token" \
        --dataplane-var "name=$1,service=$2,port=21000,app_port=21001,out_port=21002" \
        --admin-address 127.0.0.1:9901
}
start echo "$WEST" "$bin/hypha-test-echo" 21001
sidecar backend-1 backend west
sidecar web-1 web east
for z in east west; do
    until_true ready "${ns_of[$z]}" http://127.0.0.1:9902 || echo "   (ingress-$z is not ready)"
    until_true ready "${ns_of[$z]}" http://127.0.0.1:9901 || echo "   (the sidecar in $z is not ready)"
done

call() { # MSG: one line through web-1's outbound listener in east; prints the answer
    in_ns "$EAST" bash -c 'exec 3<>/dev/tcp/127.0.0.1/21002 || exit 1
        printf "%s\n" "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf "%s\n" "$line"' _ "$1" 2>/dev/null
}
answers() { [ "$(call "hello from east")" = "hello from east" ]; }
until_true answers || true
echo
echo "   web-1 (east) 127.0.0.1:21002 -> mTLS -> ingress-west 10.213.90.3:10001 (SNI, not decrypted)"
echo "     -> backend-1's sidecar (west) 10.213.90.3:21000 -> echo app 127.0.0.1:21001"
echo "   answer: $(call "hello from east" || echo "(none)")"
sleep 0.2 # access lines are written when a connection closes
grep -o 'access peer=.*' "$work/ingress-west.log" | tail -n 1 | sed 's/^/   ingress-west: /'
grep -o 'access direction=inbound .*' "$work/dp-backend-1.log" | tail -n 1 | sed 's/^/   backend-1:    /'
online2() { [ "$(ctl inspect zones | grep -c Online)" -eq 2 ]; }
at_global() { ctl get dataplanes | grep -q west.backend-1 && ctl get dataplanes | grep -q east.web-1; }
until_true online2 || true
until_true at_global || true
echo
ctl inspect zones
echo
ctl get dataplanes
echo
ctl get zoneingresses

if $check; then
    ok=true
    answers || { echo "no answer across the zones"; ok=false; }
    grep -q 'access peer=10.213.90.2:.* sni=backend.default.mesh .*result=ok' "$work/ingress-west.log" ||
        { echo "west's ingress did not log the call"; ok=false; }
    grep -q 'access direction=inbound .*id=spiffe://default/web .*result=ok' "$work/dp-backend-1.log" ||
        { echo "backend-1 did not log web's SPIFFE ID"; ok=false; }
    online2 || { echo "the zones are not both Online"; ok=false; }
    at_global || { echo "the Dataplanes did not reach the global CP"; ok=false; }
    in_ns "$WEST" curl -sf http://127.0.0.1:9902/metrics | grep -q '^hypha_ingress_connections_total' || ok=false
    if $ok; then echo "== check passed"; exit 0; else echo "== check FAILED"; exit 1; fi
fi

cat <<TXT

== running. Logs in $work. Everything lives in network namespaces; run
   commands inside them with ip netns exec. From $top, in another terminal:

  alias gctl='ip netns exec $G build-demo/bin/hyphactl --cp http://127.0.0.1:5681'
  gctl get zones ; gctl inspect zones
  gctl get dataplanes                  # east.web-1, west.backend-1
  gctl get zoneingresses -o yaml       # what each zone's ingress offers
  # a cross-zone call through web-1's sidecar:
  ip netns exec $EAST bash -c 'exec 3<>/dev/tcp/127.0.0.1/21002; echo hi >&3; head -n1 <&3'
  # metrics: the ingress in west, the sidecars, the global CP
  ip netns exec $WEST curl -s http://127.0.0.1:9902/metrics | grep hypha_ingress
  ip netns exec $EAST curl -s http://127.0.0.1:9901/metrics | grep hypha_dp_connections
  ip netns exec $G curl -s http://127.0.0.1:5681/metrics | grep hypha_kds
  # deny web -> backend on the global CP; the next call fails, in west's sidecar log:
  gctl apply -f - <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
  tail -n 2 $work/dp-backend-1.log

Press Ctrl-C to stop: every process, the namespaces and $work go.
TXT
wait "${pids[0]}"
