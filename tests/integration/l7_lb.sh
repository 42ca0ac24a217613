#!/usr/bin/env bash
# Balancing HTTP requests by what they carry: web-1 calls backend, three
# instances (versions v1, v2, v3) whose inbounds are kuma.io/protocol:
# http. MeshLoadBalancingStrategy RingHash and Maglev with hashPolicies:
# the same header value lands on the same instance every time, different
# values spread, SourceIP hashes the app's own address (127.0.0.2 and
# 127.0.0.3 are different sources), and an instance found unhealthy is
# passed over: its keys move to the next instance on the ring, the others'
# keys stay (the health checks' GETs carry http.requestHeadersToAdd). Then
# MeshServiceSubset backendRefs: a MeshHTTPRoute sending
# everything to the version: v2 subset reaches only backend-2; a 50/50
# split between subsets v1 and v3 within ±5 % over 1000 requests. Last,
# outlier detection's periodic pass brings an ejected instance back on its
# own.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd) # hy_start_mesh_zone's
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_mesh_zone 1h

# ports: inbound PORT, app PORT+1, outbounds PORT+2 (backend), PORT+3 (backend-v2)
ports4() { hy_free_ports 4; }
B1_PORT=$(ports4)
B2_PORT=$(ports4)
B3_PORT=$(ports4)
W_PORT=$(ports4)
SICK=$HY_TMP/b3-sick # while it exists, b3's /health answers 503

ready() { curl -sf "$1/ready" >/dev/null; }

hy_start_http_app $((B1_PORT + 1)) b1 "--health-file=$HY_TMP/b1-sick"
hy_start_http_app $((B2_PORT + 1)) b2 "--health-file=$HY_TMP/b2-sick"
hy_start_http_app $((B3_PORT + 1)) b3 "--health-file=$SICK"
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B1_PORT" v1
B1_PID=$DP_PID B1_ADMIN=$DP_ADMIN
hy_start_http_dp backend-2 backend "$B2_PORT" v2
B2_PID=$DP_PID B2_ADMIN=$DP_ADMIN
hy_start_http_dp backend-3 backend "$B3_PORT" v3
B3_PID=$DP_PID B3_ADMIN=$DP_ADMIN
hy_start_http_dp web-1 web "$W_PORT" v1
W_PID=$DP_PID W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W_ADMIN"
hy_wait_for 20 ready "$B1_ADMIN"
hy_wait_for 20 ready "$B2_ADMIN"
hy_wait_for 20 ready "$B3_ADMIN"
eps() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend" and .protocol == "http") | .endpoints[]?] | length == 3' >/dev/null; }
hy_check "web-1's outbound to backend is http, with the three instances" hy_wait_for 20 eps
OUT=http://127.0.0.1:$((W_PORT + 2))
PORT_OUT=$((W_PORT + 2))

# by KEY N: N calls carrying header X-User: KEY (one kept-alive connection:
# the sidecar balances each request on its own); prints the instances that
# answered, sorted, unique
by() {
    curl -s -H "X-User: $1" $(printf "$OUT/ %.0s" $(seq "$2")) | sed 's/hello from //' | sort -u | tr '\n' ' '
}
# owners: "KEY=INSTANCE ..." for keys u0..u29, one call each (one curl)
owners() {
    local k args=()
    for k in $(seq 0 29); do args+=(-H "X-User: u$k" "$OUT/" --next); done
    curl -s "${args[@]}" -s "$OUT/status/204" | sed 's/hello from //' |
        awk '{ printf "u%d=%s ", NR - 1, $0 }'
}

for LB in RingHash Maglev; do
    opt=$([ "$LB" = RingHash ] && echo ringHash || echo maglev)
    ctl apply -f - >/dev/null 2>"$HY_TMP/apply-lb.err" <<YAML
type: MeshLoadBalancingStrategy
mesh: default
name: backend-lb
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        loadBalancer:
          type: $LB
          $opt:
            hashPolicies:
              - type: Header
                header: {name: x-user}
                terminal: true
              - type: Connection
                connection: {sourceIP: true}
