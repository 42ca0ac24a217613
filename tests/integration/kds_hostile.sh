#!/usr/bin/env bash
# Hostile KDS clients against a real global CP while two real zones stay
# federated: random bytes on the raw port, a TLS handshake trickled a byte
# at a time, garbage protobuf before and after a Hello, a frame over
# --kds-max-message, a message before Hello, a zone that never acks, a zone
# that acks a minute late and a zone that stops reading (SIGSTOP). Changes
# applied meanwhile must reach both zones; the global CP names each reason
# in its log, keeps serving /metrics and stops cleanly. The misbehaving
# clients are hypha-kds-probe (tests/tools/kds_probe.c).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG
PROBE=$HY_BIN/hypha-kds-probe
[ -x "$PROBE" ] || { hy_log "no $PROBE: build the hypha-kds-probe target"; exit 1; }

KDS_PORT=$(hy_free_port)
hy_start_global g --kds-address "127.0.0.1:$KDS_PORT" --kds-ping-interval 1s --kds-max-message 1Mi
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
zurl() { local v="ZONE_URL_${1//-/_}"; echo "${!v}"; }
zpid() { local v="ZONE_PID_${1//-/_}"; echo "${!v}"; }
KDS_URL=wss://127.0.0.1:$KDS_PORT
CA=$GLOBAL_DATA/kds/ca.pem

# The same comparison as kds.sh: every global-origin resource a zone holds
# equals the global CP's copy, byte for byte in JSON.
items() { curl -s "$1/$2?size=1000" | jq -S '[.items[]]'; }
same_as_global() {
    local z=$1 p
    for p in meshes meshtrafficpermissions meshtimeouts meshretries meshhealthchecks \
        meshcircuitbreakers meshloadbalancingstrategies meshtrusts meshcaroots; do
        [ "$(items "$GLOBAL_URL" $p)" = "$(items "$(zurl "$z")" $p)" ] || return 1
    done
}
converged() {
    local z
    for z in "$@"; do same_as_global "$z" || return 1; done
}

# probe NAME MODE [ARGS...]: runs hypha-kds-probe in the foreground; its
# output goes to $HY_TMP/NAME.out, its log to $HY_TMP/NAME.log; prints
# its exit code.
probe() {
    local name=$1 rc=0
    shift
    "$PROBE" "$@" --url "$KDS_URL" --ca-file "$CA" --timeout 30s >"$HY_TMP/$name.out" \
        2>"$HY_TMP/$name.log" || rc=$?
    echo "$rc"
}
# probe_bg NAME MODE [ARGS...]: the same in the background; sets PROBE_PID.
probe_bg() {
    local name=$1
    shift
    "$PROBE" "$@" --url "$KDS_URL" --ca-file "$CA" >"$HY_TMP/$name.out" 2>"$HY_TMP/$name.log" &
    PROBE_PID=$!
    HY_PIDS+=("$PROBE_PID")
}
out() { cat "$HY_TMP/$1.out"; }
glog() { grep -q -- "$1" "$GLOBAL_LOG"; }

# ---- two real zones, federated
mkdir -p "$HY_TMP/tokens"
for z in east west silent stalled garbler bigger slow-1; do
    ctl generate zone-token --zone "$z" --valid-for 24h >"$HY_TMP/tokens/$z.token"
done
cp "$HY_TMP/tokens/east.token" "$HY_TMP/tokens/west.token" "$HY_TMP/"
ctl apply -f "$DATA/mesh.yaml" -f "$DATA/meshtrafficpermission.yaml" >/dev/null
hy_start_zone east
hy_start_zone west
hy_check "two zones converge" hy_wait_for 20 converged east west

