#!/usr/bin/env bash
# Federation over KDS with a global CP and three zones, all real processes
# on loopback: registration with zone tokens, propagation both ways with an
# exact comparison of the stores after each scenario, restarts and SIGKILLs
# that converge, a zone that starts before the global CP, every refusal,
# deleting a zone, and garbage on the KDS port.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

KDS_PORT=$(hy_free_port)
start_global() { hy_start_global g --kds-address "127.0.0.1:$KDS_PORT" --kds-ping-interval 1s "$@"; }
start_global
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
zurl() { local v="ZONE_URL_${1//-/_}"; echo "${!v}"; }
zlog() { local v="ZONE_LOG_${1//-/_}"; echo "${!v}"; }
zpid() { local v="ZONE_PID_${1//-/_}"; echo "${!v}"; }

# The items of a list, normalised: what must be equal on both sides.
items() { curl -s "$1/$2?size=1000" | jq -S '[.items[]]'; }
# Every global-origin resource a zone holds equals the global CP's copy,
# byte for byte in JSON (times and versions included: zones keep them).
same_as_global() {
    local z=$1 p
    for p in meshes meshtrafficpermissions meshtimeouts meshretries meshhealthchecks \
        meshcircuitbreakers meshloadbalancingstrategies meshtrusts meshcaroots; do
        [ "$(items "$GLOBAL_URL" $p)" = "$(items "$(zurl "$z")" $p)" ] || return 1
    done
}
converged() {
    local z
    for z in "$@"; do same_as_global "$z" || return 1; done
}

# ---- registration
for z in east west south; do
    ctl generate zone-token --zone "$z" --valid-for 24h >"$HY_TMP/$z.token"
done
ctl apply -f "$DATA/mesh.yaml" -f "$DATA/meshtrafficpermission.yaml" >/dev/null
for z in east west south; do hy_start_zone "$z"; done
hy_check "three zones converge on the global resources" hy_wait_for 20 converged east west south
hy_eq "the zones registered themselves" "east south west" \
    "$(ctl get zones -o json | jq -r '[.items[].name] | sort | join(" ")')"
hy_check "inspect zones shows them Online" hy_wait_for 10 bash -c \
    "[ \$('$HY_BIN/hyphactl' --cp '$GLOBAL_URL' inspect zones | grep -c Online) -eq 3 ]"
hy_contains "a zone's mesh has its root certificate (not the key)" "BEGIN CERTIFICATE" \
    "$(curl -s "$(zurl east)/meshes/default/meshcaroots/ca-1")"
hy_eq "the CA key did not travel" 404 "$(hy_status GET "$(zurl east)/meshes/default/meshcakeys/ca-1")"

curl -s "$GLOBAL_URL/metrics" >"$HY_TMP/gm.txt"
curl -s "$(zurl east)/metrics" >"$HY_TMP/zm.txt"
hy_check "promtool accepts the global CP's metrics" promtool check metrics <"$HY_TMP/gm.txt"
hy_check "and the zone's" promtool check metrics <"$HY_TMP/zm.txt"
hy_contains "the global CP counts connected zones" "hypha_kds_zones_connected 3" "$(cat "$HY_TMP/gm.txt")"
hy_contains "and KDS messages" 'hypha_kds_messages_total{direction="sent",type="changes"}' \
    "$(cat "$HY_TMP/gm.txt")"
hy_contains "the zone says it is connected" "hypha_kds_connected 1" "$(cat "$HY_TMP/zm.txt")"

# ---- zone CAs: each zone's intermediate, signed by the mesh root on the global CP
curl -s "$GLOBAL_URL/meshes/default/meshcaroots/ca-1" | jq -r .caCert >"$HY_TMP/root.pem"
issuer_at() { curl -sf "$(zurl "$1")/meshes/default/meshissuers/ca-1" >/dev/null; }
for z in east west south; do
    hy_check "zone $z gets its intermediate CA from the global CP" hy_wait_for 15 issuer_at $z
done
curl -s "$(zurl east)/meshes/default/meshissuers/ca-1" | jq -r .cert >"$HY_TMP/east-issuer.pem"
hy_contains "it chains to the mesh root (openssl verify)" "OK" \
    "$(openssl verify -CAfile "$HY_TMP/root.pem" "$HY_TMP/east-issuer.pem" 2>&1)"
