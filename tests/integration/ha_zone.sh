#!/usr/bin/env bash
# Two replicas of one zone control plane on one PostgreSQL store (issue
# 18): a pair of sidecars given both DP addresses connect to the first;
# kill -9 of that replica leaves every call working (the sidecars keep
# their config), the sidecars move to the other replica (log and
# metrics), present their token again and are served from the shared
# store, and a MeshTrafficPermission Deny written after the failover
# reaches them through the surviving replica. The zone runs standalone
# (no global CP): which replica holds the KDS session is another test's.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pg.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

hy_pg_find || exit 77
hy_pg_init
HY_CLEANUP+=("hy_pg_destroy")
PG=(--store postgres --store-postgres-url "$HY_PG_URL")

# start_replica NAME DP_PORT [ARGS...]: hypha-zone east with data in
# $HY_TMP/NAME; sets R_PID and R_URL.
start_replica() {
    local name=$1 dp=$2 log=$HY_TMP/$1.log port
    shift 2
    mkdir -p "$HY_TMP/$name"
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)" # a restart gets a fresh log
    "$HY_BIN/hypha-zone" --zone east --data-dir "$HY_TMP/$name" --api-address 127.0.0.1:0 \
        --dp-address "127.0.0.1:$dp" "${PG[@]}" "$@" >>"$log" 2>&1 &
    R_PID=$!
    HY_PIDS+=("$R_PID")
    hy_wait_for 30 grep -q 'API listening on http://' "$log" || {
        cat "$log" >&2
        return 1
    }
    port=$(grep -o 'API listening on http://[^ ]*' "$log" | tail -n 1 | sed 's/.*://')
    R_URL=http://127.0.0.1:$port
    hy_wait_for 15 curl -sf "$R_URL/ready"
}

# ---- replica a makes what the replicas share: the mesh and its CA in the
# store, the token signing key and the DP server certificate in its data
# dir (per process: replica b is given copies, as an operator would)
DPA=$(hy_free_port)
DPB=$(hy_free_port)
start_replica za "$DPA"
A_PID=$R_PID A_URL=$R_URL
curl -sf -o /dev/null -X PUT "$A_URL/meshes/default" -H 'Content-Type: application/yaml' \
    --data-binary @"$DATA/resources/mesh.yaml"
hy_check "replica a makes the zone CA in the shared store" \
    hy_wait_for 20 curl -sf "$A_URL/meshes/default/meshissuers/ca-1"
mkdir -p "$HY_TMP/zb"
cp "$HY_TMP/za/token-signing.key" "$HY_TMP/zb/token-signing.key"
start_replica zb "$DPB" --dp-tls-cert "$HY_TMP/za/dp/server.pem" \
    --dp-tls-key "$HY_TMP/za/dp/server-key.pem"
B_URL=$R_URL B_PID=$R_PID
hy_check "replica b sees the mesh replica a wrote" curl -sf -o /dev/null "$B_URL/meshes/default"
ZCA=$HY_TMP/za/dp/ca.pem
DP_PORT=$DPA # hy_start_dp's first --cp-address
E=$A_URL     # hy_dp_token's zone

curl -sf -o /dev/null -X PUT "$A_URL/meshes/default/meshtrafficpermissions/web-to-backend" \
    -H 'Content-Type: application/yaml' --data-binary @- <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