# ---- sessions that stay open while the rest happens
# a TLS handshake trickled a byte every 200 ms (a record header announcing
# 512 bytes, then its body): the server must hang up at its handshake
# timeout rather than wait for ever; the trickle gives up after 30 s
slowloris() {
    exec 3<>"/dev/tcp/127.0.0.1/$KDS_PORT" || return 2
    printf '\026\003\001\002\000' >&3
    local i
    for i in $(seq 1 150); do
        printf '\001' >&3 2>/dev/null || { echo "$SECONDS" >"$HY_TMP/slowloris.s"; return 0; }
        sleep 0.2 # the trickle itself, not a wait
    done
    return 1
}
(
    trap '' PIPE
    SECONDS=0
    slowloris
) &
SLOWLORIS_PID=$!
HY_PIDS+=("$SLOWLORIS_PID")

probe_bg silent silent-hello --zone silent --token-file "$HY_TMP/tokens/silent.token" --timeout 120s
SILENT_PID=$PROBE_PID
probe_bg slow zones --zones 1 --zone-prefix slow- --token-dir "$HY_TMP/tokens" --ack-delay 60s \
    --hold --timeout 120s
SLOW_PID=$PROBE_PID
probe_bg stalled silent-hello --zone stalled --token-file "$HY_TMP/tokens/stalled.token" \
    --timeout 120s
STALLED_PID=$PROBE_PID
hy_check "a zone that never acks is welcomed" hy_wait_for 15 grep -q '^done ' "$HY_TMP/silent.out"
hy_check "a zone that acks a minute late is welcomed" hy_wait_for 15 grep -q '^welcome ' "$HY_TMP/slow.out"
hy_check "a zone that will stop reading is welcomed" hy_wait_for 15 grep -q '^done ' "$HY_TMP/stalled.out"
hy_check "the never-acking zone got its first Changes" \
    hy_wait_for 15 grep -q '^changes zone=silent' "$HY_TMP/silent.out"
kill -STOP "$STALLED_PID"

# ---- one-shot attacks
head -c 100000 /dev/urandom >"/dev/tcp/127.0.0.1/$KDS_PORT" 2>/dev/null || true
hy_eq "plain HTTPS on the KDS port gets no answer" 000 \
    "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 10 "https://127.0.0.1:$KDS_PORT/" || true)"

hy_eq "garbage protobuf: the server closes with a close frame" 0 "$(probe garbage garbage --count 20)"
hy_contains "with a Reject naming the reason" "reject reason=malformed message (not a KdsMessage)" \
    "$(out garbage)"
hy_contains "and close code 1008" "close code=1008" "$(out garbage)"

hy_eq "garbage after a good Hello: closed too" 0 "$(probe garbler garbage --count 5 --seed 7 \
    --zone garbler --token-file "$HY_TMP/tokens/garbler.token")"
hy_contains "the zone was welcomed first" "welcome zone=garbler" "$(out garbler)"
hy_contains "then rejected" "reject reason=malformed message" "$(out garbler)"

# before a Hello a stranger gets 64 KiB, not --kds-max-message (security
# issue, finding 8: memory before authentication is bounded)
hy_eq "a 2 MiB frame before Hello is closed with 1009" 0 "$(probe huge huge --size 2Mi)"
hy_contains "naming the limit" "close code=1009" "$(out huge)"
hy_contains "in the reason: the pre-Hello limit" "limit of 65536 bytes before authentication" \
    "$(out huge)"
hy_eq "after a Hello, a 2 MiB frame over the 1 MiB limit is closed too" 0 \
    "$(probe bigger garbage --count 1 --size 2Mi --zone bigger \
        --token-file "$HY_TMP/tokens/bigger.token")"
hy_contains "with 1009 and --kds-max-message in the reason" "limit of 1048576 bytes" \
    "$(out bigger)"

hy_eq "Changes before Hello: Reject and close" 0 "$(probe before before-hello --first changes)"
hy_contains "saying Hello comes first" "reject reason=the first message must be Hello" "$(out before)"
hy_eq "Ack before Hello: the same" 0 "$(probe before-ack before-hello --first ack)"

