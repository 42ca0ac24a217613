#!/usr/bin/env bash
# Transparent proxying end to end (issue 16's main test), real processes
# only: two "pods" (network namespaces) on a bridge made by Debian's
# containernetworking-plugins (bridge + host-local) with hypha-cni chained
# after them, a third namespace as the upstream resolver (ldnsd), a zone CP
# on the host's loopback (reached from each pod through ns_relay.py, so the
# CP's certificate stays valid). Pod A runs `hypha-dp run --transparent` as
# uid 5678 for web; pod B an app and a transparent sidecar for backend.
# An unmodified curl in pod A (another uid) reaches backend.mesh; the bridge
# carries only TLS; the real address goes through the mesh and obeys a
# MeshTrafficPermission Deny and Allow; the sidecars' own connections are
# not looped; a name outside the mesh resolves upstream; CNI DEL leaves no
# rule. Then the VM path: `hypha-dp install transparent-proxy` in a fresh
# namespace, the same call, `uninstall` restores the exact prior rules.
# Needs root, iptables, ldnsutils, tcpdump, jq, the CNI plugins (77 otherwise).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || exit 77
CNI_BIN=/usr/lib/cni
[ -x "$CNI_BIN/bridge" ] && [ -x "$CNI_BIN/host-local" ] || exit 77
for t in iptables-save jq ldnsd drill tcpdump setpriv curl getent; do
    command -v "$t" >/dev/null || {
        echo "$t is needed" >&2
        exit 77
    }
done
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG HYPHACTL_CONFIG
DP_UID=5678 APP_UID=65534
PA=hyte-a-$$ PB=hyte-b-$$ PC=hyte-c-$$ PV=hyte-v-$$ BR=hyte$$
SUB=10.213.81

for ns in "$PA" "$PB" "$PC" "$PV"; do
    ip netns add "$ns"
    HY_CLEANUP+=("ip netns del $ns" "rm -rf /etc/netns/$ns")
done
HY_CLEANUP+=("ip link del $BR")

NET='{"cniVersion":"1.0.0","name":"hyte-net","type":"bridge","bridge":"'$BR'",
  "isGateway":false,"ipMasq":false,"ipam":{"type":"host-local","subnet":"'$SUB'.0/24",
  "dataDir":"'$HY_TMP/ipam'"}}'
ANNOTATED='{"io.kubernetes.cri.pod-annotations":{"hypha.io/sidecar-injection":"enabled"}}'
cni() {
    CNI_COMMAND=$2 CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$3 CNI_IFNAME=${CNI_IFNAME:-eth0} \
        CNI_PATH=$CNI_BIN CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$3" "$1"
}
chained() {
    jq -c --argjson rc "$1" --argjson prev "$2" -n \
        '{cniVersion:"1.0.0",name:"hyte-net",type:"hypha-cni",runtimeConfig:$rc,prevResult:$prev}'
}
ours() { ip netns exec "$1" sh -c 'iptables-save; ip6tables-save' | grep -c HYPHA_MESH_ || true; }
addr() { jq -r '.ips[0].address' <<<"$1" | sed 's,/.*,,'; }
declare -A PREV IP
for ns in "$PA" "$PB" "$PC" "$PV"; do
    echo '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}' |
        CNI_IFNAME=lo cni "$CNI_BIN/loopback" ADD "$ns" >/dev/null
    PREV[$ns]=$(echo "$NET" | cni "$CNI_BIN/bridge" ADD "$ns")
    IP[$ns]=$(addr "${PREV[$ns]}")
    HY_CLEANUP+=("echo '$NET' | CNI_COMMAND=DEL CNI_CONTAINERID=$ns CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN $CNI_BIN/bridge")
    # a default route, so that the VIPs (240.0.0.0/4) are routable
    ip netns exec "$ns" ip route add default dev eth0
done
IPA=${IP[$PA]} IPB=${IP[$PB]} IPC=${IP[$PC]} IPV=${IP[$PV]}
hy_contains "the bridge plugin gave the pods addresses" "$SUB." "$IPA $IPB $IPC $IPV"
for ns in "$PA" "$PB" "$PV"; do
    mkdir -p "/etc/netns/$ns"
    echo "nameserver $IPC" >"/etc/netns/$ns/resolv.conf"
done

