#!/usr/bin/env bash
# MeshServiceSubset backendRefs across zones (lib_zones.sh: a global CP,
# zones east and west in their own network namespaces, an ingress each).
# backend (kuma.io/protocol: http) runs as b1 (version v1) in east and as
# b1w (v1) and b2 (v2) in west: v2 exists only in the other zone (b1
# starts once a call with no route has gone to west). West's
# ingress offers each tag set of backend's instances under its own subset
# SNI and relays it to those instances only. Checked from web-1 in east:
# a header-matched route to subset v2 reaches b2 only (not b1w, which the
# plain service SNI would also reach), through west's ingress by the
# subset SNI; a 90/10 split v1/v2 holds within +-5 % over 1000 requests;
# a subset no instance carries anywhere answers 503, never the whole
# service; and a MeshTCPRoute to subset v2 (a tcp service) sends every
# connection to the v2 instance in west.
. "$(dirname "$0")/lib_zones.sh"
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
command -v python3 >/dev/null || {
    hy_log "skip: no python3"
    exit 77
}

hy_zones_net
hy_zones_global
gctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-all
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
hy_zones_start
hy_zones_ingresses

# app NS PORT NAME: the Python app on 127.0.0.1:PORT in NS
app() {
    start "$1" "$HY_TMP/app-$3.log" python3 "$TOOLS/http_app.py" "$2" "$3"
    hy_wait_for 10 grep -q listening "$HY_TMP/app-$3.log"
}
app "$EA" 21001 b1
app "$WE" 21001 b1w
app "$WE" 22001 b2
app "$EA" 23001 w1
# sidecars of dataplane-http.yaml: inbound PORT (kuma.io/protocol: http),
# app PORT+1, outbounds PORT+2 (backend) and PORT+3 (backend-v2)
http_dp() { # NAME SERVICE NS ZONE PORT ADMIN_PORT VERSION
    DP_FILE=$DATA/dp/dataplane-http.yaml DP_VARS="out_port2=$(($5 + 3)),version=$7" \
        start_dp "$1" "$2" "$3" "$4" "$5" "$6"
}
DP_ADDRESS=$WE_IP http_dp backend-w1 backend "$WE" west 21000 9901 v1
DP_ADDRESS=$WE_IP http_dp backend-w2 backend "$WE" west 22000 9903 v2
hy_check "backend-w1 (west, v1) becomes ready" hy_wait_for 15 dp_ready "$WE" 9901
hy_check "backend-w2 (west, v2) becomes ready" hy_wait_for 15 dp_ready "$WE" 9903

# subset_offered CTL VERSION: west's ZoneIngress (as CTL lists it) offers
# backend's tag set with that version, one instance, as a subset entry
subset_offered() {
    local v=${*: -1}
    "${@:1:$#-1}" get zoneingresses -o json | jq -e --arg v "$v" '.items[] | select(.zone == "west") | .availableServices[]
        | select(.tags["hypha.io/service"] == "backend" and .tags.version == $v and .subset == true and .instances == 1)' >/dev/null
}
hy_check "west's ingress offers backend's tag set version v1 as a subset" hy_wait_for 15 subset_offered gctl v1
hy_check "and v2" hy_wait_for 15 subset_offered gctl v2
whole_offered() {
    gctl get zoneingresses -o json | jq -e '.items[] | select(.zone == "west") | .availableServices[]
        | select(.tags["hypha.io/service"] == "backend" and (.subset // false) == false and .instances == 2
            and .tags["hypha.io/protocol"] == "http")' >/dev/null
}
hy_check "beside the whole service (2 instances, protocol http)" whole_offered
east_knows() { subset_offered zctl "$EA" v2; }
hy_check "zone east learns the subsets" hy_wait_for 15 east_knows

http_dp web-1 web "$EA" east 23000 9901 v1
WEB_PID=$LAST_PID
hy_check "web-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9901
WEB=http://127.0.0.1:9901
OUT=http://127.0.0.1:23002 # web-1's outbound to backend
wcurl() { inns "$EA" curl "$@"; }
wcfg() { wcurl -s "$WEB/config"; }
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }
# subset_ep VERSION: web-1's outbound to backend has west's ingress as an
# endpoint for the tag set with that version, with a subset SNI of its own
subset_ep() {
    wcfg | jq -e --arg v "$1" --arg ip "$WE_IP" '.outbounds[] | select(.service == "backend" and .protocol == "http")
        | .endpoints[] | select(.address == $ip and .port == 10001 and .tags.version == $v
            and (.sni | test("^backend[.]hy--[0-9a-f]{16}[.]default[.]mesh$")))' >/dev/null
}
hy_check "web-1's outbound has west's ingress as the v2 subset's endpoint, with a subset SNI" \
    hy_wait_for 20 subset_ep v2
hy_check "and for v1" subset_ep v1
V2_SNI=$(wcfg | jq -r '.outbounds[] | select(.service == "backend") | .endpoints[] | select(.tags.version == "v2") | .sni')
hy_log "subset v2's SNI: $V2_SNI"