hy_contains "it is a CA that signs leaves only (pathlen 0)" "CA:TRUE, pathlen:0" \
    "$(openssl x509 -in "$HY_TMP/east-issuer.pem" -noout -text)"
hy_eq "its key stays in the zone" 404 "$(hy_status GET "$(zurl east)/meshes/default/meshissuerkeys/ca-1")"
hy_eq "and the issuer is not sent to the global CP" 404 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/meshissuers/ca-1")"
hy_check "the global CP logged the signing" grep -q "zone east: signed its intermediate CA" "$GLOBAL_LOG"

# ---- dataplane tokens: a zone issues its own, the global CP issues for a zone
dpverify() { # URL TOKEN -> the verify answer
    curl -s -X POST "$1/tokens/dataplane/verify" -H 'Content-Type: application/json' \
        --data "{\"token\":\"$2\"}"
}
etok=$("$HY_BIN/hyphactl" --cp "$(zurl east)" generate dataplane-token --mesh default \
    --name web-1 --tag hypha.io/service=web --valid-for 1h)
hy_eq "a zone issues and accepts its own dataplane token" "true web-1 east" \
    "$(dpverify "$(zurl east)" "$etok" | jq -r '"\(.valid) \(.name) \(.zone)"')"
hy_eq "another zone does not know its key" unknown_kid "$(dpverify "$(zurl west)" "$etok" | jq -r .reason)"
run_out=$("$HY_BIN/hyphactl" --cp "$(zurl east)" generate dataplane-token --zone west \
    --mesh default --name x 2>&1 || true)
hy_contains "a zone issues tokens for itself only" "issues tokens for itself only" "$run_out"
gtok=$(ctl generate dataplane-token --zone east --mesh default --name web-2 --valid-for 1h)
has_global_key() { curl -s "$(zurl east)/tokensigningkeys" | jq -e '.total >= 1' >/dev/null; }
hy_check "KDS brings the global CP's token key to the zones" hy_wait_for 10 has_global_key
hy_eq "a zone accepts a dataplane token the global CP issued for it" "true web-2" \
    "$(dpverify "$(zurl east)" "$gtok" | jq -r '"\(.valid) \(.name)"')"
hy_contains "and another zone refuses it, naming the zone" "for zone east" \
    "$(dpverify "$(zurl west)" "$gtok" | jq -r .message)"
gjti=$(echo "$gtok" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .jti || true)
curl -s -X POST "$GLOBAL_URL/tokens/revocations" -H 'Content-Type: application/json' \
    --data "{\"jti\":\"$gjti\",\"kind\":\"dataplane\"}" >/dev/null
revoked_at_east() { dpverify "$(zurl east)" "$gtok" | grep -q '"revoked"'; }
hy_check "a revocation on the global CP reaches the zone" hy_wait_for 10 revoked_at_east
ejti=$(echo "$etok" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .jti || true)
curl -s -X POST "$(zurl east)/tokens/revocations" -H 'Content-Type: application/json' \
    --data "{\"jti\":\"$ejti\"}" >/dev/null
hy_eq "a zone revokes its own tokens" revoked "$(dpverify "$(zurl east)" "$etok" | jq -r .reason)"

# ---- global -> zones: create, update, delete
for f in meshtimeout meshretry meshhealthcheck meshcircuitbreaker meshloadbalancingstrategy; do
    ctl apply -f "$DATA/$f.yaml" >/dev/null
done
ctl delete mtp allow-web-to-backend -m default >/dev/null
sed 's/maxConnectAttempt: 5/maxConnectAttempt: 9/' "$DATA/meshretry.yaml" | ctl apply -f - >/dev/null
hy_check "creates, updates and deletes reach every zone" hy_wait_for 20 converged east west south
hy_eq "the update is there" 9 \
    "$(curl -s "$(zurl west)/meshes/default/meshretries/retry-backend" | jq '.spec.to[0].default.tcp.maxConnectAttempt')"

# ---- writes of global resources in a zone are refused
st=$(hy_status PUT "$(zurl east)/meshes/default/meshretries/retry-backend" \
    -H 'Content-Type: application/yaml' --data-binary @"$DATA/meshretry.yaml")
