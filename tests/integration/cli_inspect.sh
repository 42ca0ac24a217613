#!/usr/bin/env bash
# hyphactl explains every policy decision, as kumactl does, against a real
# global CP, zone east and two sidecars (web-1 with tags kuma.io/service:
# web, env: dev; backend-1 with labels app: backend), as in policies.sh:
# inspect dataplanes (zone, services, status, tags, certificate expiry,
# hypha-dp's version), inspect dataplane
# --type=rules|policies|config|stats (config and stats from the zone, a 400
# naming the zone on the global CP), explain (allowed, denied, shadow-denied: what the
# sidecar does, checked with real calls), and the errors: an unknown
# dataplane or inbound named in the message with a non-zero exit, an
# unknown --type, missing arguments and flags (exit 2).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

hy_start_mesh_zone 1h # ctl: hyphactl on the global CP; E: the zone's API
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }

B_PORT=$(hy_free_ports 3)
W_PORT=$(hy_free_ports 3)
while [ $((W_PORT - B_PORT)) -lt 3 ] && [ $((B_PORT - W_PORT)) -lt 3 ]; do W_PORT=$(hy_free_ports 3); done
sed -e 's/^name: {{ name }}/name: {{ name }}\nlabels:\n  app: backend/' "$DATA/dp/dataplane.yaml" \
    >"$HY_TMP/backend.yaml"
sed -e 's/        kuma.io\/service: {{ service }}/        kuma.io\/service: {{ service }}\n        env: dev/' \
    "$DATA/dp/dataplane.yaml" >"$HY_TMP/web.yaml"
"$HY_BIN/hypha-test-echo" $((B_PORT + 1)) >"$HY_TMP/echo.log" 2>&1 &
HY_PIDS+=($!)
hy_wait_for 5 grep -q listening "$HY_TMP/echo.log"
hy_dp_token backend-1 default backend
hy_start_dp backend-1 backend "$B_PORT" --dataplane-file "$HY_TMP/backend.yaml"
B_ADMIN=$DP_ADMIN
hy_dp_token web-1 default web
hy_start_dp web-1 web "$W_PORT" --dataplane-file "$HY_TMP/web.yaml"
W_ADMIN=$DP_ADMIN
ready() { curl -sf "$1/ready" >/dev/null; }
hy_check "both sidecars become ready" hy_wait_for 15 ready "$B_ADMIN"
hy_wait_for 15 ready "$W_ADMIN"

CALL_PORT=$((W_PORT + 2))
call() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$CALL_PORT" || exit 1
        printf '%s\n' "$1" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
allowed() { [ "$(call ping)" = ping ]; }
denied() { [ "$(call ping)" != ping ]; }

# the policies: allow-all, then on backend a Deny for env: dev (web-1
# has it), a MeshTimeout both ways, a MeshRetry with a field the
# sidecar does not enforce
ctl delete meshtrafficpermission web-to-backend -m default >/dev/null
ctl apply -f - >/dev/null 2>&1 <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
---
type: MeshTrafficPermission
mesh: default
name: deny-dev
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshSubset, tags: {env: dev}}
      default: {action: Deny}
---
type: MeshTimeout
mesh: default
name: t
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {connectionTimeout: 3s, idleTimeout: 1h, http: {requestTimeout: 5s}}
  from:
    - targetRef: {kind: Mesh}
      default: {idleTimeout: 1h}
---
type: MeshRetry
mesh: default
name: r
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default: {http: {hostSelectionMaxAttempts: 3}}
YAML
# the zone's _config is what the sidecar got: inbounds and outbounds alike
same_config() {
    local want got
    want=$(curl -sf "$B_ADMIN/config" | jq -cS '{inbounds, outbounds}') || return 1
    got=$(zctl inspect dataplane backend-1 --type=config -o json | jq -cS '.config | {inbounds, outbounds}') || return 1
    [ "$want" = "$got" ] && grep -q deny-dev <<<"$got" && grep -q '"connectTimeout":"3s"' <<<"$got"
}
hy_check "inspect dataplane --type=config on the zone is the config backend-1's sidecar runs" \
    hy_wait_for 15 same_config
