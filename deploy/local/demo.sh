#!/usr/bin/env bash
# The main command: installs what is missing (as root), builds, and starts
# what Hypha has today on this machine. It grows into the multi-zone demo.
#
# Today that is the control planes: hypha-global on 127.0.0.1:5681 with a
# mesh (and its root CA) and a few policies applied with hyphactl, and two
# zone control planes, east and west, registered with zone tokens and kept
# in sync over KDS; a Dataplane written in east shows up on the global CP.
# Ingress gateways and sidecars are not built yet (see README "Status"), so
# no traffic flows, and everything runs on loopback (no namespaces yet).
#
#   deploy/local/demo.sh           start, show, stay up until Ctrl-C
#   deploy/local/demo.sh --check   the same on free ports, check, stop; exit 0 or 1
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
check=false
[ "${1:-}" = --check ] && check=true

. deploy/local/deps.sh
# shellcheck source=deploy/local/ports.sh
. deploy/local/ports.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl

echo "== building (build-demo/, optimised, no sanitizers)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYPHA_SANITIZE=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" --target hypha-global hypha-zone hyphactl hypha-dp hypha-test-echo >/dev/null
bin=$top/build-demo/bin

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-demo.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start LOG CMD...: runs CMD in the background (its pid joins pids) and
# waits, bounded, until its log says where its API listens and /ready
# answers; sets url_out to that URL.
url_out=
start() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 400); do
        grep -q 'API listening on http://' "$log" && break
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    url_out=http://$(grep -o 'API listening on http://[^ ]*' "$log" | sed 's|.*http://||')
    for _ in $(seq 1 200); do
        curl -sf "$url_out/ready" >/dev/null && return 0
        sleep 0.05
    done
    echo "$log: not ready" >&2
    exit 1
}
# until_true CMD...: retries CMD for at most 10 s.
until_true() {
    for _ in $(seq 1 200); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

address=127.0.0.1:5681
$check && address=127.0.0.1:0
echo "== starting hypha-global (data in $work/global)"
start "$work/global.log" "$bin/hypha-global" --data-dir "$work/global" \
    --api-address "$address" --kds-address 127.0.0.1:0
url=$url_out
kds=$(grep -o 'KDS listening on wss://[^ ]*' "$work/global.log" | sed 's/KDS listening on //')
export HYPHA_CP=$url HYPHACTL_CONFIG=$work/hyphactl.yaml
ctl() { "$bin/hyphactl" "$@"; }
echo "   API at $url, KDS at $kds"

echo "== applying a mesh with mTLS and three policies"
ctl apply -f deploy/local/demo.yaml
echo
ctl get meshes
echo
ctl get meshtrafficpermissions
echo
echo "== the mesh's root CA (certificate only; the key never leaves the global CP)"
curl -s "$url/meshes/default/meshtrusts/ca-1" |
    sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/   fingerprint \1/p'
echo

echo "== two zones, east and west, registered with zone tokens"
declare -A zurl
for z in east west; do
    ctl generate zone-token --zone "$z" --valid-for 720h >"$work/$z.token"
    start "$work/zone-$z.log" "$bin/hypha-zone" --zone "$z" --data-dir "$work/zone-$z" \
        --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 --global-address "$kds" \
        --global-ca-file "$work/global/kds/ca.pem" --zone-token-file "$work/$z.token"
    zurl[$z]=$url_out
    echo "   zone $z: API at ${zurl[$z]}"
done
synced() { curl -sf "${zurl[$1]}/meshes/default/meshtrafficpermissions/allow-web-to-backend" >/dev/null; }
until_true synced east && until_true synced west || true
echo "== in zone east: an echo app behind sidecar backend-1, and sidecar web-1 calling it"
dp=$(grep -o 'DP server listening on wss://[^ ]*' "$work/zone-east.log" | sed 's/.*wss:/wss:/')
declare -A dport dadmin
sidecar() { # NAME SERVICE
    local p
    p=$(hy_free_ports 3) # inbound, app, outbound
    dport[$1]=$p
    ctl --cp "${zurl[east]}" generate dataplane-token --mesh default --name "$1" \
        --tag "hypha.io/service=$2" --valid-for 24h >"$work/$1.token"
    "$bin/hypha-dp" run --cp-address "$dp" --ca-cert-file "$work/zone-east/dp/ca.pem" \
        --dataplane-file tests/data/dp/dataplane.yaml --dataplane-token-file "$work/$1.token" \
        --dataplane-var "name=$1,service=$2,port=$p,app_port=$((p + 1)),out_port=$((p + 2))" \
        --admin-address 127.0.0.1:0 >"$work/dp-$1.log" 2>&1 &
    pids+=($!)
    until_true grep -q 'admin on http://' "$work/dp-$1.log" || true
    dadmin[$1]=$(grep -o 'admin on http://[^ ]*' "$work/dp-$1.log" | sed 's/admin on //')
}
issuer() { curl -sf "${zurl[east]}/meshes/default/meshissuers/ca-1" >/dev/null; }
until_true issuer || true
sidecar backend-1 backend
"$bin/hypha-test-echo" $((dport[backend-1] + 1)) >"$work/echo.log" 2>&1 &
pids+=($!)
sidecar web-1 web
out=$((dport[web-1] + 2))
call() { # MSG: one line through web-1's outbound listener; prints the answer
    (
        exec 3<>"/dev/tcp/127.0.0.1/$out" || exit 1
        printf '%s\n' "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
answers() { [ "$(call "hello through the mesh")" = "hello through the mesh" ]; }
until_true answers || true
echo "   web-1's outbound 127.0.0.1:$out -> mTLS -> backend-1 127.0.0.1:${dport[backend-1]} -> echo app"
echo "   answer: $(call "hello through the mesh" || echo "(none)")"
grep -o 'access direction=inbound .*' "$work/dp-backend-1.log" | head -n 1 | sed 's/^/   backend-1: /'
up() { curl -sf "$url/meshes/default/dataplanes/east.web-1" >/dev/null; }
until_true up || true
online2() { [ "$(ctl inspect zones | grep -c Online)" -eq 2 ]; }
until_true online2 || true
echo
ctl inspect zones
echo
ctl get dataplanes

if $check; then
    ok=true
    synced east && synced west || { echo "the zones did not get the policies"; ok=false; }
    up || { echo "the Dataplane did not reach the global CP"; ok=false; }
    answers || { echo "no answer through the sidecars"; ok=false; }
    grep -q 'access direction=inbound .*id=spiffe://default/web .*result=ok' "$work/dp-backend-1.log" ||
        { echo "backend-1 did not log web's SPIFFE ID"; ok=false; }
    online2 || { echo "the zones are not both Online"; ok=false; }
    curl -sf "$url/meshes/default/meshtrusts/ca-1" | grep -q 'BEGIN CERTIFICATE' || ok=false
    curl -sf "$url/metrics" | grep -q '^hypha_kds_zones_connected 2' || ok=false
    if $ok; then echo "== check passed"; exit 0; else echo "== check FAILED"; exit 1; fi
fi

cat <<TXT

== running: global CP at $url, zone east at ${zurl[east]}, zone west at ${zurl[west]}
   logs in $work (global.log, zone-east.log, zone-west.log, dp-*.log)
Try, in another terminal (from $top):
  export HYPHA_CP=$url
  build-demo/bin/hyphactl get zones ; build-demo/bin/hyphactl inspect zones
  build-demo/bin/hyphactl get mtp -o yaml
  build-demo/bin/hyphactl apply -f tests/data/resources/meshretry.yaml
  build-demo/bin/hyphactl --cp ${zurl[west]} get meshretries     # synced to west
  build-demo/bin/hyphactl get dataplanes                        # east.web-1, east.backend-1
  exec 3<>/dev/tcp/127.0.0.1/$out; echo hi >&3; head -n1 <&3   # a call through web-1's sidecar
  curl -s ${dadmin[web-1]}/config ; curl -s ${dadmin[backend-1]}/metrics | grep hypha_dp
  curl -s $url/metrics | grep hypha_kds
Not here yet: ingress gateways, network namespaces and the cross-zone
call (README, "Status").
Press Ctrl-C to stop; everything was started in $work and is removed.
TXT
wait "${pids[0]}"
