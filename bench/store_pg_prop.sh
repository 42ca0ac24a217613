#!/usr/bin/env bash
# Global -> zone propagation on each store backend (issue 18): a global CP
# and a federated zone, both on LMDB, then both on PostgreSQL (each its own
# database in the PostgreSQL of bench/store_pg.sh); N MeshTrafficPermission
# writes, one at a time, through the global CP's API, each timed from the
# write's request to its first appearance in the zone's store (read through
# the zone's API, polled on one keep-alive connection every 0.5 ms).
# Prints one table row per backend: median, p99, max in ms.
#
# usage: bench/store_pg_prop.sh BUILD_DIR [N]   (needs HY_PG_URL, HY_PG_BIN
#        from tests/integration/lib_pg.sh's hy_pg_init; called by store_pg.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$1/bin
n=${2:-200}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hypha-prop.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/deploy/local/ports.sh" # hy_free_port

# wait_log FILE PATTERN: up to 60 s
wait_log() {
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    return 1
}

# api_url LOG: the http://127.0.0.1:PORT its process logged, once /ready
api_url() {
    wait_log "$1" 'API listening on http://' || return 1
    local u
    u=http://127.0.0.1:$(grep -o 'API listening on http://[^ ]*' "$1" | head -n 1 | sed 's/.*://')
    local i
    for ((i = 0; i < 1200; i++)); do
        curl -sf -o /dev/null "$u/ready" && break
        sleep 0.05
    done
    echo "$u"
}

# run_pair NAME [STORE ARGS of the global] -- [STORE ARGS of the zone]:
# prints "NAME median p99 max"
run_pair() {
    local name=$1 gargs=() zargs=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do gargs+=("$1"); shift; done
    [ $# -eq 0 ] || shift
    zargs=("$@")
    local d=$tmp/$name kds
    mkdir -p "$d/g" "$d/z"
    kds=$(hy_free_port)
    "$bin/hypha-global" --data-dir "$d/g" --api-address 127.0.0.1:0 --kds-address "127.0.0.1:$kds" \
        "${gargs[@]}" >"$d/g.log" 2>&1 &
    pids+=($!)
    local gurl zurl
    gurl=$(api_url "$d/g.log")
    "$bin/hyphactl" --cp "$gurl" generate zone-token --zone east --valid-for 1h >"$d/east.token"
    curl -sf -o /dev/null -X PUT "$gurl/meshes/default" -H 'Content-Type: application/yaml' \
        --data-binary @"$root/tests/data/resources/mesh.yaml"
    "$bin/hypha-zone" --zone east --data-dir "$d/z" --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 \
        --global-address "wss://127.0.0.1:$kds" --global-ca-file "$d/g/kds/ca.pem" \
        --zone-token-file "$d/east.token" --kds-backoff-max 1s "${zargs[@]}" >"$d/z.log" 2>&1 &
    pids+=($!)
    zurl=$(api_url "$d/z.log")
    local i
    for ((i = 0; i < 1200; i++)); do
        curl -sf -o /dev/null "$zurl/meshes/default" && break
        sleep 0.05
    done
    python3 - "$gurl" "$zurl" "$n" "$name" <<'PY'
import http.client, sys, time, urllib.parse
g, z, n, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def conn(u):
    p = urllib.parse.urlparse(u)
    return http.client.HTTPConnection(p.hostname, p.port, timeout=10)
gc, zc = conn(g), conn(z)
body = """type: MeshTrafficPermission
mesh: default
name: {name}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
    - targetRef: {{kind: MeshService, name: web}}
      default: {{action: Allow}}
"""
lat = []
for i in range(n):
    res = f"prop-{i}"
    path = f"/meshes/default/meshtrafficpermissions/{res}"
    t0 = time.perf_counter()
    gc.request("PUT", path, body.format(name=res), {"Content-Type": "application/yaml"})
    r = gc.getresponse(); r.read()
    if r.status >= 300:
        sys.exit(f"global PUT {path}: {r.status}")
    while True:
        zc.request("GET", path)
        r = zc.getresponse(); r.read()
        if r.status == 200:
            break
        if time.perf_counter() - t0 > 30:
            sys.exit(f"{path} did not reach the zone within 30 s")
        time.sleep(0.0005)
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
label = {"lmdb": "LMDB", "postgres": "PostgreSQL"}[name]
print(f"| {label} | {n} | {q(0.5):.1f} ms | {q(0.99):.1f} ms | {lat[-1]:.1f} ms |")
PY
}

printf '\nGlobal -> zone propagation: a MeshTrafficPermission written on the global CP'"'"'s API until\n'
printf 'its first read in the zone'"'"'s store (zone API, polled every 0.5 ms), %d writes one at a time;\n' "$n"
printf 'the global CP and the zone on the same backend, each its own store\n\n'
printf '| Store (global and zone) | Writes | Median | p99 | Max |\n|---|--:|--:|--:|--:|\n'
run_pair lmdb
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c 'CREATE DATABASE prop_global' >/dev/null
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c 'CREATE DATABASE prop_zone' >/dev/null
run_pair postgres --store postgres --store-postgres-url "${HY_PG_URL/dbname=postgres/dbname=prop_global}" \
    -- --store postgres --store-postgres-url "${HY_PG_URL/dbname=postgres/dbname=prop_zone}"