same_version() {
    local want got
    want=$(curl -sf "$B_ADMIN/config" | jq -r .version) || return 1
    got=$(zctl inspect dataplane backend-1 --type=config -o json) || return 1
    [ "$(jq -r .config.version <<<"$got")" = "$want" ] &&
        [ "$(jq -r .ackedVersion <<<"$got")" = "$want" ] &&
        [ "$(jq -r .connected <<<"$got")" = true ] &&
        [ "$(jq -r '.config.cert | length > 0' <<<"$got")" = true ]
}
hy_check "for a connected sidecar, _config is its session's config: the version it acked, its certificate" \
    hy_wait_for 15 same_version
hy_contains "inspect --type=config says it is connected and at which version" "# connected: version " \
    "$(zctl inspect dataplane backend-1 --type=config)"
hy_check "web-1 is denied (env: dev)" hy_wait_for 15 denied

# ---- inspect dataplanes
online() { zctl inspect dataplanes | grep -Eq "^default +$1 +.* Online "; }
hy_check "inspect dataplanes: backend-1 is Online" hy_wait_for 10 online backend-1
hy_check "inspect dataplanes: web-1 is Online" hy_wait_for 10 online web-1
o=$(zctl inspect dataplanes)
hy_eq "inspect dataplanes: kumactl's columns, with the zone, services and version" \
    "MESH NAME ZONE SERVICES TAGS STATUS LAST-CONNECTED TOTAL-UPDATES TOTAL-ERRORS CERT-EXPIRATION VERSION" \
    "$(head -n 1 <<<"$o" | tr -s ' ')"
hy_eq "inspect dataplanes: one row per dataplane" 3 "$(wc -l <<<"$o")"
hy_contains "inspect dataplanes: web-1's tags, sorted" "env=dev,hypha.io/service=web" "$(grep web-1 <<<"$o")"
DP_VERSION=$("$HY_BIN/hypha-dp" --version | awk '{print $2}')
hy_eq "inspect dataplanes: web-1 in zone east, service web, Online, its hypha-dp's version last" \
    "default web-1 east web env=dev,hypha.io/service=web Online $DP_VERSION" \
    "$(grep web-1 <<<"$o" | tr -s ' ' | cut -d' ' -f1-6) $(grep web-1 <<<"$o" | awk '{print $NF}')"
hy_eq "inspect dataplanes: backend-1 in zone east, service backend, its hypha-dp's version" \
    "east backend $DP_VERSION" "$(grep backend-1 <<<"$o" | awk '{print $3, $4, $NF}')"
hy_eq "the zone labels a registered Dataplane hypha.io/zone (Kuma's kuma.io/zone)" east \
    "$(curl -s "$E/meshes/default/dataplanes/web-1" | jq -r '.labels["hypha.io/zone"]')"
hy_eq "the insight holds the sidecar's version in Kuma's shape, version.kumaDp.version" "$DP_VERSION" \
    "$(curl -s "$E/meshes/default/dataplaneinsights/web-1" | jq -r '.subscriptions[-1].version.kumaDp.version')"
expiry=$(curl -s "$E/meshes/default/dataplaneinsights/backend-1" |
    jq -r '.mTLS.certificateExpirationTime | sub("\\.[0-9]+"; "") | fromdateiso8601 | strftime("%Y-%m-%d %H:%M:%S")')
hy_contains "inspect dataplanes: backend-1's certificate expiry, as its insight says" \
    "$expiry" "$(grep backend-1 <<<"$o")"
hy_eq "inspect dataplanes --mesh default -o json: both, each with its insight" "backend-1 true web-1 true" \
    "$(zctl inspect dataplanes --mesh default -o json |
        jq -r '[.items[] | .dataplane.name, (.dataplaneInsight.subscriptions | length > 0)] | join(" ")')"