# ---- the sidecars, each given both replicas (a flag repeated; a comma list)
B_PORT=$(hy_free_port)
W_PORT=$(hy_free_port)
while [ "$W_PORT" -le $((B_PORT + 3)) ] && [ "$W_PORT" -ge $((B_PORT - 3)) ]; do W_PORT=$(hy_free_port); done
"$HY_BIN/hypha-test-echo" $((B_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"
hy_dp_token backend-1 default backend
hy_dp_token web-1 default web
hy_start_dp backend-1 backend "$B_PORT" --cp-address "wss://127.0.0.1:$DPB"
BE_ADMIN=$DP_ADMIN BE_LOG=$HY_TMP/dp-backend-1.log
HYPHA_CP_ADDRESS="wss://127.0.0.1:$DPA,wss://127.0.0.1:$DPB" "$HY_BIN/hypha-dp" run \
    --ca-cert-file "$ZCA" --dataplane-file "$DATA/dp/dataplane.yaml" \
    --dataplane-token-file "$HY_TMP/web-1.token" \
    --dataplane-var "name=web-1,service=web,port=$W_PORT,app_port=$((W_PORT + 1)),out_port=$((W_PORT + 2))" \
    --admin-address 127.0.0.1:0 >"$HY_TMP/dp-web-1.log" 2>&1 &
HY_PIDS+=($!)
WE_LOG=$HY_TMP/dp-web-1.log
hy_wait_for 15 grep -q 'admin on http://' "$WE_LOG"
WE_ADMIN=$(grep -o 'admin on http://[^ ]*' "$WE_LOG" | sed 's/admin on //')
ready() { curl -sf "$1/ready" >/dev/null; }
hy_check "both sidecars become ready" hy_wait_for 20 ready "$BE_ADMIN"
hy_wait_for 20 ready "$WE_ADMIN"
hy_contains "the sidecar logs both zone addresses" "wss://127.0.0.1:$DPA,wss://127.0.0.1:$DPB" \
    "$(grep started "$WE_LOG")"
endpoint() { curl -s "$WE_ADMIN/config" | jq -e ".outbounds[0].endpoints[] | select(.name == \"backend-1\" and .port == $B_PORT)" >/dev/null; }
hy_check "web-1's outbound lists backend-1's inbound" hy_wait_for 15 endpoint
at() { [ "$(hy_metric "$1" "hypha_dp_zone_address{address=\"wss://127.0.0.1:$2\"}")" = 1 ]; }
hy_check "both sidecars are on replica a (the first address)" at "$BE_ADMIN" "$DPA"
hy_check "web-1 too" at "$WE_ADMIN" "$DPA"
hy_eq "no failover yet" 0 "$(hy_metric "$BE_ADMIN" hypha_dp_zone_failovers_total)"
hy_check "promtool accepts the sidecar's metrics" promtool check metrics < <(curl -s "$BE_ADMIN/metrics")

# an ingress too (the same agent code): a comma list in its flag
"$HY_BIN/hyphactl" --cp "$A_URL" generate zone-ingress-token --name ingress-1 --valid-for 1h \
    >"$HY_TMP/ingress-1.token"
"$HY_BIN/hypha-ingress" run --cp-address "wss://127.0.0.1:$DPA,wss://127.0.0.1:$DPB" \
    --ca-cert-file "$ZCA" --ingress-file "$DATA/dp/ingress.yaml" \
    --ingress-var "name=ingress-1,address=127.0.0.1,advertised=127.0.0.1,port=$(hy_free_port)" \
    --token-file "$HY_TMP/ingress-1.token" --admin-address 127.0.0.1:0 >"$HY_TMP/ingress-1.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 15 grep -q 'admin on http://' "$HY_TMP/ingress-1.log"
IN_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/ingress-1.log" | sed 's/admin on //')
iat() { [ "$(hy_metric "$1" "hypha_ingress_zone_address{address=\"wss://127.0.0.1:$2\"}")" = 1 ]; }
hy_check "the ingress connects to replica a" hy_wait_for 20 iat "$IN_ADMIN" "$DPA"

CALL_PORT=$((W_PORT + 2))
call() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$CALL_PORT" || exit 1
        printf '%s\n' "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
calls() { [ "$(call "$1")" = "$1" ]; }
hy_check "web-1 calls backend-1 through the mesh" hy_wait_for 10 calls hello

# ---- calls run throughout: new connections in a loop, and one connection
# held open across the failover
exec 4<>"/dev/tcp/127.0.0.1/$CALL_PORT"
printf 'held-1\n' >&4
IFS= read -r -t 5 held <&4 || held=
hy_eq "a held connection answers" held-1 "$held"
: >"$HY_TMP/ok"
: >"$HY_TMP/failed"
(
    i=0
    while [ ! -e "$HY_TMP/stop" ]; do
        i=$((i + 1))
        if [ "$(call "c$i")" = "c$i" ]; then echo "$i" >>"$HY_TMP/ok"; else echo "$i" >>"$HY_TMP/failed"; fi
        sleep 0.02
    done
) &
LOOP_PID=$!
HY_PIDS+=("$LOOP_PID")
some_calls() { [ "$(wc -l <"$HY_TMP/ok")" -ge "$1" ]; }
hy_wait_for 20 some_calls 20

# ---- kill -9 the replica both sidecars are on
kill -9 "$A_PID"
wait "$A_PID" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$A_PID/}")
before=$(wc -l <"$HY_TMP/ok")
hy_check "backend-1 reconnects to replica b" hy_wait_for 30 at "$BE_ADMIN" "$DPB"
hy_check "web-1 reconnects to replica b" hy_wait_for 30 at "$WE_ADMIN" "$DPB"
hy_eq "backend-1 counts one failover" 1 "$(hy_metric "$BE_ADMIN" hypha_dp_zone_failovers_total)"
hy_eq "web-1 counts one failover" 1 "$(hy_metric "$WE_ADMIN" hypha_dp_zone_failovers_total)"
hy_check "and logs it" grep -q "failed over to the zone control plane at wss://127.0.0.1:$DPB" "$BE_LOG"
hy_check "the ingress moves to replica b too" hy_wait_for 30 iat "$IN_ADMIN" "$DPB"
hy_eq "and counts its failover" 1 "$(hy_metric "$IN_ADMIN" hypha_ingress_zone_failovers_total)"
hy_check "both are ready again (served by replica b)" ready "$BE_ADMIN"
hy_check "web-1 too" ready "$WE_ADMIN"
registered() { curl -sf "$B_URL/meshes/default/dataplanes/$1" >/dev/null; }
hy_check "backend-1's Dataplane is still registered" registered backend-1
sub_open() {
    curl -s "$B_URL/meshes/default/dataplaneinsights/$1" |
        jq -e '.subscriptions[-1] | (.disconnectTime == null) and (.connectTime != null)' >/dev/null
}
hy_check "its insight shows it connected (to replica b)" hy_wait_for 10 sub_open backend-1
hy_wait_for 30 some_calls $((before + 50))
touch "$HY_TMP/stop"
wait "$LOOP_PID" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$LOOP_PID/}")
hy_check "calls went on during and after the failover ($(wc -l <"$HY_TMP/ok") calls)" some_calls $((before + 50))
hy_eq "no call failed" 0 "$(wc -l <"$HY_TMP/failed")"
printf 'held-2\n' >&4
IFS= read -r -t 5 held <&4 || held=
hy_eq "the connection held across the failover still answers" held-2 "$held"
exec 4>&-

# ---- a policy written after the failover reaches the sidecars through b
curl -sf -o /dev/null -X PUT "$B_URL/meshes/default/meshtrafficpermissions/deny-web" \
    -H 'Content-Type: application/yaml' --data-binary @- <<'YAML'
type: MeshTrafficPermission
mesh: default
name: deny-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
last_for_web='[.inbounds[0].permissions[] | select(.tags == {} or .tags["hypha.io/service"] == "web")] | last | .action'
denied() { [ "$(curl -s "$BE_ADMIN/config" | jq -r "$last_for_web")" = Deny ]; }
hy_check "a Deny written on replica b reaches backend-1's config" hy_wait_for 15 denied
refused() { [ "$(call refused)" != refused ]; }
hy_check "and web-1's calls are refused" hy_wait_for 10 refused

# ---- the sidecars survive the other replica's loss too: back to a
start_replica za "$DPA"
A_PID=$R_PID
kill -9 "$B_PID"
wait "$B_PID" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$B_PID/}")
hy_check "backend-1 moves back to replica a once b dies" hy_wait_for 30 at "$BE_ADMIN" "$DPA"
hy_eq "its second failover" 2 "$(hy_metric "$BE_ADMIN" hypha_dp_zone_failovers_total)"
hy_check "still denied (the config came from the store)" denied

hy_done
