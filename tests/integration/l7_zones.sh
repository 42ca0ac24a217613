#!/usr/bin/env bash
# The HTTP (L7) data path across two zones through the zone ingress
# (lib_zones.sh: a global CP, zones east and west in their own network
# namespaces, an ingress per zone). West runs backend (version v1) and
# backend-v2 (version v2), both kuma.io/protocol: http, each a small
# Python HTTP/1.1 app (tests/tools/http_app.py) behind its sidecar; east
# runs web's sidecar. web-1's outbound parses the app's HTTP/1.1 and sends
# each request over its pool of mTLS HTTP/2 connections to west's ingress,
# which routes them by SNI without terminating TLS. Checked: a plain call
# goes L7 (counted by web-1's HTTP metrics); a MeshHTTPRoute 90/10 split
# between backend and backend-v2 (both in west), applied on the global CP,
# holds within +-5 % over 1000 requests, and so does one between backend
# and backend-east (a service in east that web-1's Dataplane does not
# list); a MeshRetry turns a first 503 into a 200; the ingress carried
# all of it on a few long-lived connections; and a caller started before
# its service had any instance turns http when one appears in west.
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

# ---- apps and sidecars: backend-1 (v1) and backend-v2-1 (v2) in west;
# web-1 and backend-east-1 (a service web-1's Dataplane does not list) in east
# app NS PORT NAME: the Python app on 127.0.0.1:PORT in NS
app() {
    start "$1" "$HY_TMP/app-$3.log" python3 "$TOOLS/http_app.py" "$2" "$3"
    hy_wait_for 10 grep -q listening "$HY_TMP/app-$3.log"
}
app "$WE" 21001 b1
app "$WE" 22001 b2
app "$EA" 21001 w1
app "$EA" 22001 e1
# sidecars of dataplane-http.yaml: inbound PORT (kuma.io/protocol: http),
# app PORT+1, outbounds PORT+2 (backend) and PORT+3 (backend-v2)
http_dp() { # NAME SERVICE NS ZONE PORT ADMIN_PORT VERSION
    DP_FILE=$DATA/dp/dataplane-http.yaml DP_VARS="out_port2=$(($5 + 3)),version=$7" \
        start_dp "$1" "$2" "$3" "$4" "$5" "$6"
}
DP_ADDRESS=$WE_IP http_dp backend-1 backend "$WE" west 21000 9901 v1
DP_ADDRESS=$WE_IP http_dp backend-v2-1 backend-v2 "$WE" west 22000 9903 v2
http_dp backend-east-1 backend-east "$EA" east 22000 9903 v3
hy_check "backend-1 (west) becomes ready" hy_wait_for 15 dp_ready "$WE" 9901
hy_check "backend-v2-1 (west) becomes ready" hy_wait_for 15 dp_ready "$WE" 9903
hy_check "backend-east-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9903

# offered CTL SERVICE: the ZoneIngress of west that CTL (gctl, or zctl NS)
# lists offers SERVICE, one instance, as protocol http
offered() {
    local s=${*: -1}
    "${@:1:$#-1}" get zoneingresses -o json | jq -e --arg s "$s" '.items[] | select(.zone == "west") | .availableServices[]
        | select(.tags["hypha.io/service"] == $s and .tags["hypha.io/protocol"] == "http" and .instances == 1)' >/dev/null
}
hy_check "west's ingress offers backend as protocol http" hy_wait_for 15 offered gctl backend
hy_check "and backend-v2" hy_wait_for 15 offered gctl backend-v2
east_offered() { offered zctl "$EA" backend && offered zctl "$EA" backend-v2; }
hy_check "zone east learns both" hy_wait_for 15 east_offered
# web-1 only now: a sidecar up before a service's instances are known
# is the late-service check's, at the end
http_dp web-1 web "$EA" east 21000 9901 v1
WEB_PID=$LAST_PID
hy_check "web-1 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9901

