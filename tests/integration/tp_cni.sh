#!/usr/bin/env bash
# hypha-cni chained after Debian's containernetworking-plugins (bridge +
# host-local), each invoked per the CNI spec (CNI_COMMAND, CNI_NETNS,
# CNI_IFNAME, CNI_PATH, config on stdin, the bridge's result fed in as
# prevResult): two "pods" on a bridge; the annotated one gets the rules and
# its app's connection lands on the sidecar stand-in, the other none;
# prevResult comes back unchanged; CHECK passes, then names a rule deleted
# by hand; DEL leaves nothing; bad configs give spec error JSON and install
# nothing; VERSION lists what we speak. Needs root (skips otherwise).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || exit 77
CNI_BIN=/usr/lib/cni
[ -x "$CNI_BIN/bridge" ] && [ -x "$CNI_BIN/host-local" ] || exit 77
command -v iptables-restore >/dev/null && command -v jq >/dev/null || exit 77
ECHO=$(cd "$(dirname "$0")/../tools" && pwd)/tp_echo.py
PY=/usr/bin/python3
PA=hytp-pa-$$ PB=hytp-pb-$$ PC=hytp-pc-$$ BR=hytb$$ APP_UID=4242

for ns in "$PA" "$PB" "$PC"; do
    ip netns add "$ns"
    HY_CLEANUP+=("ip netns del $ns")
done
HY_CLEANUP+=("ip link del $BR")

NET='{"cniVersion":"1.0.0","name":"hytp-net","type":"bridge","bridge":"'$BR'",
  "isGateway":false,"ipMasq":false,"ipam":{"type":"host-local","subnet":"10.213.79.0/24",
  "dataDir":"'$HY_TMP/ipam'"}}'
ANNOTATED='{"io.kubernetes.cri.pod-annotations":{"hypha.io/sidecar-injection":"enabled"}}'

# cni PLUGIN COMMAND NETNS: runs PLUGIN per the spec with stdin as config;
# stdout is the result, the exit code the plugin's.
cni() {
    CNI_COMMAND=$2 CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$3 CNI_IFNAME=${CNI_IFNAME:-eth0} \
        CNI_PATH=$CNI_BIN CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$3" "$1"
}
# chained RUNTIMECONFIG PREVRESULT: hypha-cni's config in the same conflist
chained() {
    jq -c --argjson rc "$1" --argjson prev "$2" -n \
        '{cniVersion:"1.0.0",name:"hytp-net",type:"hypha-cni",runtimeConfig:$rc,prevResult:$prev}'
}
ours() { ip netns exec "$1" sh -c 'iptables-save; ip6tables-save' | grep -c HYPHA_MESH_ || true; }

# the runtime's loopback plugin first, as kubelet does (REDIRECT needs lo up)
for ns in "$PA" "$PB"; do
    echo '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}' |
        CNI_IFNAME=lo cni "$CNI_BIN/loopback" ADD "$ns" >/dev/null
