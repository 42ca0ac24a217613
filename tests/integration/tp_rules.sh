#!/usr/bin/env bash
# `hypha-dp install|uninstall transparent-proxy` in a test-made network
# namespace with real iptables (nft backend): the rules appear, a second
# install changes nothing, --dry-run changes nothing, uninstall gives back
# the exact prior iptables-save (an unrelated rule kept), and the kernel
# really sends a plain app's connections to 15001, inbound to 15006 and DNS
# to 15053, while the sidecar's uid and the excluded ports go direct. A
# python listener stands in for the sidecar. Needs root (skips otherwise).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || exit 77
command -v iptables-restore >/dev/null && command -v ip6tables-save >/dev/null || exit 77
ECHO=$(cd "$(dirname "$0")/../tools" && pwd)/tp_echo.py
PY=/usr/bin/python3
A=hytp-a-$$ B=hytp-b-$$ VA=tpv$$a VB=tpv$$b
APP_UID=4242 DP_UID=5678

ip netns add "$A"
HY_CLEANUP+=("ip netns del $A")
ip netns add "$B"
HY_CLEANUP+=("ip netns del $B")
ip link add "$VA" netns "$A" type veth peer name "$VB" netns "$B"
ip -n "$A" addr add 10.213.78.1/30 dev "$VA"
ip -n "$B" addr add 10.213.78.2/30 dev "$VB"
ip -n "$A" addr add fd78::1/64 dev "$VA" nodad
ip -n "$B" addr add fd78::2/64 dev "$VB" nodad
for ns in "$A" "$B"; do
    ip -n "$ns" link set lo up
done
ip -n "$A" link set "$VA" up
ip -n "$B" link set "$VB" up

ina() { ip netns exec "$A" "$@"; }
inb() { ip netns exec "$B" "$@"; }
save4() { ina iptables-save | grep -v '^#'; }
save6() { ina ip6tables-save | grep -v '^#'; }
# ask UID PROTO HOST PORT: the tag of whatever answered, from pod A as UID
ask() {
    local uid=$1
    shift
    ina setpriv --reuid="$uid" --regid="$uid" --clear-groups "$PY" "$ECHO" ask "$@" || true
}

# rules that are not ours, to be kept
ina iptables -t nat -A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE
ina iptables -A INPUT -p tcp --dport 9 -j DROP
ina ip6tables -t nat -A POSTROUTING -s fd99::/16 -j MASQUERADE
before4=$(save4)
before6=$(save6)

FLAGS=(--exclude-outbound-ports 8081 --exclude-inbound-ports 8082 --exclude-outbound-ips 10.213.78.3)

dry=$(ina "$HY_BIN/hypha-dp" install transparent-proxy --dry-run "${FLAGS[@]}")
hy_contains "dry-run prints the outbound redirect" \
    "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" "$dry"
hy_contains "dry-run prints the IPv6 set" "-A HYPHA_MESH_OUTBOUND -s ::6/128 -o lo -j RETURN" "$dry"
hy_eq "dry-run changes nothing (IPv4)" "$before4" "$(save4)"
hy_eq "dry-run changes nothing (IPv6)" "$before6" "$(save6)"

out=$(ina "$HY_BIN/hypha-dp" install transparent-proxy --exclude-outbound-ips nope 2>&1) && rc=0 || rc=$?
hy_eq "a bad address is a usage error" 2 "$rc"
hy_contains "which says what is wrong" '--exclude-outbound-ips: "nope" is not an IPv4 or IPv6' "$out"
hy_eq "and changes nothing" "$before4" "$(save4)"

# An ip6tables-restore that fails: IPv4 went in first and must come out.
mkdir -p "$HY_TMP/broken"
printf '#!/bin/sh\necho "ip6tables-restore: broken for the test" >&2\nexit 4\n' \
    >"$HY_TMP/broken/ip6tables-restore"
chmod +x "$HY_TMP/broken/ip6tables-restore"
out=$(PATH=$HY_TMP/broken:$PATH ina "$HY_BIN/hypha-dp" install transparent-proxy 2>&1) && rc=0 ||
    rc=$?
hy_eq "an install that fails half-way exits 1" 1 "$rc"
hy_contains "and says what failed" "ip6tables-restore failed (exit 4)" "$out"
hy_eq "and leaves no IPv4 rule behind" "$before4" "$(save4)"

hy_check "install" ina "$HY_BIN/hypha-dp" install transparent-proxy "${FLAGS[@]}"
once4=$(save4)
once6=$(save6)
hy_contains "outbound TCP goes to 15001" \
    "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" "$once4"
hy_contains "inbound TCP goes to 15006" \
    "-A HYPHA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006" "$once4"
hy_contains "UDP DNS goes to 15053" "-A HYPHA_MESH_DNS -p udp -j REDIRECT --to-ports 15053" "$once4"
hy_contains "the sidecar's uid is excluded" \
    "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 5678 -j RETURN" "$once4"
