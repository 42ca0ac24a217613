#!/usr/bin/env bash
# Prometheus discovery and MeshMetric against a real standalone zone, two
# real sidecars and a real ingress, and Debian's own prometheus: its
# http_sd_configs point at the zone's /prometheus/sd, and its targets API
# shows every proxy up (web-1 on the Prometheus endpoint its MeshMetric
# gives it, with its app's metrics merged; web-2 and the ingress on their
# admin servers); a MeshMetric moving web-1's port and path is followed; a
# sidecar that leaves disappears from the targets. An app that does not
# answer costs only its part of the page (counted). promtool accepts every
# component's metrics page (global, zone, sidecar, ingress).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG HYPHACTL_CONFIG
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
    { hy_log "no prometheus/promtool (Debian package prometheus)"; exit 77; }
command -v python3 >/dev/null || { hy_log "no python3"; exit 77; }

hy_start_standalone_zone z1
E=$SZONE_URL
ZCA=$SZONE_DATA/dp/ca.pem
DP_PORT=$SZONE_DP_PORT
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
promtool_ok() { curl -sf "$1" | promtool check metrics >"$HY_TMP/promtool.out" 2>&1 || { cat "$HY_TMP/promtool.out" >&2; return 1; }; }

# ---- the apps: web-1's serves metrics (one family the sidecar has too),
# and a second one accepts and never answers
APP_PORT=$(hy_free_port)
DEAD_PORT=$(hy_free_port)
cat >"$HY_TMP/metrics_app.py" <<'PY'
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PAGE = (b"# HELP app_orders_total Orders taken.\n# TYPE app_orders_total counter\n"
        b"app_orders_total{kind=\"book\"} 42\n"
        b"# HELP process_open_fds The app's own, also the sidecar's.\n# TYPE process_open_fds gauge\n"
        b"process_open_fds 3\n")
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics/prometheus":
            self.send_error(404); return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)
    def log_message(self, *a): pass
dead = socket.socket(); dead.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
dead.bind(("127.0.0.1", int(sys.argv[2]))); dead.listen(16)   # accepts, never answers
held = []
threading.Thread(target=lambda: [held.append(dead.accept()) for _ in iter(int, 1)], daemon=True).start()
srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("listening", flush=True)
srv.serve_forever()
PY
python3 "$HY_TMP/metrics_app.py" "$APP_PORT" "$DEAD_PORT" >"$HY_TMP/app.log" 2>&1 &
HY_PIDS+=("$!")
hy_wait_for 10 grep -q listening "$HY_TMP/app.log"

# ---- two sidecars and an ingress
W1_PORT=$(hy_free_ports 3)
W2_PORT=$(hy_free_ports 3)
hy_dp_token web-1 default web
hy_dp_token web-2 default web
hy_start_dp web-1 web "$W1_PORT"
W1_PID=$DP_PID W1_ADMIN=$DP_ADMIN
hy_start_dp web-2 web "$W2_PORT"
W2_PID=$DP_PID W2_ADMIN=$DP_ADMIN
ready() { curl -sf "$1/ready" >/dev/null; }
hy_check "the sidecars become ready" hy_wait_for 20 ready "$W1_ADMIN"
hy_wait_for 20 ready "$W2_ADMIN"
I_PORT=$(hy_free_port)
zctl generate zone-ingress-token --name ingress-1 --valid-for 1h >"$HY_TMP/ingress-1.token"
"$HY_BIN/hypha-ingress" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --ingress-file "$DATA/dp/ingress.yaml" \
    --ingress-var "name=ingress-1,address=127.0.0.1,advertised=127.0.0.1,port=$I_PORT" \
    --token-file "$HY_TMP/ingress-1.token" --admin-address 127.0.0.1:0 --workers 1 \
    >"$HY_TMP/ingress-1.log" 2>&1 &
I_PID=$!
HY_PIDS+=("$I_PID")
hy_wait_for 15 grep -q 'admin on http://' "$HY_TMP/ingress-1.log"
I_ADMIN=$(grep -o 'admin on http://[^ ]*' "$HY_TMP/ingress-1.log" | sed 's/admin on //')

