#!/usr/bin/env bash
# hypha-global's HTTP API, driven with curl against the real binary on an
# ephemeral loopback port: CRUD of every type, the mesh CA, paging, label
# filters, conflicts, every error class, atomic apply, persistence across
# a restart, concurrent writers, hostile clients, zone tokens and metrics.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)

hy_start_global g1
U=$GLOBAL_URL
J='Content-Type: application/json'
Y='Content-Type: application/yaml'

# ---- basics
hy_eq "GET / names the product and mode" "Hypha global" \
    "$(curl -s "$U/" | jq -r '.product + " " + .mode')"
types=$(curl -s "$U/_resources" | jq -r '.resources[].name' | sort | tr '\n' ' ')
hy_contains "/_resources lists the policies" "MeshTrafficPermission" "$types"
case "$types" in *MeshCaKey*) hy_fail "/_resources hides secret types" ;; *) hy_ok "/_resources hides secret types" ;; esac

# ---- CRUD of every type a user writes on global
put_yaml() { # FILE URLPATH -> status
    hy_status PUT "$U$2" -H "$Y" --data-binary @"$1"
}
hy_eq "create the default mesh" 201 "$(put_yaml "$DATA/mesh.yaml" /meshes/default)"
for f in zone meshtrafficpermission meshtimeout meshretry meshhealthcheck meshcircuitbreaker \
    meshloadbalancingstrategy; do
    name=$(sed -n 's/^name: //p' "$DATA/$f.yaml")
    if grep -q '^mesh:' "$DATA/$f.yaml"; then
        path=/meshes/default/${f}s/$name
        [ "$f" = meshretry ] && path=/meshes/default/meshretries/$name
        [ "$f" = meshloadbalancingstrategy ] && path=/meshes/default/meshloadbalancingstrategies/$name
    else
        path=/${f}s/$name
    fi
    hy_eq "$f: PUT creates" 201 "$(put_yaml "$DATA/$f.yaml" "$path")"
    hy_eq "$f: PUT again is unchanged" unchanged \
        "$(curl -s -D - -o /dev/null -X PUT -H "$Y" --data-binary @"$DATA/$f.yaml" "$U$path" |
            tr -d '\r' | sed -n 's/^hypha-result: //p')"
    got=$(curl -s -H 'Accept: application/yaml' "$U$path")
    hy_contains "$f: GET returns it as YAML" "name: $name" "$got"
    # change a label: updated, version 2
    sed "s/^name: .*/&\nlabels: {changed: \"yes\"}/" "$DATA/$f.yaml" | grep -v '^  team:' |
        awk '/^labels:/ && seen++ {next} {print}' >"$HY_TMP/changed.yaml"
    [ "$f" = mesh ] || true
    hy_eq "$f: PUT with new labels updates" 200 \
        "$(hy_status PUT "$U$path" -H "$Y" --data-binary @"$HY_TMP/changed.yaml")"
    hy_eq "$f: version is now 2" '"2"' \
        "$(curl -s -D - -o /dev/null "$U$path" | tr -d '\r' | sed -n 's/^etag: //p')"
    hy_eq "$f: DELETE" 200 "$(hy_status DELETE "$U$path")"
    hy_eq "$f: gone after DELETE" 404 "$(hy_status GET "$U$path")"
done

# zone-origin and system types are refused, saying where they come from
st=$(hy_status PUT "$U/meshes/default/dataplanes/web-1" -H "$Y" --data-binary @"$DATA/dataplane.yaml")
hy_eq "Dataplane write refused on global" 400 "$st"
hy_contains "refusal says Dataplanes come from zones" "come from zones" "$(hy_body)"
st=$(hy_status PUT "$U/zoneingresses/ingress-east" -H "$Y" --data-binary @"$DATA/zoneingress.yaml")
hy_eq "ZoneIngress write refused on global" 400 "$st"
st=$(hy_status PUT "$U/zoneinsights/east" -H "$Y" --data-binary @"$DATA/zoneinsight.yaml")
hy_contains "ZoneInsight is written by the control plane" "control plane itself" "$(hy_body)"

