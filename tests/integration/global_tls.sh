#!/usr/bin/env bash
# The HTTPS API and the admin token, seen from another host: hypha-global
# runs in one network namespace, clients in a second one joined by a veth
# pair, so they are not loopback. Skipped (77) without root or ip(8).
. "$(dirname "$0")/lib.sh"

ns=hyit$$
hy_netns_pair "${ns}s" "${ns}c" || exit 77
cd "$HY_TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
    -out cert.pem -days 1 -subj /CN=hypha-test \
    -addext "subjectAltName=IP:10.213.77.1,IP:127.0.0.1" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-key.pem \
    -out other.pem -days 1 -subj /CN=someone-else 2>/dev/null

HY_NETNS=${ns}s hy_start_global g --api-tls-address 10.213.77.1:0 \
    --api-tls-cert "$HY_TMP/cert.pem" --api-tls-key "$HY_TMP/key.pem"
hy_wait_for 10 grep -q 'API listening on https://' "$GLOBAL_LOG"
port=$(grep -o 'API listening on https://[^ ]*' "$GLOBAL_LOG" | sed 's/.*://')
S=https://10.213.77.1:$port
token=$(cat "$GLOBAL_DATA/admin-token")
remote() { ip netns exec "${ns}c" "$@"; }
code() { remote curl -s -o /dev/null -w '%{http_code}' --cacert "$HY_TMP/cert.pem" "$@" || true; }

hy_eq "remote client without a token: 401" 401 "$(code "$S/meshes")"
hy_eq "remote client with a wrong token: 401" 401 \
    "$(code -H "Authorization: Bearer 0000$token" "$S/meshes")"
hy_eq "remote client with the admin token: 200" 200 \
    "$(code -H "Authorization: Bearer $token" "$S/meshes")"
hy_eq "remote write with the token" 201 \
    "$(code -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/yaml' \
        --data-binary $'type: Zone\nname: east\n' "$S/zones/east")"
hy_eq "loopback client on the plain API needs no token" 200 \
    "$(ip netns exec "${ns}s" curl -s -o /dev/null -w '%{http_code}' "$GLOBAL_URL/zones/east")"
rc=0
remote curl -s -o /dev/null --cacert "$HY_TMP/other.pem" "$S/ready" || rc=$?
hy_eq "a client trusting another CA refuses the server (curl 60)" 60 "$rc"
out=$(remote openssl s_client -connect 10.213.77.1:"$port" -CAfile "$HY_TMP/cert.pem" \
    </dev/null 2>/dev/null || true)
hy_contains "openssl s_client verifies the server" "Verification: OK" "$out"
hy_contains "and sees our certificate" "CN = hypha-test" "$out"
rc=0
remote curl -s -o /dev/null "http://10.213.77.1:$port/ready" || rc=$?
hy_check "plain HTTP on the TLS port gets no answer" test "$rc" -ne 0
hy_contains "the refusal is logged" "refused, no valid admin token" "$(cat "$GLOBAL_LOG")"

hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$GLOBAL_LOG'"
hy_done
