#!/usr/bin/env bash
# hyphactl against the real hypha-global: control-plane configuration,
# apply (created/updated/unchanged, dry run, stdin, Kuma files, errors that
# write nothing), get in every format with paging and label filters,
# delete, zone tokens, inspect zones, version, completion, and HTTPS with a
# CA file.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG HYPHA_CA_CERT_FILE HYPHA_AUTH_TOKEN
ctl() { "$HY_BIN/hyphactl" "$@"; }
# run CMD...: runs CMD, its stdout and stderr in $o and its exit code in $rc
run() {
    rc=0
    "$@" >"$HY_TMP/out" 2>&1 || rc=$?
    o=$(cat "$HY_TMP/out")
}

hy_start_global g

# ---- control planes
run ctl config control-planes add --name it --address "$GLOBAL_URL"
hy_eq "add a control plane" 0 "$rc"
hy_check "the config file is private (0600)" test "$(stat -c %a "$HOME/.hypha/config.yaml")" = 600
hy_contains "list shows it" "it " "$(ctl config control-planes list)"
run ctl version
hy_contains "version reaches the server through the config" "Server: Hypha" "$o"
run ctl config control-planes add --name down --address http://127.0.0.1:9
hy_check "adding an unreachable control plane fails" test "$rc" -ne 0
run ctl --cp http://127.0.0.1:9 get meshes
hy_check "--cp overrides the current control plane" test "$rc" -ne 0
hy_contains "and says the connection was refused" "connection refused" "$o"
o=$(HYPHA_CP=http://127.0.0.1:9 ctl get meshes 2>&1 || true)
hy_contains "so does HYPHA_CP" "connection refused" "$o"

# ---- apply
run ctl apply -f "$DATA/mesh.yaml" -f "$DATA/zone.yaml" -f "$DATA/meshtrafficpermission.yaml" \
    -f "$DATA/meshretry.yaml"
hy_eq "apply several files" 0 "$rc"
hy_contains "reports created" "meshtrafficpermission/allow-web-to-backend created" "$o"
run ctl apply -f "$DATA/meshretry.yaml"
hy_contains "re-apply reports unchanged" "meshretry/retry-backend unchanged" "$o"
sed 's/maxConnectAttempt: 5/maxConnectAttempt: 6/' "$DATA/meshretry.yaml" >"$HY_TMP/r6.yaml"
run ctl apply -f "$HY_TMP/r6.yaml" --dry-run
hy_contains "dry run reports what would change" "updated" "$o"
hy_contains "and says it is a dry run" "dry run" "$o"
hy_contains "dry run wrote nothing" "maxConnectAttempt: 5" \
    "$(ctl get meshretry retry-backend -m default -o yaml)"
run ctl apply -f "$HY_TMP/r6.yaml"
hy_contains "apply reports updated" "meshretry/retry-backend updated" "$o"
o=$(ctl get mtp allow-web-to-backend -m default -o yaml | ctl apply -f - 2>&1)
hy_eq "get -o yaml piped into apply -f - is unchanged" \
    "meshtrafficpermission/allow-web-to-backend unchanged" "$o"
cat >"$HY_TMP/kuma.yaml" <<'EOF'
type: MeshTrafficPermission
mesh: default
name: from-kuma
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: MeshSubset, tags: {kuma.io/zone: east}}
      default: {action: Deny}
EOF
ctl apply -f "$HY_TMP/kuma.yaml" >/dev/null
hy_contains "a Kuma file applies unchanged, kuma.io read as hypha.io" "hypha.io/zone: east" \
    "$(ctl get mtp from-kuma -m default -o yaml)"
cat >"$HY_TMP/k8s.yaml" <<'EOF'
apiVersion: kuma.io/v1alpha1
kind: MeshRetry
metadata:
  name: http-retries
  namespace: kuma-demo
  labels: {kuma.io/mesh: default}
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
      default:
        tcp: {maxConnectAttempt: 3}
        http: {numRetries: 5, hostSelectionMaxAttempts: 3}
        grpc: {numRetries: 5}
EOF
o=$(ctl apply -f "$HY_TMP/k8s.yaml" 2>&1)
hy_contains "a Kubernetes-shaped Kuma file applies" "meshretry/http-retries created" "$o"
hy_contains "what the data plane does not enforce yet is said, field by field" \
    "Warning: MeshRetry default/http-retries: spec.to[0].default.http.hostSelectionMaxAttempts: accepted, not enforced yet" "$o"
hy_check "and nothing it does enforce draws a warning" bash -c "! grep -q 'maxConnectAttempt\|http.numRetries\|grpc.numRetries' <<<'$o'"
hy_contains "the namespace is kept as Kuma's global CP shows it" "k8s.kuma.io/namespace: kuma-demo" \
    "$(ctl get meshretry http-retries -m default -o yaml)"
printf 'type: Zone\nname: ok-zone\n---\ntype: Zone\nname: Bad\n' >"$HY_TMP/bad.yaml"
run ctl apply -f "$HY_TMP/bad.yaml"
hy_check "an invalid document fails apply" test "$rc" -ne 0
hy_contains "the error names file, line and column" "bad.yaml:5:7: name: invalid name" "$o"
run ctl get zone ok-zone
hy_check "and the valid document was not written" test "$rc" -ne 0
printf 'type: MeshRetry\nmesh: nowhere\nname: r\nspec:\n  targetRef: {kind: Mesh}\n  to: [{targetRef: {kind: Mesh}, default: {}}]\n' \
    >"$HY_TMP/nomesh.yaml"