# ---- the mesh root CA
trust=$(curl -s "$U/meshes/default/meshcaroots/ca-1")
hy_eq "Mesh with builtin mTLS has a root CA" ca-1 "$(echo "$trust" | jq -r .backend)"
echo "$trust" | jq -r .caCert >"$HY_TMP/root.pem"
subject=$(openssl x509 -in "$HY_TMP/root.pem" -noout -subject 2>&1)
hy_contains "the root parses with openssl" "CN = default" "$subject"
hy_check "the root is a CA (openssl)" \
    grep -q "CA:TRUE" <(openssl x509 -in "$HY_TMP/root.pem" -noout -text)
hy_check "root is P-256" grep -q "prime256v1" <(openssl x509 -in "$HY_TMP/root.pem" -noout -text)
hy_eq "the CA key is not served" 404 "$(hy_status GET "$U/meshes/default/meshcakeys/ca-1")"
hy_eq "nor listed" 404 "$(hy_status GET "$U/meshcakeys")"
fp1=$(echo "$trust" | jq -r .fingerprint)
put_yaml "$DATA/mesh.yaml" /meshes/default >/dev/null
hy_eq "re-applying the Mesh keeps its root" "$fp1" \
    "$(curl -s "$U/meshes/default/meshcaroots/ca-1" | jq -r .fingerprint)"

# ---- paging and label filters
docs=""
for i in $(seq -w 1 25); do
    team=b
    [ $((10#$i % 2)) -eq 1 ] && team=a
    docs+="---
type: MeshTrafficPermission
mesh: default
name: p-$i
labels: {team: $team}
spec:
  targetRef: {kind: Mesh}
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
"
done
st=$(hy_status POST "$U/_apply" -H "$Y" --data-binary "$docs")
hy_eq "apply 25 policies in one request" 200 "$st"
hy_eq "every result is created" 25 "$(hy_body | jq '[.results[] | select(.result == "created")] | length')"
page=$(curl -s "$U/meshes/default/meshtrafficpermissions?size=10")
hy_eq "page 1: total" 25 "$(echo "$page" | jq .total)"
hy_eq "page 1: 10 items" 10 "$(echo "$page" | jq '.items | length')"
names=$(echo "$page" | jq -r '.items[].name')
next=$(echo "$page" | jq -r .next)
while [ "$next" != null ]; do
    page=$(curl -s "$U$next")
    names+=$'\n'$(echo "$page" | jq -r '.items[].name')
    next=$(echo "$page" | jq -r .next)
done
hy_eq "following next visits all 25 in key order" "$(seq -f 'p-%02g' 1 25)" "$names"
filtered=$(curl -s -g "$U/meshtrafficpermissions?filter[labels.team]=a&size=5")
hy_eq "label filter: total" 13 "$(echo "$filtered" | jq .total)"
hy_eq "label filter: page size" 5 "$(echo "$filtered" | jq '.items | length')"
all_a=$(echo "$filtered" | jq -r '.items[].name')
next=$(echo "$filtered" | jq -r .next)
while [ "$next" != null ]; do
    filtered=$(curl -s "$U$next")
    all_a+=$'\n'$(echo "$filtered" | jq -r '.items[].name')
    next=$(echo "$filtered" | jq -r .next)
done
hy_eq "label filter pages through the 13 matches" 13 "$(echo "$all_a" | sort -u | wc -l)"
hy_eq "size over the limit is refused" 400 "$(hy_status GET "$U/meshtrafficpermissions?size=5000")"

# ---- conflicts
p=/meshes/default/meshtrafficpermissions/p-01
v=$(curl -s -D - -o /dev/null "$U$p" | tr -d '\r' | sed -n 's/^etag: "\(.*\)"/\1/p')
body=$(curl -s "$U$p")
hy_eq "If-Match with an old version: 409" 409 \
    "$(hy_status PUT "$U$p" -H "$J" -H "If-Match: \"$((v + 5))\"" --data-binary "$body")"
hy_contains "conflict says to read again" "read it again" "$(hy_body)"
changed=$(echo "$body" | jq '.labels.team = "c"')
hy_eq "If-Match with the current version: 200" 200 \
    "$(hy_status PUT "$U$p" -H "$J" -H "If-Match: \"$v\"" --data-binary "$changed")"
hy_eq "If-Match garbage: 400" 400 \
    "$(hy_status PUT "$U$p" -H "$J" -H "If-Match: nonsense" --data-binary "$changed")"
hy_eq "DELETE with a stale If-Match: 409" 409 \
    "$(hy_status DELETE "$U$p" -H "If-Match: \"$v\"")"

