#!/usr/bin/env bash
# Policies combine as Kuma's docs say, end to end on real sidecars: web
# (tags kuma.io/service: web, env: dev) calls backend (Dataplane labels
# app: backend) through both sidecars, under each row of the table in the
# README's "Policies: how they combine" (later entries override earlier
# ones; a more specific targetRef wins; MeshSubset on any tag; Dataplane
# by labels; the zone tag), MeshTrafficPermission rules, a Kubernetes-
# shaped file and AllowWithShadowDeny. A third sidecar, other (tags
# kuma.io/service: other), calls backend too: where a policy lets web in
# and no one else, other must be refused. Each Deny path has a call that
# must fail, and backend-1 must log refusing that caller (so a call that
# never reached it does not pass for a denial): a fail-open is the worst
# bug a mesh can have. The control planes explain each decision (_rules,
# _explain, hyphactl explain).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

hy_start_mesh_zone 1h
ctl delete meshtrafficpermission web-to-backend -m default >/dev/null

B_PORT=$(hy_free_ports 3)
W_PORT=$(hy_free_ports 3)
while [ $((W_PORT - B_PORT)) -lt 3 ] && [ $((B_PORT - W_PORT)) -lt 3 ]; do W_PORT=$(hy_free_ports 3); done
apart() { # apart P Q...: P's three ports overlap none of Q's
    local p=$1 q
    shift
    for q; do [ $((p - q)) -ge 3 ] || [ $((q - p)) -ge 3 ] || return 1; done
}
O_PORT=$(hy_free_ports 3)
while ! apart "$O_PORT" "$B_PORT" "$W_PORT"; do O_PORT=$(hy_free_ports 3); done

# the two Dataplanes: backend with labels, web with one more tag than its service
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
hy_dp_token other-1 default other
hy_start_dp other-1 other "$O_PORT"
O_ADMIN=$DP_ADMIN
ready() { curl -sf "$1/ready" >/dev/null; }
hy_check "the three sidecars become ready" hy_wait_for 15 ready "$B_ADMIN"
hy_wait_for 15 ready "$W_ADMIN"
hy_wait_for 15 ready "$O_ADMIN"
endpoint() { curl -s "$1/config" | jq -e '.outbounds[0].endpoints | length > 0' >/dev/null; }
hy_check "web-1 knows backend-1's inbound" hy_wait_for 10 endpoint "$W_ADMIN"
hy_check "other-1 knows backend-1's inbound" hy_wait_for 10 endpoint "$O_ADMIN"

# call [PORT]: one line through a sidecar's outbound to backend (web-1's
# unless PORT names another), echoed back when the call goes through
call() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/${1:-$((W_PORT + 2))}" || exit 1
        printf 'ping\n' >&3
        IFS= read -r -t 5 line <&3 || exit 1
        printf '%s\n' "$line"
    ) 2>/dev/null
}
allowed() { [ "$(call)" = ping ]; }
denied() { [ "$(call)" != ping ]; }
# denied_at_backend CALLER: CALLER's call fails, and backend-1 logs one
# more refusal of CALLER's SPIFFE ID: the deny was enforced at its inbound
refusals() { grep -c "access direction=inbound .*id=spiffe://default/$1 .*result=denied" "$HY_TMP/dp-backend-1.log" || true; }
refused_since() { [ "$(refusals "$1")" -gt "$2" ]; }
denied_at_backend() {
    local port before
    case $1 in web) port=$((W_PORT + 2)) ;; other) port=$((O_PORT + 2)) ;; esac
    before=$(refusals "$1")
    [ "$(call "$port")" != ping ] && hy_wait_for 5 refused_since "$1" "$before"
}
other_allowed() { [ "$(call $((O_PORT + 2)))" = ping ]; }

