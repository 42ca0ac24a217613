#!/usr/bin/env bash
# The main command: installs what is missing (as root), builds, and starts
# what Hypha has today on this machine. It grows into the multi-zone demo.
#
# Today that is the global control plane: hypha-global on 127.0.0.1:5681,
# a mesh with its own root CA, a few policies applied with hyphactl, and a
# zone token generated for a zone called "east". Zone control planes,
# ingress gateways and sidecars are not built yet (see README "Status"), so
# no zone connects and no traffic flows.
#
#   deploy/local/demo.sh           start, show, stay up until Ctrl-C
#   deploy/local/demo.sh --check   the same on a free port, check, stop; exit 0 or 1
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
check=false
[ "${1:-}" = --check ] && check=true

. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl

echo "== building (build-demo/, optimised, no sanitizers)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYPHA_SANITIZE=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" --target hypha-global hyphactl >/dev/null
bin=$top/build-demo/bin

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-demo.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

address=127.0.0.1:5681
$check && address=127.0.0.1:0
echo "== starting hypha-global (data in $work/global)"
"$bin/hypha-global" --data-dir "$work/global" --api-address "$address" \
    --kds-address 127.0.0.1:0 >"$work/global.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    grep -q 'API listening on http://' "$work/global.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/global.log"; exit 1; }
    sleep 0.05
done
url=http://$(grep -o 'API listening on http://[^ ]*' "$work/global.log" | sed 's|.*http://||')
export HYPHA_CP=$url HYPHA_CONFIG=$work/hyphactl.yaml
ctl() { "$bin/hyphactl" "$@"; }
until curl -sf "$url/ready" >/dev/null; do sleep 0.05; done
echo "   API at $url"

echo "== applying a mesh with mTLS and three policies"
cat >"$work/demo.yaml" <<'EOF'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      dpCert: {rotation: {expiration: 1d}}
---
type: Zone
name: east
enabled: true
---
type: MeshTrafficPermission
mesh: default
name: allow-web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
---
type: MeshTimeout
mesh: default
name: backend-timeouts
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {connectionTimeout: 2s, idleTimeout: 1m30s}
---
type: MeshRetry
mesh: default
name: retry-backend
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {tcp: {maxConnectAttempt: 3}}
EOF
ctl apply -f "$work/demo.yaml"
echo
ctl get meshes
echo
ctl get meshtrafficpermissions
echo
echo "== the mesh's root CA (certificate only; the key never leaves the global CP)"
curl -s "$url/meshes/default/meshtrusts/ca-1" | sed -n 's/.*"fingerprint":"\([0-9a-f]*\)".*/   fingerprint \1/p'
echo
echo "== a zone token for zone east (zones can present it once hypha-zone exists)"
token=$(ctl generate zone-token --zone east --valid-for 720h)
echo "   ${token:0:60}..."

if $check; then
    ok=true
    [ "$(ctl get meshtrafficpermissions -o json | grep -c allow-web-to-backend)" -ge 1 ] || ok=false
    curl -sf "$url/meshes/default/meshtrusts/ca-1" | grep -q 'BEGIN CERTIFICATE' || ok=false
    curl -s -X POST "$url/tokens/zone/verify" -H 'Content-Type: application/json' \
        --data "{\"token\":\"$token\"}" | grep -q '"valid":true' || ok=false
    curl -sf "$url/metrics" | grep -q '^hypha_store_revision' || ok=false
    if $ok; then echo "== check passed"; exit 0; else echo "== check FAILED"; exit 1; fi
fi

cat <<EOF

== hypha-global is running at $url (log: $work/global.log)
Try, in another terminal (from $top):
  export HYPHA_CP=$url
  build-demo/bin/hyphactl get meshes
  build-demo/bin/hyphactl get mtp -o yaml
  build-demo/bin/hyphactl apply -f tests/data/resources/meshretry.yaml
  build-demo/bin/hyphactl get zones
  curl -s $url/metrics | grep hypha_
  curl -s $url/meshes/default/meshtrusts/ca-1
Not here yet: zone control planes, ingress gateways, sidecars and the
cross-zone call (README, "Status").
Press Ctrl-C to stop; everything was started in $work and is removed.
EOF
wait "$pid"