# ---- every error class
st=$(hy_status PUT "$U/zones/z1" -H "$Y" --data-binary $'type: Zone\nname: z1\nenabled: [\n')
hy_eq "malformed YAML: 400" 400 "$st"
hy_contains "malformed YAML names line:col" "request body:4:1" "$(hy_body | jq -r '.causes[0].field')"
st=$(hy_status PUT "$U/zones/z1" -H "$Y" -H 'Hypha-Source: z1.yaml' \
    --data-binary $'type: Zone\nname: z1\nenabeld: true\n')
hy_eq "unknown field: 400" 400 "$st"
hy_eq "unknown field cause" "z1.yaml:3:1: enabeld" "$(hy_body | jq -r '.causes[0].field')"
hy_contains "unknown field message" 'unknown field "enabeld"' "$(hy_body | jq -r '.causes[0].message')"
st=$(hy_status PUT "$U/meshes/default/meshtrafficpermissions/x" -H "$Y" \
    --data-binary $'type: MeshTrafficPermission\nmesh: default\nname: x\nspec:\n  targetRef: {kind: Mesh}\n  from: [{targetRef: {kind: Mesh}, default: {action: Allw}}]\n')
hy_eq "unknown enum value: 400" 400 "$st"
hy_contains "enum error lists the choices" "expected Allow, Deny, AllowWithShadowDeny" \
    "$(hy_body | jq -r '.causes[0].message')"
st=$(hy_status PUT "$U/zones/other" -H "$Y" --data-binary $'type: Zone\nname: z1\n')
hy_eq "name differs from the path: 400" 400 "$st"
st=$(hy_status PUT "$U/meshes/nope/meshretries/r" -H "$Y" \
    --data-binary $'type: MeshRetry\nmesh: nope\nname: r\nspec:\n  targetRef: {kind: Mesh}\n  to: [{targetRef: {kind: Mesh}, default: {}}]\n')
hy_eq "missing mesh: 400" 400 "$st"
hy_contains "missing mesh is named" 'mesh \"nope\" does not exist' "$(hy_body)"
hy_eq "unknown type: 404" 404 "$(hy_status GET "$U/meshes/default/widgets")"
hy_eq "unknown resource: 404" 404 "$(hy_status GET "$U/zones/none")"
hy_eq "POST on a resource: 405" 405 "$(hy_status POST "$U/zones/none" -H "$J" --data '{}')"
hy_eq "PUT on a list: 405" 405 "$(hy_status PUT "$U/zones" -H "$J" --data '{}')"
hy_eq "text/plain body: 415" 415 "$(hy_status PUT "$U/zones/z1" -H 'Content-Type: text/plain' --data 'x')"
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$HY_TMP/big"
hy_eq "body over 1 MiB: 413" 413 "$(hy_status PUT "$U/zones/z1" -H "$Y" --data-binary @"$HY_TMP/big")"
hy_eq "the server still answers after a 413" 200 "$(hy_status GET "$U/ready")"

# ---- apply is all or nothing; dry run writes nothing
bad=$'type: Zone\nname: ok-1\n---\ntype: Zone\nname: Bad_Name\n'
hy_eq "apply with one invalid document: 400" 400 \
    "$(hy_status POST "$U/_apply" -H "$Y" -H 'Hypha-Source: two.yaml' --data-binary "$bad")"
hy_eq "the invalid document is named with its line" "two.yaml:5:7: name" \
    "$(hy_body | jq -r '.causes[0].field')"