YAML
    hy_eq "$LB: applying it draws no warning (hashPolicies are enforced)" "" "$(cat "$HY_TMP/apply-lb.err")"
    lb_set() { curl -s "$W_ADMIN/config" | jq -e ".outbounds[] | select(.service == \"backend\") | .lb == \"$LB\" and (.hashPolicies | length) == 2" >/dev/null; }
    hy_check "$LB: the policy reaches web-1" hy_wait_for 15 lb_set
    one=$(by alice 100)
    hy_check "$LB: 100 calls with X-User: alice all reach one instance ($one)" test "$(wc -w <<<"$one")" -eq 1
    spread=$(owners | tr ' ' '\n' | cut -d= -f2 | sort -u | grep -c .)
    hy_eq "$LB: 30 different users spread over the three instances" 3 "$spread"
    # SourceIP (the header absent): the app's own address decides
    s2=$(curl -s --interface 127.0.0.2 $(printf "$OUT/ %.0s" $(seq 30)) | sed 's/hello from //' | sort -u | tr '\n' ' ')
    hy_check "$LB: without the header, 30 calls from 127.0.0.2 reach one instance ($s2)" test "$(wc -w <<<"$s2")" -eq 1
    srcs=$(for i in $(seq 2 21); do curl -s --interface "127.0.0.$i" "$OUT/"; done | sort -u | wc -l)
    hy_check "$LB: calls from 20 source addresses reach more than one instance ($srcs)" test "$srcs" -ge 2

    # b3 unhealthy: its keys move, the others' stay
    before=$(owners)
    sick_n() { grep -c "outbound $PORT_OUT (backend): endpoint 127.0.0.1:$B3_PORT is unhealthy" "$W_LOG" || true; }
    n_sick=$(sick_n)
    sick() { [ "$(sick_n)" -gt "$n_sick" ]; }
    touch "$SICK"
    ctl apply -f - >/dev/null <<'YAML'
type: MeshHealthCheck
mesh: default
name: backend-hc
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        interval: 1s
        timeout: 1s
        unhealthyThreshold: 1
        healthyThreshold: 1
        http:
          path: /health
          requestHeadersToAdd: {set: [{name: x-check, value: hypha}]}
