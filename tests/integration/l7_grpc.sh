#!/usr/bin/env bash
# gRPC (and HTTP/2) services on the sidecar's HTTP path against a real
# zone: h2c gRPC apps (tests/tools/grpc_app.py, Debian's python3-h2)
# behind sidecars whose inbounds are kuma.io/protocol: grpc. web-1's
# outbound takes the app's h2c (prior knowledge), sends each stream over
# the pooled mTLS HTTP/2 hop to backend-1's inbound, which passes it to
# its app on a multiplexed h2c connection. Checked: calls and their
# trailers (grpc-status, grpc-message) both ways, trailers-only answers,
# HTTP/1.1 callers of the same outbound, a MeshHTTPRoute split, MeshRetry
# grpc (unavailable, then success), MeshTimeout requestTimeout cutting a
# slow call, MeshHealthCheck grpc (NOT_SERVING takes an endpoint out),
# RequestMirror copying h2c calls and HTTP/1.1 POSTs with their bodies to
# backend-v2 (whose app records what it gets), by percentage, and not
# bodies over 64 KiB; and what backend's own sidecar answers a gRPC call
# itself with (a Deny, a rate limit, a fault abort) comes as a gRPC status
# (HTTP 200, trailers-only, grpc-status mapped as Envoy maps HTTP codes).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
PY=/usr/bin/python3
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
"$PY" -c 'import h2' 2>/dev/null || { hy_log "no python3-h2 (Debian): skipped"; exit 77; }

hy_start_mesh_zone 1h
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend-v2
spec:
  targetRef: {kind: MeshService, name: backend-v2}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

# ports: inbound PORT, app PORT+1, outbounds PORT+2 (backend), PORT+3 (backend-v2)
B_PORT=$(hy_free_ports 4)
B2_PORT=$(hy_free_ports 4)
W_PORT=$(hy_free_ports 4)
ready() { curl -sf "$1/ready" >/dev/null; }

start_app() { # start_app PORT NAME [ARGS...]
    "$PY" "$TOOLS/grpc_app.py" "$@" >"$HY_TMP/app-$2.log" 2>&1 &
    APP_PID=$!
    HY_PIDS+=("$APP_PID")
    hy_wait_for 10 grep -q listening "$HY_TMP/app-$2.log"
}
start_dp() { # start_dp NAME SERVICE PORT VERSION: as lib.sh's hy_start_http_dp, kuma.io/protocol grpc
    local name=$1 svc=$2 port=$3 log=$HY_TMP/dp-$1.log
    hy_dp_token "$name" default "$svc"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$(dirname "$0")/../data/dp/dataplane-grpc.yaml" \
        --dataplane-token-file "$HY_TMP/$name.token" \
        --dataplane-var "name=$name,service=$svc,port=$port,app_port=$((port + 1)),out_port=$((port + 2)),out_port2=$((port + 3)),version=$4" \
        --admin-address 127.0.0.1:0 --workers 2 >"$log" 2>&1 &
    DP_PID=$!
    DP_LOG=$log
    HY_PIDS+=("$DP_PID")
    hy_wait_for 15 grep -q 'admin on http://' "$log"
    DP_ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}
call() { "$PY" "$TOOLS/grpc_call.py" "$@"; } # call PORT [ARGS]: one line per call

start_app $((B_PORT + 1)) b1 --health-file="$HY_TMP/b1-down"
start_app $((B2_PORT + 1)) b2 --record="$HY_TMP/b2-record"
start_app $((W_PORT + 1)) w1
start_dp backend-1 backend "$B_PORT" v1
B_ADMIN=$DP_ADMIN B_LOG=$DP_LOG
start_dp backend-v2-1 backend-v2 "$B2_PORT" v2
B2_ADMIN=$DP_ADMIN
start_dp web-1 web "$W_PORT" v1
W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG W_PID=$DP_PID
hy_check "the sidecars become ready" hy_wait_for 20 ready "$B_ADMIN"
hy_wait_for 20 ready "$B2_ADMIN"
hy_wait_for 20 ready "$W_ADMIN"
proto() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend" or .service == "backend-v2") | select(.protocol == "grpc") | select((.endpoints // []) | length == 1)] | length == 2' >/dev/null; }
hy_check "web-1's outbounds to backend and backend-v2 are protocol grpc, with their endpoint" hy_wait_for 15 proto
OUT=$((W_PORT + 2))