hy_eq "and the valid one was not written" 404 "$(hy_status GET "$U/zones/ok-1")"
dup=$'type: Zone\nname: twice\n---\ntype: Zone\nname: other\n---\ntype: Zone\nname: twice\nenabled: false\n'
hy_eq "apply with the same resource twice: 400" 400 \
    "$(hy_status POST "$U/_apply" -H "$Y" -H 'Hypha-Source: dup.yaml' --data-binary "$dup")"
hy_eq "the second one is named, with the first's line" \
    "dup.yaml:7:1: name: Zone twice appears twice (first at line 1)" \
    "$(hy_body | jq -r '.causes[0] | .field + ": " + .message')"
hy_eq "dry run answers" 200 \
    "$(hy_status POST "$U/_apply?dryRun=true" -H "$Y" --data-binary $'type: Zone\nname: dry\n')"
hy_eq "dry run reports created" created "$(hy_body | jq -r '.results[0].result')"
hy_eq "dry run wrote nothing" 404 "$(hy_status GET "$U/zones/dry")"

# ---- persistence across a restart
rev=$(curl -s "$U/metrics" | sed -n 's/^hypha_store_revision \(.*\)/\1/p')
kid=$(grep -o 'token signing key [0-9a-f]*' "$GLOBAL_LOG" | head -n 1)
hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
first_log=$GLOBAL_LOG
hy_start_global g1
U=$GLOBAL_URL
hy_eq "resources survive a restart" 25 "$(curl -s "$U/meshtrafficpermissions" | jq .total)"
hy_eq "the store revision survives" "$rev" \
    "$(curl -s "$U/metrics" | sed -n 's/^hypha_store_revision \(.*\)/\1/p')"
hy_contains "the token signing key is reused" "${kid#token signing key }" "$(cat "$GLOBAL_LOG")"
hy_check "no sanitizer report from the first run" bash -c "! grep -q 'Sanitizer' '$first_log'"

# ---- 50 concurrent writers and readers
writer() { # N: writes 10 policies
    local i
    for i in $(seq 1 10); do
        curl -s -o /dev/null -w '%{http_code}\n' -X PUT -H "$Y" "$U/meshes/default/meshretries/w$1-$i" \
            --data-binary "type: MeshRetry
mesh: default
name: w$1-$i
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: $i}}}]
"
    done
}
reader() {
    local i
    for i in $(seq 1 10); do
        curl -s -o /dev/null -w '%{http_code}\n' "$U/meshretries?size=1000"
    done
}
pids=()
for w in $(seq 1 50); do
    writer "$w" >"$HY_TMP/w$w.out" &
    pids+=($!)
done
for r in $(seq 1 5); do
    reader >"$HY_TMP/r$r.out" &
    pids+=($!)
done
wait "${pids[@]}"
hy_eq "every concurrent write succeeded" 500 "$(cat "$HY_TMP"/w*.out | grep -c '^201$')"
hy_eq "every concurrent read succeeded" 50 "$(cat "$HY_TMP"/r*.out | grep -c '^200$')"
hy_eq "no write was lost" 500 "$(curl -s "$U/meshretries?size=1000" | jq .total)"

# ---- hostile clients: garbage, truncated, oversized, slow
port=${U##*:}
head -c 65536 /dev/urandom >/dev/tcp/127.0.0.1/"$port" 2>/dev/null || true
printf 'GARBAGE\r\n\r\n' >/dev/tcp/127.0.0.1/"$port" 2>/dev/null || true
printf 'PUT /zones/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 100\r\n\r\ntype: Zo' \
    >/dev/tcp/127.0.0.1/"$port" 2>/dev/null || true
hy_eq "garbage and truncated requests write nothing" 404 "$(hy_status GET "$U/zones/t")"
long=$(head -c 20000 /dev/zero | tr '\0' 'a')
st=$(hy_status GET "$U/zones/$long")
case "$st" in 4* | 000) hy_ok "an oversized URL is refused ($st)" ;; *) hy_fail "oversized URL: $st" ;; esac
exec 7<>/dev/tcp/127.0.0.1/"$port"
printf 'PUT /zones/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc' >&7
hy_eq "a slow client does not block others" 200 "$(hy_status GET "$U/ready" --max-time 2)"
exec 7>&-
hy_eq "the server is alive after hostile clients" 200 "$(hy_status GET "$U/ready")"