hy_eq "inspect dataplanes -o json: the table's zone and version, where the table reads them" \
    "backend-1 east $DP_VERSION web-1 east $DP_VERSION" \
    "$(zctl inspect dataplanes -o json | jq -r '[.items[] | .dataplane.name, .dataplane.labels["hypha.io/zone"],
        .dataplaneInsight.subscriptions[-1].version.kumaDp.version] | join(" ")')"
hy_contains "inspect dataplanes -o yaml" "- dataplane:" "$(zctl inspect dataplanes -o yaml)"
hy_eq "inspect dataplanes --mesh of no dataplane: the header alone" 1 \
    "$(zctl inspect dataplanes --mesh nomesh | wc -l)"
g_online() { ctl inspect dataplanes | grep -Eq '^default +east\.backend-1 +.* Online '; }
hy_check "inspect dataplanes on the global CP: east.backend-1, Online" hy_wait_for 15 g_online
g_version() { [ "$(ctl inspect dataplanes | grep east.backend-1 | awk '{print $NF}')" = "$DP_VERSION" ]; }
hy_check "inspect dataplanes on the global CP: the version the zone recorded" hy_wait_for 15 g_version
hy_eq "inspect dataplanes on the global CP: east.backend-1 in zone east, service backend" "east backend" \
    "$(ctl inspect dataplanes | grep east.backend-1 | awk '{print $3, $4}')"

# ---- inspect dataplane --type=rules (the default)
o=$(zctl inspect dataplane backend-1)
hy_contains "rules: names the dataplane and its zone" "Dataplane backend-1 in mesh default (zone east)" "$o"
hy_eq "rules: the from entries in merge order, the deciding one last" \
    "1 any caller Allow MeshTrafficPermission/allow-all from[0]|2 env=dev Deny MeshTrafficPermission/deny-dev from[0]" \
    "$(grep -E '^    [0-9] ' <<<"$o" | tr -s ' ' | sed 's/^ //' | paste -sd'|')"
hy_contains "rules: each outbound value with the entry it came from" \
    "connectionTimeout     3s      MeshTimeout/t to[0]" "$o"
hy_contains "rules: each inbound value (MeshTimeout from and rules merged) with its entry" \
    "idleTimeout   1h      MeshTimeout/t from[0]" "$o"
hy_contains "rules: and the fields not enforced yet" \
    "r: spec.to[0].default.http.hostSelectionMaxAttempts: accepted, not enforced yet" "$o"
hy_eq "rules -o json is the API's _rules" "$(curl -s "$E/meshes/default/dataplanes/backend-1/_rules" | jq -cS .)" \
    "$(zctl inspect dataplane backend-1 --type=rules -o json | jq -cS .)"
hy_contains "rules -o yaml" $'rules:\n- type: MeshTrafficPermission' \
    "$(zctl inspect dataplane backend-1 -o yaml)"

# ---- --type=policies
o=$(zctl inspect dataplane backend-1 --type=policies)
hy_eq "policies: the ones selecting backend-1, where each is in effect" \
    "MeshTrafficPermission allow-all Mesh global inbound $B_PORT|MeshTrafficPermission deny-dev MeshService:backend global inbound $B_PORT|MeshTimeout t Mesh global inbound $B_PORT, outbound $((B_PORT + 2)) (backend)|MeshRetry r Mesh global outbound $((B_PORT + 2)) (backend)" \
    "$(tail -n +2 <<<"$o" | tr -s ' ' | paste -sd'|')"
hy_eq "policies -o json" "allow-all deny-dev t r" \
    "$(zctl inspect dataplane backend-1 --type=policies -o json | jq -r '[.items[].name] | join(" ")')"
hy_contains "policies on the global CP, by its name there" "deny-dev" \
    "$(ctl inspect dataplane east.backend-1 --type=policies)"

# ---- --type=config
o=$(zctl inspect dataplane backend-1 --type=config)
hy_contains "config: YAML under a comment naming the zone" \
    "# Dataplane backend-1 in mesh default: the config zone east computes for it" "$o"