# ---- basics
r=$(call "$OUT" --msg=ping)
hy_eq "an h2c gRPC call through web-1 and backend-1 reaches b1, trailers come back" \
    "http=200 grpc-status=0 grpc-message=ok trailers=1 msg=b1|ping" "$r"
r=$(call "$OUT" -H x-status:5)
hy_eq "a trailers-only answer (grpc-status 5) comes back as one" \
    "http=200 grpc-status=5 grpc-message=asked_for_5 trailers=0 msg=" "$r"
hy_eq "20 calls on one connection, multiplexed over the pooled hop" 20 \
    "$(call "$OUT" --count=20 | grep -c 'grpc-status=0 .*msg=b1|hi')"
hy_eq "20 calls on new connections" 20 "$(call "$OUT" --count=20 --new-conn | grep -c 'grpc-status=0')"
r=$(call "$OUT" --size=200000 | sed 's/msg=b1|//' | awk '{print length($NF)}')
hy_eq "a 200 kB message arrives whole and comes back" 200000 "$r"
hy_check "the inbound logs the call with the caller's SPIFFE ID" \
    grep -q "http direction=inbound port=$B_PORT method=POST .*path=/test.Echo/Unary status=200 .*id=spiffe://default/web" "$B_LOG"
hy_check "and the outbound with its upstream" \
    grep -q "http direction=outbound port=$OUT method=POST .*path=/test.Echo/Unary status=200 .*upstream=127.0.0.1:$B_PORT service=backend" "$W_LOG"
metric_sum() { # metric_sum ADMIN REGEX: the sum of the series matching
    curl -s "$1/metrics" | awk -v m="$2" '$1 ~ m { s += $NF } END { print s + 0 }'
}
hy_check "counted in the HTTP metrics (outbound backend 2xx >= 40)" \
    test "$(metric_sum "$W_ADMIN" '^hypha_dp_http_requests_total[{]direction="outbound",service="backend",.*code="200"')" -ge 40

# ---- policies
cfg_version() { curl -s "$1/config" | jq -r .version; }
pol_apply() { # pol_apply ADMIN: the policy on stdin, then waits for ADMIN's sidecar to take a new config
    local v
    v=$(cfg_version "$1")
    ctl apply -f - >/dev/null
    hy_wait_for 15 bash -c "[ \"\$(curl -s '$1/config' | jq -r .version)\" != '$v' ]"
}
pol_delete() { # pol_delete ADMIN TYPE NAME
    local v
    v=$(cfg_version "$1")
    ctl delete "$2" "$3" --mesh default >/dev/null
    hy_wait_for 15 bash -c "[ \"\$(curl -s '$1/config' | jq -r .version)\" != '$v' ]"
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

# MeshHTTPRoute: a 50/50 split of gRPC calls, and a path match
pol_apply "$W_ADMIN" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: web-grpc-routes
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches:
            - path: {type: Exact, value: /test.Echo/V2}
          default:
            backendRefs:
              - {kind: MeshService, name: backend-v2, weight: 1}
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 50}
              - {kind: MeshService, name: backend-v2, weight: 50}