YAML
    hy_check "$LB: web-1 finds backend-3 unhealthy" hy_wait_for 20 sick
    hy_eq "$LB: the checks carry http.requestHeadersToAdd" hypha \
        "$(curl -s "http://127.0.0.1:$((B1_PORT + 1))/stats" | jq -r .health_x_check)"
    after=$(owners)
    moved_ok=yes stayed=0 moved=0
    for kv in $before; do
        k=${kv%%=*} was=${kv#*=}
        now=$(tr ' ' '\n' <<<"$after" | grep "^$k=" | cut -d= -f2)
        if [ "$was" = b3 ]; then
            moved=$((moved + 1))
            [ "$now" != b3 ] || moved_ok=no
        else
            [ "$now" = "$was" ] && stayed=$((stayed + 1)) || moved_ok=no
        fi
    done
    hy_eq "$LB: backend-3's $moved keys moved, the other $stayed stayed" yes "$moved_ok"
    hy_check "$LB: some keys were on backend-3" test "$moved" -ge 1
    rm -f "$SICK"
    ctl delete meshhealthcheck backend-hc -m default >/dev/null
    back() { [ "$(owners)" = "$before" ]; }
    hy_check "$LB: the check gone, backend-3 gets its keys back" hy_wait_for 20 back
done
ctl delete meshloadbalancingstrategy backend-lb -m default >/dev/null

# ---- MeshServiceSubset backendRefs
# many N: N requests on one kept-alive connection (each routed and balanced
# on its own); prints "INSTANCE COUNT" lines
many() { curl -s $(printf "$OUT/ %.0s" $(seq "$1")) | sed 's/hello from //' | sort | uniq -c | awk '{ print $2, $1 }'; }
route() { # route YAML-BACKEND-REFS: MeshHTTPRoute backend-subsets with those backendRefs
    ctl apply -f - >/dev/null 2>"$HY_TMP/apply-route.err" <<YAML
type: MeshHTTPRoute
mesh: default
name: backend-subsets
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          default:
            backendRefs: $1
YAML
}
route '[{kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 100}]'
hy_eq "applying a route to a subset draws no warning (its tags are enforced)" "" "$(cat "$HY_TMP/apply-route.err")"
subset_set() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .httpRoutes[0].backends[0].tags.version == "v2"' >/dev/null; }
hy_check "the route reaches web-1 with the subset's tags" hy_wait_for 15 subset_set
tags_set() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend") | .endpoints[].tags.version] | sort == ["v1", "v2", "v3"]' >/dev/null; }
hy_check "and the endpoints carry their instances' tags" hy_wait_for 15 tags_set
hy_eq "100 requests to subset version: v2 all reach backend-2" "b2 100" "$(many 100)"
route '[{kind: MeshServiceSubset, name: backend, tags: {version: v1}, weight: 50}, {kind: MeshServiceSubset, name: backend, tags: {version: v3}, weight: 50}]'
split_set() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .httpRoutes[0].backends | length == 2' >/dev/null; }
hy_check "a 50/50 split between subsets v1 and v3 reaches web-1" hy_wait_for 15 split_set
got=$(many 1000)
b1=$(awk '$1 == "b1" { print $2 }' <<<"$got")
b3=$(awk '$1 == "b3" { print $2 }' <<<"$got")
hy_check "1000 requests: v1 gets 50 % ± 5 % (${b1:-0})" test "${b1:-0}" -ge 450 -a "${b1:-0}" -le 550
hy_check "v3 the rest (${b3:-0})" test $((${b1:-0} + ${b3:-0})) -eq 1000
route '[{kind: MeshServiceSubset, name: backend, tags: {version: v9}}]'
none_set() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .httpRoutes[0].backends[0].tags.version == "v9"' >/dev/null; }
hy_check "a subset no instance carries reaches web-1" hy_wait_for 15 none_set
hy_eq "its requests: 503, no healthy upstream" 503 "$(curl -s -o /dev/null -w '%{http_code}' "$OUT/")"

# ---- outlier detection's periodic pass: an ejected endpoint comes back
# after baseEjectionTime without any request looking at it
route '[{kind: MeshServiceSubset, name: backend, tags: {version: v2}}]'
hy_check "a route to subset v2 again" hy_wait_for 15 subset_set
ctl apply -f - >/dev/null <<'YAML'
type: MeshCircuitBreaker
mesh: default
name: backend-outlier
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        outlierDetection:
          disabled: false
          interval: 1s
          baseEjectionTime: 2s
          detectors:
            totalFailures: {consecutive: 3}
YAML
od_set() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .outlier != null' >/dev/null; }
hy_check "the MeshCircuitBreaker reaches web-1" hy_wait_for 15 od_set
curl -s -o /dev/null "$OUT/status/500" "$OUT/status/500" "$OUT/status/500"
ejected() { grep -q "endpoint 127.0.0.1:$B2_PORT ejected" "$W_LOG"; }
hy_check "3 consecutive 500s eject backend-2" hy_wait_for 10 ejected
back() { grep -q "endpoint 127.0.0.1:$B2_PORT is back after its ejection (outlier detection)" "$W_LOG"; }
hy_check "with no request after, the periodic pass brings it back after baseEjectionTime" hy_wait_for 15 back
ctl delete meshcircuitbreaker backend-outlier -m default >/dev/null
ctl delete meshhttproute backend-subsets -m default >/dev/null

# ---- the end
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B1_PID"
hy_check "SIGTERM stops backend-2 cleanly" hy_stop "$B2_PID"
hy_check "SIGTERM stops backend-3 cleanly" hy_stop "$B3_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"

hy_done