# ---- changes while all that holds: both zones converge
for f in meshtimeout meshretry meshhealthcheck; do
    ctl apply -f "$DATA/$f.yaml" >/dev/null
done
for i in $(seq 1 60); do
    printf -- '---\ntype: MeshTrafficPermission\nmesh: default\nname: hostile-%03d\nspec:\n  targetRef: {kind: Mesh}\n  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n' "$i"
done >"$HY_TMP/bulk.yaml"
ctl apply -f "$HY_TMP/bulk.yaml" >/dev/null
ctl delete mtp allow-web-to-backend -m default >/dev/null
sed 's/maxConnectAttempt: 5/maxConnectAttempt: 9/' "$DATA/meshretry.yaml" | ctl apply -f - >/dev/null
# 20 s is well under the slow zone's 60 s ack delay: a zone waiting on
# another zone's Ack would fail here
hy_check "both zones converge beside the hostile sessions" hy_wait_for 20 converged east west
hy_eq "with the 60 new policies" 60 "$(curl -s "$(zurl west)/meshtrafficpermissions?size=1000" |
    jq '[.items[] | select(.name | startswith("hostile-"))] | length')"
hy_eq "the never-acking zone got nothing after its first Changes" 1 \
    "$(grep -c '^changes zone=silent' "$HY_TMP/silent.out")"

# ---- the stalled reader is dropped by the heartbeat; the slow handshake too
hy_check "a zone that stops reading is dropped for its missing pongs" \
    hy_wait_for 15 glog 'zone stalled disconnected (1006 no pong'
kill -CONT "$STALLED_PID"
rc=0
wait "$STALLED_PID" || rc=$?
hy_eq "and sees its connection end (exit 1: closed)" 1 "$rc"
hy_contains "as a close" "close zone=stalled" "$(out stalled)"
slowloris_done() { ! kill -0 "$SLOWLORIS_PID" 2>/dev/null; }
hy_check "the trickled handshake is cut off" hy_wait_for 30 slowloris_done
rc=0
wait "$SLOWLORIS_PID" || rc=$?
hy_eq "by the server (not by the 30 s bound)" 0 "$rc"
hy_log "(the trickled handshake was cut off after $(cat "$HY_TMP/slowloris.s" 2>/dev/null || echo ?) s)"

# ---- the global CP says what happened, and is fine
hy_check "the log names the malformed message" glog 'from 127.0.0.1 rejected: malformed message (not a KdsMessage)'
hy_check "the zone that sent it" glog 'zone garbler from 127.0.0.1 rejected: malformed message'
hy_check "the oversized frame" glog '1009 message larger than the limit of 65536 bytes before'

hy_check "the message before Hello" glog 'rejected: the first message must be Hello'
hy_check "the silent zone's connection" glog 'zone silent connected from'
hy_eq "/metrics still answers" 200 "$(hy_status GET "$GLOBAL_URL/metrics")"
hy_contains "with the store's metrics" "hypha_store_revision" "$(hy_body)"
hy_check "the global CP is alive" kill -0 "$GLOBAL_PID"
hy_contains "east and west are Online" "east" "$(ctl inspect zones | grep Online)"
hy_contains "both" "west" "$(ctl inspect zones | grep Online)"

# ---- the held sessions were held to the end
hy_check "the never-acking zone kept its session (exit 0 at SIGTERM)" hy_stop "$SILENT_PID"
hy_check "so did the late-acking zone" hy_stop "$SLOW_PID"
hy_check "a fresh change still reaches both zones" bash -c \
    "printf 'type: MeshTimeout\nmesh: default\nname: after-hostile\nspec:\n  targetRef: {kind: Mesh}\n  rules: [{default: {idleTimeout: 4s}}]\n' |
     '$HY_BIN/hyphactl' --cp '$GLOBAL_URL' apply -f - >/dev/null"
hy_check "and they converge" hy_wait_for 20 converged east west

for z in east west; do hy_stop "$(zpid $z)" || true; done
hy_check "SIGTERM stops the global CP cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