hy_contains "config: the entries the sidecar enforces" "origin: MeshTrafficPermission/deny-dev from[0]" "$o"
hy_contains "config: the endpoints it dials" "name: backend-1" "$o"
no_key() { ! grep -q 'PRIVATE KEY' <<<"$1"; }
hy_check "config: never a private key (the sidecar's stays with it)" no_key "$o"
rc=0
o=$(ctl inspect dataplane east.backend-1 --type=config 2>&1) || rc=$?
hy_eq "config on the global CP: exit 1" 1 "$rc"
hy_contains "config on the global CP: says the zone computes it, and which" \
    "Error: Computed by the zone: the config of a Dataplane is computed by the zone control plane its sidecar connects to (zone east), not by this global control plane" "$o"
hy_eq "the global CP's _config is a 400" 400 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/dataplanes/east.backend-1/_config")"

# ---- --type=stats: the sidecar's metrics, through its zone (dp_stats.sh has the rest)
hy_contains "stats on the zone: the sidecar's own metrics" "hypha_dp_connected 1" \
    "$(zctl inspect dataplane backend-1 --type=stats)"
rc=0
o=$(ctl inspect dataplane east.backend-1 --type=stats 2>&1) || rc=$?
hy_eq "stats on the global CP: exit 1" 1 "$rc"
hy_contains "stats on the global CP: says which zone asks the sidecar" \
    "Error: Served by the zone: the metrics of a Dataplane's sidecar are asked of it by the zone control plane it connects to (zone east), not by this global control plane" "$o"
hy_contains "and how to ask it" "inspect dataplane backend-1 --mesh default --type=stats" "$o"
hy_eq "the global CP's stats is a 400" 400 \
    "$(hy_status GET "$GLOBAL_URL/meshes/default/dataplanes/east.backend-1/stats")"

# ---- explain: what the sidecar does
o=$(zctl explain --from web-1 --to backend-1)
hy_eq "explain: denied, at backend-1's inbound" "web-1 -> backend-1 inbound $B_PORT (backend): denied" \
    "$(head -n 1 <<<"$o")"
hy_contains "explain: the deciding policy and entry" \
    "denied by MeshTrafficPermission/deny-dev from[0]: the last from entry the caller matches" "$o"
hy_eq "explain: what matched, in order" \
    "1. MeshTrafficPermission/allow-all from[0]: any caller -> Allow|2. MeshTrafficPermission/deny-dev from[0]: env=dev -> Deny (decides)" \
    "$(grep -E '^    [0-9]\. ' <<<"$o" | sed 's/^ *//' | paste -sd'|')"
hy_check "and the call is denied" denied
o=$(zctl explain --from kuma.io/service=web,env=prod --to "backend-1:$B_PORT")
hy_contains "explain --from tags: a web without env: dev is allowed" \
    "(a caller with kuma.io/service=web,env=prod) -> backend-1 inbound $B_PORT (backend): allowed" "$o"
hy_contains "explain --to a service, on the global CP" \
    "east.web-1 -> east.backend-1 inbound $B_PORT (backend): denied" \
    "$(ctl explain --from east.web-1 --to backend)"
ctl apply -f - >/dev/null 2>&1 <<'YAML'
type: MeshTrafficPermission
mesh: default
name: deny-dev
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshSubset, tags: {env: dev}}
      default: {action: AllowWithShadowDeny}
YAML
shadow() { zctl explain --from web-1 --to backend-1 | head -n 1 | grep -q 'shadow-denied'; }
hy_check "explain: shadow-denied once deny-dev says AllowWithShadowDeny" hy_wait_for 15 shadow
hy_check "and the call goes through" hy_wait_for 15 allowed
hy_eq "explain -o json: the decision" AllowWithShadowDeny \
    "$(zctl explain --from web-1 --to backend-1 -o json | jq -r '.results[0].decision')"