hy_eq "a policy write on a federated zone is refused" 400 "$st"
hy_contains "saying where to write it" "managed by the global control plane at wss://" "$(hy_body)"

# ---- zones -> global: Dataplanes and ZoneIngresses, under the zone's name
for z in east west; do
    hy_status PUT "$(zurl $z)/meshes/default/dataplanes/web-1" -H 'Content-Type: application/yaml' \
        --data-binary @"$DATA/dataplane.yaml" >/dev/null
done
sed "s/^zone: east/zone: east/" "$DATA/zoneingress.yaml" >"$HY_TMP/zi.yaml"
hy_status PUT "$(zurl east)/zoneingresses/ingress-east" -H 'Content-Type: application/yaml' \
    --data-binary @"$HY_TMP/zi.yaml" >/dev/null
dp_on_global() { curl -sf "$GLOBAL_URL/meshes/default/dataplanes/$1" >/dev/null; }
hy_check "east's web-1 reaches the global CP as east.web-1" hy_wait_for 10 dp_on_global east.web-1
hy_check "west's web-1 as west.web-1: no collision" hy_wait_for 10 dp_on_global west.web-1
hy_eq "it keeps its spec" "$(curl -s "$(zurl east)/meshes/default/dataplanes/web-1" | jq -S .networking)" \
    "$(curl -s "$GLOBAL_URL/meshes/default/dataplanes/east.web-1" | jq -S .networking)"
hy_eq "and is labelled with its zone" east \
    "$(curl -s "$GLOBAL_URL/meshes/default/dataplanes/east.web-1" | jq -r '.labels["hypha.io/zone"]')"
hy_contains "hyphactl get dataplanes shows the ZONE column" "west" \
    "$(ctl get dataplanes | grep 'west.web-1')"
zi_at() { curl -sf "$(zurl "$1")/zoneingresses/east.ingress-east" >/dev/null; }
hy_check "east's ingress reaches west" hy_wait_for 10 zi_at west
hy_check "and south" hy_wait_for 10 zi_at south
hy_eq "but does not come back to east" 404 "$(hy_status GET "$(zurl east)/zoneingresses/east.ingress-east")"
hy_status DELETE "$(zurl west)/meshes/default/dataplanes/web-1" >/dev/null
gone() { ! curl -sf "$GLOBAL_URL/meshes/default/dataplanes/west.web-1" >/dev/null; }
hy_check "a delete in a zone reaches the global CP" hy_wait_for 10 gone

# ---- a stopped zone goes Offline; SIGKILL, change, restart: converge
hy_stop "$(zpid south)"
offline() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" inspect zones | grep '^south' | grep -q Offline; }
hy_check "a stopped zone shows Offline" hy_wait_for 10 offline
kill -9 "$(zpid west)"
wait "$(zpid west)" 2>/dev/null || true
ctl apply -f - >/dev/null <<'EOF'
type: MeshTimeout
mesh: default
name: while-west-was-down
spec:
  targetRef: {kind: Mesh}
  rules: [{default: {idleTimeout: 7s}}]
EOF
hy_start_zone west
hy_start_zone south
hy_check "zones restarted after SIGKILL and SIGTERM converge" hy_wait_for 20 converged west south
hy_check "west received only what changed, not a snapshot" \
    bash -c "tail -n 5 '$(zlog west)' | grep -q 'applied 1 upserts, 0 deletes from the global'"

# ---- SIGKILL the global CP in the middle of a sync; restart; converge
for i in $(seq 1 200); do
    printf -- '---\ntype: MeshTrafficPermission\nmesh: default\nname: bulk-%03d\nspec:\n  targetRef: {kind: Mesh}\n  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n' "$i"
done >"$HY_TMP/bulk.yaml"
ctl apply -f "$HY_TMP/bulk.yaml" >/dev/null
kill -9 "$GLOBAL_PID"
wait "$GLOBAL_PID" 2>/dev/null || true
start_global
hy_check "after the global CP is SIGKILLed and restarted, all zones converge" \
    hy_wait_for 30 converged east west south