# ---- pod C: the upstream resolver, a zone outside the mesh
cat >"$HY_TMP/outside.zone" <<ZONE
\$ORIGIN outside.test.
\$TTL 60
@ IN SOA ns.outside.test. admin.outside.test. 1 3600 600 86400 60
@ IN NS ns.outside.test.
ns IN A $IPC
www IN A $IPC
ZONE
ip netns exec "$PC" ldnsd "$IPC" 53 outside.test "$HY_TMP/outside.zone" >"$HY_TMP/ldnsd.log" 2>&1 &
HY_PIDS+=("$!")
hy_check "the upstream resolver answers" hy_wait_for 10 ip netns exec "$PA" drill @"$IPC" www.outside.test

# ---- hypha-cni in pods A and B (chained after bridge)
for ns in "$PA" "$PB"; do
    out=$(chained "$ANNOTATED" "${PREV[$ns]}" | cni "$HY_BIN/hypha-cni" ADD "$ns") && rc=0 || rc=$?
    hy_eq "hypha-cni ADD in $ns" 0 "$rc"
done
hy_contains "pod A has the rules" "REDIRECT --to-ports 15001" "$(ip netns exec "$PA" iptables-save)"

# ---- the zone, on the host's loopback; relays from each pod's loopback
hy_start_standalone_zone z1
E=$SZONE_URL
DP_PORT=$SZONE_DP_PORT
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
mtp() {
    zctl apply -f - >/dev/null <<YAML
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: $1}
YAML
}
mtp Allow
for ns in "$PA" "$PB" "$PV"; do
    python3 "$TOOLS/ns_relay.py" "$ns" "$DP_PORT" "$HY_TMP/relay-$ns.ready" 2>"$HY_TMP/relay-$ns.log" &
    HY_PIDS+=("$!")
    hy_wait_for 10 test -e "$HY_TMP/relay-$ns.ready"
done