# ---- L7 policies: what the sidecars get, each route and entry with its rule
ctl apply -f - >/dev/null 2>&1 <<'YAML'
type: MeshHTTPRoute
mesh: default
name: api-route
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches: [{path: {type: PathPrefix, value: /api}}]
          default:
            filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: b}]}}]
            backendRefs: [{kind: MeshService, name: backend, weight: 3}]
---
type: MeshRateLimit
mesh: default
name: backend-limit
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default: {local: {http: {requestRate: {num: 5, interval: 10s}}}}
YAML
routed() { zctl inspect dataplane web-1 | grep -q 'PathPrefix /api .*backend:3 .*RequestHeaderModifier .*MeshHTTPRoute/api-route to\[0\].rules\[0\]'; }
hy_check "rules: a MeshHTTPRoute's routes in the order the sidecar tries them" hy_wait_for 15 routed
hy_contains "rules: and Kuma's catch-all to the service" "default" \
    "$(zctl inspect dataplane web-1 | grep -E '^ +2 +PathPrefix / ')"
limited() { zctl inspect dataplane backend-1 | grep -q 'any caller .*http 5/10s.*MeshRateLimit/backend-limit from\[0\]'; }
hy_check "rules: a MeshRateLimit's entries at the inbound" hy_wait_for 15 limited
hy_contains "policies: where the route is in effect" "outbound" \
    "$(zctl inspect dataplane web-1 --type=policies | grep api-route)"

# ---- errors: named, non-zero
err() { # err EXPECTED-RC NEEDLE DESCRIPTION CMD...: the exit status and stderr of CMD
    local want=$1 needle=$2 what=$3 rc=0 out
    shift 3
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    hy_eq "$what: exit $want" "$want" "$rc"
    hy_contains "$what: says why" "$needle" "$out"
}
err 1 "Error: Not found: no Dataplane nope in mesh default" "inspect dataplane of an unknown dataplane" \
    zctl inspect dataplane nope
err 1 "Error: Not found: no Dataplane nope in mesh default" "--type=config of an unknown dataplane" \
    zctl inspect dataplane nope --type=config
err 1 "no Dataplane backend-1 in mesh other" "inspect dataplane in another mesh" \
    zctl inspect dataplane backend-1 --mesh other
err 1 "no Dataplane backend-1 in mesh default (did you mean east.backend-1?)" \
    "inspect dataplane on the global CP by its zone's name" ctl inspect dataplane backend-1
err 2 "Error: unknown --type \"envoy\" (rules, policies, config or stats)" "an unknown --type" \
    zctl inspect dataplane backend-1 --type=envoy
err 2 "Error: missing arguments: hyphactl inspect dataplane NAME" "inspect dataplane without NAME" \
    zctl inspect dataplane
err 2 "Error: unknown output format \"wide\"" "an unknown -o" zctl inspect dataplanes -o wide
err 1 "no Dataplane nope in mesh default, and no Dataplane of the mesh serves a service of that name" \
    "explain --to an unknown dataplane" zctl explain --from web-1 --to nope
err 1 "Dataplane backend-1 has no inbound 1 (its inbounds: $B_PORT)" "explain --to an unknown inbound" \
    zctl explain --from web-1 --to backend-1:1
err 1 "is not KEY=VALUE" "explain --from bad tags" zctl explain --from 'env=' --to backend-1
err 2 "Error: --to is required" "explain without --to" zctl explain --from web-1
err 2 "Error: --from and --to are required" "explain without --from and --to" zctl explain
err 2 "Run 'hyphactl explain --help' for usage." "and it says where the usage is" zctl explain --to x

# ---- the completion script knows the commands
o=$(zctl completion bash)
hy_contains "completion: inspect's commands" '"inspect") words="zones dataplanes services zoneingresses dataplane"' "$o"
hy_contains "completion: --type's values" 'compgen -W "rules policies config stats"' "$o"

hy_stop "$GLOBAL_PID" || true
hy_check "no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$HY_TMP'/*.log"
hy_done