WEB=http://127.0.0.1:9901 # web-1's admin, in east
OUT=http://127.0.0.1:21002 # web-1's outbound to backend, in east
wcurl() { inns "$EA" curl "$@"; }
wcfg() { wcurl -s "$WEB/config"; }
# wmetric NAME{LABELS}: web-1's value of that series, 0 when absent
wmetric() { wcurl -s "$WEB/metrics" | awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'; }
# wmetric_sum REGEX: the sum of web-1's series matching
wmetric_sum() { wcurl -s "$WEB/metrics" | awk -v m="$1" '$1 ~ m { s += $NF } END { print s + 0 }'; }
# imetric NAME: west's ingress's value of that series, 0 when absent
imetric() {
    inns "$WE" curl -s http://127.0.0.1:9902/metrics |
        awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

# remote_http [ADMIN] SERVICE: the outbound to SERVICE of the sidecar with
# admin ADMIN (web-1's) in east is http, through west's ingress
remote_http() {
    local admin=$WEB
    [ $# -lt 2 ] || { admin=$1; shift; }
    wcurl -s "$admin/config" | jq -e --arg s "$1" --arg ip "$WE_IP" '.outbounds[] | select(.service == $s)
        | select(.protocol == "http") | .endpoints[] | select(.zone == "west" and .address == $ip and .port == 10001)' >/dev/null
}
hy_check "web-1's outbound to backend is protocol http, through west's ingress" hy_wait_for 15 remote_http backend
hy_check "and to backend-v2" hy_wait_for 15 remote_http backend-v2

# ---- (1) a plain call goes L7 across the zones
conns0=$(imetric hypha_ingress_connections_total)
http0=$(wmetric_sum '^hypha_dp_http_requests_total[{]direction="outbound",service="backend",')
hy_eq "a GET from east through web-1 reaches b1 in west" "hello from b1" "$(wcurl -s "$OUT/")"
echo=$(wcurl -s -H 'X-Test: across' "$OUT/echo?z=1")
hy_eq "the app in west sees the path and query" "/echo?z=1" "$(jq -r .path <<<"$echo")"
hy_eq "and the request's headers" across "$(jq -r '.headers["x-test"]' <<<"$echo")"
hy_eq "a status from west comes back" 418 "$(wcurl -s -o /dev/null -w '%{http_code}' "$OUT/status/418")"
hy_eq "web-1 counted the three as HTTP requests: they went L7, not TCP" 3 \
    "$(($(wmetric_sum '^hypha_dp_http_requests_total[{]direction="outbound",service="backend",') - http0))"
hy_check "web-1 logs each request with west's ingress as its upstream" hy_wait_for 5 \
    grep -q "http direction=outbound port=21002 method=GET .*path=/status/418 status=418 .*upstream=$WE_IP:10001 service=backend " \
    "$HY_TMP/dp-web-1.log"
hy_check "backend-1 logs it as an HTTP request from web's SPIFFE ID" hy_wait_for 5 \
    grep -q "http direction=inbound .*path=/status/418 status=418 .*id=spiffe://default/web" "$HY_TMP/dp-backend-1.log"
hy_check "west's ingress accepted the pooled connection they shared" \
    test $(($(imetric hypha_ingress_connections_total) - conns0)) -ge 1 -a "$(imetric hypha_ingress_active_connections)" -ge 1
# web-1 pools per worker, and the kernel spreads its app connections over
# its 2 workers (SO_REUSEPORT, by a hash of the source port): a worker's
# first call to backend opens that worker's pooled connection, whenever
# it comes. 40 more calls on new app connections give each worker its
# own (all 44 on one worker: one run in 2^43), so that the counts below
# see only what the routes do, not which worker curl happened to reach
# (without them: these 4 calls and the first split's connection all on one
# worker, one run in 16, then the second split's on the other, one in 2,
# and that split opened its worker's first connection to backend, which
# the check after it took for a new one)
for i in $(seq 1 40); do wcurl -s -o /dev/null "$OUT/"; done
hy_check "one pooled connection to backend per web-1 worker: at most 2 at west's ingress ($(($(imetric hypha_ingress_connections_total) - conns0)))" \
    test $(($(imetric hypha_ingress_connections_total) - conns0)) -le 2

# ---- policies applied on the global CP, waited for at web-1
cfg_version() { wcfg | jq -r .version; }
# gapply: the policy on stdin applied on the global CP; then waits until
# web-1 took a config satisfying the jq filter $1 (on its /config)
gapply() {
    gctl apply -f - >/dev/null
    hy_wait_for 20 bash -c "ip netns exec $EA curl -s $WEB/config | jq -e '$1' >/dev/null"
}
# count N URL: N requests on one kept-alive connection; each body on its line(s)
count() {
    local n=$1 u=$2 urls=() i
    for ((i = 0; i < n; i++)); do urls+=("$u"); done
    wcurl -s "${urls[@]}"
}

# (2) MeshHTTPRoute: 90 % to backend (v1), 10 % to backend-v2 (v2), both in west
ROUTES='[.outbounds[] | select(.service == "backend") | (.httpRoutes // .http_routes // [])[]
    | .backends // [] | map(.service) | sort] | any(. == ["backend", "backend-v2"])'
hy_check "MeshHTTPRoute applied on the global CP reaches web-1 in east" gapply "$ROUTES" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 90}
              - {kind: MeshService, name: backend-v2, weight: 10}
YAML
split=$(count 1000 "$OUT/" | sort | uniq -c)
v2=$(awk '/from b2/ { print $1 }' <<<"$split")
hy_check "a 90/10 split across zones: b2 (v2) takes 10 % +- 5 % of 1000 requests (${v2:-0})" \
    within "${v2:-0}" 50 150
hy_eq "and b1 (v1) the rest" 1000 "$(awk '/from b[12]/ { s += $1 } END { print s + 0 }' <<<"$split")"
hy_check "web-1 names the route in its metrics" \
    test "$(wmetric_sum '^hypha_dp_http_requests_total[{]direction="outbound",service="backend-v2",route="MeshHTTPRoute/split')" -ge 50
hy_check "backend-v2-1 in west counted its share at its inbound" \
    test "$(inns "$WE" curl -s http://127.0.0.1:9903/metrics | awk '$1 ~ /^hypha_dp_http_requests_total[{]direction="inbound",service="backend-v2",/ { s += $NF } END { print s + 0 }')" -ge 50

# the same route, now splitting between a service in east and one in west;
# neither the change nor the split opens a connection to west's ingress
c0=$(imetric hypha_ingress_connections_total)
LOCAL='[.outbounds[] | select(.service == "backend") | (.httpRoutes // .http_routes // [])[]
    | .backends // [] | map(.service) | sort] | any(. == ["backend", "backend-east"])'
hy_check "the split changed to backend (west) 90 / backend-east (east) 10 reaches web-1" gapply "$LOCAL" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 90}
              - {kind: MeshService, name: backend-east, weight: 10}
YAML
local_ep() {
    wcfg | jq -e '.outbounds[] | select(.service == "backend-east") | .endpoints[] | select(.port == 22000 and (.priority // 0) == 0)' >/dev/null
}
hy_check "web-1 has a backend-only outbound to backend-east, with its local endpoint" hy_wait_for 20 local_ep
split=$(count 1000 "$OUT/" | sort | uniq -c)
e=$(awk '/from e1/ { print $1 }' <<<"$split")
hy_check "a 90/10 split between zones: e1 in east takes 10 % +- 5 % of 1000 requests (${e:-0})" \
    within "${e:-0}" 50 150
hy_eq "and b1 in west the rest" 1000 "$(awk '/from (b1|e1)/ { s += $1 } END { print s + 0 }' <<<"$split")"
hy_eq "the change and the split went over the pooled connections to west's ingress: no new one" "$c0" \
    "$(imetric hypha_ingress_connections_total)"
gctl delete meshhttproute split -m default >/dev/null
unrouted() { wcfg | jq -e "($ROUTES) | not" >/dev/null; }
hy_check "deleting it reaches web-1" hy_wait_for 20 unrouted

# (3) MeshRetry http: a 503 on the first try, then 200
RETRY='.outbounds[] | select(.service == "backend") | (.httpRetry // .http_retry) | select(. != null)'
hy_check "MeshRetry applied on the global CP reaches web-1 in east" gapply "$RETRY" <<'YAML'
type: MeshRetry
mesh: default
name: retry
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        http:
          numRetries: 2
          backOff: {baseInterval: 10ms, maxInterval: 50ms}
          retryOn: ["5xx"]
YAML
retries0=$(wmetric hypha_dp_http_retries_total)
ok=0
for i in $(seq 1 20); do
    case "$(wcurl -s -w ' %{http_code}' "$OUT/flaky/req-$i/1")" in
        "recovered after 1 from b1"*" 200") ok=$((ok + 1)) ;;
    esac