# ---- zone tokens
tok=$(curl -s -X POST -H "$J" "$U/tokens/zone" --data '{"zone":"east","validFor":"720h"}')
hy_eq "a zone token is a JWT" 3 "$(echo "$tok" | awk -F. '{print NF}')"
claims=$(echo "$tok" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null || true)
hy_contains "its claims name the zone" '"zone":"east"' "$claims"
verify() {
    curl -s -X POST -H "$J" "$U/tokens/zone/verify" --data "{\"token\":\"$1\"}"
}
hy_eq "the token verifies" "true east" "$(verify "$tok" | jq -r '"\(.valid) \(.zone)"')"
sig=${tok##*.}
flipped=${tok%.*}.$([ "${sig:0:1}" = A ] && echo B || echo A)${sig:1}
hy_eq "a changed signature: bad_signature" bad_signature "$(verify "$flipped" | jq -r .reason)"
hdr=$(printf '{"alg":"none","typ":"JWT"}' | base64 -w0 | tr '+/' '-_' | tr -d '=')
hy_eq "alg none: alg_not_allowed" alg_not_allowed \
    "$(verify "$hdr.$(echo "$tok" | cut -d. -f2)." | jq -r .reason)"
hy_eq "garbage: malformed" malformed "$(verify "not.a.token" | jq -r .reason)"
short=$(curl -s -X POST -H "$J" "$U/tokens/zone" --data '{"zone":"west","validFor":"1s"}')
hy_check "a 1s token expires" hy_wait_for 5 bash -c \
    "curl -s -X POST '$U/tokens/zone/verify' -H '$J' --data '{\"token\":\"$short\"}' | grep -q '\"expired\"'"
jti=$(echo "$claims" | jq -r .jti)
hy_eq "revoke by jti" 201 \
    "$(hy_status POST "$U/tokens/revocations" -H "$J" --data "{\"jti\":\"$jti\",\"reason\":\"test\"}")"
hy_eq "a revoked token: revoked" revoked "$(verify "$tok" | jq -r .reason)"
hy_eq "a bad zone name is refused" 400 \
    "$(hy_status POST "$U/tokens/zone" -H "$J" --data '{"zone":"Bad Zone","validFor":"1h"}')"
other_log=$GLOBAL_LOG
other_pid=$GLOBAL_PID
hy_start_global g2
tok2=$(curl -s -X POST -H "$J" "$GLOBAL_URL/tokens/zone" --data '{"zone":"east","validFor":"1h"}')
hy_eq "a token from another global: unknown_kid" unknown_kid "$(verify "$tok2" | jq -r .reason)"
hy_stop "$GLOBAL_PID"
GLOBAL_LOG=$other_log
GLOBAL_PID=$other_pid

# ---- metrics
curl -s "$U/metrics" >"$HY_TMP/metrics.txt"
hy_check "promtool accepts /metrics" promtool check metrics <"$HY_TMP/metrics.txt"
hy_contains "requests are counted by route and status" \
    'hypha_api_requests_total{method="PUT",route="/meshes/{mesh}/{plural}/{name}",status="201"}' \
    "$(cat "$HY_TMP/metrics.txt")"
hy_contains "process metrics are there" "process_resident_memory_bytes" "$(cat "$HY_TMP/metrics.txt")"

# ---- no secret ever leaves: the CA key is nowhere in what the API served
for p in /meshcaroots /meshes /meshes/default/meshcaroots /meshtrusts; do
    curl -s "$U$p" >>"$HY_TMP/served.txt"
done
hy_check "no private key in any response" bash -c "! grep -q 'PRIVATE KEY' '$HY_TMP/served.txt'"

hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$GLOBAL_LOG'"
hy_done