# the sidecars run as DP_UID: their files must be readable by it
DPD=$HY_TMP/dp
mkdir -p "$DPD"
cp "$SZONE_DATA/dp/ca.pem" "$DPD/ca.pem"
chmod 755 "$HY_TMP" "$DPD"
APP_PORT=$(hy_free_port)
dataplane() { # dataplane NAME SERVICE ADDRESS
    cat >"$DPD/$1.yaml" <<YAML
type: Dataplane
mesh: default
name: $1
networking:
  address: $3
  inbound:
    - port: 8080
      servicePort: $APP_PORT
      tags:
        kuma.io/service: $2
        kuma.io/protocol: http
YAML
    hy_dp_token "$1" default "$2"
    cp "$HY_TMP/$1.token" "$DPD/$1.token"
    chown -R "$DP_UID" "$DPD"
}
start_dp() { # start_dp NS NAME SERVICE ADDRESS: sets ADMIN (not in $(...): HY_PIDS must see the pid)
    local ns=$1 name=$2 log=$DPD/dp-$2.log
    dataplane "$name" "$3" "$4"
    ip netns exec "$ns" setpriv --reuid=$DP_UID --regid=$DP_UID --clear-groups \
        "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$DPD/ca.pem" \
        --dataplane-file "$DPD/$name.yaml" --dataplane-token-file "$DPD/$name.token" \
        --admin-address 127.0.0.1:0 --workers 2 --transparent >"$log" 2>&1 &
    HY_PIDS+=("$!")
    hy_wait_for 30 grep -q 'admin on http://' "$log"
    ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
app() { local ns=$1; shift; ip netns exec "$ns" setpriv --reuid=$APP_UID --regid=$APP_UID --clear-groups "$@"; }
ready() { in_ns "$1" curl -sf "$2/ready" >/dev/null; }

in_ns "$PB" python3 "$TOOLS/http_app.py" "$APP_PORT" backend-1 >"$HY_TMP/app-backend-1.log" 2>&1 &
HY_PIDS+=("$!")
hy_wait_for 10 grep -q listening "$HY_TMP/app-backend-1.log"
start_dp "$PB" backend-1 backend "$IPB"
B_ADMIN=$ADMIN
start_dp "$PA" web-1 web "$IPA"
A_ADMIN=$ADMIN
hy_check "backend-1 becomes ready" hy_wait_for 30 ready "$PB" "$B_ADMIN"
hy_check "web-1 becomes ready" hy_wait_for 30 ready "$PA" "$A_ADMIN"
has_vip() { in_ns "$PA" curl -s "$A_ADMIN/config" | jq -e '.outbounds[] | select(.service == "backend") | .vip' >/dev/null; }
hy_check "web's config has backend's VIP" hy_wait_for 30 has_vip

# ---- an unmodified curl by name, with a capture of pod B's link (frames
# bridged between two ports never reach a tap on the bridge device itself)
ip netns exec "$PB" tcpdump -Z root -i eth0 -n -U --immediate-mode -s 0 -w "$HY_TMP/bridge.pcap" tcp >"$HY_TMP/tcpdump.log" 2>&1 &
TCPDUMP=$!
HY_PIDS+=("$TCPDUMP")
hy_wait_for 10 grep -q 'listening on' "$HY_TMP/tcpdump.log"
body=$(app "$PA" curl -s --max-time 20 "http://backend.mesh:8080/")
hy_eq "pod A: curl http://backend.mesh:8080/ reaches the app in pod B" "hello from backend-1" "$body"
body=$(app "$PA" curl -s --max-time 20 "http://$IPB:8080/")
hy_eq "pod A: curl of pod B's address:port reaches it too" "hello from backend-1" "$body"
kill "$TCPDUMP"
wait "$TCPDUMP" 2>/dev/null || true
pkts=$(tcpdump -n -r "$HY_TMP/bridge.pcap" "tcp port 8080 and host $IPB" 2>/dev/null | wc -l)
[ "$pkts" -gt 0 ] && hy_ok "the capture saw the calls on pod B's link ($pkts packets)" ||
    hy_fail "no packet to $IPB:8080 captured: $(cat "$HY_TMP/tcpdump.log"; tcpdump -n -r "$HY_TMP/bridge.pcap" 2>&1 | head -5)"
# a TLS handshake record (content type 22) opens the payload of some segment
tls=$(tcpdump -n -r "$HY_TMP/bridge.pcap" \
    "tcp port 8080 and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) > 0) and tcp[((tcp[12]&0xf0)>>2)] = 0x16" \
    2>/dev/null | wc -l)
[ "$tls" -gt 0 ] && hy_ok "they carried TLS handshakes ($tls records)" || hy_fail "no TLS handshake captured"
plain=$(tcpdump -n -A -r "$HY_TMP/bridge.pcap" 2>/dev/null | grep -c -e 'GET / HTTP' -e 'hello from' || true)
hy_eq "pod B's link carried no plaintext HTTP" 0 "$plain"
grep_log() { grep -q "$1" "$DPD/dp-$2.log"; }
hy_check "backend-1 took them over mTLS from web" \
    hy_wait_for 10 grep_log 'direction=inbound port=8080 .*id=spiffe://default/web' backend-1

# ---- MeshTrafficPermission Deny, then Allow, for the real address
mtp Deny
denied() { ! app "$PA" curl -sf --max-time 10 -o /dev/null "http://$IPB:8080/"; }
hy_check "with a Deny, pod B's address is refused" hy_wait_for 30 denied
hy_check "by backend-1's MeshTrafficPermission" \
    hy_wait_for 10 grep_log 'direction=inbound port=8080 .*result=denied' backend-1
mtp Allow
allowed() { app "$PA" curl -sf --max-time 10 -o /dev/null "http://$IPB:8080/"; }
hy_check "Allow restores it" hy_wait_for 30 allowed

# ---- no loop: the sidecars' own connections are not redirected to themselves
n=0
for l in "$DPD"/dp-web-1.log "$DPD"/dp-backend-1.log; do
    n=$((n + $(grep -c 'direction=' "$l" || true)))
done
[ "$n" -lt 60 ] && hy_ok "no connection storm in the sidecars' logs ($n connection lines)" ||
    hy_fail "$n connection lines: a loop?"
loops=$(in_ns "$PA" curl -s "$A_ADMIN/metrics" | awk '/^hypha_dp_transparent_connections_total/ {s += $2} END {print s + 0}')
[ "${loops%.*}" -lt 30 ] && hy_ok "web-1 counted few transparent connections ($loops)" ||
    hy_fail "web-1 counted $loops transparent connections"

# ---- DNS over TCP: the rules send the app's TCP 53 (to any resolver) to
# the sidecar too, which answers the mesh's names over TCP
vip=$(in_ns "$PA" curl -s "$A_ADMIN/config" | jq -r '.outbounds[] | select(.service == "backend") | .vip')
a=$(app "$PA" drill -t @"$IPC" backend.mesh A | awk '$1 == "backend.mesh." && $4 == "A" {print $5}')
hy_eq "pod A: a DNS query over TCP (drill -t) is answered by the sidecar" "$vip" "$a"

# ---- a name outside the mesh, through the upstream resolver
hy_eq "pod A: a name outside the mesh resolves upstream" "$IPC" \
    "$(app "$PA" getent ahostsv4 www.outside.test | awk 'NR == 1 {print $1}')"

# ---- the VM path (while pod B is still transparent): install in a fresh
# namespace, the same call, uninstall
# (an empty table set is a valid prior state: sed, not grep, so no exit 1)
rules() { in_ns "$PV" sh -c 'iptables-save; ip6tables-save' | sed '/^#/d; s/\[[0-9]*:[0-9]*\]//'; }
# a VM has rules of its own already (and the tables loaded: a table, once
# loaded, cannot be unloaded, so an empty prior state would not round-trip)
for ipt in iptables ip6tables; do
    in_ns "$PV" "$ipt" -A INPUT -p tcp --dport 22 -j ACCEPT
    in_ns "$PV" "$ipt" -t nat -A OUTPUT -p tcp --dport 2222 -j RETURN
done
before=$(rules)
out=$(in_ns "$PV" "$HY_BIN/hypha-dp" install transparent-proxy 2>&1) && rc=0 || rc=$?
hy_eq "VM: hypha-dp install transparent-proxy succeeds" 0 "$rc"
[ "$rc" -eq 0 ] || echo "$out" >&2
start_dp "$PV" web-2 web "$IPV"
V_ADMIN=$ADMIN
hy_check "VM: web-2 becomes ready" hy_wait_for 30 ready "$PV" "$V_ADMIN"
vm_call() { [ "$(app "$PV" curl -s --max-time 10 "http://backend.mesh:8080/")" = "hello from backend-1" ]; }
hy_check "VM: curl http://backend.mesh:8080/ reaches pod B" hy_wait_for 30 vm_call
# IPv6, through the ip6tables rules install put there (dual stack), with a
# ULA address of this namespace only: an AAAA answer (asked of an IPv6
# resolver address: the rules send it to [::1]:15053) and a curl -6
if in_ns "$PV" ip -6 addr add fd78::5/64 dev eth0 nodad 2>/dev/null &&
    in_ns "$PV" ip -6 route add default dev eth0 2>/dev/null; then
    vip6=$(in_ns "$PV" curl -s "$V_ADMIN/config" | jq -r '.outbounds[] | select(.service == "backend") | .vip6')
    a=$(app "$PV" drill @fd78::1 backend.mesh AAAA | awk '$1 == "backend.mesh." && $4 == "AAAA" {print $5}')
    hy_eq "VM, IPv6: a query to an IPv6 resolver gets the sidecar's AAAA" "$vip6" "$a"
    a=$(app "$PV" drill -t @fd78::1 backend.mesh AAAA | awk '$1 == "backend.mesh." && $4 == "AAAA" {print $5}')
    hy_eq "VM, IPv6: over TCP too" "$vip6" "$a"
    vm_call6() { [ "$(app "$PV" curl -6 -s --max-time 10 "http://backend.mesh:8080/")" = "hello from backend-1" ]; }
    hy_check "VM, IPv6: curl -6 http://backend.mesh:8080/ reaches pod B" hy_wait_for 30 vm_call6
else
    hy_ok "VM: no IPv6 in the namespace, IPv6 not tried"
fi
out=$(in_ns "$PV" "$HY_BIN/hypha-dp" uninstall transparent-proxy 2>&1) && rc=0 || rc=$?
hy_eq "VM: uninstall succeeds" 0 "$rc"
hy_eq "VM: uninstall restores the exact prior rules" "$before" "$(rules)"

# ---- CNI DEL
for ns in "$PA" "$PB"; do
    out=$(chained "$ANNOTATED" "${PREV[$ns]}" | cni "$HY_BIN/hypha-cni" DEL "$ns") && rc=0 || rc=$?
    hy_eq "hypha-cni DEL in $ns" "0:" "$rc:$out"
    hy_eq "leaves no rule in $ns" 0 "$(ours "$ns")"
done

# ---- clean shutdown, no sanitizer reports
for pid in "${HY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${HY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
HY_PIDS=()
clean() { ! grep -qE 'ERROR: (Address|Leak|Thread|Undefined)Sanitizer|runtime error:' "$DPD"/dp-*.log; }
hy_check "no sanitizer report in the sidecars' logs" clean
hy_done