done
hy_eq "20 requests, each answered 503 on its first try in west: all end 200" 20 "$ok"
hy_check "web-1 counted the retries ($retries0 -> $(wmetric hypha_dp_http_retries_total))" \
    test "$(wmetric hypha_dp_http_retries_total)" -ge $((retries0 + 20))
hy_check "its access log says each was retried once" \
    grep -q "path=/flaky/req-20/1 status=200 .*upstream=$WE_IP:10001 .*retries=1 " "$HY_TMP/dp-web-1.log"
hy_eq "more 503s than numRetries: the last 503 reaches the client" 503 \
    "$(wcurl -s -o /dev/null -w '%{http_code}' "$OUT/flaky/many/9")"
gctl delete meshretry retry -m default >/dev/null

# ---- (4) the ingress carried it all on a few pooled connections
# a new app connection per request: the pooled mesh hop opens none
c0=$(imetric hypha_ingress_connections_total)
for i in $(seq 1 50); do wcurl -s -o /dev/null "$OUT/"; done
hy_eq "50 new app connections in east: no new connection at west's ingress" "$c0" \
    "$(imetric hypha_ingress_connections_total)"
# the requests that crossed: all but backend-east's share
reqs=$(($(wmetric_sum '^hypha_dp_http_requests_total[{]direction="outbound",') - http0 - e))
conns=$(($(imetric hypha_ingress_connections_total) - conns0))
# one per web-1 worker (2) and service (backend, backend-v2), and a spare each
hy_check "$reqs requests crossed west's ingress on $conns TLS connections" \
    test "$reqs" -ge 1900 -a "$conns" -ge 1 -a "$conns" -le 8