# ---- MeshMetric: web-1 serves Prometheus on P1/metrics, merging its apps
P1=$(hy_free_port)
P2=$(hy_free_port)
meshmetric() { # meshmetric PORT PATH
    zctl apply -f - <<YAML
type: MeshMetric
mesh: default
name: web-1-metrics
spec:
  targetRef: {kind: Dataplane, name: web-1}
  default:
    applications:
      - {name: orders, port: $APP_PORT}
      - {name: dead, port: $DEAD_PORT, path: /never}
    backends:
      - type: Prometheus
        prometheus: {port: $1, path: $2}
YAML
}
out=$(meshmetric "$P1" /metrics 2>&1)
hy_eq "a MeshMetric applies without warnings" "" "$(grep -i warn <<<"$out" || true)"
serves() { curl -sf "http://127.0.0.1:$1$2" >/dev/null; }
hy_check "web-1 serves its Prometheus endpoint on the backend's port" hy_wait_for 20 serves "$P1" /metrics
T0=$SECONDS
page=$(curl -sf "http://127.0.0.1:$P1/metrics")
hy_check "a page waits for a dead app no longer than its timeout" test $((SECONDS - T0)) -le 6
hy_contains "the sidecar's own metrics" "hypha_dp_connected 1" "$page"
hy_contains "the app's metrics merged" 'app_orders_total{kind="book"} 42' "$page"
hy_contains "the dead app says why it is missing" "# app dead (http://127.0.0.1:$DEAD_PORT/never): timeout: no answer in 3000 ms" "$page"
dup() { [ "$(grep -c '^# TYPE process_open_fds ' <<<"$page")" = 1 ]; }
hy_check "a family the sidecar has is not declared twice" dup
# (the page read whole first: grep -q would leave curl writing into a closed pipe)
page=$(curl -sf "http://127.0.0.1:$P1/metrics")
counted() { grep -Eq "^hypha_dp_app_scrapes_total\\{app=\"$1\",result=\"$2\"\\} [1-9]" <<<"$page"; }
hy_check "the dead app is counted" counted dead timeout
hy_check "and the live one" counted orders ok
hy_eq "another path is a 404" 404 "$(hy_status GET "http://127.0.0.1:$P1/nope")"
sd_pp="$(curl -sf "$E/prometheus/sd")"
is_list3() { jq -e 'type == "array" and length == 3' <<<"$sd_pp" >/dev/null; }
hy_check "the zone's /prometheus/sd: a JSON list of the three proxies" is_list3
label() { jq -r --arg d "$1" --arg l "$2" '.[] | select(.labels.dataplane == $d) | .labels[$l]' <<<"$sd_pp"; }
hy_eq "web-1: its MeshMetric endpoint" "127.0.0.1:$P1" \
    "$(jq -r '.[] | select(.labels.dataplane == "web-1") | .targets[0]' <<<"$sd_pp")"
hy_eq "web-1: Kuma's kuma_io_service label" web "$(label web-1 kuma_io_service)"
hy_eq "web-1: mesh, zone, service" "default z1 web" \
    "$(label web-1 mesh) $(label web-1 zone) $(label web-1 service)"
hy_eq "web-2: its admin server's /metrics" "${W2_ADMIN#http://} /metrics" \
    "$(jq -r '.[] | select(.labels.dataplane == "web-2") | "\(.targets[0]) \(.labels.__metrics_path__)"' <<<"$sd_pp")"
hy_eq "the ingress: its admin server" "${I_ADMIN#http://} ingress" \
    "$(jq -r '.[] | select(.labels.dataplane == "ingress-1") | "\(.targets[0]) \(.labels.proxy)"' <<<"$sd_pp")"

# ---- Prometheus, pointed at the zone
PROM_PORT=$(hy_free_port)
mkdir -p "$HY_TMP/prom"
cat >"$HY_TMP/prom/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  scrape_timeout: 2s   # the sidecar gives its apps 75 % of it (X-Prometheus-Scrape-Timeout-Seconds)
scrape_configs:
  - job_name: hypha
    http_sd_configs:
      - url: $E/prometheus/sd
        refresh_interval: 1s