done
prev_a=$(echo "$NET" | cni "$CNI_BIN/bridge" ADD "$PA")
prev_b=$(echo "$NET" | cni "$CNI_BIN/bridge" ADD "$PB")
HY_CLEANUP+=("echo '$NET' | CNI_COMMAND=DEL CNI_CONTAINERID=$PB CNI_NETNS=/run/netns/$PB CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN $CNI_BIN/bridge")
HY_CLEANUP+=("echo '$NET' | CNI_COMMAND=DEL CNI_CONTAINERID=$PA CNI_NETNS=/run/netns/$PA CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN $CNI_BIN/bridge")
ip_b=$(jq -r '.ips[0].address' <<<"$prev_b")
ip_b=${ip_b%/*}
hy_contains "the bridge plugin gave pod B an address" 10.213.79. "$ip_b"

out=$(chained "$ANNOTATED" "$prev_a" | cni "$HY_BIN/hypha-cni" ADD "$PA") && rc=0 || rc=$?
hy_eq "ADD in the annotated pod succeeds" 0 "$rc"
hy_eq "ADD passes prevResult through unchanged" "$(jq -S . <<<"$prev_a")" "$(jq -S . <<<"$out")"
saved=$(ip netns exec "$PA" iptables-save)
hy_contains "the rules are in pod A" \
    "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" "$saved"
hy_contains "IPv6 rules too" "HYPHA_MESH_OUTBOUND" "$(ip netns exec "$PA" ip6tables-save)"
hy_eq "none on the host" 0 "$(iptables-save | grep -c HYPHA_MESH_ || true)"

out=$(chained '{}' "$prev_b" | cni "$HY_BIN/hypha-cni" ADD "$PB") && rc=0 || rc=$?
hy_eq "ADD in a pod not annotated succeeds" 0 "$rc"
hy_eq "and passes prevResult through" "$(jq -S . <<<"$prev_b")" "$(jq -S . <<<"$out")"
hy_eq "with no rules in pod B" 0 "$(ours "$PB")"

# An app in pod A calling pod B lands on pod A's sidecar stand-in.
ip netns exec "$PA" "$PY" "$ECHO" serve "$HY_TMP/a.ready" tcp:15001:outbound &
HY_PIDS+=($!)
ip netns exec "$PB" "$PY" "$ECHO" serve "$HY_TMP/b.ready" tcp:8080:direct &
HY_PIDS+=($!)
hy_wait_for 20 test -e "$HY_TMP/a.ready"
hy_wait_for 20 test -e "$HY_TMP/b.ready"
hy_eq "pod A's app reaches its sidecar, not pod B" outbound \
    "$(ip netns exec "$PA" setpriv --reuid=$APP_UID --regid=$APP_UID --clear-groups \
        "$PY" "$ECHO" ask tcp "$ip_b" 8080)"
hy_eq "pod B's app is not redirected" direct "$(ip netns exec "$PB" "$PY" "$ECHO" ask tcp "$ip_b" 8080)"

out=$(chained "$ANNOTATED" "$prev_a" | cni "$HY_BIN/hypha-cni" CHECK "$PA") && rc=0 || rc=$?
hy_eq "CHECK passes" "0:" "$rc:$out"
ip netns exec "$PA" iptables -t nat -D HYPHA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN
out=$(chained "$ANNOTATED" "$prev_a" | cni "$HY_BIN/hypha-cni" CHECK "$PA") && rc=0 || rc=$?
hy_eq "CHECK fails once a rule is deleted" 1 "$rc"
hy_eq "with a spec error" 100 "$(jq -r .code <<<"$out")"
hy_contains "naming the missing rule" "missing: -A HYPHA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN" \
    "$(jq -r .details <<<"$out")"

out=$(chained "$ANNOTATED" "$prev_a" | cni "$HY_BIN/hypha-cni" DEL "$PA") && rc=0 || rc=$?
hy_eq "DEL succeeds" "0:" "$rc:$out"
hy_eq "DEL leaves no rule behind" 0 "$(ours "$PA")"
out=$(chained "$ANNOTATED" "$prev_a" | cni "$HY_BIN/hypha-cni" DEL "$PA") && rc=0 || rc=$?
hy_eq "DEL again succeeds" "0:" "$rc:$out"
out=$(chained "$ANNOTATED" "$prev_a" | CNI_COMMAND=DEL CNI_CONTAINERID=gone \
    CNI_NETNS=/run/netns/hytp-gone-$$ CNI_IFNAME=eth0 "$HY_BIN/hypha-cni") && rc=0 || rc=$?
hy_eq "DEL of a namespace already gone succeeds" "0:" "$rc:$out"

# bad_config WHAT CODE DETAIL CONFIG: a spec error, non-zero exit, nothing
# installed in pod C (annotated through CNI_ARGS, so only the config is wrong)
bad_config() {
    local out rc
    out=$(printf '%s' "$4" | CNI_COMMAND=ADD CNI_CONTAINERID=c CNI_NETNS=/run/netns/$PC \
        CNI_IFNAME=eth0 CNI_ARGS="HYPHA_SIDECAR_INJECTION=enabled" "$HY_BIN/hypha-cni" 2>/dev/null) &&
        rc=0 || rc=$?
    hy_eq "$1: exit 1" 1 "$rc"
    hy_eq "$1: spec error JSON" "1.0.0 $2 true" \
        "$(jq -r '"\(.cniVersion) \(.code) \(.msg | length > 0)"' <<<"$out" 2>&1)"
    hy_contains "$1: says what is wrong" "$3" "$(jq -r .details <<<"$out" 2>&1)"
    hy_eq "$1: nothing installed" 0 "$(ours "$PC")"
}
bad_config "malformed JSON" 6 "not valid JSON" '{"cniVersion":"1.0.0","name":'
bad_config "not an object" 7 "expected a JSON object" '["hypha-cni"]'
bad_config "missing type" 7 "type: missing" '{"cniVersion":"1.0.0","name":"n"}'
bad_config "missing cniVersion" 7 "cniVersion: missing" '{"name":"n","type":"hypha-cni"}'
bad_config "missing prevResult" 7 "prevResult: missing" \
    '{"cniVersion":"1.0.0","name":"n","type":"hypha-cni"}'
bad_config "a port out of range" 7 "redirectPortOutbound: not a port" \
    '{"cniVersion":"1.0.0","name":"n","type":"hypha-cni","redirectPortOutbound":70000,"prevResult":{}}'
bad_config "a bad excluded address" 7 'excludeOutboundIPs[0]: "10.0.0.300"' \
    '{"cniVersion":"1.0.0","name":"n","type":"hypha-cni","excludeOutboundIPs":["10.0.0.300"],"prevResult":{}}'
bad_config "an unsupported version" 1 "cniVersion \"2.0.0\" is not supported" \
    '{"cniVersion":"2.0.0","name":"n","type":"hypha-cni","prevResult":{}}'

out=$(CNI_COMMAND=VERSION "$HY_BIN/hypha-cni" </dev/null)
hy_eq "VERSION lists the supported versions" '0.3.0 0.3.1 0.4.0 1.0.0' \
    "$(jq -r '.supportedVersions | join(" ")' <<<"$out")"
out=$(CNI_COMMAND=BOGUS "$HY_BIN/hypha-cni" </dev/null) && rc=0 || rc=$?
hy_eq "an unknown command is error 4" "1 4" "$rc $(jq -r .code <<<"$out")"

hy_done
