#!/usr/bin/env bash
# Sidecars against a real zone: hypha-dp registers its Dataplane with a
# dataplane token and gets a certificate from the zone's intermediate CA
# (which chains to the mesh root on the global CP), a config with the
# permissions and endpoints of its mesh, renewals, refusals of tokens for
# another Dataplane or mesh, keeping its config while the zone is down, and
# deregistration on a clean exit.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

# leaves live 20 s here, so a renewal happens during the test
hy_start_mesh_zone 20s

# ---- registration, certificate, config
hy_dp_token backend-1 default backend
hy_start_dp backend-1 backend 21000
B_PID=$DP_PID
B_ADMIN=$DP_ADMIN
ready() { curl -sf "$1/ready" >/dev/null; }
hy_check "the sidecar becomes ready" hy_wait_for 15 ready "$B_ADMIN"
# ldns and its libcrypto are loaded by the transparent mode's DNS only (sidecar/dns_ldns.h)
hy_check "a sidecar without transparent mode maps neither libldns nor libcrypto/libssl" \
    bash -c "! grep -E 'libldns|libcrypto|libssl' /proc/$B_PID/maps"
# ...and a transparent one whose ldns cannot be loaded (libuv under its name
# here) does not run without DNS: it exits at start, naming what is missing
mkdir "$HY_TMP/noldns"
ln -s "$(ldd "$HY_BIN/hypha-dp" | awk '$1 == "libuv.so.1" {print $3}')" "$HY_TMP/noldns/libldns.so.3"
rc=0
out=$(LD_LIBRARY_PATH=$HY_TMP/noldns "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" \
    --ca-cert-file "$ZCA" --dataplane-file "$DATA/dp/dataplane.yaml" \
    --dataplane-token-file "$HY_TMP/backend-1.token" \
    --dataplane-var "name=noldns-1,service=backend,port=21100,app_port=21101,out_port=21102" \
    --admin-address 127.0.0.1:0 --transparent --transparent-outbound-port "$(hy_free_port)" \
    --transparent-inbound-port "$(hy_free_port)" --transparent-dns-port "$(hy_free_port)" 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
    hy_ok "transparent, ldns not loadable: hypha-dp exits ($rc)"
else
    hy_fail "transparent, ldns not loadable: hypha-dp ran on (rc 0)"
fi
hy_contains "naming the library and the function" \
    "libldns.so.3 has no function ldns_pkt2wire" "$out"
registered() { curl -sf "$E/meshes/default/dataplanes/$1" >/dev/null; }
hy_check "its Dataplane is registered in the zone" registered backend-1
at_global() { curl -sf "$GLOBAL_URL/meshes/default/dataplanes/east.$1" >/dev/null; }
hy_check "and reaches the global CP" hy_wait_for 10 at_global backend-1
curl -s "$B_ADMIN/config" >"$HY_TMP/b-config.json"
jq -r .cert "$HY_TMP/b-config.json" >"$HY_TMP/b-leaf.pem"
jq -r .chain "$HY_TMP/b-config.json" >"$HY_TMP/b-chain.pem"
jq -r .trustBundle "$HY_TMP/b-config.json" >"$HY_TMP/b-bundle.pem"
hy_contains "its certificate names spiffe://default/backend" "URI:spiffe://default/backend" \
    "$(openssl x509 -in "$HY_TMP/b-leaf.pem" -noout -text)"
hy_contains "and chains to the mesh root through the zone CA (openssl verify)" "OK" \
    "$(openssl verify -CAfile "$HY_TMP/b-bundle.pem" -untrusted "$HY_TMP/b-chain.pem" "$HY_TMP/b-leaf.pem" 2>&1)"
hy_contains "the root in its bundle is the global CP's" \
    "$(curl -s "$GLOBAL_URL/meshes/default/meshcaroots/ca-1" | jq -r .caCert | head -2 | tail -1)" \
    "$(cat "$HY_TMP/b-bundle.pem")"
# the last entry web matches decides (cp/policy.h): an Allow asking for its service tag
last_for_web='[.inbounds[0].permissions[] | select(.tags == {} or .tags["hypha.io/service"] == "web")] | last | .action'
hy_eq "MeshTrafficPermission lets web in" "Allow" "$(jq -r "$last_for_web" "$HY_TMP/b-config.json")"
hy_contains "its certificate carries its tags for callees' policies (kuma://KEY/VALUE)" \
    "URI:kuma://hypha.io/service/backend" "$(openssl x509 -in "$HY_TMP/b-leaf.pem" -noout -text)"
hy_contains "and its zone's" "URI:kuma://hypha.io/zone/east" \
    "$(openssl x509 -in "$HY_TMP/b-leaf.pem" -noout -text)"
hy_check "the key never appears in /config" bash -c "! grep -q 'PRIVATE KEY' '$HY_TMP/b-config.json'"
hy_check "promtool accepts the sidecar's metrics" promtool check metrics < <(curl -s "$B_ADMIN/metrics")

hy_dp_token web-1 default web
hy_start_dp web-1 web 22000
W_ADMIN=$DP_ADMIN
W_PID=$DP_PID
hy_check "a second sidecar becomes ready" hy_wait_for 15 ready "$W_ADMIN"
endpoint() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[0].endpoints[] | select(.name == "backend-1" and .port == 21000)' >/dev/null; }
hy_check "its outbound to backend lists backend-1's inbound" hy_wait_for 10 endpoint
insight() { curl -s "$E/meshes/default/dataplaneinsights/web-1" | jq -e '.subscriptions[-1].configVersion != null' >/dev/null; }
hy_check "the zone keeps a DataplaneInsight with the acked config" hy_wait_for 10 insight

# ---- a deny reaches the sidecar
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: deny-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
denied() { [ "$(curl -s "$B_ADMIN/config" | jq -r "$last_for_web")" = Deny ]; }
hy_check "a Deny on the global CP reaches the backend sidecar's config" hy_wait_for 10 denied

# ---- MeshTrust: a CA applied on the global CP reaches the zone and the
# sidecar's trust bundle, each certificate once
corp_ca() { # corp_ca NAME: a P-256 CA in $HY_TMP/NAME.pem (+ NAME.key)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
        -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$HY_TMP/$1.key" -out "$HY_TMP/$1.pem" 2>/dev/null
}
# trust NAME DOMAIN FILE...: a MeshTrust of mesh default, one Pem bundle per file
trust() {
    local name=$1 domain=$2 f
    shift 2
    printf 'type: MeshTrust\nmesh: default\nname: %s\nspec:\n  trustDomain: %s\n  caBundles:\n' \
        "$name" "$domain"
    for f in "$@"; do
        printf '    - type: Pem\n      pem:\n        value: |\n'
        sed 's/^/          /' "$f"
    done
}
# the builtin root is listed in a MeshTrust too (as Kuma lists a mesh
# identity's CA), managed by the global CP and synced like any other
managed=$(curl -sf "$GLOBAL_URL/meshes/default/meshtrusts/ca-1")
hy_eq "the builtin root ca-1 is listed in MeshTrust ca-1, for trust domain default" default \
    "$(jq -r .spec.trustDomain <<<"$managed")"
hy_eq "labelled hypha.io/managed-by: builtin-ca" builtin-ca \
    "$(jq -r '.labels["hypha.io/managed-by"]' <<<"$managed")"
hy_eq "holding the root's certificate" "$(curl -s "$GLOBAL_URL/meshes/default/meshcaroots/ca-1" | jq -r .caCert)" \
    "$(jq -r '.spec.caBundles[0].pem.value' <<<"$managed")"
hy_check "and it reaches the zone" curl -sf "$E/meshes/default/meshtrusts/ca-1" -o /dev/null
corp_ca corp
trust corp default "$HY_TMP/corp.pem" >"$HY_TMP/corp-trust.yaml"
hy_eq "a MeshTrust for the mesh's own trust domain applies without a warning" "" \
    "$(ctl apply -f "$HY_TMP/corp-trust.yaml" 2>&1 >/dev/null)"
at_zone() { curl -sf "$E/meshes/default/meshtrusts/$1" >/dev/null; }
hy_check "it reaches the zone" hy_wait_for 10 at_zone corp
# a user's MeshTrust is never overwritten by the one listing a new root
trust ca-2 default "$HY_TMP/corp.pem" | ctl apply -f - >/dev/null
out=$(printf 'type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-2\n  backends:\n    - {name: ca-1, type: builtin}\n    - {name: ca-2, type: builtin}\n' |
    ctl apply -f - 2>&1) && hy_fail "a new root overwrote the user's MeshTrust ca-2"
hy_contains "enabling a root named as a user's MeshTrust fails, naming it" \
    "backend ca-2: its new root is listed in MeshTrust default/ca-2, and a MeshTrust of that name exists: rename or delete it first" "$out"
hy_eq "and leaves the mesh on ca-1" ca-1 "$(curl -sf "$GLOBAL_URL/meshes/default" | jq -r .mtls.enabledBackend)"
hy_eq "and the user's MeshTrust as it was" "$(sed -n 2p "$HY_TMP/corp.pem")" \
    "$(curl -sf "$GLOBAL_URL/meshes/default/meshtrusts/ca-2" | jq -r '.spec.caBundles[0].pem.value' | sed -n 2p)"
ctl delete meshtrust ca-2 -m default >/dev/null
corp_line=$(sed -n 2p "$HY_TMP/corp.pem")
in_bundle() { curl -s "$B_ADMIN/config" | jq -r .trustBundle | grep -qF "$1"; }
hy_check "and its CA is in the sidecar's trust bundle" hy_wait_for 10 in_bundle "$corp_line"
root_line=$(curl -s "$GLOBAL_URL/meshes/default/meshcaroots/ca-1" | jq -r .caCert | sed -n 2p)
hy_check "beside the mesh root" in_bundle "$root_line"
hy_check "the sidecar still takes its config (its own chain verifies)" ready "$B_ADMIN"
curl -s "$GLOBAL_URL/meshes/default/meshcaroots/ca-1" | jq -r .caCert >"$HY_TMP/mesh-root.pem"
trust corp-again default "$HY_TMP/corp.pem" "$HY_TMP/mesh-root.pem" | ctl apply -f - >/dev/null
hy_check "a second MeshTrust with the same CA and the mesh root reaches the zone" \
    hy_wait_for 10 at_zone corp-again
bundle_count() { curl -s "$B_ADMIN/config" | jq -r .trustBundle | grep -c 'BEGIN CERTIFICATE'; }
certs_in_bundle() { [ "$(bundle_count)" = "$1" ]; }
hy_check "the bundle holds each certificate once (by fingerprint)" hy_wait_for 5 certs_in_bundle 2
ctl delete meshtrust corp-again -m default >/dev/null
ctl delete meshtrust corp -m default >/dev/null
hy_check "deleting both MeshTrusts takes the CA out of the bundle" hy_wait_for 10 certs_in_bundle 1
# refused at apply: what is wrong, in which bundle, which certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=leaf \
    -addext "basicConstraints=critical,CA:false" -keyout "$HY_TMP/leaf.key" \
    -out "$HY_TMP/leaf.pem" 2>/dev/null
trust bad default "$HY_TMP/corp.pem" "$HY_TMP/leaf.pem" >"$HY_TMP/bad-trust.yaml"
out=$(ctl apply -f "$HY_TMP/bad-trust.yaml" 2>&1) && hy_fail "a MeshTrust with a leaf was accepted"
hy_contains "a MeshTrust holding a certificate that is not a CA is refused, naming it" \
    "spec.caBundles[1].pem.value: MeshTrust default/bad: certificate 0: the CA certificate is not a CA" "$out"
out=$(ctl apply --dry-run -f "$HY_TMP/bad-trust.yaml" 2>&1) &&
    hy_fail "a dry run accepted a MeshTrust with a leaf"
hy_contains "a dry run checks the certificates as a real apply does" \
    "spec.caBundles[1].pem.value: MeshTrust default/bad: certificate 0: the CA certificate is not a CA" "$out"
cat "$HY_TMP/corp.pem" "$HY_TMP/corp.key" >"$HY_TMP/cert-and-key.pem"
trust bad default "$HY_TMP/cert-and-key.pem" >"$HY_TMP/bad-trust.yaml"
out=$(ctl apply -f "$HY_TMP/bad-trust.yaml" 2>&1) && hy_fail "a MeshTrust with a key was accepted"
hy_contains "one holding a private key is refused" \
    "spec.caBundles[0].pem.value: holds a private key: only CA certificates belong here" "$out"
hy_eq "and neither was stored" 404 "$(hy_status GET "$GLOBAL_URL/meshes/default/meshtrusts/bad")"
trust other-td corp.example.com "$HY_TMP/corp.pem" >"$HY_TMP/td-trust.yaml"
hy_contains "a MeshTrust for another trust domain draws a warning: its CAs are not sent to the sidecars" \
    "spec.trustDomain: accepted, not honoured: the sidecars of mesh default accept only peers whose SPIFFE ID is spiffe://default/..., and a CA trusted for another domain must not vouch for this mesh's identities, so these CAs are not sent to them" \
    "$(ctl apply -f "$HY_TMP/td-trust.yaml" 2>&1 >/dev/null)"

# ---- renewal at 80 % of a 20 s certificate, without a new connection
serial() { openssl x509 -noout -serial < <(curl -s "$1/config" | jq -r .cert); }
s1=$(serial "$B_ADMIN")
renewed() { [ "$(serial "$B_ADMIN")" != "$s1" ]; }
hy_check "the certificate is renewed before it expires" hy_wait_for 25 renewed
hy_check "the zone logged the renewal" grep -q "default/backend-1: certificate renewed" "$ZONE_LOG_east"
hy_check "still ready" ready "$B_ADMIN"

# ---- refusals
hy_dp_token someone-else default web
cp "$HY_TMP/someone-else.token" "$HY_TMP/impostor.token"
hy_start_dp impostor web 23000
hy_check "a token for another Dataplane is refused" \
    hy_wait_for 10 grep -q "the dataplane token is for Dataplane someone-else, not impostor" "$ZONE_LOG_east"
hy_stop "$DP_PID" || true
hy_dp_token wrong-mesh default web
sed 's/^mesh: default/mesh: other/' "$DATA/dp/dataplane.yaml" >"$HY_TMP/other.yaml"
"$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --dataplane-file "$HY_TMP/other.yaml" --dataplane-token-file "$HY_TMP/wrong-mesh.token" \
    --dataplane-var "name=wrong-mesh,service=web,port=24000,app_port=24001,out_port=24002" \
    --admin-address 127.0.0.1:0 >"$HY_TMP/dp-wrong-mesh.log" 2>&1 &
wm=$!
HY_PIDS+=("$wm")
hy_check "a token for another mesh is refused" \
    hy_wait_for 10 grep -q "the dataplane token is for mesh default, not other" "$ZONE_LOG_east"
hy_stop "$wm" || true
printf 'garbage\n' >"$HY_TMP/junk.token"
cp "$HY_TMP/junk.token" "$HY_TMP/junk-dp.token"
hy_start_dp junk-dp web 25000
hy_check "a malformed token is refused" hy_wait_for 10 grep -q "dataplane token refused" "$ZONE_LOG_east"
hy_stop "$DP_PID" || true

# ---- the zone goes away: the sidecar keeps its config; it comes back
kill -9 "$ZONE_PID_east"
wait "$ZONE_PID_east" 2>/dev/null || true
hy_check "with the zone CP SIGKILLed the sidecar stays ready" ready "$B_ADMIN"
hy_eq "and keeps its config" "Deny" "$(curl -s "$B_ADMIN/config" | jq -r "$last_for_web")"
hy_start_zone east --dp-address "127.0.0.1:$DP_PORT"
E=$ZONE_URL_east
reconnected() { grep -q "default/$1 connected from" "$ZONE_LOG_east"; }
hy_check "the sidecars reconnect when the zone is back" hy_wait_for 20 reconnected backend-1
hy_wait_for 20 reconnected web-1
# each named the config parts it held (DpHello.held): the restarted zone
# sends each only what differs, its new certificate (one Identity part)
zmetric() { curl -s "$E/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
both_updated() { [ "$(zmetric hypha_dp_server_config_updates_total)" -ge 2 ] 2>/dev/null; }
hy_check "both get a config update from the restarted zone" hy_wait_for 20 both_updated
hy_eq "one part each: the rest was held" "$(zmetric hypha_dp_server_config_updates_total)" \
    "$(zmetric hypha_dp_server_config_parts_total)"
hy_check "and the sidecar applied it" hy_wait_for 10 ready "$B_ADMIN"

# ---- a clean exit deregisters
hy_stop "$W_PID"
gone() { ! curl -sf "$E/meshes/default/dataplanes/web-1" >/dev/null; }
hy_check "a sidecar that exits cleanly is deregistered in the zone" hy_wait_for 10 gone
gone_global() { ! curl -sf "$GLOBAL_URL/meshes/default/dataplanes/east.web-1" >/dev/null; }
hy_check "and on the global CP" hy_wait_for 10 gone_global

# ---- a sidecar that vanishes without a goodbye is removed after --dp-cleanup-age
hy_check "SIGTERM stops the zone" hy_stop "$ZONE_PID_east"
hy_start_zone east --dp-address "127.0.0.1:$DP_PORT" --dp-cleanup-age 2s
E=$ZONE_URL_east
hy_check "backend-1 reconnects to the zone (now cleaning up after 2 s)" hy_wait_for 20 reconnected backend-1
there() { curl -sf "$E/meshes/default/dataplanes/backend-1" >/dev/null; }
hy_check "and stays while connected" there
# a zone ingress too: Online while connected (ZoneIngressInsight), Offline
# once SIGKILLed, removed after --dp-cleanup-age
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
zctl generate zone-ingress-token --name ingress-1 --valid-for 1h >"$HY_TMP/ingress-1.token"
"$HY_BIN/hypha-ingress" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --ingress-file "$DATA/dp/ingress.yaml" --token-file "$HY_TMP/ingress-1.token" \
    --ingress-var "name=ingress-1,address=127.0.0.1,advertised=127.0.0.1,port=$(hy_free_port)" \
    --admin-address 127.0.0.1:0 --workers 1 >>"$HY_TMP/ingress-1.log" 2>&1 &
I_PID=$!
HY_PIDS+=("$I_PID")
ing_status() { zctl inspect zoneingresses | awk -v s="$1" '$1 == "ingress-1" && $5 == s {f = 1} END {exit !f}'; }
hy_check "inspect zoneingresses: ingress-1 Online in zone east" hy_wait_for 15 ing_status Online
ing_global() { curl -sf "$GLOBAL_URL/zoneingressinsights/east.ingress-1" >/dev/null; }
hy_check "its ZoneIngressInsight reaches the global CP" hy_wait_for 10 ing_global
kill -9 "$I_PID"
wait "$I_PID" 2>/dev/null || true
hy_check "SIGKILLed, it is Offline" hy_wait_for 10 ing_status Offline
igone() { ! zctl get zoneingress ingress-1 >/dev/null 2>&1 && ! curl -sf "$E/zoneingressinsights/ingress-1" >/dev/null; }
hy_check "and removed, with its insight, once 2 s have passed" hy_wait_for 15 igone
hy_check "the zone says why" grep -q "ZoneIngress ingress-1 removed: disconnected for more than 2s" "$ZONE_LOG_east"
igone_global() { ! curl -sf "$GLOBAL_URL/zoneingresses/east.ingress-1" >/dev/null && ! ing_global; }
hy_check "and from the global CP too" hy_wait_for 10 igone_global
kill -9 "$B_PID"
wait "$B_PID" 2>/dev/null || true
bgone() { ! there; }
hy_check "SIGKILLed, backend-1's Dataplane is removed once 2 s have passed" hy_wait_for 15 bgone
hy_check "the zone says why" grep -q "default/backend-1 removed: disconnected for more than 2s without deregistering" "$ZONE_LOG_east"
bgone_global() { ! curl -sf "$GLOBAL_URL/meshes/default/dataplanes/east.backend-1" >/dev/null; }
hy_check "and it goes from the global CP too" hy_wait_for 10 bgone_global
hy_check "SIGTERM stops the zone" hy_stop "$ZONE_PID_east"
hy_check "SIGTERM stops the global CP" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
