#!/usr/bin/env bash
# MeshHealthCheck http: web-1 calls backend, two instances whose inbounds
# are kuma.io/protocol: http. Its checks are GETs of /health over the
# pooled mTLS HTTP/2 connections, answered by the apps through their
# sidecars' inbounds; b2's app answers 503 on /health while a file exists:
# after unhealthyThreshold checks web-1 logs backend-2 unhealthy and every
# call goes to backend-1; once /health answers 200 again traffic returns.
# Then backend-2's sidecar is frozen (SIGSTOP): its checks time out. Last,
# the policy deleted while backend-2 is unhealthy, backend-2 takes traffic
# again.
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
W_PORT=$(ports4)
SICK=$HY_TMP/b2-sick # while it exists, b2's /health answers 503

ready() { curl -sf "$1/ready" >/dev/null; }
ge() { [ "$1" -ge "$2" ]; }

hy_start_http_app $((B1_PORT + 1)) b1 "--health-file=$HY_TMP/b1-sick" # never there
hy_start_http_app $((B2_PORT + 1)) b2 "--health-file=$SICK"
hy_start_http_app $((W_PORT + 1)) w1
hy_start_http_dp backend-1 backend "$B1_PORT" v1
B1_PID=$DP_PID B1_ADMIN=$DP_ADMIN
hy_start_http_dp backend-2 backend "$B2_PORT" v1
B2_PID=$DP_PID B2_ADMIN=$DP_ADMIN B2_LOG=$DP_LOG
hy_start_http_dp web-1 web "$W_PORT" v1
W_PID=$DP_PID W_ADMIN=$DP_ADMIN W_LOG=$DP_LOG
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W_ADMIN"
hy_wait_for 20 ready "$B1_ADMIN"
hy_wait_for 20 ready "$B2_ADMIN"
eps() { curl -s "$W_ADMIN/config" | jq -e '[.outbounds[] | select(.service == "backend" and .protocol == "http") | .endpoints[]?] | length == 2' >/dev/null; }
hy_check "web-1's outbound to backend is http, with both instances" hy_wait_for 20 eps
OUT=http://127.0.0.1:$((W_PORT + 2))
PORT_OUT=$((W_PORT + 2))
# calls N: N calls through web-1 on new connections; prints the instances that answered, sorted, unique
calls() {
    local i
    for ((i = 0; i < $1; i++)); do curl -s "$OUT/"; done | sed 's/hello from //' | sort -u | tr '\n' ' '
}
hy_eq "without a MeshHealthCheck calls reach both instances" "b1 b2 " "$(calls 20)"

# ---- b2 sick: its /health answers 503
touch "$SICK"
ctl apply -f - >/dev/null 2>"$HY_TMP/apply-hc.err" <<'YAML'
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
        unhealthyThreshold: 2
        healthyThreshold: 1
        http:
          path: /health
          expectedStatuses: [200]
YAML
hy_eq "applying it draws no warning (http.path and expectedStatuses are enforced)" "" "$(cat "$HY_TMP/apply-hc.err")"
hc_set() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .healthHttpPath == "/health"' >/dev/null; }
hy_check "the MeshHealthCheck reaches web-1 (health path /health)" hy_wait_for 15 hc_set
unhealthy_n() { [ "$(grep -c "outbound $PORT_OUT (backend): endpoint 127.0.0.1:$B2_PORT is unhealthy after 2 failed health checks in a row, the last: status 503" "$W_LOG")" -ge "$1" ]; }
healthy_n() { [ "$(grep -c "outbound $PORT_OUT (backend): endpoint 127.0.0.1:$B2_PORT is healthy again" "$W_LOG")" -ge "$1" ]; }
hy_check "after 2 checks answered 503 web-1 logs backend-2 unhealthy" hy_wait_for 15 unhealthy_n 1
hy_check "backend-1 (answering 200) is never found unhealthy" bash -c "! grep -q 'endpoint 127.0.0.1:$B1_PORT is unhealthy' '$W_LOG'"
hy_eq "now every call goes to backend-1" "b1 " "$(calls 20)"
app_health() { curl -s "http://127.0.0.1:$(($1 + 1))/stats" | jq -r '.health // 0'; }
hy_check "the checks reached b2's app through backend-2's inbound" ge "$(app_health "$B2_PORT")" 2
hy_check "as HTTP requests of web's identity in backend-2's access log" \
    grep -Eq "http direction=inbound .*method=GET authority=backend path=/health status=503 .*id=spiffe://default/web " "$B2_LOG"
hy_check "counted as failed checks" ge "$(hy_metric "$W_ADMIN" 'hypha_dp_health_checks_total{result="failed"}')" 2
hy_check "and backend-1's as passed" ge "$(hy_metric "$W_ADMIN" 'hypha_dp_health_checks_total{result="passed"}')" 2
hy_eq "the checks are no requests of web-1's outbound" 0 \
    "$(grep -c 'http direction=outbound .*path=/health' "$W_LOG")"

# ---- b2 well again
rm -f "$SICK"
hy_check "its /health answers 200 again: web-1 logs it healthy" hy_wait_for 15 healthy_n 1
reaches_b2() { calls 10 | grep -q b2; }
hy_check "and calls reach backend-2 again" hy_wait_for 10 reaches_b2

# ---- a sidecar that stops answering: the checks time out
kill -STOP "$B2_PID"
timed_out() { grep -q "endpoint 127.0.0.1:$B2_PORT is unhealthy after 2 failed health checks in a row, the last: no response within 1000 ms" "$W_LOG"; }
hy_check "backend-2's sidecar frozen: its checks time out, web-1 logs it unhealthy" hy_wait_for 15 timed_out
hy_eq "and calls go to backend-1" "b1 " "$(calls 10)"
kill -CONT "$B2_PID"
hy_check "thawed, it is healthy again" hy_wait_for 15 healthy_n 2
hy_check "and calls reach it" hy_wait_for 10 reaches_b2

# ---- the MeshHealthCheck deleted while backend-2 is held unhealthy: it takes traffic again
touch "$SICK"
hy_check "b2's /health answers 503 again: unhealthy again" hy_wait_for 15 unhealthy_n 2
hy_eq "calls go to backend-1" "b1 " "$(calls 10)"
ctl delete MeshHealthCheck backend-hc -m default >/dev/null
no_hc() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .healthInterval == null' >/dev/null; }
hy_check "the MeshHealthCheck deleted, web-1 checks no more" hy_wait_for 15 no_hc
hy_check "and says backend-2 takes traffic again" grep -q "outbound $PORT_OUT (backend): no more health checks: 1 endpoint held unhealthy takes traffic again" "$W_LOG"
hy_check "calls reach backend-2 although its /health still answers 503" hy_wait_for 10 reaches_b2
hy_check "SIGTERM stops web-1 cleanly" hy_stop "$W_PID"
hy_check "SIGTERM stops backend-1 cleanly" hy_stop "$B1_PID"
hy_check "SIGTERM stops backend-2 cleanly" hy_stop "$B2_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error\|WARNING: ThreadSanitizer' '$HY_TMP'/*.log"
hy_done