YAML
promtool check config "$HY_TMP/prom/prometheus.yml" >/dev/null
prometheus --config.file="$HY_TMP/prom/prometheus.yml" --storage.tsdb.path="$HY_TMP/prom/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$HY_TMP/prom.log" 2>&1 &
PROM_PID=$!
HY_PIDS+=("$PROM_PID")
PROM=http://127.0.0.1:$PROM_PORT
targets() { curl -sf "$PROM/api/v1/targets?state=active"; }
# up DATAPLANE URL-PART: its target is up and scraped at a URL with URL-PART
up() { targets | jq -e --arg d "$1" --arg u "$2" '[.data.activeTargets[] | select(.labels.dataplane == $d and .health == "up" and (.scrapeUrl | contains($u)))] | length == 1' >/dev/null; }
hy_check "Prometheus scrapes web-1 on its MeshMetric endpoint: up" hy_wait_for 30 up web-1 ":$P1/metrics"
hy_check "web-2 on its admin server: up" hy_wait_for 30 up web-2 "${W2_ADMIN#http://}/metrics"
hy_check "the ingress: up" hy_wait_for 30 up ingress-1 "${I_ADMIN#http://}/metrics"
all_up() { targets | jq -e '[.data.activeTargets[] | select(.health == "up")] | length == 3' >/dev/null; }
hy_check "all three targets up" hy_wait_for 30 all_up
query() { curl -sf "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
app_in_prom() { [ "$(query 'app_orders_total{dataplane="web-1",kuma_io_service="web"}')" = 42 ]; }
hy_check "the app's metric reaches Prometheus through the sidecar, with the SD labels" hy_wait_for 30 app_in_prom
dead_in_prom() { [ "$(query 'hypha_dp_app_scrapes_total{dataplane="web-1",app="dead",result="timeout"} > 1')" != "" ]; }
hy_check "the dead app costs only its part: counted, within Prometheus's scrape timeout" hy_wait_for 30 dead_in_prom

rule() { curl -sf "$E/meshes/default/dataplanes/web-1/_rules" | jq -e --arg p "$P1" '.rules[] | select(.type == "MeshMetric") | .proxyRule.conf.backends[0].prometheus.port == ($p | tonumber) and .proxyRule.origin.backends == "MeshMetric/web-1-metrics default[0]"' >/dev/null; }
hy_check "inspect: web-1's merged MeshMetric and where it came from (_rules)" rule
o=$(zctl inspect dataplane web-1)
hy_contains "hyphactl inspect dataplane: MeshMetric for the whole proxy" "whole proxy:" "$o"
hy_contains "each value with its policy" "MeshMetric/web-1-metrics default[0]" "$o"
hy_contains "inspect --type=policies: it applies to the whole proxy" "whole proxy" \
    "$(zctl inspect dataplane web-1 --type=policies)"

# ---- MeshMetric moves web-1's endpoint: Prometheus follows
meshmetric "$P2" /stats/prometheus >/dev/null
hy_check "web-1 serves the new port and path" hy_wait_for 20 serves "$P2" /stats/prometheus
closed() { ! curl -s -o /dev/null "http://127.0.0.1:$P1/metrics"; }
hy_check "and no longer the old port" hy_wait_for 20 closed
hy_check "Prometheus follows: web-1 up on :P2/stats/prometheus" hy_wait_for 30 up web-1 ":$P2/stats/prometheus"

# ---- promtool accepts every component's page
hy_start_global g
hy_check "promtool: the global CP's /metrics" promtool_ok "$GLOBAL_URL/metrics"
hy_check "promtool: the zone CP's /metrics" promtool_ok "$E/metrics"
hy_check "promtool: web-1's Prometheus page (apps merged)" promtool_ok "http://127.0.0.1:$P2/stats/prometheus"
hy_check "promtool: web-2's admin /metrics" promtool_ok "$W2_ADMIN/metrics"
hy_check "promtool: the ingress's admin /metrics" promtool_ok "$I_ADMIN/metrics"

# ---- a sidecar that leaves disappears from the targets
hy_stop "$W2_PID"
gone_from_sd() { curl -sf "$E/prometheus/sd" | jq -e '[.[] | select(.labels.dataplane == "web-2")] | length == 0' >/dev/null; }
hy_check "web-2 leaves: gone from /prometheus/sd" hy_wait_for 20 gone_from_sd
gone() { targets | jq -e '[.data.activeTargets[] | select(.labels.dataplane == "web-2")] | length == 0' >/dev/null; }
hy_check "and from Prometheus's targets" hy_wait_for 30 gone
hy_check "the others stay up" up web-1 ":$P2/stats/prometheus"

# ---- MeshMetric deleted: web-1 back on its admin server
zctl delete MeshMetric web-1-metrics -m default >/dev/null
closed_p2() { ! curl -s -o /dev/null "http://127.0.0.1:$P2/stats/prometheus"; }
hy_check "MeshMetric deleted: web-1's endpoint closes" hy_wait_for 20 closed_p2
hy_check "and Prometheus scrapes its admin server" hy_wait_for 30 up web-1 "${W1_ADMIN#http://}/metrics"

hy_stop "$PROM_PID"
hy_check "web-1 stops cleanly" hy_stop "$W1_PID"
hy_check "the ingress stops cleanly" hy_stop "$I_PID"
hy_check "the zone stops cleanly" hy_stop "$SZONE_PID"
hy_check "the global CP stops cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log*"
hy_done