hy_check "which stay open" test "$(imetric hypha_ingress_active_connections)" -ge 1
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$WEB_PID"
# the ingress logs a connection when it ends
ing_lines() { grep -c "access peer=$EA_IP:.* sni=backend\(-v2\)\?\.default\.mesh .*result=ok" "$HY_TMP/ingress-west.log" || true; }
closed() { [ "$(imetric hypha_ingress_active_connections)" = 0 ]; }
hy_check "its pooled connections end at the ingress" hy_wait_for 10 closed
hy_check "west's ingress logged $(ing_lines) connections by SNI, for $reqs requests" \
    test "$(ing_lines)" -ge 1 -a "$(ing_lines)" -le 8
hy_check "the split's share for backend-v2 among them, by its own SNI" \
    grep -q "access peer=$EA_IP:.* sni=backend-v2.default.mesh service=default/backend-v2 upstream=$WE_IP:22000 .*result=ok" \
    "$HY_TMP/ingress-west.log"

# ---- a caller up before its service has an instance anywhere: web-2 in
# east calls backend-late, tcp while nothing serves it; then backend-late-1
# (http) starts in west, and web-2's outbound must turn http
cat >"$HY_TMP/dataplane-late.yaml" <<'YAML'
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
  outbound:
    - port: {{ out_port }}
      tags:
        kuma.io/service: backend-late
YAML
DP_FILE=$HY_TMP/dataplane-late.yaml start_dp web-2 web "$EA" east 23000 9904
hy_check "web-2 (east) becomes ready" hy_wait_for 15 dp_ready "$EA" 9904
late_tcp() { wcurl -s http://127.0.0.1:9904/config | jq -e '.outbounds[] | select(.service == "backend-late") | .protocol == "tcp"' >/dev/null; }
hy_check "its outbound to backend-late, served nowhere yet, is tcp" hy_wait_for 15 late_tcp
app "$WE" 23001 late
DP_ADDRESS=$WE_IP http_dp backend-late-1 backend-late "$WE" west 23000 9904 v1
hy_check "backend-late-1 (west) becomes ready" hy_wait_for 15 dp_ready "$WE" 9904
hy_check "west's ingress offers backend-late as protocol http" hy_wait_for 15 offered gctl backend-late
late_offered() { offered zctl "$EA" backend-late; }
hy_check "and zone east learns it" hy_wait_for 15 late_offered
hy_check "web-2's outbound to backend-late turns http, through west's ingress" \
    hy_wait_for 15 remote_http http://127.0.0.1:9904 backend-late
late0=$(wcurl -s http://127.0.0.1:9904/metrics | awk '$1 ~ /^hypha_dp_http_requests_total[{]direction="outbound",service="backend-late",/ { s += $NF } END { print s + 0 }')
hy_eq "a call from web-2 reaches it" "hello from late" "$(wcurl -s http://127.0.0.1:23002/)"
hy_eq "as HTTP: web-2 counted it" 1 \
    "$(($(wcurl -s http://127.0.0.1:9904/metrics | awk '$1 ~ /^hypha_dp_http_requests_total[{]direction="outbound",service="backend-late",/ { s += $NF } END { print s + 0 }') - late0))"

hy_check "SIGTERM stops west's ingress" hy_stop "$INGRESS_WEST_PID"
hy_check "SIGTERM stops east's ingress" hy_stop "$INGRESS_EAST_PID"
hy_check "SIGTERM stops zone east" hy_stop "$ZONE_EAST_PID"
hy_check "SIGTERM stops zone west" hy_stop "$ZONE_WEST_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"
hy_done