count() {
    local n=$1 u=$2 urls=() i
    shift 2
    for ((i = 0; i < n; i++)); do urls+=("$u"); done
    wcurl -s "$@" "${urls[@]}"
}
imetric() {
    inns "$WE" curl -s http://127.0.0.1:9902/metrics |
        awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}
# without a route, backend only in west: the whole service, by its plain
# SNI; the subset endpoints are never picked for it (their SNIs would add
# pooled connections at the ingress: at most one per web-1 worker here)
c0=$(imetric hypha_ingress_connections_total)
plain=$(count 60 "$OUT/" | sort | uniq -c)
# (the ingress relays a connection to one instance: a pooled one stays with it)
hy_eq "without a route, 60 requests reach west's instances" 60 "$(awk '/from (b1w|b2)$/ { s += $1 } END { print s + 0 }' <<<"$plain")"
hy_check "on at most 2 pooled connections (the plain SNI's, one per worker): $(($(imetric hypha_ingress_connections_total) - c0))" \
    test $(($(imetric hypha_ingress_connections_total) - c0)) -le 2

# now backend-1 in east (v1), which web-1 prefers to west's instances
http_dp backend-1 backend "$EA" east 21000 9903 v1
hy_check "backend-1 (east, v1) becomes ready" hy_wait_for 15 dp_ready "$EA" 9903
local_ep() { wcfg | jq -e '.outbounds[] | select(.service == "backend") | .endpoints[] | select(.port == 21000 and (.priority // 0) == 0)' >/dev/null; }
hy_check "web-1 gets its local endpoint" hy_wait_for 20 local_ep
plain=$(count 50 "$OUT/" | sort | uniq -c)
hy_eq "without a route, 50 requests now stay in east (b1)" 50 "$(awk '/from b1$/ { print $1 }' <<<"$plain")"

gapply() {
    gctl apply -f - >/dev/null
    hy_wait_for 20 bash -c "ip netns exec $EA curl -s $WEB/config | jq -e '$1' >/dev/null"
}
ROUTED='[.outbounds[] | select(.service == "backend") | (.httpRoutes // .http_routes // [])[] | .backends // [] | .[] | .tags.version] | index("v3") != null'
hy_check "a MeshHTTPRoute with subset backendRefs applied on the global CP reaches web-1" gapply "$ROUTED" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: canary
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches: [{path: {type: PathPrefix, value: /}, headers: [{type: Exact, name: x-canary, value: "1"}]}]
          default:
            backendRefs: [{kind: MeshServiceSubset, name: backend, tags: {version: v2}}]
        - matches: [{path: {type: PathPrefix, value: /}, headers: [{type: Exact, name: x-canary, value: "none"}]}]
          default:
            backendRefs: [{kind: MeshServiceSubset, name: backend, tags: {version: v3}}]
        - matches: [{path: {type: PathPrefix, value: /}}]
          default:
            backendRefs:
              - {kind: MeshServiceSubset, name: backend, tags: {version: v1}, weight: 90}
              - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 10}
YAML

# (1) a header-matched route to the remote subset: b2 only, never b1w
canary=$(count 100 "$OUT/" -H 'x-canary: 1' | sort | uniq -c)
hy_eq "100 requests with x-canary: 1 all reach b2 (v2, only in west), none b1w or b1" 100 \
    "$(awk '/from b2$/ { print $1 }' <<<"$canary")"
hy_check "web-1 logs them with west's ingress as upstream" \
    grep -q "http direction=outbound port=23002 method=GET .*status=200 .*upstream=$WE_IP:10001 service=backend route=\"MeshHTTPRoute/canary" \
    "$HY_TMP/dp-web-1.log"
ing_subset() { grep -q "sni=$V2_SNI service=default/backend upstream=$WE_IP:22000 .*result=ok" "$HY_TMP/ingress-west.log"; }
# the ingress logs a connection when it ends: b2's app answers a POST too
echo=$(wcurl -s -H 'x-canary: 1' -d 'hello' "$OUT/echo")
hy_eq "a POST with a body reaches b2 the same way" b2 "$(jq -r .instance <<<"$echo")"

# (2) the 90/10 split v1/v2 with v2 only in west
split=$(count 1000 "$OUT/" | sort | uniq -c)
v2=$(awk '/from b2$/ { print $1 }' <<<"$split")
hy_check "a 90/10 split v1/v2: b2 (v2, in west) takes 10 % +- 5 % of 1000 requests (${v2:-0})" \
    within "${v2:-0}" 50 150
hy_eq "and v1 the rest (b1 in east first; never b2)" 1000 \
    "$(awk '/from (b1|b1w|b2)$/ { s += $1 } END { print s + 0 }' <<<"$split")"
hy_eq "v1's share stays in east (its local instance is preferred)" 0 \
    "$(awk '/from b1w$/ { print $1 }' <<<"$split" | grep . || echo 0)"

# (3) never fail open: a subset nobody carries
hy_eq "a subset no instance carries anywhere (v3) answers 503" 503 \
    "$(wcurl -s -o /dev/null -w '%{http_code}' -H 'x-canary: none' "$OUT/")"
