#!/usr/bin/env bash
# A zone holding only its own zone token attacks the global CP over KDS
# (the security issue's findings 1, 3, 5, 6, 7, 9 and 10), while real zones
# east and west stay federated. Each attack is sent by hypha-kds-probe's
# send mode (tests/tools/kds_probe_send.c) as a hostile zone would: every
# one must be refused with a reason that names it, the rest of the stream
# must go on, and the global CP must stay alive, keep serving everyone and
# stop cleanly.
. "$(dirname "$0")/lib.sh"
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG
PROBE=$HY_BIN/hypha-kds-probe

KDS_PORT=$(hy_free_port)
hy_start_global g --kds-address "127.0.0.1:$KDS_PORT" --kds-zone-max-resources 200 \
    --kds-zone-max-ingresses 2
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
CA=$GLOBAL_DATA/kds/ca.pem
for z in east west south flood; do
    ctl generate zone-token --zone "$z" --valid-for 24h >"$HY_TMP/$z.token"
done
hy_start_zone east
hy_start_zone west
E=$ZONE_URL_east
W=$ZONE_URL_west
ctl apply -f - >/dev/null <<'YAML'
type: Mesh
name: default
YAML

# west runs web-1 (a Dataplane written in the zone: it syncs up as west.web-1)
dataplane() { # NAME SERVICE [ADDRESS]
    cat <<YAML
type: Dataplane
mesh: default
name: $1
networking:
  address: ${3:-10.0.0.7}
  inbound:
    - port: 8080
      tags: {hypha.io/service: $2}
YAML
}
dataplane web-1 web | "$HY_BIN/hyphactl" --cp "$W" apply -f - >/dev/null
hy_check "west's web-1 reaches the global CP" \
    hy_wait_for 15 curl -sf "$GLOBAL_URL/meshes/default/dataplanes/west.web-1"