# applied: the MeshTrafficPermissions now in the mesh, which backend-1's
# config must name (every one selecting it appears as an entry's origin)
ROW_POLICIES=()
# row NAME... < YAML: replaces the previous row's policies by the ones in
# YAML (named NAME...), and waits until backend-1's config is made of them
row() {
    local p
    for p in "${ROW_POLICIES[@]}"; do ctl delete meshtrafficpermission "$p" -m default >/dev/null; done
    ROW_POLICIES=("$@")
    [ $# -eq 0 ] || ctl apply -f - >/dev/null
    hy_wait_for 15 config_is "$@"
}
config_is() {
    local origins
    origins=$(curl -s "$B_ADMIN/config" |
        jq -r '[.inbounds[0] | (.permissions // [])[], (.deny // [])[], (.allow // [])[],
                (.allowWithShadowDeny // [])[] | .origin | split(" ")[0] | split("/")[1]] | unique | join(" ")')
    [ "$origins" = "$(printf '%s\n' "$@" | sort -u | paste -sd' ')" ]
}

# ---- nothing allows: denied (mTLS on, no MeshTrafficPermission, as in Kuma)
hy_check "with no MeshTrafficPermission web is denied" hy_wait_for 15 denied

# ---- row 1: later entries of one policy override earlier ones
row mesh-policy <<'YAML'
type: MeshTrafficPermission
mesh: default
name: mesh-policy
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
hy_check "row 1: [Mesh Deny, MeshService web Allow] in one policy: web is allowed" allowed
hy_check "row 1: and other, which only the Mesh Deny matches, is denied at backend-1" \
    denied_at_backend other
hy_eq "_explain: other is denied by the Mesh Deny entry" "Deny MeshTrafficPermission/mesh-policy from[0]" \
    "$(curl -s "$E/meshes/default/_explain?from=other-1&to=backend" | jq -r '.results[0] | "\(.decision) \(.origin)"')"
hy_eq "_explain names the deciding entry" "MeshTrafficPermission/mesh-policy from[1]" \
    "$(curl -s "$E/meshes/default/_explain?from=web-1&to=backend" | jq -r '.results[0].origin')"

# ---- row 2: a more specific top-level targetRef wins
row mesh-deny backend-allows-web <<'YAML'
type: MeshTrafficPermission
mesh: default
name: mesh-deny
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
---
type: MeshTrafficPermission
mesh: default
name: backend-allows-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
hy_check "row 2: Mesh Deny, MeshService backend allows web: web is allowed" allowed
hy_check "row 2: and other, which the more specific policy does not name, is denied at backend-1" \
    denied_at_backend other
hy_eq "_explain: other is denied by mesh-deny's entry" "Deny MeshTrafficPermission/mesh-deny from[0]" \
    "$(curl -s "$E/meshes/default/_explain?from=other-1&to=backend" | jq -r '.results[0] | "\(.decision) \(.origin)"')"
rules=$(curl -s "$E/meshes/default/dataplanes/backend-1/_rules")
hy_eq "_rules lists the selecting policies in merge order" "mesh-deny backend-allows-web" \
    "$(jq -r '.rules[] | select(.type == "MeshTrafficPermission") | [.policies[].name] | join(" ")' <<<"$rules")"

# ---- rows 1 and 2 over an allow-all merged before them (the same Mesh
# targetRef, and a name that sorts after theirs: as in Kuma, the smaller
# name wins): other is let in unless the Deny entry is enforced, so these
# denials are the Deny's, not mTLS's deny-by-default
row open-all mesh-policy <<'YAML'
type: MeshTrafficPermission
mesh: default
name: open-all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
---
type: MeshTrafficPermission
mesh: default
name: mesh-policy
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
hy_check "row 1 over allow-all: web is allowed" allowed
hy_check "row 1 over allow-all: other is denied at backend-1 by the Mesh Deny entry" \
    denied_at_backend other
hy_eq "_explain: by mesh-policy's Mesh Deny, after open-all's Allow" \
    "Deny MeshTrafficPermission/mesh-policy from[0]" \
    "$(curl -s "$E/meshes/default/_explain?from=other-1&to=backend" | jq -r '.results[0] | "\(.decision) \(.origin)"')"
row open-all mesh-deny backend-allows-web <<'YAML'
type: MeshTrafficPermission
mesh: default
name: open-all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
---
type: MeshTrafficPermission
mesh: default
name: mesh-deny
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
---
type: MeshTrafficPermission
mesh: default
name: backend-allows-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
hy_check "row 2 over allow-all: web is allowed" allowed
hy_check "row 2 over allow-all: other is denied at backend-1 by mesh-deny" denied_at_backend other
hy_eq "_explain: by mesh-deny's entry, the last that other matches" \
    "Deny MeshTrafficPermission/mesh-deny from[0]" \
    "$(curl -s "$E/meshes/default/_explain?from=other-1&to=backend" | jq -r '.results[0] | "\(.decision) \(.origin)"')"
row mesh-deny backend-allows-web <<'YAML'
type: MeshTrafficPermission
mesh: default
name: mesh-deny
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
---
type: MeshTrafficPermission
mesh: default
name: backend-allows-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

# ---- a dry run says which sidecars a write would change, and how
cat >"$HY_TMP/deny-web.yaml" <<'YAML'
type: MeshTrafficPermission
mesh: default
name: backend-allows-web
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
o=$(ctl apply -f "$HY_TMP/deny-web.yaml" --dry-run 2>&1)
hy_contains "apply --dry-run on the global CP names the dataplanes that would change" \
    "1 dataplane would change: east.backend-1" "$o"
hy_contains "and what changes for them" "east.backend-1: inbound $B_PORT from east.web-1: now Deny (was Allow)" "$o"
hy_check "and writes nothing: web is still allowed" allowed
# a mesh of more than 100 dataplanes: the dry run says which callers it left untried
for i in $(seq 1 100); do
    printf -- '---\ntype: Dataplane\nmesh: default\nname: extra-%s\nnetworking:\n  address: 127.0.0.2\n  inbound:\n    - {port: %s, tags: {hypha.io/service: extra}}\n' \
        "$i" $((30000 + i))
done >"$HY_TMP/extra.yaml"
"$HY_BIN/hyphactl" --cp "$E" apply -f "$HY_TMP/extra.yaml" >/dev/null
extras() { [ "$(curl -sf "$GLOBAL_URL/meshes/default/dataplanes?size=200" | jq '[.items[] | select(.name | startswith("east.extra-"))] | length')" = 100 ]; }
hy_check "100 more dataplanes in zone east reach the global CP" hy_wait_for 20 extras
o=$(ctl apply -f "$HY_TMP/deny-web.yaml" --dry-run 2>&1)
hy_contains "with 103 dataplanes a dry run says 3 were not tried as callers" \
    "only the mesh's first 100 dataplanes were tried as callers; 3 more were not" "$o"
for i in $(seq 1 100); do printf 'extra-%s\n' "$i"; done |
    while read -r n; do "$HY_BIN/hyphactl" --cp "$E" delete dataplane "$n" -m default >/dev/null; done

# ---- row 3: MeshSubset on any tag denies
row allow-all deny-dev <<'YAML'
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
YAML
hy_check "row 3: allow-all, then MeshSubset {env: dev} Deny: web (env: dev) is denied" \
    denied_at_backend web
hy_check "row 3: and other (no env: dev) is allowed: its calls reach backend-1" other_allowed
hy_eq "_explain says denied, by which entry" "denied by MeshTrafficPermission/deny-dev from[0]: the last from entry the caller matches" \
    "$(curl -s "$E/meshes/default/_explain?from=web-1&to=backend" | jq -r '.results[0].reason')"

# ---- row 4: a Dataplane targetRef by labels
row allow-all deny-by-labels <<'YAML'
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
name: deny-by-labels
spec:
  targetRef: {kind: Dataplane, labels: {app: backend}}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
YAML
hy_check "row 4: allow-all, then Dataplane {app: backend} Deny from Mesh: web is denied" \
    denied_at_backend web

# ---- row 5: the zone tag every inbound gets
row allow-all deny-east <<'YAML'
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
name: deny-east
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshSubset, tags: {kuma.io/zone: east}}
      default: {action: Deny}
YAML
hy_check "row 5: allow-all, then MeshSubset {kuma.io/zone: east} Deny: web (in east) is denied" \
    denied_at_backend web

# ---- rules (Kuma 2.12+): a deny matcher always denies
row allow-all deny-web-id <<'YAML'
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
name: deny-web-id
spec:
  targetRef: {kind: Dataplane, labels: {app: backend}}
  rules:
    - default:
        deny:
          - spiffeID: {type: Exact, value: spiffe://default/web}
YAML
hy_check "rules: a deny matcher on web's SPIFFE ID denies it despite allow-all" \
    denied_at_backend web
hy_check "rules: and other, which it does not match, is allowed" other_allowed
row allow-nobody <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-nobody
spec:
  rules:
    - default:
        allow:
          - spiffeID: {type: Exact, value: spiffe://default/nobody}
YAML
hy_check "rules only, an allow that matches no caller: web is denied" denied_at_backend web
hy_check "rules only, an allow that matches no caller: other is denied" denied_at_backend other
row allow-prefix <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-prefix
spec:
  rules:
    - default:
        allow:
          - spiffeID: {type: Prefix, value: "spiffe://default/"}
YAML
hy_check "rules: an allow matcher on a SPIFFE ID prefix allows" allowed

# ---- a Kubernetes-shaped Kuma file, as Kuma's docs show it
row mesh-deny k8s-allow <<'YAML'
type: MeshTrafficPermission
mesh: default
name: mesh-deny
spec:
  from:
    - targetRef: {kind: Mesh}
      default: {action: Deny}
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: k8s-allow
  namespace: kuma-demo
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: backend
  from:
    - targetRef:
        kind: MeshSubset
        tags:
          kuma.io/service: web
      default:
        action: Allow
YAML
hy_check "a Kubernetes-shaped file allows web over a mesh-wide Deny" allowed
hy_check "and other, which it does not name, stays denied" denied_at_backend other
row allow-all k8s-deny <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {action: Allow}
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: k8s-deny
  namespace: kuma-system
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
    - targetRef:
        kind: MeshSubset
        tags:
          kuma.io/service: web
      default:
        action: Deny
YAML
hy_check "a Kubernetes-shaped file's Deny denies web despite allow-all" denied_at_backend web
hy_check "and other, which it does not match, is allowed" other_allowed

# ---- AllowWithShadowDeny: let in, logged and counted
row shadow <<'YAML'
type: MeshTrafficPermission
mesh: default
name: shadow
spec:
  from:
    - targetRef: {kind: Mesh}
      default: {action: AllowWithShadowDeny}
YAML
hy_check "AllowWithShadowDeny lets web in" allowed
shadowed() {
    curl -s "$B_ADMIN/metrics" | awk '$1 == "hypha_dp_inbound_shadow_denied_total" && $2 >= 1 { f = 1 } END { exit !f }'
}
hy_check "and counts it as a shadow denial" hy_wait_for 5 shadowed
hy_check "and logs which policy would deny" grep -q "would be denied by MeshTrafficPermission/shadow from\[0\]" \
    "$HY_TMP/dp-backend-1.log"

# ---- everything removed: denied again
row </dev/null
hy_check "with the policies deleted, web is denied again" hy_wait_for 15 denied
hy_check "and other too, at backend-1" denied_at_backend other

hy_stop "$GLOBAL_PID" || true
hy_check "no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$HY_TMP'/*.log"
hy_done