hy_contains "IPv6 rules too" "-A HYPHA_MESH_OUTBOUND -d ::1/128 -j RETURN" "$once6"
hy_contains "the unrelated rule is kept" "-A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE" "$once4"
hy_check "install again" ina "$HY_BIN/hypha-dp" install transparent-proxy "${FLAGS[@]}"
hy_eq "a second install changes nothing (IPv4)" "$once4" "$(save4)"
hy_eq "a second install changes nothing (IPv6)" "$once6" "$(save6)"

# The sidecar stand-in in A; the "real" destinations in B; an app port in A.
# (ip netns exec execs, so $! is the listener's own pid.) REDIRECT sends a
# UDP query to 127.0.0.1 or ::1: a resolver must answer from there, which a
# socket bound to that address does (a wildcard one would answer from the
# interface address, and conntrack would not map the reply back).
ip netns exec "$A" "$PY" "$ECHO" serve "$HY_TMP/a.ready" tcp:15001:outbound tcp:15006:inbound \
    udp:15053:dns:127.0.0.1 udp:15053:dns:::1 tcp:15053:dns-tcp tcp:8082:app-8082 &
HY_PIDS+=($!)
ip netns exec "$B" "$PY" "$ECHO" serve "$HY_TMP/b.ready" tcp:8080:direct tcp:8081:direct-8081 udp:53:real-dns \
    tcp:8083:b-8083 &
HY_PIDS+=($!)
hy_wait_for 20 test -e "$HY_TMP/a.ready"
hy_wait_for 20 test -e "$HY_TMP/b.ready"

hy_eq "an app's connection lands on 15001" outbound "$(ask $APP_UID tcp 10.213.78.2 8080)"
hy_eq "an app's IPv6 connection lands on 15001" outbound "$(ask $APP_UID tcp fd78::2 8080)"
hy_eq "root's too (only the sidecar is exempt)" outbound "$(ask 0 tcp 10.213.78.2 8080)"
hy_eq "the sidecar's connection is not redirected" direct "$(ask $DP_UID tcp 10.213.78.2 8080)"
hy_eq "nor its IPv6 one" direct "$(ask $DP_UID tcp fd78::2 8080)"
hy_eq "an excluded outbound port goes direct" direct-8081 "$(ask $APP_UID tcp 10.213.78.2 8081)"
hy_eq "an app's DNS query lands on 15053" dns "$(ask $APP_UID udp 10.213.78.2 53)"
hy_eq "an app's IPv6 DNS query lands on 15053" dns "$(ask $APP_UID udp fd78::2 53)"
hy_eq "an app's TCP DNS lands on 15053" dns-tcp "$(ask $APP_UID tcp 10.213.78.2 53)"
hy_eq "the sidecar's DNS query goes to the resolver" real-dns "$(ask $DP_UID udp 10.213.78.2 53)"
hy_eq "inbound TCP lands on 15006" inbound "$(inb "$PY" "$ECHO" ask tcp 10.213.78.1 8083)"
hy_eq "inbound IPv6 TCP lands on 15006" inbound "$(inb "$PY" "$ECHO" ask tcp fd78::1 8083)"
hy_eq "an excluded inbound port reaches the app" app-8082 \
    "$(inb "$PY" "$ECHO" ask tcp 10.213.78.1 8082)"
hy_eq "an app calling itself over loopback stays local" app-8082 \
    "$(ask $APP_UID tcp 127.0.0.1 8082)"

hy_check "uninstall" ina "$HY_BIN/hypha-dp" uninstall transparent-proxy
hy_eq "uninstall restores the exact IPv4 rule set" "$before4" "$(save4)"
hy_eq "uninstall restores the exact IPv6 rule set" "$before6" "$(save6)"
hy_eq "and connections go direct again" direct "$(ask $APP_UID tcp 10.213.78.2 8080)"
hy_check "uninstall again is a no-op" ina "$HY_BIN/hypha-dp" uninstall transparent-proxy
hy_eq "which changes nothing" "$before4" "$(save4)"

hy_check "install in IPv4-only mode" ina "$HY_BIN/hypha-dp" install transparent-proxy \
    --ip-family-mode ipv4
hy_eq "leaves IPv6 alone" "$before6" "$(save6)"
hy_check "a changed config replaces ours" ina "$HY_BIN/hypha-dp" install transparent-proxy \
    --ip-family-mode ipv4 --redirect-outbound-port 16001 --redirect-dns=false
now=$(save4)
hy_contains "with the new port" "REDIRECT --to-ports 16001" "$now"
case "$now" in *HYPHA_MESH_DNS* | *15001*) hy_fail "old rules left behind: $now" ;; *) hy_ok "old rules gone" ;; esac
hy_check "uninstall" ina "$HY_BIN/hypha-dp" uninstall transparent-proxy
hy_eq "restores the rule set" "$before4" "$(save4)"

hy_done