hy_eq "with all 200 policies" 200 \
    "$(curl -s "$(zurl south)/meshtrafficpermissions?size=1000" | jq '[.items[] | select(.name | startswith("bulk-"))] | length')"

# ---- a zone started while the global CP is down connects when it comes up
ctl generate zone-token --zone north --valid-for 24h >"$HY_TMP/north.token"
hy_stop "$GLOBAL_PID"
hy_eq "while the global CP is down, a zone keeps serving its synced state" 200 \
    "$(curl -s "$(zurl east)/meshtrafficpermissions?size=1000" | jq '[.items[] | select(.name | startswith("bulk-"))] | length')"
hy_stop "$(zpid east)"
hy_start_zone east
hy_eq "and after its own restart" 200 \
    "$(curl -s "$(zurl east)/meshtrafficpermissions?size=1000" | jq '[.items[] | select(.name | startswith("bulk-"))] | length')"
hy_start_zone north
hy_check "north keeps retrying" hy_wait_for 10 grep -q 'cannot reach the global control plane' "$(zlog north)"
start_global
hy_check "and converges once it is up" hy_wait_for 30 converged north
hy_check "every zone is back" hy_wait_for 20 converged east west south

# ---- refusals: each reason reaches the zone's log and inspect zones
refused() { # ZONE TEXT: the zone's log says it was rejected with TEXT
    hy_wait_for 15 grep -q "rejected this zone: .*$2" "$(zlog "$1")"
}
ctl generate zone-token --zone east --valid-for 24h >"$HY_TMP/fake.token"
cp "$HY_TMP/fake.token" "$HY_TMP/impostor.token"
hy_start_zone impostor
hy_check "a token for another zone is refused" refused impostor "the zone token is for zone east"
hy_stop "$(zpid impostor)"
ctl generate zone-token --zone late --valid-for 1s >"$HY_TMP/late.token"
hy_wait_for 5 bash -c "curl -s -X POST '$GLOBAL_URL/tokens/zone/verify' -H 'Content-Type: application/json' --data '{\"token\":\"$(cat "$HY_TMP/late.token")\"}' | grep -q expired"
hy_start_zone late
hy_check "an expired token is refused" refused late "token expired"
hy_stop "$(zpid late)"
ctl generate zone-token --zone revoked --valid-for 24h >"$HY_TMP/revoked.token"
jti=$(cut -d. -f2 "$HY_TMP/revoked.token" | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .jti || true)
curl -s -X POST "$GLOBAL_URL/tokens/revocations" -H 'Content-Type: application/json' \
    --data "{\"jti\":\"$jti\"}" >/dev/null
hy_start_zone revoked
hy_check "a revoked token is refused" refused revoked "revoked"
hy_stop "$(zpid revoked)"
printf 'garbage.token.here\n' >"$HY_TMP/bad.token"
hy_start_zone bad
hy_check "a malformed token is refused" refused bad "zone token refused"
hy_stop "$(zpid bad)"
ctl generate zone-token --zone off --valid-for 24h >"$HY_TMP/off.token"
printf 'type: Zone\nname: off\nenabled: false\n' | ctl apply -f - >/dev/null
hy_start_zone off
hy_check "a disabled zone is refused" refused off "disabled"
printf 'type: Zone\nname: off\nenabled: true\n' | ctl apply -f - >/dev/null
hy_check "and admitted once enabled" hy_wait_for 20 converged off
hy_stop "$(zpid off)"
cp "$HY_TMP/east.token" "$HY_TMP/east2.token"
mkdir -p "$HY_TMP/zone-east2"
"$HY_BIN/hypha-zone" --zone east --data-dir "$HY_TMP/zone-east2" --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 \
    --global-address "wss://127.0.0.1:$KDS_PORT" --global-ca-file "$GLOBAL_DATA/kds/ca.pem" \
    --zone-token-file "$HY_TMP/east2.token" >"$HY_TMP/east2.log" 2>&1 &
dup=$!
HY_PIDS+=("$dup")
hy_check "a second connection for a connected zone is refused" \
    hy_wait_for 15 grep -q 'rejected this zone: zone east is already connected' "$HY_TMP/east2.log"