# send NAME ZONE FILE [ARGS...]: the probe as ZONE sends FILE up; its output
# is $HY_TMP/NAME.out; prints its exit code.
send() {
    local name=$1 zone=$2 file=$3 rc=0
    shift 3
    "$PROBE" send --url "wss://127.0.0.1:$KDS_PORT" --ca-file "$CA" --zone "$zone" \
        --token-file "$HY_TMP/$zone.token" --resources "$file" --timeout 60s "$@" \
        >"$HY_TMP/$name.out" 2>"$HY_TMP/$name.log" || rc=$?
    echo "$rc"
}
out() { cat "$HY_TMP/$1.out"; }
alive() { kill -0 "$GLOBAL_PID" && curl -sf "$GLOBAL_URL/ready" >/dev/null; }
metric() { curl -s "$GLOBAL_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# --- finding 1: a label entry with no key (protobuf-c leaves key NULL) ---
dataplane db-1 db >"$HY_TMP/db.yaml"
hy_eq "finding 1: the probe's Changes is answered" 0 \
    "$(send nullkey south "$HY_TMP/db.yaml" --tweak null-label-key)"
hy_contains "finding 1: refused, naming the missing key" "reason=labels: an entry has no key" \
    "$(out nullkey)"
hy_check "finding 1: the global CP is alive" alive
hy_contains "finding 1: counted per zone" 'zone="south"' \
    "$(curl -s "$GLOBAL_URL/metrics" | grep hypha_kds_resources_refused_total)"

# --- finding 10: duplicate keys, in labels and in a Dataplane's tags ---
hy_eq "finding 10: duplicate labels answered" 0 \
    "$(send duplabel south "$HY_TMP/db.yaml" --tweak dup-label)"
hy_contains "finding 10: refused as a duplicate" 'duplicate key "team"' "$(out duplabel)"
hy_eq "finding 10: duplicate service tags answered" 0 \
    "$(send duptag south "$HY_TMP/db.yaml" --tweak dup-service-tag)"
hy_contains "finding 10: refused as a duplicate" 'duplicate key "hypha.io/service"' "$(out duptag)"
hy_eq "finding 10: nothing of it was stored" 404 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/dataplanes/south.db-1")"
hy_check "finding 10: hyphactl get dataplanes still works for everyone" \
    ctl get dataplanes --mesh default

# --- finding 3: south claims to be west, and advertises west's service ---
{
    dataplane api-1 api
    echo ---
    cat <<'YAML'
type: ZoneIngress
name: ing
zone: west
networking: {address: 10.0.0.9, port: 10001}
availableServices:
  - {mesh: default, tags: {hypha.io/service: api}, instances: 1}
  - {mesh: default, tags: {hypha.io/service: web}, instances: 1}
YAML
} >"$HY_TMP/ingress.yaml"
hy_eq "finding 3: the ingress is answered" 0 "$(send ingress south "$HY_TMP/ingress.yaml")"
zi=$(curl -s "$GLOBAL_URL/zoneingresses/south.ing")
hy_eq "finding 3: its zone is the session's, not the one it claimed" south "$(jq -r .zone <<<"$zi")"
hy_eq "finding 3: only the service its own Dataplanes serve is kept" api \
    "$(jq -r '[.availableServices[].tags["hypha.io/service"]] | join(",")' <<<"$zi")"
hy_check "finding 3: the global CP says what it left out" \
    grep -q 'zone south: ZoneIngress south.ing advertises 1 services no Dataplane' "$GLOBAL_LOG"
hy_check "finding 3: zone east gets it with south's zone" hy_wait_for 15 \
    sh -c "curl -sf '$E/zoneingresses/south.ing' | jq -e '.zone == \"south\" and \
        (.availableServices | length) == 1'"
for i in 2 3; do
    sed "s/^name: ing$/name: ing-$i/" "$HY_TMP/ingress.yaml" >"$HY_TMP/ingress-$i.yaml"
    send "ingress-$i" south "$HY_TMP/ingress-$i.yaml" >/dev/null
done
hy_contains "finding 3: a zone's ingresses are capped (--kds-zone-max-ingresses)" \
    "quota of 2 ZoneIngresses" "$(out ingress-3)"

# --- finding 6: a name that grows past 253 with its zone's prefix ---
long=$(printf 'a%.0s' {1..250})
hy_eq "finding 6: a federated zone refuses to make the name" 400 \
    "$(dataplane "$long" web | hy_status PUT "$W/meshes/default/dataplanes/$long" \
        -H 'Content-Type: application/yaml' --data-binary @-)"
hy_contains "finding 6: and says why" "over 253" "$(hy_body)"
{
    dataplane "$long" web
    echo ---
    dataplane web-9 web
} >"$HY_TMP/long.yaml"
hy_eq "finding 6: a zone that sends one anyway is answered" 0 \
    "$(send long south "$HY_TMP/long.yaml")"
hy_contains "finding 6: that one is refused by name" "name=$long reason=its name here" \
    "$(out long)"
hy_contains "finding 6: with an Ack, not a Nack: the stream goes on" "nacked=0" "$(out long)"
hy_eq "finding 6: the rest of the message is stored" 200 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/dataplanes/south.web-9")"
hy_contains "finding 6: inspect zones shows it (ZoneInsight)" "$long" \
    "$(curl -s "$GLOBAL_URL/zoneinsights/south" | jq -r '.refused[].name')"

# --- finding 9: zone names cannot collide, a zone changes only its own ---
hy_check "finding 9: no zone token for a dotted zone name" \
    sh -c "! '$HY_BIN/hyphactl' --cp '$GLOBAL_URL' generate zone-token --zone us.east \
        --valid-for 1h 2>'$HY_TMP/dotted.err'"
hy_contains "finding 9: and the CLI says why" "no dots" "$(cat "$HY_TMP/dotted.err")"
hy_eq "finding 9: nor from the API" 400 "$(hy_status POST "$GLOBAL_URL/tokens/zone" \
    -H 'Content-Type: application/json' --data '{"zone":"us.east","validFor":"1h"}')"
hy_eq "finding 9: nor a Zone resource" 400 "$(hy_status PUT "$GLOBAL_URL/zones/us.east" \
    -H 'Content-Type: application/json' --data '{"type":"Zone","name":"us.east"}')"
send del south "$HY_TMP/db.yaml" --delete Dataplane/default/web-1 \
    --delete Dataplane/default/west.web-1 >/dev/null
hy_eq "finding 9: south's deletes do not touch west's web-1" 200 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/dataplanes/west.web-1")"

# --- finding 7: per-zone quotas, and deletes that always fit ---
hy_eq "finding 7: a flooding zone is answered" 0 \
    "$(send flood flood "$HY_TMP/db.yaml" --copies 300 --batch 100)"
hy_contains "finding 7: past its quota it is refused" "quota of 200 resources" "$(out flood)"
hy_eq "finding 7: and it keeps exactly its quota" 200 \
    "$(curl -s "$GLOBAL_URL/meshes/default/dataplanes?size=1&filter%5Blabels.hypha.io/zone%5D=flood" |
        jq .total)"
hy_eq "finding 7: its usage is in its insight" 200 \
    "$(curl -s "$GLOBAL_URL/zoneinsights/flood" | jq .resources)"
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: after-flood
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
YAML
hy_check "finding 7: other zones still sync (east)" \
    hy_wait_for 15 curl -sf "$E/meshes/default/meshtrafficpermissions/after-flood"
hy_check "finding 7: and west" \
    hy_wait_for 15 curl -sf "$W/meshes/default/meshtrafficpermissions/after-flood"