run ctl apply -f "$HY_TMP/nomesh.yaml"
hy_check "a server-side refusal fails apply" test "$rc" -ne 0
hy_contains "and shows the API's cause" 'mesh "nowhere" does not exist' "$o"
run ctl apply -f "$DATA/dataplane.yaml"
hy_contains "a Dataplane is refused on global" "come from zones" "$o"

# ---- get
o=$(ctl get meshes)
hy_contains "table header for meshes" "NAME" "$(echo "$o" | head -n 1)"
hy_contains "the mesh is listed" "default" "$o"
hy_contains "dataplanes have a ZONE column" "ZONE" "$(ctl get dataplanes)"
for i in $(seq -w 1 12); do
    printf -- '---\ntype: MeshTimeout\nmesh: default\nname: t-%s\nlabels: {tier: "%s"}\nspec:\n  targetRef: {kind: Mesh}\n  rules: [{default: {idleTimeout: %ss}}]\n' \
        "$i" "$((10#$i % 3))" "$((10#$i))"
done >"$HY_TMP/many.yaml"
ctl apply -f "$HY_TMP/many.yaml" >/dev/null
hy_eq "get follows every page" 12 "$(ctl get meshtimeouts | tail -n +2 | wc -l)"
hy_eq "--size gives one page" 5 "$(ctl get meshtimeouts --size 5 2>/dev/null | grep -c '^default')"
hy_eq "--label filters" 4 "$(ctl get meshtimeouts --label tier=0 | tail -n +2 | wc -l)"
hy_eq "-o json is the API's list" 12 "$(ctl get meshtimeouts -o json | jq '.items | length')"
hy_eq "-o yaml prints documents" 12 "$(ctl get meshtimeouts -o yaml | grep -c '^type: MeshTimeout')"
run ctl get widgets
hy_check "an unknown type is an error" test "$rc" -ne 0

# ---- delete
run ctl delete meshtimeout t-01 -m default
hy_eq "delete" 0 "$rc"
run ctl get meshtimeout t-01 -m default
hy_check "a deleted resource is not found" test "$rc" -ne 0
hy_contains "and the error says so" "Not found" "$o"
run ctl delete zone nope
hy_check "deleting what is not there fails" test "$rc" -ne 0

# ---- zones and tokens
tok=$(ctl generate zone-token --zone east --valid-for 720h)
hy_eq "a generated zone token verifies" true \
    "$(curl -s -X POST "$GLOBAL_URL/tokens/zone/verify" -H 'Content-Type: application/json' \
        --data "{\"token\":\"$tok\"}" | jq -r .valid)"
o=$(ctl inspect zones)
hy_contains "inspect zones shows east Offline" "Offline" "$(echo "$o" | grep '^east')"

# ---- completion
ctl completion bash >"$HY_TMP/completion.bash"
hy_check "the bash completion script parses" bash -n "$HY_TMP/completion.bash"
words=$(bash -c ". '$HY_TMP/completion.bash'; COMP_WORDS=(hyphactl get meshtr); COMP_CWORD=2;
    _hyphactl 2>/dev/null || __start_hyphactl 2>/dev/null; echo \"\${COMPREPLY[*]}\"")
hy_contains "it completes resource types" "meshtrafficpermission" "$words"

# ---- HTTPS with a CA file
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$HY_TMP/key.pem" \
    -out "$HY_TMP/cert.pem" -days 1 -subj /CN=hypha-test -addext "subjectAltName=IP:127.0.0.1" \
    2>/dev/null
hy_stop "$GLOBAL_PID"
hy_start_global g --api-tls-address 127.0.0.1:0 --api-tls-cert "$HY_TMP/cert.pem" \
    --api-tls-key "$HY_TMP/key.pem"
hy_wait_for 10 grep -q 'API listening on https://' "$GLOBAL_LOG"
S=$(grep -o 'API listening on https://[^ ]*' "$GLOBAL_LOG" | sed 's/API listening on //')
run ctl --cp "$S" get meshes
hy_check "https without the CA file is refused" test "$rc" -ne 0
hy_contains "with a certificate error" "certificate" "$o"
# the HTTPS API asks for the admin token even from loopback (finding 4)
run ctl --cp "$S" --ca-cert-file "$HY_TMP/cert.pem" get meshes
hy_check "https without the admin token is refused, even from loopback" test "$rc" -ne 0
hy_contains "with 401 Unauthorized" "Unauthorized" "$o"
run ctl --cp "$S" --ca-cert-file "$HY_TMP/cert.pem" --auth-token "$(cat "$GLOBAL_DATA/admin-token")" \
    get meshes
hy_eq "https with the CA file and the token works" 0 "$rc"
hy_contains "and the data survived the restart" "default" "$o"
run ctl config control-planes add --name secure --address "$S" --ca-cert-file "$HY_TMP/cert.pem" \
    --auth-token "$(cat "$GLOBAL_DATA/admin-token")"
hy_eq "add an https control plane with CA and token" 0 "$rc"
hy_contains "and use it" "allow-web-to-backend" "$(ctl get mtp)"
ctl config control-planes switch --name it >/dev/null
hy_contains "switch back to the stale one" "connection refused" "$(ctl get meshes 2>&1 || true)"

hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$GLOBAL_LOG'"
hy_done
