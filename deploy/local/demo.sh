#!/usr/bin/env bash
# The main command: installs what is missing (as root), builds, and starts
# the multi-zone demo on this machine:
#
#   a global CP            netns hy-demo-g        10.213.90.1 (a bridge)
#   zone east              netns hy-demo-east     10.213.90.2 (veth on the bridge)
#   zone west              netns hy-demo-west     10.213.90.3
#   an ingress per zone, on its zone's address, port 10001
#   pod web (zone east)    netns hy-demo-web      10.213.90.4: web-1's sidecar
#   pod backend (west)     netns hy-demo-backend  10.213.90.5: an HTTP app and
#                                                 backend-1's sidecar
#
# Both pods are transparent, as a Kubernetes pod with hypha-cni or a VM
# with `hypha-dp install transparent-proxy`: that command installs the
# iptables rules in the pod's namespace, each sidecar runs `hypha-dp run
# --transparent` as its own uid (5678, whose traffic the rules leave
# alone), and the app is unchanged: in the web pod a plain
# `curl http://backend.mesh:8080/` resolves backend.mesh through the
# sidecar's DNS to backend's virtual IP, and its connection is redirected
# into the sidecar. East's zone knows backend only from west's ingress
# (through the global CP), so web-1's sidecar opens mTLS to backend-1's
# sidecar through west's ingress, which routes by SNI without decrypting.
# Both pods' inbounds are HTTP (kuma.io/protocol: http), so the sidecars
# see requests: a MeshTrace (deploy/local/demo.yaml) sends their spans to a
# small Zipkin-compatible collector in the global namespace
# (tests/tools/trace_collector.py on 10.213.90.1:9411), and a MeshAccessLog
# writes backend-1's incoming requests to a file in the demo's work dir.
# The demo prints the answer, the trace of a call (its spans: service,
# kind, parent) and where to look for traces, access logs and metrics,
# then stays up and says what to try.
#
#   deploy/local/demo.sh           start, show, stay up until Ctrl-C
#   deploy/local/demo.sh --check   the same in namespaces of its own, check, stop; exit 0 or 1
#
# HYPHA_DEMO_BIN=DIR uses the binaries in DIR instead of building build-demo/
# (tests/run.sh runs --check on its optimised build this way).
#
# Network namespaces need root; outside them only /etc/netns/<pod namespace>/
# (an nsswitch.conf that ip netns exec mounts in the pods) is written, and
# removed with them.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
check=false
[ "${1:-}" = --check ] && check=true
if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: run it as root: it installs packages and makes network namespaces" >&2
    exit 1
fi

. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES curl iproute2 jq iptables python3 util-linux

if [ -n "${HYPHA_DEMO_BIN:-}" ]; then
    bin=$(cd "$HYPHA_DEMO_BIN" && pwd)
    for b in hypha-global hypha-zone hypha-ingress hyphactl hypha-dp; do
        [ -x "$bin/$b" ] || { echo "demo.sh: HYPHA_DEMO_BIN=$bin has no $b" >&2; exit 1; }
    done
    echo "== binaries from $bin"
else
    echo "== building (build-demo/, optimised, no sanitizers)"
    cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYPHA_SANITIZE=OFF >/dev/null
    cmake --build build-demo -j "$(nproc)" \
        --target hypha-global hypha-zone hypha-ingress hyphactl hypha-dp >/dev/null
    bin=$top/build-demo/bin
fi

suffix=
$check && suffix=-$$
G=hy-demo-g$suffix EAST=hy-demo-east$suffix WEST=hy-demo-west$suffix
WEB=hy-demo-web$suffix BACKEND=hy-demo-backend$suffix
DP_UID=5678 # the sidecars' uid: the redirection rules leave its traffic alone
for ns in $G $EAST $WEST $WEB $BACKEND; do
    if ip netns list | grep -qw "$ns"; then
        echo "demo.sh: network namespace $ns exists: is a demo running? (remove it: ip netns del $ns)" >&2
        exit 1
    fi
done
work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-demo.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in $G $EAST $WEST $WEB $BACKEND; do ip netns del "$ns" 2>/dev/null || true; done
    for ns in $WEB $BACKEND; do rm -rf "/etc/netns/$ns"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== network: namespaces $G (bridge 10.213.90.1), $EAST (.2), $WEST (.3), $WEB (.4), $BACKEND (.5)"
