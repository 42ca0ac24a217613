#!/usr/bin/env bash
# Transparent proxying, the sidecar's part (issue 16 items 2 and 3): in a
# network namespace of its own, with iptables REDIRECT rules this test
# writes itself, an unmodified curl (run as another uid, whose traffic the
# rules redirect) resolves backend.mesh through the sidecar's DNS and
# reaches the backend over mTLS; a call to the backend's real address goes
# through the mesh too and obeys a MeshTrafficPermission Deny; a name
# outside the mesh resolves through the host's resolver and its server is
# reached by passthrough, until the Mesh turns passthrough off.
# `hyphactl inspect services` lists the services with their VIPs.
# Needs root (ip netns, iptables); exits 77 (skip) without.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NS=${HY_TP_NS:-}

if [ -z "$NS" ]; then # the outer run: make the namespace, run this inside it
    [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && command -v iptables >/dev/null || exit 77
    command -v ldnsd >/dev/null && command -v drill >/dev/null || {
        echo "ldnsd and drill (ldnsutils) are needed" >&2
        exit 77
    }
    NS=hytp$$
    ip netns add "$NS" || exit 77
    # ip netns exec mounts /etc/netns/NS/resolv.conf on /etc/resolv.conf
    mkdir -p "/etc/netns/$NS"
    echo "nameserver 10.77.0.1" >"/etc/netns/$NS/resolv.conf"
    rc=0
    ip netns exec "$NS" env HY_TP_NS="$NS" bash "$0" "$@" || rc=$?
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "/etc/netns/$NS"
    exit "$rc"
fi

. "$here/lib.sh"
DATA=$here/../data
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG HYPHACTL_CONFIG
APP_UID=65534 # curl runs as nobody: the rules redirect its traffic, not the sidecars'

# ---- the namespace's network: lo, and a link (a veth pair: the dummy
# driver may be missing) with the "pods'" addresses and a default route
# (so that 240.0.0.0/4 is routable)
ip link set lo up
ip link add hytp0 type veth peer name hytp1
ip link set hytp1 up
ip addr add 10.77.0.1/24 dev hytp0 # web's, and the resolver's
ip addr add 10.77.0.2/24 dev hytp0 # backend's
ip addr add 10.77.0.3/24 dev hytp0 # a server outside the mesh
ip link set hytp0 up
ip route add default dev hytp0

# ---- the host's resolver: a zone outside the mesh
cat >"$HY_TMP/outside.zone" <<'ZONE'
$ORIGIN outside.test.
$TTL 60
@ IN SOA ns.outside.test. admin.outside.test. 1 3600 600 86400 60
@ IN NS ns.outside.test.
ns IN A 10.77.0.1
www IN A 10.77.0.3
ZONE
ldnsd 10.77.0.1 53 outside.test "$HY_TMP/outside.zone" >"$HY_TMP/ldnsd.log" 2>&1 &
HY_PIDS+=("$!")
hy_check "the host resolver answers" hy_wait_for 10 drill @10.77.0.1 www.outside.test
# ldnsd has UDP only: a TCP front for it, to see queries forwarded over TCP
python3 "$here/../tools/dns_tcp.py" bridge 10.77.0.1 10.77.0.1 >"$HY_TMP/dns-tcp.log" 2>&1 &
BRIDGE=$!
HY_PIDS+=("$BRIDGE")
hy_check "the host resolver answers over TCP too" hy_wait_for 10 drill -t @10.77.0.1 www.outside.test

# ---- the zone, the apps, the sidecars
hy_start_standalone_zone z1
E=$SZONE_URL
ZCA=$SZONE_DATA/dp/ca.pem
DP_PORT=$SZONE_DP_PORT
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
zctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML

APP_PORT=$(hy_free_port)
hy_start_http_app "$APP_PORT" backend-1
OUT_PORT=$(hy_free_port)
python3 -m http.server --bind 10.77.0.3 "$OUT_PORT" --directory "$HY_TMP" >"$HY_TMP/outside.log" 2>&1 &
HY_PIDS+=("$!")
hy_wait_for 10 curl -sf -o /dev/null "http://10.77.0.3:$OUT_PORT/"

cat >"$HY_TMP/backend.yaml" <<YAML
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.77.0.2
  inbound:
    - port: 8080
      servicePort: $APP_PORT
      tags:
        kuma.io/service: backend
        kuma.io/protocol: http
YAML
cat >"$HY_TMP/web.yaml" <<'YAML'
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.77.0.1
  inbound:
    - port: 9090
      servicePort: 9091
      tags:
        kuma.io/service: web
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
YAML
start_dp() { # start_dp NAME SERVICE ARGS...: sets ADMIN (not in $(...): HY_PIDS must see the pid)
    local name=$1 svc=$2 log=$HY_TMP/dp-$1.log
    shift 2
    hy_dp_token "$name" default "$svc"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$HY_TMP/$name.yaml" --dataplane-token-file "$HY_TMP/$name.token" \
        --admin-address 127.0.0.1:0 --workers 2 "$@" >"$log" 2>&1 &
    HY_PIDS+=("$!")
    hy_wait_for 15 grep -q 'admin on http://' "$log"
    ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}
cp "$HY_TMP/backend.yaml" "$HY_TMP/backend-1.yaml"
cp "$HY_TMP/web.yaml" "$HY_TMP/web-1.yaml"
# the backend: transparent by the flag, on other ports than web's (one namespace)
start_dp backend-1 backend --transparent --transparent-outbound-port 15101 \
    --transparent-inbound-port 15106 --transparent-dns-port 15153
B_ADMIN=$ADMIN
start_dp web-1 web # transparent by its Dataplane; DNS on 15053
W_ADMIN=$ADMIN
W_PID=${HY_PIDS[-1]}
ready() { curl -sf "$1/ready" >/dev/null; }
# bad input: redirect ports that clash, and a --transparent port that is none
sed 's/redirectPortInbound: 15006/redirectPortInbound: 15001/' "$HY_TMP/web.yaml" >"$HY_TMP/bad.yaml"
rc=0
out=$("$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --dataplane-file "$HY_TMP/bad.yaml" --dataplane-token-file "$HY_TMP/web-1.token" \
    --admin-address 127.0.0.1:0 2>&1) || rc=$?
[ "$rc" -ne 0 ] && hy_ok "clashing redirect ports: hypha-dp refuses to start" ||
    hy_fail "clashing redirect ports: rc $rc"
hy_contains "and names the field" "transparentProxying.redirectPortOutbound" "$out"
rc=0
out=$("$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --dataplane-file "$HY_TMP/backend.yaml" --dataplane-token-file "$HY_TMP/backend-1.token" \
    --admin-address 127.0.0.1:0 --transparent --transparent-dns-port 70000 2>&1) || rc=$?
[ "$rc" -ne 0 ] && hy_ok "--transparent-dns-port 70000: refused" || hy_fail "port 70000: rc $rc"
hy_contains "saying why" "--transparent-dns-port: 70000 is not a port" "$out"
hy_check "backend-1 becomes ready" hy_wait_for 20 ready "$B_ADMIN"
hy_check "web-1 becomes ready" hy_wait_for 20 ready "$W_ADMIN"

# ---- the rules (written here, not by hypha-dp install): the app's TCP to
# anything but loopback goes to web's outbound port, its DNS to web's DNS;
# connections to backend's inbound port go to backend's inbound port
iptables -t nat -A OUTPUT -p tcp -m owner --uid-owner "$APP_UID" ! -d 127.0.0.0/8 \
    -j REDIRECT --to-ports 15001
iptables -t nat -A OUTPUT -p udp --dport 53 -m owner --uid-owner "$APP_UID" \
    -j REDIRECT --to-ports 15053
iptables -t nat -A OUTPUT -p tcp -d 10.77.0.2 --dport 8080 -j REDIRECT --to-ports 15106
app() { setpriv --reuid="$APP_UID" --regid="$APP_UID" --clear-groups "$@"; }

# ---- VIPs and DNS
has_vip() { curl -s "$W_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .vip' >/dev/null; }
hy_check "web's config has backend's VIP" hy_wait_for 20 has_vip
# backend-1 is transparent by the flag alone: the Dataplane it presents says so
b_has_web() { curl -s "$B_ADMIN/config" | jq -e '.outbounds[] | select(.service == "web") | .vip' >/dev/null; }
hy_check "--transparent alone: backend-1 gets web's outbound and VIP too" hy_wait_for 20 b_has_web
VIP=$(curl -s "$W_ADMIN/config" | jq -r '.outbounds[] | select(.service == "backend") | .vip')
VIP6=$(curl -s "$W_ADMIN/config" | jq -r '.outbounds[] | select(.service == "backend") | .vip6')
case "$VIP" in 24[0-9].* | 25[0-5].*) hy_ok "the VIP is in 240.0.0.0/4 ($VIP)" ;; *) hy_fail "VIP [$VIP]" ;; esac
hy_contains "with an IPv6 twin in fd00:fd00::/64" "fd00:fd00::" "$VIP6"
a=$(drill @127.0.0.1 -p 15053 backend.mesh A | awk '$1 == "backend.mesh." && $4 == "A" {print $5}')
hy_eq "DNS (UDP): backend.mesh A is the VIP" "$VIP" "$a"
hy_check "the DNS loaded ldns (not linked: sidecar/dns_ldns.h)" grep -q libldns "/proc/$W_PID/maps"
a=$(drill -t @127.0.0.1 -p 15053 backend.svc.mesh.local A |
    awk '$1 == "backend.svc.mesh.local." && $4 == "A" {print $5}')
hy_eq "DNS (TCP): backend.svc.mesh.local A is the VIP" "$VIP" "$a"
a=$(drill @127.0.0.1 -p 15053 backend.mesh AAAA | awk '$1 == "backend.mesh." && $4 == "AAAA" {print $5}')
hy_eq "DNS: backend.mesh AAAA is the IPv6 VIP" "$VIP6" "$a"
hy_contains "DNS: an unknown .mesh name is NXDOMAIN" "NXDOMAIN" \
    "$(drill @127.0.0.1 -p 15053 nothing.mesh A || true)"
a=$(drill @127.0.0.1 -p 15053 www.outside.test A | awk '$1 == "www.outside.test." && $4 == "A" {print $5}')
hy_eq "DNS: another name is forwarded to the host's resolver" 10.77.0.3 "$a"
# ---- DNS over TCP: forwarded over TCP, pipelined, IPv6, bad framing
n0=$(grep -c '^query' "$HY_TMP/dns-tcp.log" || true)
a=$(drill -t @127.0.0.1 -p 15053 www.outside.test A | awk '$1 == "www.outside.test." && $4 == "A" {print $5}')
hy_eq "DNS (TCP): another name is forwarded to the host's resolver" 10.77.0.3 "$a"
hy_eq "over TCP" "$((n0 + 1))" "$(grep -c '^query' "$HY_TMP/dns-tcp.log" || true)"
out=$(python3 "$here/../tools/dns_tcp.py" pipelined 127.0.0.1 15053 backend.mesh www.outside.test web.mesh)
hy_eq "DNS (TCP): three queries in one write, three answers in order" \
    "100 $VIP|101 10.77.0.3|102 $(curl -s "$W_ADMIN/config" | jq -r '.outbounds[] | select(.service == "web") | .vip')" \
    "$(echo "$out" | paste -sd'|')"
if ip -6 addr show dev lo | grep -q '::1'; then
    a=$(drill @::1 -p 15053 backend.mesh AAAA | awk '$1 == "backend.mesh." && $4 == "AAAA" {print $5}')
    hy_eq "DNS on [::1] (UDP): backend.mesh AAAA" "$VIP6" "$a"
    a=$(drill -t @::1 -p 15053 backend.mesh A | awk '$1 == "backend.mesh." && $4 == "A" {print $5}')
    hy_eq "DNS on [::1] (TCP): backend.mesh A" "$VIP" "$a"
else
    hy_ok "no IPv6 loopback here: [::1] not tried"
fi
hy_eq "DNS (TCP): a length below a DNS header closes the connection" closed \
    "$(python3 "$here/../tools/dns_tcp.py" raw 127.0.0.1 15053 000568656c6c6f)"
hy_eq "DNS (TCP): a query longer than 4096 bytes closes it too" closed \
    "$(python3 "$here/../tools/dns_tcp.py" raw 127.0.0.1 15053 1388000000)"
hy_contains "with a warning naming the client and the length" "sent a message of 5 bytes" \
    "$(grep 'dns' "$HY_TMP/dp-web-1.log")"
hy_check "the sidecar still answers over TCP" drill -t @127.0.0.1 -p 15053 backend.mesh A
kill "$BRIDGE"
wait "$BRIDGE" 2>/dev/null || true
hy_contains "DNS (TCP): with the resolver's TCP port closed, SERVFAIL" SERVFAIL \
    "$(drill -t @127.0.0.1 -p 15053 www.outside.test A || true)"
hy_contains "logged" "no resolver answered a query" "$(grep 'dns' "$HY_TMP/dp-web-1.log")"
printf 'garbage, not DNS' >"$HY_TMP/garbage"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(open(sys.argv[1],"rb").read(),("127.0.0.1",15053))' "$HY_TMP/garbage"
counted() { [ "$(hy_metric "$W_ADMIN" "hypha_dp_dns_queries_total{result=\"$1\"}")" != 0 ]; }
hy_check "a garbage packet is counted as malformed" hy_wait_for 10 counted malformed
hy_check "local answers are counted" counted local
hy_check "forwarded ones too" counted forwarded

# ---- an unmodified app: names, the mesh, passthrough
body=$(app curl -s --max-time 20 "http://backend.mesh:8080/")
hy_eq "curl http://backend.mesh:8080/ (DNS and TCP redirected) reaches the backend" \
    "hello from backend-1" "$body"
grep_log() { grep -q "$1" "$HY_TMP/dp-$2.log"; }
hy_check "backend-1's transparent inbound took it from web over mTLS" \
    hy_wait_for 10 grep_log 'direction=inbound port=8080 .*id=spiffe://default/web' backend-1
body=$(app curl -s --max-time 20 "http://10.77.0.2:8080/")
hy_eq "curl of the backend's real address:port goes through the mesh" "hello from backend-1" "$body"
mesh_n=$(hy_metric "$W_ADMIN" 'hypha_dp_transparent_connections_total{result="mesh"}')
[ "${mesh_n%.*}" -ge 2 ] && hy_ok "both counted as mesh connections ($mesh_n)" ||
    hy_fail "mesh connections: $mesh_n"

# ---- IPv6 (ULA addresses of this namespace only): ip6tables rules as the
# IPv4 ones, an unmodified curl -6 resolves backend.mesh's AAAA (its IPv6
# VIP) and reaches the backend through web's IPv6 outbound listener
if ip -6 addr add fd77::1/64 dev hytp0 nodad 2>/dev/null && ip -6 route add default dev hytp0 2>/dev/null &&
    command -v ip6tables >/dev/null; then
    ip6tables -t nat -A OUTPUT -p tcp -m owner --uid-owner "$APP_UID" ! -d ::1/128 \
        -j REDIRECT --to-ports 15001
    ip6tables -t nat -A OUTPUT -p udp --dport 53 -m owner --uid-owner "$APP_UID" \
        -j REDIRECT --to-ports 15053
    listening() { ss -Hltn "sport = :$1" | awk '{print $4}' | sort | paste -sd' '; }
    hy_contains "web's transparent outbound listens on [::1] too" "[::1]:15001" "$(listening 15001)"
    hy_contains "its transparent inbound on [::] too" "[::]:15006" "$(listening 15006)"
    body=$(app curl -6 -s --max-time 20 "http://backend.mesh:8080/")
    hy_eq "IPv6: curl -6 http://backend.mesh:8080/ reaches the backend" "hello from backend-1" "$body"
    body=$(app curl -s --max-time 20 "http://[$VIP6]:8080/")
    hy_eq "IPv6: curl of the IPv6 VIP too" "hello from backend-1" "$body"
    mesh6=$(hy_metric "$W_ADMIN" 'hypha_dp_transparent_connections_total{result="mesh"}')
    [ "${mesh6%.*}" -ge $((${mesh_n%.*} + 2)) ] && hy_ok "both counted as mesh connections ($mesh6)" ||
        hy_fail "mesh connections after IPv6: $mesh6"
    mesh_n=$mesh6
else
    hy_ok "no IPv6 in this namespace: IPv6 not tried"
fi
body=$(app curl -s --max-time 20 -o /dev/null -w '%{http_code}' "http://www.outside.test:$OUT_PORT/")
hy_eq "a destination outside the mesh passes through" 200 "$body"
pt=$(hy_metric "$W_ADMIN" 'hypha_dp_transparent_connections_total{result="passthrough"}')
[ "${pt%.*}" -ge 1 ] && hy_ok "counted as passthrough" || hy_fail "passthrough: $pt"

# ---- MeshTrafficPermission Deny holds for the real address too
zctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Deny}
YAML
denied() { ! app curl -sf --max-time 10 -o /dev/null "http://10.77.0.2:8080/"; }
hy_check "with a Deny, curl of the backend's real address fails" hy_wait_for 20 denied
hy_check "backend-1 refused it (MeshTrafficPermission)" \
    hy_wait_for 10 grep_log 'direction=inbound port=8080 .*result=denied' backend-1
denied_name() { ! app curl -sf --max-time 10 -o /dev/null "http://backend.mesh:8080/"; }
hy_check "by name too" denied_name

# ---- passthrough off
o=$(sed 's/^mtls:/networking:\n  outbound:\n    passthrough: false\nmtls:/' "$DATA/resources/mesh.yaml" |
    zctl apply -f - 2>&1)
case "$o" in *"not enforced"*) hy_fail "the Mesh's passthrough is said not enforced: $o" ;;
    *) hy_ok "the Mesh's passthrough is taken without a warning" ;; esac
pt_off() { curl -s "$W_ADMIN/config" | jq -e '.transparent.passthrough == false' >/dev/null; }
hy_check "the Mesh's passthrough: false reaches web" hy_wait_for 20 pt_off
refused() { ! app curl -sf --max-time 10 -o /dev/null "http://www.outside.test:$OUT_PORT/"; }
hy_check "then a destination outside the mesh is refused" refused
hy_check "and logged so" grep_log 'result=passthrough_off' web-1

# ---- hyphactl inspect services
o=$(zctl inspect services)
hy_contains "inspect services: a header" "VIP" "$o"
hy_contains "inspect services: backend with its VIP" "$VIP" "$(grep backend <<<"$o")"
hy_contains "inspect services: its name" "backend.mesh" "$(grep backend <<<"$o")"
hy_contains "inspect services: its endpoint" "10.77.0.2:8080" "$(grep backend <<<"$o")"
hy_contains "inspect services: web too" "web.mesh" "$o"

# ---- clean shutdown, no sanitizer reports
for pid in "${HY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${HY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
HY_PIDS=()
clean() { ! grep -qE 'ERROR: (Address|Leak|Thread|Undefined)Sanitizer|runtime error:|WARNING: ThreadSanitizer' "$HY_TMP"/dp-*.log; }
hy_check "no sanitizer report in the sidecars' logs" clean
hy_done