hy_stop "$dup"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$HY_TMP/o.key" \
    -out "$HY_TMP/other-ca.pem" -days 1 -subj /CN=other 2>/dev/null
ctl generate zone-token --zone wrongca --valid-for 24h >"$HY_TMP/wrongca.token"
hy_start_zone wrongca --global-ca-file "$HY_TMP/other-ca.pem"
hy_check "a zone that does not trust the global CP's certificate does not connect" \
    hy_wait_for 15 grep -qi 'cannot reach the global control plane: .*\(certificate\|verify\|tls\|ssl\)' "$(zlog wrongca)"
hy_stop "$(zpid wrongca)"
hy_contains "inspect zones shows the reason" "disabled" "$(ctl inspect zones | grep '^off' || true)$(ctl get zoneinsights off -o json | jq -r '.subscriptions[].lastError' 2>/dev/null)"

# ---- garbage on the KDS port does not disturb the zones
head -c 100000 /dev/urandom >/dev/tcp/127.0.0.1/"$KDS_PORT" 2>/dev/null || true
printf 'GET / HTTP/1.1\r\n\r\n' | timeout 5 openssl s_client -connect 127.0.0.1:"$KDS_PORT" -quiet >/dev/null 2>&1 || true
ctl apply -f - >/dev/null <<'EOF'
type: MeshTimeout
mesh: default
name: after-garbage
spec:
  targetRef: {kind: Mesh}
  rules: [{default: {idleTimeout: 3s}}]
EOF
hy_check "zones still converge after garbage on the KDS port" hy_wait_for 20 converged east west south

# ---- a standalone zone makes its own root and intermediate
mkdir -p "$HY_TMP/alone"
"$HY_BIN/hypha-zone" --zone alone --data-dir "$HY_TMP/alone" --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 \
    >"$HY_TMP/alone.log" 2>&1 &
alone=$!
HY_PIDS+=("$alone")
hy_wait_for 15 grep -q 'API listening on http://' "$HY_TMP/alone.log"
A=http://127.0.0.1:$(grep -o 'API listening on http://[^ ]*' "$HY_TMP/alone.log" | sed 's/.*://')
hy_wait_for 10 curl -sf "$A/ready"
hy_eq "a standalone zone takes a Mesh" 201 \
    "$(hy_status PUT "$A/meshes/default" -H 'Content-Type: application/yaml' --data-binary @"$DATA/mesh.yaml")"
alone_issuer() { curl -sf "$A/meshes/default/meshissuers/ca-1" >/dev/null; }
hy_check "and makes its root and its intermediate" hy_wait_for 15 alone_issuer
curl -s "$A/meshes/default/meshcaroots/ca-1" | jq -r .caCert >"$HY_TMP/alone-root.pem"
curl -s "$A/meshes/default/meshissuers/ca-1" | jq -r .cert >"$HY_TMP/alone-issuer.pem"
hy_contains "which chains to its own root" "OK" \
    "$(openssl verify -CAfile "$HY_TMP/alone-root.pem" "$HY_TMP/alone-issuer.pem" 2>&1)"
hy_stop "$alone"

# ---- heartbeats: a zone that goes silent is marked Offline, and comes back
kill -STOP "$(zpid south)"
hy_check "a silent zone is dropped and shows Offline" hy_wait_for 15 offline
kill -CONT "$(zpid south)"
online() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" inspect zones | grep '^south' | grep -q Online; }
hy_check "and is Online again once it answers" hy_wait_for 15 online

# ---- deleting a zone removes its resources everywhere. A zone CP that
# still runs registers again at its next connect (as in Kuma: stop it
# first); east is held still meanwhile so the check does not race that.
kill -STOP "$(zpid east)"
ctl delete zone east >/dev/null
no_east() {
    ! curl -sf "$GLOBAL_URL/meshes/default/dataplanes/east.web-1" >/dev/null &&
        ! curl -sf "$(zurl west)/zoneingresses/east.ingress-east" >/dev/null
}
hy_check "deleting zone east removes its resources from global and the other zones" \
    hy_wait_for 20 no_east
kill -CONT "$(zpid east)"
hy_check "and east is disconnected" refused east "deleted"

for z in east west south north; do hy_stop "$(zpid $z)" || true; done
hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