for ns in $G $EAST $WEST $WEB $BACKEND; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$G" link add br0 type bridge
ip -n "$G" addr add 10.213.90.1/24 dev br0
ip -n "$G" link set br0 up
n=2
for ns in $EAST $WEST $WEB $BACKEND; do
    ip link add "veth$n$suffix" netns "$G" type veth peer name eth0 netns "$ns"
    ip -n "$G" link set "veth$n$suffix" master br0 up
    ip -n "$ns" addr add "10.213.90.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    n=$((n + 1))
done
declare -A ns_of=([global]=$G [east]=$EAST [west]=$WEST) ip_of=([east]=10.213.90.2 [west]=10.213.90.3)
# the pods: a default route, so that the virtual IPs (240.0.0.0/4) are
# routable (the rules redirect them before they leave); names resolve
# through DNS (which the rules send to the sidecar), not through a
# resolver daemon of the host outside the namespace
for ns in $WEB $BACKEND; do
    ip -n "$ns" route add default dev eth0
    mkdir -p "/etc/netns/$ns"
    echo "hosts: files dns" >"/etc/netns/$ns/nsswitch.conf"
done

# start NAME NS CMD...: runs CMD in namespace NS, logging to $work/NAME.log
start() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
# until_true CMD...: retries CMD for at most 15 s.
until_true() {
    for _ in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { in_ns "$G" "$bin/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
zctl() { local z=$1; shift; in_ns "${ns_of[$z]}" "$bin/hyphactl" --cp http://127.0.0.1:5681 "$@"; }
ready() { in_ns "$1" curl -sf "$2/ready"; }

echo "== starting hypha-global: API 127.0.0.1:5681 in $G, KDS wss://10.213.90.1:5685"
start global "$G" "$bin/hypha-global" --data-dir "$work/global" --api-address 127.0.0.1:5681 \
    --kds-address 10.213.90.1:5685
until_true ready "$G" http://127.0.0.1:5681 || { cat "$work/global.log" >&2; exit 1; }
echo "== applying a mesh with mTLS and policies (deploy/local/demo.yaml)"
ctl apply -f - <deploy/local/demo.yaml
# backend-1 (its sidecar runs as $DP_UID) appends one line per request it
# takes to a file in the work dir
mkdir -p "$work/access" "$work/traces"
chown "$DP_UID" "$work/access"
alog=$work/access/backend.log
echo "== MeshAccessLog: backend-1's incoming requests to $alog"
ctl apply -f - <<YAML
type: MeshAccessLog
mesh: default
name: backend-access
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file:
              path: $alog
              format:
                type: Plain
                plain: '[%START_TIME%] %KUMA_SOURCE_SERVICE% -> %KUMA_DESTINATION_SERVICE% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %DURATION%ms'
YAML
echo "== a Zipkin-compatible collector on 10.213.90.1:9411 in $G (spans in $work/traces/zipkin.jsonl)"
start collector "$G" python3 tests/tools/trace_collector.py 10.213.90.1 9411 "$work/traces"
until_true grep -q listening "$work/collector.log" || { cat "$work/collector.log" >&2; exit 1; }

echo "== zones east and west, each registered with a zone token"
for z in east west; do
    ctl generate zone-token --zone "$z" --valid-for 720h >"$work/$z.token"
    start "zone-$z" "${ns_of[$z]}" "$bin/hypha-zone" --zone "$z" --data-dir "$work/zone-$z" \
        --api-address 127.0.0.1:5681 --dp-address "${ip_of[$z]}:5678" \
        --global-address wss://10.213.90.1:5685 --global-ca-file "$work/global/kds/ca.pem" \
        --zone-token-file "$work/$z.token"
done
for z in east west; do
    until_true ready "${ns_of[$z]}" http://127.0.0.1:5681 || { cat "$work/zone-$z.log" >&2; exit 1; }
    issuer() { in_ns "${ns_of[$1]}" curl -sf http://127.0.0.1:5681/meshes/default/meshissuers/ca-1; }
    until_true issuer "$z" || echo "   (zone $z has no intermediate CA yet)"
done

echo "== an ingress per zone, on 10001 of the zone's address"
for z in east west; do
    zctl "$z" generate zone-ingress-token --name "ingress-$z" --valid-for 720h >"$work/ingress-$z.token"
    start "ingress-$z" "${ns_of[$z]}" "$bin/hypha-ingress" run --cp-address "wss://${ip_of[$z]}:5678" \
        --ca-cert-file "$work/zone-$z/dp/ca.pem" --ingress-file tests/data/dp/ingress.yaml \
        --ingress-var "name=ingress-$z,address=${ip_of[$z]},advertised=${ip_of[$z]},port=10001" \
        --token-file "$work/ingress-$z.token" --admin-address 127.0.0.1:9902
done

echo "== the pods: backend (an HTTP app) in west, web in east; transparent sidecars"
# In each pod: the iptables rules, by `hypha-dp install transparent-proxy`
# (outbound TCP to 15001, inbound TCP to 15006, DNS to 15053, uid 5678
# left alone), then the sidecar as uid 5678 with --transparent. A pod's
# sidecar reaches its zone's CP on the zone's address (in the CP's
# certificate); its inbound takes callers on the pod's address, where the
# ingress reaches it (an ingress never relays to loopback: security
# finding 4).
chmod 755 "$work"
sidecar() { # NAME SERVICE ZONE POD-NS POD-ADDRESS
    local name=$1 svc=$2 z=$3 ns=$4 addr=$5
    zctl "$z" generate dataplane-token --mesh default --name "$name" --tag "hypha.io/service=$svc" \
        --valid-for 24h >"$work/$name.token"
    cat >"$work/dp-$name.yaml" <<YAML
type: Dataplane
mesh: default
name: $name
networking:
  address: $addr
  inbound:
    - port: 8080
      servicePort: 21001
      tags:
        kuma.io/service: $svc
        kuma.io/protocol: http
YAML
    cp "$work/zone-$z/dp/ca.pem" "$work/$name-ca.pem"
    chown "$DP_UID" "$work/$name.token" "$work/dp-$name.yaml" "$work/$name-ca.pem"
    in_ns "$ns" "$bin/hypha-dp" install transparent-proxy --dp-uid "$DP_UID" --exclude-inbound-ports 22,5670 \
        >"$work/install-$name.log" 2>&1 || { cat "$work/install-$name.log" >&2; exit 1; }
    start "dp-$name" "$ns" setpriv --reuid="$DP_UID" --regid="$DP_UID" --clear-groups \
        "$bin/hypha-dp" run --cp-address "wss://${ip_of[$z]}:5678" \
        --ca-cert-file "$work/$name-ca.pem" --dataplane-file "$work/dp-$name.yaml" \
        --dataplane-token-file "$work/$name.token" --transparent --admin-address 127.0.0.1:9901
}
start backend-app "$BACKEND" python3 tests/tools/http_app.py 21001 backend-1
sidecar backend-1 backend west "$BACKEND" 10.213.90.5
sidecar web-1 web east "$WEB" 10.213.90.4
for z in east west; do
    until_true ready "${ns_of[$z]}" http://127.0.0.1:9902 || echo "   (ingress-$z is not ready)"
done
for ns in $BACKEND $WEB; do
    until_true ready "$ns" http://127.0.0.1:9901 || echo "   (the sidecar in $ns is not ready)"
done

# the app's call, unchanged: a name, the service's port; prints the answer
call() { in_ns "$WEB" curl -s --max-time 5 http://backend.mesh:8080/; }
answers() { [ "$(call)" = "hello from backend-1" ]; }
until_true answers || true
vip=$(in_ns "$WEB" getent ahostsv4 backend.mesh | awk 'NR == 1 {print $1}' || true)
echo
echo "   in pod web (east): curl http://backend.mesh:8080/"
echo "     backend.mesh -> ${vip:-(no answer)} (web-1's DNS on 127.0.0.1:15053: backend's virtual IP)"
echo "     iptables -> web-1's outbound 127.0.0.1:15001 -> mTLS -> ingress-west 10.213.90.3:10001"
echo "     (SNI, not decrypted) -> pod backend 10.213.90.5:8080 -> iptables -> backend-1's inbound"
echo "     127.0.0.1:15006 -> the app 127.0.0.1:21001"
echo "   answer: $(call || echo "(none)")"
# backend-1's MeshAccessLog line for a request from web
logged() { grep -q ' web -> backend GET / 200 ' "$alog"; }
until_true logged || true
echo "   backend-1's access log ($alog):"
tail -n 1 "$alog" 2>/dev/null | sed 's/^/     /' || true
echo "   ingress-west: $(in_ns "$WEST" curl -sf http://127.0.0.1:9902/metrics |
    awk '$1 == "hypha_ingress_connections_total" {print $2 " connection(s) relayed so far (mTLS, not decrypted; web-1 keeps its connection open for the next requests)"}')"

# ---- a trace: one more call, to the app's /echo, which answers with the
# request headers it got: the sidecars added the trace context
echo
echo "   in pod web: curl http://backend.mesh:8080/echo  (the app answers with the headers it got)"
tp=$(in_ns "$WEB" curl -s --max-time 5 http://backend.mesh:8080/echo | jq -r '.headers.traceparent // .headers.Traceparent // empty' 2>/dev/null || true)
echo "     the app got traceparent: ${tp:-(none)}"
tid=$(cut -d- -f2 <<<"$tp")
spans_of() { jq -c --arg t "$tid" 'select(.traceId == $t)' "$work/traces/zipkin.jsonl" 2>/dev/null || true; }
span_of() { spans_of | jq -c --arg s "$1" --arg k "$2" 'select(.localEndpoint.serviceName == $s and .kind == $k)'; }
# spans are batched every 200 ms: wait for both sides'
both_spans() { [ -n "$tid" ] && [ -n "$(span_of web CLIENT)" ] && [ -n "$(span_of backend SERVER)" ]; }
until_true both_spans || true
echo "     trace ${tid:-(none)} at the collector:"
spans_of | jq -s -r 'sort_by(.timestamp)[] | "       " + .localEndpoint.serviceName + " " + .kind + " span " + .id + " parent " +
    (.parentId // "-") + (if .shared then " (shared)" else "" end) + "  " + (.tags["http.method"] // "") +
    " " + (.tags["http.url"] // "") + " " + (.tags["http.status_code"] // "") +
    " zone " + (.tags.zone // "?") + " " + ((.duration // 0) / 1000 | tostring) + " ms"' || true
[ -n "$(spans_of)" ] || echo "       (no span arrived in 15 s: see $work/collector.log and the sidecars' hypha_dp_trace_spans_dropped_total)"
# trace_ok: one trace with web-1's client span and backend-1's server span,
# the server's parent the client's span
trace_ok() {
    local c s
    c=$(span_of web CLIENT | jq -r .id)
    s=$(span_of backend SERVER | jq -r '(.parentId // "-") + " " + .id')
    [ -n "$c" ] && [ "$(span_of web CLIENT | wc -l)" = 1 ] && [ "$(span_of backend SERVER | wc -l)" = 1 ] &&
        { [ "${s%% *}" = "$c" ] || [ "${s#* }" = "$c" ]; }
}
# sd_target ZONE ADDRESS: the zone's /prometheus/sd lists a sidecar on
# ADDRESS, and a metrics page is there (reached from the zone's namespace)
sd_target() {
    in_ns "${ns_of[$1]}" curl -sf http://127.0.0.1:5681/prometheus/sd | jq -e --arg a "$2" \
        'any(.[]; .targets[0] == $a and .labels.proxy == "sidecar")' >/dev/null &&
        in_ns "${ns_of[$1]}" curl -sf "http://$2/metrics" | grep -q '^hypha_dp_http_requests_total'
}
sd_config="{job_name: hypha, honor_labels: true, http_sd_configs: [{url: 'http://127.0.0.1:5681/prometheus/sd'}]}"
online2() { [ "$(ctl inspect zones | grep -c Online)" -eq 2 ]; }
at_global() { ctl get dataplanes | grep -q west.backend-1 && ctl get dataplanes | grep -q east.web-1; }
until_true online2 || true
until_true at_global || true
echo
ctl inspect zones
echo
ctl get dataplanes
echo
ctl get zoneingresses
cat <<TXT

== where to look (everything lives in network namespaces: ip netns exec NS CMD)
   the trace:    ip netns exec $G curl -s http://10.213.90.1:9411/api/v2/trace/${tid:-TRACE-ID}
                 (Zipkin's API; /api/v2/traces lists every trace), every span as it came in
                 $work/traces/zipkin.jsonl; for Zipkin or Jaeger, point the MeshTrace's zipkin.url there
   access log:   $alog (backend-1's incoming requests)
   metrics:      each sidecar on its pod's address, port 5670 (MeshMetric "metrics"), from any namespace:
                 ip netns exec $G curl -s http://10.213.90.4:5670/metrics   # web-1
                 ip netns exec $G curl -s http://10.213.90.5:5670/metrics   # backend-1
                 and on its admin server inside its pod: ip netns exec $WEB curl -s http://127.0.0.1:9901/metrics
                 each zone's ingress: ip netns exec $WEST curl -s http://127.0.0.1:9902/metrics
   discovery:    each zone lists its sidecars and its ingress for Prometheus, labelled mesh/zone/service/dataplane:
                 ip netns exec $EAST curl -s http://127.0.0.1:5681/prometheus/sd
                 a Prometheus in that zone's namespace finds them all with:
                 scrape_configs: [$sd_config]
TXT

if $check; then
    ok=true
    answers || { echo "no answer across the zones for curl http://backend.mesh:8080/"; ok=false; }
    [ "${vip%%.*}" -ge 240 ] 2>/dev/null || # the VIPs are 240.0.0.0/4
        { echo "backend.mesh did not resolve to a virtual IP (got '$vip')"; ok=false; }
    in_ns "$WEB" iptables-save | grep -q 'REDIRECT --to-ports 15001' ||
        { echo "pod web has no redirection rules"; ok=false; }
    in_ns "$WEST" curl -sf http://127.0.0.1:9902/metrics | grep -q '^hypha_ingress_connections_total [1-9]' ||
        { echo "west's ingress relayed no connection"; ok=false; }
    logged || { echo "backend-1's MeshAccessLog file has no line for web's GET / (200): $alog"; ok=false; }
    until_true sd_target east 10.213.90.4:5670 ||
        { echo "east's /prometheus/sd does not list web-1 on 10.213.90.4:5670, or no metrics there"; ok=false; }
    until_true sd_target west 10.213.90.5:5670 ||
        { echo "west's /prometheus/sd does not list backend-1 on 10.213.90.5:5670, or no metrics there"; ok=false; }
    trace_ok || { echo "no trace of /echo with web-1's client span and backend-1's server span as its child"; ok=false; }
    in_ns "$WEB" curl -sf http://127.0.0.1:9901/metrics |
        grep -q '^hypha_dp_transparent_connections_total{result="mesh"} [1-9]' ||
        { echo "web-1 counted no transparent connection into the mesh"; ok=false; }
    online2 || { echo "the zones are not both Online"; ok=false; }
    at_global || { echo "the Dataplanes did not reach the global CP"; ok=false; }
    in_ns "$WEST" curl -sf http://127.0.0.1:9902/metrics | grep -q '^hypha_ingress_connections_total' || ok=false
    if $ok; then echo "== check passed"; exit 0; else echo "== check FAILED"; exit 1; fi
fi

cat <<TXT

== running. Logs in $work. Everything lives in network namespaces; run
   commands inside them with ip netns exec. From $top, in another terminal:

  alias gctl='ip netns exec $G build-demo/bin/hyphactl --cp http://127.0.0.1:5681'
  gctl get zones ; gctl inspect zones
  gctl get dataplanes                  # east.web-1, west.backend-1
  gctl get zoneingresses -o yaml       # what each zone's ingress offers
  # the app in pod web, unchanged: a name and a port, no address of the mesh
  ip netns exec $WEB curl -s http://backend.mesh:8080/
  ip netns exec $WEB getent hosts backend.mesh    # backend's virtual IPs
  ip netns exec $EAST build-demo/bin/hyphactl --cp http://127.0.0.1:5681 inspect services
  # the rules hypha-dp install transparent-proxy put in pod web
  ip netns exec $WEB iptables-save -t nat | grep HYPHA_MESH
  ip netns exec $WEB build-demo/bin/hypha-dp install transparent-proxy --dry-run
  # metrics: the ingress in west, the sidecars, the global CP
  ip netns exec $WEST curl -s http://127.0.0.1:9902/metrics | grep hypha_ingress
  ip netns exec $WEB curl -s http://127.0.0.1:9901/metrics | grep -e hypha_dp_transparent -e hypha_dp_dns
  ip netns exec $G curl -s http://127.0.0.1:5681/metrics | grep hypha_kds
  # traces, access log, metrics: see "where to look" above
  # deny web -> backend on the global CP; the next call gets a 403 from
  # backend-1's sidecar, and backend-1's access log says so:
  gctl apply -f - <<'YAML'
type: MeshTrafficPermission
mesh: default
name: allow-web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
  ip netns exec $WEB curl -s -w ' %{http_code}\n' http://backend.mesh:8080/
  tail -n 1 $alog

Press Ctrl-C to stop: every process, the namespaces and $work go.
TXT
wait "${pids[0]}"