hy_check "logged as no_endpoints" grep -q "http direction=outbound port=23002 .*status=503 .*result=no_endpoints" \
    "$HY_TMP/dp-web-1.log"

hy_check "SIGTERM stops web-1" hy_stop "$WEB_PID"
hy_check "west's ingress relayed the subset SNI to b2's inbound only" hy_wait_for 10 ing_subset
hy_check "and never to b1w's by that SNI" bash -c "! grep -q 'sni=$V2_SNI .*upstream=$WE_IP:21000' '$HY_TMP/ingress-west.log'"

# ---- (4) MeshTCPRoute with subset tags, across zones: db (tcp) has db-1
# (v1) in east and db-w2 (v2) in west; a route to subset v2 sends every
# connection to west's db-w2 by its subset SNI
cat >"$HY_TMP/dataplane-tcp.yaml" <<'YAML'
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ port }}
      servicePort: {{ app_port }}
      tags:
        kuma.io/service: {{ service }}
        version: "{{ version }}"
  outbound:
    - port: {{ out_port }}
      tags:
        kuma.io/service: db
YAML
tcp_dp() { # NAME SERVICE NS ZONE PORT ADMIN_PORT VERSION
    DP_FILE=$HY_TMP/dataplane-tcp.yaml DP_VARS="version=$7" start_dp "$1" "$2" "$3" "$4" "$5" "$6"
}
app "$EA" 24001 d1
app "$WE" 24001 dw2
tcp_dp db-1 db "$EA" east 24000 9904 v1
DP_ADDRESS=$WE_IP tcp_dp db-w2 db "$WE" west 24000 9904 v2
hy_check "db-1 ready" hy_wait_for 15 dp_ready "$EA" 9904
hy_check "db-w2 ready" hy_wait_for 15 dp_ready "$WE" 9904
tcp_dp client-1 web "$EA" east 25000 9905 v1
hy_check "client-1 (east) ready" hy_wait_for 15 dp_ready "$EA" 9905
CCFG=http://127.0.0.1:9905/config
db_subset_ep() {
    wcurl -s "$CCFG" | jq -e --arg ip "$WE_IP" '.outbounds[] | select(.service == "db") | .endpoints[]
        | select(.address == $ip and .tags.version == "v2" and (.sni // "" | startswith("db.hy--")))' >/dev/null
}
hy_check "client-1's outbound to db has west's ingress as subset v2's endpoint" hy_wait_for 30 db_subset_ep
tcp_plain=$(for i in $(seq 1 20); do wcurl -s http://127.0.0.1:25002/; echo; done | sort | uniq -c)
hy_eq "without a route, 20 connections stay with db-1 in east" 20 "$(awk '/from d1$/ { print $1 }' <<<"$tcp_plain")"
TCPR='.outbounds[] | select(.service == "db") | (.tcpBackends // .tcp_backends // []) | .[] | select(.tags.version == "v2")'
gctl apply -f - >/dev/null <<'YAML'
type: MeshTCPRoute
mesh: default
name: db-v2
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: db}
      rules:
        - default:
            backendRefs: [{kind: MeshServiceSubset, name: db, tags: {version: v2}}]
YAML
tcp_routed() { wcurl -s "$CCFG" | jq -e "$TCPR" >/dev/null; }
hy_check "the route reaches client-1" hy_wait_for 20 tcp_routed
tcp_v2=$(for i in $(seq 1 20); do wcurl -s http://127.0.0.1:25002/; echo; done | sort | uniq -c)
hy_eq "20 connections all reach dw2 (v2, only in west) through west's ingress" 20 \
    "$(awk '/from dw2$/ { print $1 }' <<<"$tcp_v2")"
gctl apply -f - >/dev/null <<'YAML'
type: MeshTCPRoute
mesh: default
name: db-v2
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: db}
      rules:
        - default:
            backendRefs: [{kind: MeshServiceSubset, name: db, tags: {version: v9}}]
YAML
TCPR9='.outbounds[] | select(.service == "db") | (.tcpBackends // .tcp_backends // []) | .[] | select(.tags.version == "v9")'
tcp_routed9() { wcurl -s "$CCFG" | jq -e "$TCPR9" >/dev/null; }
hy_check "a route to a subset nobody carries (v9) reaches client-1" hy_wait_for 20 tcp_routed9
hy_eq "its connections are refused, never sent to db's instances" "" "$(wcurl -s -m 5 http://127.0.0.1:25002/ || true)"
hy_check "logged as no_endpoints" hy_wait_for 5 grep -q "result=no_endpoints" "$HY_TMP/dp-client-1.log"

hy_check "SIGTERM stops west's ingress" hy_stop "$INGRESS_WEST_PID"
hy_check "SIGTERM stops east's ingress" hy_stop "$INGRESS_EAST_PID"
hy_check "SIGTERM stops zone east" hy_stop "$ZONE_EAST_PID"
hy_check "SIGTERM stops zone west" hy_stop "$ZONE_WEST_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"
hy_done
