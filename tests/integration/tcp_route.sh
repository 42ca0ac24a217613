#!/usr/bin/env bash
# MeshTCPRoute is enforced on TCP outbounds: web-1 calls backend over
# plain TCP (dataplane.yaml, no kuma.io/protocol); a MeshTCPRoute splits
# backend 80/20 between backend and backend-v2 (two apps that name
# themselves). 1000 connections, each picked on its own: within ±5 % of
# the weights (500 would miss that by chance about one run in 200). A
# split whose weights are all 0 refuses connections (never the front
# service: no fail open). A backendRef's MeshServiceSubset tags narrow it:
# backend-3 (version v3) takes every connection of a route to subset v3,
# the untagged backend-1 none; a subset nobody carries refuses every
# connection (l7_zones_subset.sh does it across zones).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd) # hy_start_mesh_zone's
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_mesh_zone 1h
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend-v2
spec:
  targetRef: {kind: MeshService, name: backend-v2}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

# ports: inbound PORT, app PORT+1, outbound PORT+2 (dataplane.yaml)
B1_PORT=$(hy_free_ports 3)
B2_PORT=$(hy_free_ports 3)
W_PORT=$(hy_free_ports 3)
ready() { curl -sf "$1/ready" >/dev/null; }

hy_start_http_app $((B1_PORT + 1)) v1
hy_start_http_app $((B2_PORT + 1)) v2
start_dp() {
    hy_dp_token "$1" default "$2"
    hy_start_dp "$@"
}
start_dp backend-1 backend "$B1_PORT"
B1_ADMIN=$DP_ADMIN
start_dp backend-v2-1 backend-v2 "$B2_PORT"
B2_ADMIN=$DP_ADMIN
start_dp web-1 web "$W_PORT"
W_ADMIN=$DP_ADMIN
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W_ADMIN"
hy_wait_for 20 ready "$B1_ADMIN"
hy_wait_for 20 ready "$B2_ADMIN"
OUT_PORT=$((W_PORT + 2))

ctl apply -f - >/dev/null 2>"$HY_TMP/apply.err" <<'YAML'
type: MeshTCPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 80}
              - {kind: MeshService, name: backend-v2, weight: 20}
YAML
hy_eq "applying the MeshTCPRoute draws no warning (it is enforced)" "" "$(cat "$HY_TMP/apply.err")"
split_set() {
    curl -s "$W_ADMIN/config" | jq -e '
        (.outbounds[] | select(.service == "backend" and .port != 0 and .port != null) | (.tcpBackends // .tcp_backends) | length == 2)
        and ([.outbounds[] | select(.service == "backend-v2") | .endpoints[]?] | length == 1)
        and ([.outbounds[] | select(.service == "backend") | .endpoints[]?] | length >= 1)' >/dev/null
}
hy_check "the split and backend-v2's endpoints reach web-1" hy_wait_for 20 split_set

# calls N: N TCP connections through web-1's outbound, one HTTP/1.0 GET
# each; prints "v1 COUNT v2 COUNT fail COUNT v3 COUNT"
calls() {
    python3 - "$OUT_PORT" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = {"v1": 0, "v2": 0, "v3": 0, "fail": 0}
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.0\r\nHost: backend\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        s.close()
        body = data.decode(errors="replace")
        c[next((v for v in ("v1", "v2", "v3") if "hello from " + v in body), "fail")] += 1
    except OSError:
        c["fail"] += 1
print("v1 %d v2 %d fail %d v3 %d" % (c["v1"], c["v2"], c["fail"], c["v3"]))
PY
}
read -r _ n1 _ n2 _ nf _ <<<"$(calls 1000)"
hy_log "1000 connections: backend $n1, backend-v2 $n2, failed $nf"
hy_eq "every one of 1000 connections is answered" 0 "$nf"
hy_check "backend-v2 takes 20 % ± 5 % of 1000 connections ($n2)" test "$n2" -ge 150 -a "$n2" -le 250
hy_check "backend takes 80 % ± 5 % of 1000 connections ($n1)" test "$n1" -ge 750 -a "$n1" -le 850

# every weight 0: refused, not sent to backend
ctl apply -f - >/dev/null <<'YAML'
type: MeshTCPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 0}
              - {kind: MeshService, name: backend-v2, weight: 0}
YAML
zero_set() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | (.tcpBackends // .tcp_backends)[]? | (.weight // 0)] | length == 2 and add == 0' >/dev/null; }
hy_check "the all-zero split reaches web-1" hy_wait_for 20 zero_set
read -r _ n1 _ n2 _ nf _ <<<"$(calls 20)"
hy_eq "with every weight 0 no connection is answered (backend $n1, backend-v2 $n2)" "20" "$nf"

# ---- subset tags: backend-3 serves backend with version v3
B3_PORT=$(hy_free_ports 3)
hy_start_http_app $((B3_PORT + 1)) v3
sed 's/        kuma.io\/service: {{ service }}/&\n        version: v3/' "$DATA/dp/dataplane.yaml" >"$HY_TMP/dataplane-v3.yaml"
hy_dp_token backend-3 default backend
"$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --dataplane-file "$HY_TMP/dataplane-v3.yaml" --dataplane-token-file "$HY_TMP/backend-3.token" \
    --dataplane-var "name=backend-3,service=backend,port=$B3_PORT,app_port=$((B3_PORT + 1)),out_port=$((B3_PORT + 2))" \
    --admin-address 127.0.0.1:0 >"$HY_TMP/dp-backend-3.log" 2>&1 &
HY_PIDS+=("$!")
hy_wait_for 15 grep -q 'admin on http://' "$HY_TMP/dp-backend-3.log"
B3_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/dp-backend-3.log" | sed 's/admin on //')
hy_check "backend-3 (version v3) becomes ready" hy_wait_for 20 ready "$B3_ADMIN"
subset_route() { # VERSION: a route of backend to the subset with that version
    ctl apply -f - >/dev/null 2>"$HY_TMP/apply-subset.err" <<YAML
type: MeshTCPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - default:
            backendRefs:
              - {kind: MeshServiceSubset, name: backend, tags: {version: $1}, weight: 100}
YAML
}
subset_route v3
hy_eq "a MeshTCPRoute to a subset draws no warning (its tags are enforced)" "" "$(cat "$HY_TMP/apply-subset.err")"
v3_set() {
    curl -s "$W_ADMIN/config" | jq -e '(.outbounds[] | select(.service == "backend" and .port != 0 and .port != null)
        | (.tcpBackends // .tcp_backends)[0].tags.version == "v3")
        and ([.outbounds[] | select(.service == "backend") | .endpoints[]? | select(.tags.version == "v3")] | length >= 1)' >/dev/null
}
hy_check "the subset route and backend-3's tagged endpoint reach web-1" hy_wait_for 20 v3_set
read -r _ n1 _ n2 _ nf _ n3 <<<"$(calls 50)"
hy_eq "50 connections to subset v3 all reach backend-3 (backend-1 $n1, backend-v2 $n2, failed $nf)" 50 "$n3"
subset_route v9
v9_set() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | (.tcpBackends // .tcp_backends)[]? | .tags.version] | index("v9") != null' >/dev/null; }
hy_check "a route to a subset nobody carries (v9) reaches web-1" hy_wait_for 20 v9_set
read -r _ n1 _ n2 _ nf _ n3 <<<"$(calls 10)"
hy_eq "its 10 connections are all refused, none sent to backend's instances" "10 0 0" "$nf $n1 $n3"
hy_check "logged as no_endpoints" grep -q "result=no_endpoints" "$HY_TMP/dp-web-1.log"
hy_done