YAML
routed() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend") | .httpRoutes // .http_routes | length] | max >= 2' >/dev/null; }
if hy_check "MeshHTTPRoute reaches web-1's outbound" hy_wait_for 15 routed; then
    split=$(call "$OUT" --count=400)
    v2=$(grep -c 'msg=b2|' <<<"$split")
    hy_check "a 50/50 split of 400 gRPC calls: b2 takes 200 +- 40 ($v2)" within "$v2" 160 240
    hy_eq "every call succeeded" 400 "$(grep -c 'grpc-status=0' <<<"$split")"
    hy_eq "a path match sends a method to backend-v2" 10 "$(call "$OUT" --count=10 --path=/test.Echo/V2 | grep -c 'msg=b2|')"
fi
pol_delete "$W_ADMIN" meshhttproute web-grpc-routes

# MeshRetry grpc: unavailable (trailers-only) tried again until it succeeds
pol_apply "$W_ADMIN" <<'YAML'
type: MeshRetry
mesh: default
name: web-grpc-retry
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        grpc:
          numRetries: 3
          backOff: {baseInterval: 10ms, maxInterval: 50ms}
          retryOn: [Unavailable]
YAML
retried() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | (.grpcRetry // .grpc_retry) != null' >/dev/null; }
hy_check "MeshRetry grpc reaches web-1's outbound" hy_wait_for 15 retried
retries0=$(hy_metric "$W_ADMIN" hypha_dp_http_retries_total)
hy_eq "two UNAVAILABLEs tried again, then OK" "http=200 grpc-status=0 grpc-message=ok trailers=1 msg=b1|hi" \
    "$(call "$OUT" -H x-flaky:r1/2)"
hy_check "counted as retries" test "$(hy_metric "$W_ADMIN" hypha_dp_http_retries_total)" -ge $((retries0 + 2))
hy_check "the access log says how many" grep -q "path=/test.Echo/Unary status=200 .* retries=2 " "$W_LOG"
hy_eq "more than numRetries: the last UNAVAILABLE stands" "grpc-status=14" \
    "$(call "$OUT" -H x-flaky:r2/9 | grep -o 'grpc-status=[0-9]*')"
hy_eq "a status retryOn does not name (INTERNAL) is not retried" "grpc-status=13" \
    "$(call "$OUT" -H x-flaky:r3/0 -H x-status:13 | grep -o 'grpc-status=[0-9]*')"
pol_delete "$W_ADMIN" meshretry web-grpc-retry

# MeshTimeout: requestTimeout cuts a slow call (the caller sees UNAVAILABLE, as from Envoy)
pol_apply "$W_ADMIN" <<'YAML'
type: MeshTimeout
mesh: default
name: web-grpc-timeout
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        http:
          requestTimeout: 500ms
YAML
t0=$(hy_metric "$W_ADMIN" hypha_dp_http_timeouts_total)
r=$(call "$OUT" -H x-sleep-ms:3000)
hy_eq "a 3 s call is cut at 500 ms: a trailers-only grpc-status 14" \
    "http=200 grpc-status=14 grpc-message=upstream_request_timeout trailers=0 msg=" "$r"
hy_check "counted as a timeout" test "$(hy_metric "$W_ADMIN" hypha_dp_http_timeouts_total)" -gt "$t0"
hy_check "logged as one" grep -q "path=/test.Echo/Unary status=504 .*result=timeout" "$W_LOG"
hy_eq "a quick call still works" "grpc-status=0" "$(call "$OUT" -H x-sleep-ms:10 | grep -o 'grpc-status=[0-9]*')"
pol_delete "$W_ADMIN" meshtimeout web-grpc-timeout

# MeshCircuitBreaker outlierDetection: gRPC failures count by their grpc-status
# (UNAVAILABLE as a 503, as Envoy maps it), in trailers-only answers and in trailers
pol_apply "$W_ADMIN" <<'YAML'
type: MeshCircuitBreaker
mesh: default
name: web-grpc-outlier
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        outlierDetection:
          disabled: false
          detectors:
            totalFailures: {consecutive: 3}
YAML
ej0=$(hy_metric "$W_ADMIN" hypha_dp_http_ejections_total)
call "$OUT" --count=5 >/dev/null
hy_eq "5 calls answered OK (HTTP 200, grpc-status 0) eject nothing" "$ej0" "$(hy_metric "$W_ADMIN" hypha_dp_http_ejections_total)"
call "$OUT" --count=3 -H x-status:14 >/dev/null
hy_check "3 UNAVAILABLEs in a row (HTTP 200 each) eject backend-1" \
    test "$(hy_metric "$W_ADMIN" hypha_dp_http_ejections_total)" -gt "$ej0"
hy_check "and the sidecar says so" grep -q "endpoint 127.0.0.1:$B_PORT ejected" "$W_LOG"
pol_delete "$W_ADMIN" meshcircuitbreaker web-grpc-outlier

# MeshHealthCheck grpc: NOT_SERVING takes backend-1 out (backend-2 beside it: with
# every endpoint unhealthy the sidecar would still use them all, as Envoy's panic mode)
B3_PORT=$(hy_free_ports 4)
start_app $((B3_PORT + 1)) b3
start_dp backend-2 backend "$B3_PORT" v1
two() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend") | .endpoints[]?] | length == 2' >/dev/null; }
hy_check "backend-2 joins: web-1 lists two backend endpoints" hy_wait_for 15 two
pol_apply "$W_ADMIN" <<'YAML'
type: MeshHealthCheck
mesh: default
name: web-grpc-hc
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        interval: 1s
        timeout: 2s
        unhealthyThreshold: 1
        healthyThreshold: 1
        grpc: {serviceName: backend}
YAML
hcset() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | (.healthGrpc // .health_grpc) == true' >/dev/null; }
hy_check "MeshHealthCheck grpc reaches web-1's outbound" hy_wait_for 15 hcset
passed() { test "$(metric_sum "$W_ADMIN" '^hypha_dp_health_checks_total[{].*result="passed"')" -ge 1; }
hy_check "its checks pass while b1 says SERVING" hy_wait_for 15 passed
touch "$HY_TMP/b1-down"
unhealthy() { grep -q "outbound $OUT (backend): endpoint 127.0.0.1:$B_PORT is unhealthy .*NOT_SERVING" "$W_LOG"; }
hy_check "b1 says NOT_SERVING: web-1 finds backend-1 unhealthy" hy_wait_for 15 unhealthy
hy_eq "and all 20 calls go to backend-2" 20 "$(call "$OUT" --count=20 | grep -c 'grpc-status=0 .*msg=b3|')"
rm -f "$HY_TMP/b1-down"
healthy() { grep -q "outbound $OUT (backend): endpoint 127.0.0.1:$B_PORT is healthy again" "$W_LOG"; }
hy_check "SERVING again: healthy again" hy_wait_for 15 healthy
b1_again() { [ "$(call "$OUT" --count=10 | grep -c 'msg=b1|')" -ge 1 ]; }
hy_check "and backend-1 takes calls again" hy_wait_for 10 b1_again
pol_delete "$W_ADMIN" meshhealthcheck web-grpc-hc

# an HTTP/1.1 caller of the grpc outbound still goes the HTTP/1.1 way (the inbound's h2c app answers)
curl -s --raw -D "$HY_TMP/h1-head" -o "$HY_TMP/h1-body" -X POST -H 'content-type: application/grpc' \
    --data-binary @/dev/null "http://127.0.0.1:$OUT/test.Echo/Unary"
hy_check "an HTTP/1.1 POST to the grpc outbound is answered by b1 (through h2c at the far end)" \
    grep -q "^HTTP/1.1 200" "$HY_TMP/h1-head"
hy_check "chunked" grep -qi "^transfer-encoding: chunked" "$HY_TMP/h1-head"
hy_check "its trailers (grpc-status, grpc-message) after the last chunk" \
    "$PY" -c 'import sys; sys.exit(not open(sys.argv[1], "rb").read().endswith(b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"))' "$HY_TMP/h1-body"

# ---- the inbound's own answers to gRPC calls: trailers-only, with a gRPC status
ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-deny
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
denied() { [[ "$(call "$OUT")" == "http=200 grpc-status=7 grpc-message="*"MeshTrafficPermission/web-deny"*" trailers=0 msg=" ]]; }
hy_check "a Deny at backend's inbound: PERMISSION_DENIED (7) in a trailers-only answer, naming the policy" \
    hy_wait_for 15 denied
hy_check "the inbound (backend-1's or backend-2's) logs it as a 403" \
    grep -hq "http direction=inbound port=\($B_PORT\|$B3_PORT\) method=POST .*status=403 .*result=denied" "$B_LOG" "$HY_TMP/dp-backend-2.log"
ctl delete meshtrafficpermission web-deny --mesh default >/dev/null
allowed() { [[ "$(call "$OUT")" == "http=200 grpc-status=0 "* ]]; }
hy_check "lifting it lets calls in again" hy_wait_for 15 allowed
ctl apply -f - >/dev/null <<'YAML'
type: MeshFaultInjection
mesh: default
name: backend-abort
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        http:
          - abort: {httpStatus: 401, percentage: 100}
YAML
aborted() { [ "$(call "$OUT")" = "http=200 grpc-status=16 grpc-message=fault_filter_abort trailers=0 msg=" ]; }
hy_check "a fault abort with httpStatus 401: UNAUTHENTICATED (16), trailers-only" hy_wait_for 15 aborted
ctl delete meshfaultinjection backend-abort --mesh default >/dev/null
hy_check "deleting it lets calls through again" hy_wait_for 15 allowed
ctl apply -f - >/dev/null <<'YAML'
type: MeshRateLimit
mesh: default
name: backend-limit
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        local:
          http:
            requestRate: {num: 2, interval: 60s}
            onRateLimit: {status: 429, headers: {add: [{name: x-limited, value: "yes"}]}}
YAML
limited() { call "$OUT" --count=10 >"$HY_TMP/limited"; grep -q "grpc-status=14" "$HY_TMP/limited"; }
hy_check "MeshRateLimit: calls over the limit are refused" hy_wait_for 15 limited
hy_eq "each as UNAVAILABLE (14) in a trailers-only answer, the others pass" "" \
    "$(grep -v -e '^http=200 grpc-status=14 grpc-message=local_rate_limited trailers=0 msg=$' -e '^http=200 grpc-status=0 ' "$HY_TMP/limited")"
ctl delete meshratelimit backend-limit --mesh default >/dev/null
unlimited() { [ "$(call "$OUT" --count=5 | grep -c 'grpc-status=0')" = 5 ]; }
hy_check "deleting it lets every call through" hy_wait_for 70 unlimited

# ---- RequestMirror: b2 (backend-v2's app) records each request it gets
pol_apply "$W_ADMIN" <<'YAML'
type: MeshHTTPRoute
mesh: default
name: web-grpc-mirror
spec:
  targetRef: {kind: MeshService, name: web}
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules:
        - matches: [{path: {type: PathPrefix, value: /test.Mirror}}]
          default:
            filters:
              - type: RequestMirror
                requestMirror: {backendRef: {kind: MeshService, name: backend-v2}}
        - matches: [{path: {type: PathPrefix, value: /test.Half}}]
          default:
            filters:
              - type: RequestMirror
                requestMirror: {backendRef: {kind: MeshService, name: backend-v2}, percentage: "50"}
        - matches: [{path: {type: PathPrefix, value: /test.SubV2}}]
          default:
            filters:
              - type: RequestMirror
                requestMirror: {backendRef: {kind: MeshServiceSubset, name: backend-v2, tags: {version: v2}}}
        - matches: [{path: {type: PathPrefix, value: /test.SubV9}}]
          default:
            filters:
              - type: RequestMirror
                requestMirror: {backendRef: {kind: MeshServiceSubset, name: backend-v2, tags: {version: v9}}}
YAML
mirror_set() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend") | (.httpRoutes // .http_routes)[]? | .filters[]? | select(.requestMirror // .request_mirror)] | length == 4' >/dev/null; }
hy_check "a MeshHTTPRoute with RequestMirror filters reaches web-1" hy_wait_for 15 mirror_set
rec() { # rec JQ-FILTER: how many of b2's records match
    [ -f "$HY_TMP/b2-record" ] || { echo 0; return; }
    jq -s "[.[] | select($1)] | length" "$HY_TMP/b2-record"
}
mirrors() { hy_metric "$W_ADMIN" "hypha_dp_http_mirrors_total{result=\"$1\"}"; }
r=$(call "$OUT" --path=/test.Mirror/Unary --msg=mirror-me)
hy_eq "an h2c call under the mirror is answered by backend (b1 or b3) as ever" \
    "http=200 grpc-status=0 grpc-message=ok trailers=1 msg=b|mirror-me" "${r/msg=b[13]|/msg=b|}"
got_h2c() { [ "$(rec '.path == "/test.Mirror/Unary" and .method == "POST" and .len == 14 and (.body | endswith("mirror-me"))')" = 1 ]; }
hy_check "b2 got its copy: method, path and the whole gRPC message" hy_wait_for 10 got_h2c
curl -s -o /dev/null -X POST -H 'content-type: text/plain' --data-binary 'hello-post-body' \
    "http://127.0.0.1:$OUT/test.Mirror/post"
got_h1() { [ "$(rec '.path == "/test.Mirror/post" and .method == "POST" and .body == "hello-post-body"')" = 1 ]; }
hy_check "an HTTP/1.1 POST with a body: b2 got its copy, body and all" hy_wait_for 10 got_h1
hy_check "both counted as sent" test "$(mirrors sent)" -ge 2
call "$OUT" --path=/test.SubV2/Unary --msg=sub >/dev/null
got_sub() { [ "$(rec '.path == "/test.SubV2/Unary"')" = 1 ]; }
hy_check "a mirror to a MeshServiceSubset (version v2) reaches b2, which carries it" hy_wait_for 10 got_sub
failed0=$(mirrors failed)
r=$(call "$OUT" --path=/test.SubV9/Unary --msg=sub)
hy_eq "a mirror to a subset nobody carries (v9): the call is answered as ever" "grpc-status=0" "$(grep -o 'grpc-status=0' <<<"$r")"
hy_eq "its copy goes nowhere (never to backend-v2's other instances): counted as failed" \
    $((failed0 + 1)) "$(mirrors failed)"
big0=$(mirrors body_too_large)
r=$(call "$OUT" --path=/test.Mirror/Big --size=100000 | sed 's/msg=b[13]|//' | awk '{print length($NF)}')
hy_eq "a 100 kB h2c call under the mirror is answered whole" 100000 "$r"
head -c 100000 /dev/zero | tr '\0' y >"$HY_TMP/big-body"
hy_eq "and a 100 kB HTTP/1.1 POST" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$HY_TMP/big-body" "http://127.0.0.1:$OUT/test.Mirror/BigPost")"
hy_eq "neither is mirrored (over 64 KiB): counted as body_too_large" $((big0 + 2)) "$(mirrors body_too_large)"
hy_eq "b2 got no copy of them" 0 "$(rec '.path | startswith("/test.Mirror/Big")')"
sent0=$(mirrors sent)
call "$OUT" --path=/test.Half/Unary --count=400 >/dev/null
sent=$(($(mirrors sent) - sent0))
half() { rec '.path == "/test.Half/Unary"'; }
all_in() { [ "$(half)" = "$sent" ]; }
hy_check "every copy web-1 sent ($sent) reaches b2" hy_wait_for 10 all_in
hy_check "percentage 50: b2 got 50 % +- 10 % of 400 calls ($(half))" within "$(half)" 160 240
pol_delete "$W_ADMIN" meshhttproute web-grpc-mirror

hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