hy_eq "finding 7: the flooding zone can be deleted" 200 \
    "$(hy_status DELETE "$GLOBAL_URL/zones/flood")"
hy_eq "finding 7: and its resources go with it" 0 \
    "$(curl -s "$GLOBAL_URL/meshes/default/dataplanes?size=1&filter%5Blabels.hypha.io/zone%5D=flood" |
        jq .total)"

# --- finding 7: with no quotas at all, a nearly full store still takes deletes ---
SMALL_KDS=$(hy_free_port)
"$HY_BIN/hypha-global" --data-dir "$HY_TMP/small" --api-address 127.0.0.1:0 \
    --kds-address "127.0.0.1:$SMALL_KDS" --store-map-size 4Mi --kds-zone-max-resources 0 \
    --kds-zone-max-bytes 0 >"$HY_TMP/small.log" 2>&1 &
SMALL_PID=$!
HY_PIDS+=("$SMALL_PID")
hy_wait_for 20 grep -q 'API listening on http://' "$HY_TMP/small.log"
S=http://127.0.0.1:$(grep -o 'API listening on http://[^ ]*' "$HY_TMP/small.log" | sed 's/.*://')
hy_wait_for 10 curl -sf "$S/ready"
"$HY_BIN/hyphactl" --cp "$S" generate zone-token --zone flood --valid-for 1h >"$HY_TMP/flood.token"
"$PROBE" send --url "wss://127.0.0.1:$SMALL_KDS" --ca-file "$HY_TMP/small/kds/ca.pem" \
    --zone flood --token-file "$HY_TMP/flood.token" --resources "$HY_TMP/db.yaml" \
    --copies 30000 --batch 500 --timeout 120s >"$HY_TMP/fill.out" 2>&1 || true
hy_contains "finding 7: a zone filling the store is stopped short of full" \
    "store is nearly full" "$(cat "$HY_TMP/fill.out")"
hy_eq "finding 7: the API still writes" 201 "$(echo '{"type":"Mesh","name":"other"}' |
    hy_status PUT "$S/meshes/other" -H 'Content-Type: application/json' --data-binary @-)"
hy_eq "finding 7: and deleting the zone works" 200 "$(hy_status DELETE "$S/zones/flood")"
hy_check "finding 7: that global CP stops cleanly" hy_stop "$SMALL_PID"

# --- finding 5: a revoked or expired zone token ends the session ---
"$PROBE" send --url "wss://127.0.0.1:$KDS_PORT" --ca-file "$CA" --zone south \
    --token-file "$HY_TMP/south.token" --resources "$HY_TMP/db.yaml" --hold --timeout 30s \
    >"$HY_TMP/hold.out" 2>"$HY_TMP/hold.log" &
HOLD_PID=$!
HY_PIDS+=("$HOLD_PID")
hy_check "finding 5: the zone is connected and sending" \
    hy_wait_for 15 grep -q '^done ' "$HY_TMP/hold.out"
jti=$(cut -d. -f2 "$HY_TMP/south.token" | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .jti || true)
hy_eq "finding 5: its token is revoked" 201 "$(hy_status POST "$GLOBAL_URL/tokens/revocations" \
    -H 'Content-Type: application/json' --data "{\"jti\":\"$jti\",\"reason\":\"test\"}")"
rc=0
wait "$HOLD_PID" || rc=$?
hy_eq "finding 5: the server ended the open session" 0 "$rc"
hy_contains "finding 5: saying the token was revoked" "was revoked" "$(cat "$HY_TMP/hold.out")"
ctl generate zone-token --zone south --valid-for 3s >"$HY_TMP/south.token"
"$PROBE" send --url "wss://127.0.0.1:$KDS_PORT" --ca-file "$CA" --zone south \
    --token-file "$HY_TMP/south.token" --resources "$HY_TMP/db.yaml" --hold --timeout 30s \
    >"$HY_TMP/expire.out" 2>"$HY_TMP/expire.log" || rc=$?
hy_eq "finding 5: a session outliving its token is ended" 0 "$rc"
hy_contains "finding 5: saying it expired" "token expired at" "$(cat "$HY_TMP/expire.out")"

# --- the rest stays well ---
hy_check "the global CP is alive" alive
hy_check "east and west are Online" sh -c "'$HY_BIN/hyphactl' --cp '$GLOBAL_URL' inspect zones |
    grep east | grep -q Online && '$HY_BIN/hyphactl' --cp '$GLOBAL_URL' inspect zones |
    grep west | grep -q Online"
hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" sh -c "! grep -l 'Sanitizer\|runtime error' '$GLOBAL_LOG' \
    '$HY_TMP'/zone-*.log"
hy_done
