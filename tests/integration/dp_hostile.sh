#!/usr/bin/env bash
# Hostile DP peers against a real (standalone) zone, each holding a valid
# dataplane token: Hellos whose Dataplane or ZoneIngress is broken (NULL,
# empty or duplicate tag keys, over-long names, bad addresses, unknown
# fields), garbage, a duplicate hypha.io/service (the API must keep
# serving everyone), sessions whose token is revoked or expires (closed
# within a bounded wait, renewals refused), an oversized pre-Hello frame,
# many half-sent large frames and many idle unauthenticated connections
# (the pre-Hello limits). The zone must stay alive and serving, say why in
# each reply and its log, and count it in /metrics. The peer is
# hypha-dp-probe (tests/tools/dp_probe.c); HY_DP_PROBE overrides its path
# (to run this against another build of the zone).
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG HYPHACTL_CONFIG
PROBE=${HY_DP_PROBE:-$HY_BIN/hypha-dp-probe}
[ -x "$PROBE" ] || { hy_log "no $PROBE: build the hypha-dp-probe target"; exit 1; }

hy_start_standalone_zone z1
Z=$SZONE_URL
ZLOG=$SZONE_LOG
ZPID=$SZONE_PID
ZCA=$SZONE_DATA/dp/ca.pem
DP_URL=wss://127.0.0.1:$SZONE_DP_PORT
ctl() { "$HY_BIN/hyphactl" --cp "$Z" "$@"; }
token() { # NAME SERVICE [VALID-FOR]: a dataplane token in $HY_TMP/NAME.token
    ctl generate dataplane-token --mesh default --name "$1" --tag "hypha.io/service=$2" \
        --valid-for "${3:-1h}" >"$HY_TMP/$1.token"
}
jti_of() { cut -d. -f2 "$HY_TMP/$1.token" | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r .jti || true; }
revoke() { # NAME [KIND]
    curl -s -o /dev/null -w '%{http_code}' -X POST "$Z/tokens/revocations" \
        -H 'Content-Type: application/json' \
        --data "{\"jti\":\"$(jti_of "$1")\",\"kind\":\"${2:-dataplane}\"}"
}
# probe NAME MODE [ARGS...]: runs hypha-dp-probe in the foreground (output
# in $HY_TMP/NAME.out); prints its exit code.
probe() {
    local name=$1 rc=0
    shift
    "$PROBE" "$@" --url "$DP_URL" --ca-file "$ZCA" >"$HY_TMP/$name.out" 2>"$HY_TMP/$name.log" ||
        rc=$?
    echo "$rc"
}
# probe_bg NAME MODE [ARGS...]: the same in the background; sets PROBE_PID.
probe_bg() {
    local name=$1
    shift
    "$PROBE" "$@" --url "$DP_URL" --ca-file "$ZCA" >"$HY_TMP/$name.out" 2>"$HY_TMP/$name.log" &
    PROBE_PID=$!
    HY_PIDS+=("$PROBE_PID")
}
out() { cat "$HY_TMP/$1.out"; }
alive() { kill -0 "$ZPID" 2>/dev/null && curl -sf "$Z/ready" >/dev/null; }
metric() { curl -s "$Z/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# ---- a legitimate sidecar, connected through everything below
token web-1 web
probe_bg web-1 session --name web-1 --service web --token-file "$HY_TMP/web-1.token" --timeout 280s
WEB_PID=$PROBE_PID
configured() { grep -q '^config version=' "$HY_TMP/$1.out"; }
hy_check "a legitimate sidecar gets its config" hy_wait_for 20 configured web-1
hy_check "and hyphactl lists it" bash -c "'$HY_BIN/hyphactl' --cp '$Z' get dataplanes | grep -q web-1"

# ---- finding 1: every field a sidecar sends is validated before it is read
token evil-1 web
cp "$HY_TMP/evil-1.token" "$HY_TMP/evil.token"
declare -A want=(
    [null-key]="networking.inbound[0].tags: an entry has no key"
    [null-value]="networking.inbound[0].tags.version: invalid value"
    [long-name]="name: invalid name"
    [null-address]="networking.address: required"
    [bad-address]="networking.address must be an IP address or a host name"
    [no-networking]="networking: required"
    [unknown-field]="unknown field (number 99)"
    [many-tags]="300 entries (at most 256)"
    [null-label-key]="labels: an entry has no key"
    [no-csr]="hello.csr is required"
    [null-token]="hello.token is required"
    [wrong-type]="is a Mesh, not a Dataplane or a ZoneIngress"
    [bad-version]="hello.version must be printable ASCII"
    [many-inbounds]="100 inbounds"
    [ack-first]="the first message must be DpHello"
)
for t in "${!want[@]}"; do
    rc=$(probe "f1-$t" hello --name evil-1 --service web --token-file "$HY_TMP/evil.token" \
        --tamper "$t" --timeout 20s)
    hy_eq "finding 1: $t: refused with a Reject and close 1008" 0 "$rc"
    hy_contains "finding 1: $t: the reply names the field" "${want[$t]}" "$(grep '^reject' "$HY_TMP/f1-$t.out")"
done
hy_check "finding 1: the zone is alive after every broken Hello" alive
hy_check "finding 1: its log names each refusal" grep -q "refused: the Dataplane is not valid: hello.dataplane: networking.inbound\[0\].tags: an entry has no key" "$ZLOG"
hy_check "finding 1: a forged log line in a field stays inside its line" \
    bash -c "! grep -q '^\[ERROR\] forged\|^{\"injected\"' '$ZLOG'"
hy_check "finding 1: nothing broken was registered" \
    bash -c "! curl -sf '$Z/meshes/default/dataplanes/evil-1' >/dev/null"
rc=$(probe f1-garbage garbage --count 5 --timeout 20s)
hy_eq "finding 1: garbage bytes: closed with a close frame" 0 "$rc"
hy_contains "finding 1: garbage: named malformed" "malformed message" "$(out f1-garbage)"
# an ingress's ZoneIngress is held to the same
ctl generate zone-ingress-token --name ingress-1 --valid-for 1h >"$HY_TMP/ingress-1.token"
for t in null-address bad-address unknown-field; do
    rc=$(probe "f1-ingress-$t" hello --kind ingress --name ingress-1 \
        --token-file "$HY_TMP/ingress-1.token" --tamper "$t" --timeout 20s)
    hy_eq "finding 1: ingress $t: refused" 0 "$rc"
done
hy_contains "finding 1: ingress: the reply names the ZoneIngress field" \
    "the ZoneIngress is not valid: networking.address" "$(out f1-ingress-bad-address)"

# ---- finding 4 (zone side): an inbound on the zone CP's own listener
token pivot-1 web
for a in 127.0.0.1 0.0.0.0; do
    rc=$(probe "f4-$a" hello --name pivot-1 --service web --token-file "$HY_TMP/pivot-1.token" \
        --address "$a" --port "${Z##*:}" --timeout 20s)
    hy_eq "finding 4: a Dataplane whose inbound is the zone's API ($a) is refused" 0 "$rc"
    hy_contains "finding 4: saying so" "this zone control plane's own listener" "$(out "f4-$a")"
done
rc=$(probe f4-dp hello --name pivot-1 --service web --token-file "$HY_TMP/pivot-1.token" \
    --port "$SZONE_DP_PORT" --timeout 20s)
hy_contains "finding 4: and its DP server's port" "own listener" "$(out f4-dp)"

# ---- finding 10: a duplicate hypha.io/service never reaches the token check
token dup-1 web
rc=$(probe f10-dup hello --name dup-1 --service web --dup-value admin \
    --token-file "$HY_TMP/dup-1.token" --tamper dup-service --timeout 20s)
hy_eq "finding 10: a Dataplane with hypha.io/service twice is refused" 0 "$rc"
hy_contains "finding 10: naming the duplicate key" 'duplicate key "hypha.io/service"' "$(out f10-dup)"
hy_check "finding 10: it is not registered" \
    bash -c "! curl -sf '$Z/meshes/default/dataplanes/dup-1' >/dev/null"
hy_check "finding 10: hyphactl get dataplanes still works for everyone" \
    bash -c "'$HY_BIN/hyphactl' --cp '$Z' get dataplanes | grep -q web-1"
hy_check "finding 10: the API's list is valid JSON" \
    bash -c "curl -sf '$Z/meshes/default/dataplanes' | jq -e '.items | length >= 1' >/dev/null"

# ---- finding 5: revocation and expiry end live sessions; no renewal after
token rev-1 web
probe_bg f5-rev session --name rev-1 --service web --token-file "$HY_TMP/rev-1.token" \
    --renew-file "$HY_TMP/rev-1.renew" --timeout 60s
REV_PID=$PROBE_PID
hy_check "finding 5: a sidecar is connected with the token about to be revoked" \
    hy_wait_for 20 configured f5-rev
hy_eq "finding 5: the zone takes the revocation" 201 "$(revoke rev-1)"
touch "$HY_TMP/rev-1.renew" # and the sidecar asks for a new certificate right away
ended() { ! kill -0 "$1" 2>/dev/null; }
hy_check "finding 5: the revoked token's session is closed (bounded wait)" hy_wait_for 15 ended "$REV_PID"
rc=0
wait "$REV_PID" || rc=$?
hy_eq "finding 5: closed with a Reject and 1008" 0 "$rc"
hy_contains "finding 5: the reply says the token was revoked" "token $(jti_of rev-1) was revoked" \
    "$(grep '^reject' "$HY_TMP/f5-rev.out")"
hy_check "finding 5: no certificate was issued after the revocation" \
    bash -c "! grep -q '^renewed' '$HY_TMP/f5-rev.out'"
hy_check "finding 5: the zone logs one line for the closed session" \
    grep -q "sidecar default/rev-1 from .*: session closed: dataplane token no longer valid: token $(jti_of rev-1) was revoked" "$ZLOG"
rc=$(probe f5-rev-again session --name rev-1 --service web --token-file "$HY_TMP/rev-1.token" --timeout 20s)
hy_contains "finding 5: the revoked token cannot connect again" "revoked" "$(grep '^reject' "$HY_TMP/f5-rev-again.out")"
# a renewal on a live session still works (the check is not a blanket refusal)
token renew-1 web
: >"$HY_TMP/renew-1.renew"
probe_bg f5-renew session --name renew-1 --service web --token-file "$HY_TMP/renew-1.token" \
    --renew-file "$HY_TMP/renew-1.renew" --timeout 60s
renewed() { grep -q '^renewed' "$HY_TMP/$1.out"; }
hy_check "finding 5: a live token's renewal is signed" hy_wait_for 20 renewed f5-renew
kill "$PROBE_PID" 2>/dev/null || true
# expiry: a token that lives a few seconds
token exp-1 web 5s
probe_bg f5-exp session --name exp-1 --service web --token-file "$HY_TMP/exp-1.token" --timeout 60s
EXP_PID=$PROBE_PID
hy_check "finding 5: a sidecar connects with a short-lived token" hy_wait_for 20 configured f5-exp
hy_check "finding 5: its session is closed when the token expires (bounded wait)" \
    hy_wait_for 20 ended "$EXP_PID"
hy_contains "finding 5: the reply says it expired" "token expired at" "$(grep '^reject' "$HY_TMP/f5-exp.out")"
hy_check "finding 5: the zone logs it" grep -q "sidecar default/exp-1 from .*: session closed: dataplane token no longer valid: token expired at" "$ZLOG"
# the same for a zone ingress and its zone-ingress token
ctl generate zone-ingress-token --name ingress-2 --valid-for 1h >"$HY_TMP/ingress-2.token"
probe_bg f5-ingress session --kind ingress --name ingress-2 --port 10001 \
    --token-file "$HY_TMP/ingress-2.token" --timeout 60s
ING_PID=$PROBE_PID
hy_check "finding 5: an ingress is connected" hy_wait_for 20 configured f5-ingress
hy_eq "finding 5: its token is revoked" 201 "$(revoke ingress-2 zone-ingress)"
hy_check "finding 5: the ingress session is closed (bounded wait)" hy_wait_for 15 ended "$ING_PID"
hy_contains "finding 5: saying why" "zone-ingress token no longer valid" "$(grep '^reject' "$HY_TMP/f5-ingress.out")"
hy_check "finding 5: /metrics counts the revoked sessions" \
    bash -c "[ \"\$(curl -s '$Z/metrics' | awk '\$1 == \"hypha_dp_server_sessions_closed_total{reason=\\\"token_revoked\\\"}\" {print \$2}')\" -ge 2 ]"
hy_check "finding 5: and the expired one" \
    bash -c "[ \"\$(curl -s '$Z/metrics' | awk '\$1 == \"hypha_dp_server_sessions_closed_total{reason=\\\"token_expired\\\"}\" {print \$2}')\" -ge 1 ]"
hy_check "finding 5: the legitimate sidecar is still connected" kill -0 "$WEB_PID"

# ---- finding 8: what a connection may cost before its Hello
rss() { awk '/^VmRSS/ {print $2}' "/proc/$ZPID/status"; }
rc=$(probe f8-huge huge --size 1Mi --timeout 20s)
hy_eq "finding 8: a 1 MiB message before Hello is closed with 1009" 0 "$rc"
hy_contains "finding 8: naming the pre-Hello limit" "limit of 65536 bytes before authentication" "$(out f8-huge)"
before=$(rss)
rc=$(probe f8-partial partial --count 150 --size 4Mi --timeout 60s)
after=$(rss)
hy_log "zone VmRSS: ${before} kB before 150 half-sent 4 MiB frames, ${after} kB after"
hy_eq "finding 8: 150 connections announcing 4 MiB frames are each closed with 1009" 0 "$rc"
hy_contains "finding 8: none is left holding its buffer" "still_open=0" "$(grep '^summary' "$HY_TMP/f8-partial.out")"
hy_check "finding 8: the zone is alive" alive
rc=$(probe f8-idle idle --count 300 --timeout 60s)
hy_eq "finding 8: 300 idle unauthenticated connections are all closed with 1008" 0 "$rc"
hy_contains "finding 8: those past the cap are refused at open" \
    "too many connections waiting for their Hello (256)" "$(out f8-idle)"
hy_contains "finding 8: the others are closed at the Hello deadline" "no Hello within 10000 ms" "$(out f8-idle)"
hy_check "finding 8: the zone logs the refusals" grep -q "refused a connection from .*too many connections waiting" "$ZLOG"
hy_check "finding 8: /metrics counts them" bash -c \
    "curl -s '$Z/metrics' | grep -q 'hypha_dp_server_unauthenticated_closed_total{reason=\"too_many\"} [1-9]' &&
     curl -s '$Z/metrics' | grep -q 'hypha_dp_server_unauthenticated_closed_total{reason=\"hello_timeout\"} [1-9]' &&
     curl -s '$Z/metrics' | grep -q 'hypha_dp_server_unauthenticated_closed_total{reason=\"too_big\"} [1-9]'"
hy_check "promtool accepts the zone's metrics" promtool check metrics < <(curl -s "$Z/metrics")

# ---- still serving everyone
hy_check "the legitimate sidecar kept its session throughout" kill -0 "$WEB_PID"
token late-1 web
rc=$(probe late-1 hello --name late-1 --service web --token-file "$HY_TMP/late-1.token" --timeout 20s)
hy_eq "a new sidecar still connects and gets its config" 0 "$rc"
hy_check "hyphactl get dataplanes lists them" \
    bash -c "'$HY_BIN/hyphactl' --cp '$Z' get dataplanes | grep -q late-1"
kill "$WEB_PID" 2>/dev/null || true
hy_check "SIGTERM stops the zone cleanly" hy_stop "$ZPID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$HY_TMP'/*.log*"
hy_done
