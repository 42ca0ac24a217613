# Shared by the integration tests: start real binaries on ephemeral loopback
# ports, wait for them to be ready (never a blind sleep), stop them by pid,
# and assert. Source it; HY_BIN must point at build/bin.
set -euo pipefail

: "${HY_BIN:?HY_BIN must name the directory of the hypha binaries}"
HY_BIN=$(cd "$HY_BIN" && pwd)
# shellcheck source=../../deploy/local/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/ports.sh" # hy_free_port, hy_free_ports
HY_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hypha-it.XXXXXX")
HY_PIDS=()
HY_CLEANUP=() # extra commands run at exit, last first
HY_FAILS=0
HY_PASSES=0

hy_cleanup() {
    local pid
    for pid in "${HY_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${HY_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    local i
    for ((i = ${#HY_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${HY_CLEANUP[$i]}" 2>/dev/null || true
    done
    [ -n "${HY_KEEP_TMP:-}" ] || rm -rf "$HY_TMP"
}
trap hy_cleanup EXIT

hy_log() { printf '%s\n' "$*" >&2; }

# hy_wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds.
# The bound is an upper limit only (the wait ends as soon as the command
# succeeds), scaled by HY_WAIT_SCALE (default 2) so a loaded machine, a
# first start of fresh ASan binaries or a slow CI runner does not fail a
# check that would have passed a moment later.
hy_wait_for() {
    local deadline=$((SECONDS + $1 * ${HY_WAIT_SCALE:-2}))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            hy_log "timed out waiting for: $*"
            return 1
        fi
        sleep 0.05
    done
}

# hy_start_global NAME [ARGS...]: starts hypha-global with its data in
# $HY_TMP/NAME and the API on an ephemeral port; sets GLOBAL_PID,
# GLOBAL_URL, GLOBAL_LOG and GLOBAL_DATA. Waits until /ready answers.
# HY_NETNS, when set, names a network namespace to run it in.
hy_start_global() {
    local name=$1 prefix=()
    shift
    [ -z "${HY_NETNS:-}" ] || prefix=(ip netns exec "$HY_NETNS")
    GLOBAL_DATA=$HY_TMP/$name
    GLOBAL_LOG=$HY_TMP/$name.log
    mkdir -p "$GLOBAL_DATA"
    : >"$GLOBAL_LOG"
    "${prefix[@]}" "$HY_BIN/hypha-global" --data-dir "$GLOBAL_DATA" --api-address 127.0.0.1:0 \
        --kds-address 127.0.0.1:0 "$@" >>"$GLOBAL_LOG" 2>&1 &
    GLOBAL_PID=$!
    HY_PIDS+=("$GLOBAL_PID")
    hy_wait_for 20 grep -q 'API listening on http://' "$GLOBAL_LOG" || {
        cat "$GLOBAL_LOG" >&2
        return 1
    }
    local port
    port=$(grep -o 'API listening on http://[^ ]*' "$GLOBAL_LOG" | tail -n 1 | sed 's/.*://')
    GLOBAL_URL=http://127.0.0.1:$port
    hy_wait_for 10 "${prefix[@]}" curl -sf "$GLOBAL_URL/ready"
}

# hy_start_zone NAME [ARGS...]: starts hypha-zone NAME with its data in
# $HY_TMP/zone-NAME, federated with the global CP started by
# hy_start_global (KDS at $KDS_PORT, CA $GLOBAL_DATA/kds/ca.pem) using the
# token in $HY_TMP/NAME.token; sets ZONE_PID_NAME, ZONE_URL_NAME and
# ZONE_LOG_NAME (dashes in NAME become underscores). Waits until /ready.
hy_start_zone() {
    local name=$1 var=${1//-/_} log data
    shift
    data=$HY_TMP/zone-$name
    log=$HY_TMP/zone-$name.log
    mkdir -p "$data"
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)" # a restart gets a fresh log
    "$HY_BIN/hypha-zone" --zone "$name" --data-dir "$data" --api-address 127.0.0.1:0 --dp-address 127.0.0.1:0 \
        --global-address "wss://127.0.0.1:$KDS_PORT" --global-ca-file "$GLOBAL_DATA/kds/ca.pem" \
        --zone-token-file "$HY_TMP/$name.token" --kds-backoff-max 1s "$@" >>"$log" 2>&1 &
    local pid=$!
    HY_PIDS+=("$pid")
    printf -v "ZONE_PID_$var" %s "$pid"
    printf -v "ZONE_LOG_$var" %s "$log"
    hy_wait_for 20 grep -q 'API listening on http://' "$log" || {
        cat "$log" >&2
        return 1
    }
    local port
    port=$(grep -o 'API listening on http://[^ ]*' "$log" | tail -n 1 | sed 's/.*://')
    printf -v "ZONE_URL_$var" %s "http://127.0.0.1:$port"
    hy_wait_for 10 curl -sf "http://127.0.0.1:$port/ready"
}

# hy_start_mesh_zone EXPIRATION: for the sidecar tests (DATA set to
# tests/data): a global CP; the default mesh with leaves living EXPIRATION;
# a MeshTrafficPermission letting web call backend; zone east with its DP
# server on DP_PORT, checked to have its intermediate CA. Defines ctl
# (hyphactl on the global CP); sets E (the zone's API) and ZCA (the CA of
# its DP server certificate).
hy_start_mesh_zone() {
    KDS_PORT=$(hy_free_port)
    hy_start_global g --kds-address "127.0.0.1:$KDS_PORT"
    ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
    ctl generate zone-token --zone east --valid-for 24h >"$HY_TMP/east.token"
    sed "s/expiration: 1d/expiration: $1/" "$DATA/resources/mesh.yaml" | ctl apply -f - >/dev/null
    ctl apply -f - >/dev/null <<'YAML'
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
YAML
    DP_PORT=$(hy_free_port)
    hy_start_zone east --dp-address "127.0.0.1:$DP_PORT"
    E=$ZONE_URL_east
    hy_check "the zone has its intermediate CA" \
        hy_wait_for 15 curl -sf "$E/meshes/default/meshissuers/ca-1"
    ZCA=$HY_TMP/zone-east/dp/ca.pem
}

# hy_dp_token NAME MESH SERVICE: a 1 h dataplane token from zone E in
# $HY_TMP/NAME.token.
hy_dp_token() {
    "$HY_BIN/hyphactl" --cp "$E" generate dataplane-token --mesh "$2" --name "$1" \
        --tag "hypha.io/service=$3" --valid-for 1h >"$HY_TMP/$1.token"
}

# hy_start_dp NAME SERVICE PORT [ARGS...]: a sidecar for NAME from
# tests/data/dp/dataplane.yaml (inbound PORT, app PORT+1, outbound PORT+2)
# against the zone of hy_start_mesh_zone, logging to $HY_TMP/dp-NAME.log
# (an earlier log is kept aside); its token is $HY_TMP/NAME.token unless
# ARGS override it. Sets DP_PID and DP_ADMIN.
hy_start_dp() {
    local name=$1 svc=$2 port=$3 log=$HY_TMP/dp-$1.log
    shift 3
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$DATA/dp/dataplane.yaml" --dataplane-token-file "$HY_TMP/$name.token" \
        --dataplane-var "name=$name,service=$svc,port=$port,app_port=$((port + 1)),out_port=$((port + 2))" \
        --admin-address 127.0.0.1:0 "$@" >"$log" 2>&1 &
    DP_PID=$!
    HY_PIDS+=("$DP_PID")
    hy_wait_for 15 grep -q 'admin on http://' "$log"
    DP_ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}

# hy_netns_pair A B: two network namespaces joined by a veth pair,
# 10.213.77.1/30 in A and 10.213.77.2/30 in B, removed at exit. Returns 77
# (skip) when this is not root or ip(8) is missing.
hy_netns_pair() {
    [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null || return 77
    local a=$1 b=$2 va=hy$$a vb=hy$$b
    ip netns add "$a" || return 77
    HY_CLEANUP+=("ip netns del $a")
    ip netns add "$b"
    HY_CLEANUP+=("ip netns del $b")
    ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b"
    ip -n "$a" addr add 10.213.77.1/30 dev "$va"
    ip -n "$b" addr add 10.213.77.2/30 dev "$vb"
    ip -n "$a" link set "$va" up
    ip -n "$b" link set "$vb" up
    ip -n "$a" link set lo up
    ip -n "$b" link set lo up
}

# hy_stop PID: SIGTERM and wait; fails if it does not exit cleanly.
hy_stop() {
    local pid=$1 rc=0
    kill "$pid"
    wait "$pid" || rc=$?
    HY_PIDS=("${HY_PIDS[@]/$pid/}")
    return "$rc"
}

hy_ok() {
    HY_PASSES=$((HY_PASSES + 1))
    printf 'ok   %s\n' "$*"
}

hy_fail() {
    HY_FAILS=$((HY_FAILS + 1))
    printf 'FAIL %s\n' "$*"
}

# hy_check DESCRIPTION CMD...: passes when CMD succeeds.
hy_check() {
    local what=$1
    shift
    if "$@"; then hy_ok "$what"; else hy_fail "$what"; fi
}

# hy_eq DESCRIPTION EXPECTED ACTUAL
hy_eq() {
    if [ "$2" = "$3" ]; then
        hy_ok "$1"
    else
        hy_fail "$1: expected [$2], got [$3]"
    fi
}

# hy_contains DESCRIPTION NEEDLE HAYSTACK
hy_contains() {
    case "$3" in
        *"$2"*) hy_ok "$1" ;;
        *) hy_fail "$1: [$2] not in [$3]" ;;
    esac
}

# hy_status METHOD URL [CURL ARGS...]: prints the HTTP status code (000 when
# the server closed the connection without an answer).
hy_status() {
    local m=$1 u=$2
    shift 2
    curl -s -o "$HY_TMP/last-body" -w '%{http_code}' -X "$m" "$@" "$u" || true
}

hy_body() { cat "$HY_TMP/last-body"; }

hy_done() {
    printf '\n%d passed, %d failed\n' "$HY_PASSES" "$HY_FAILS"
    [ "$HY_FAILS" -eq 0 ]
}

# hy_client_hello SNI: writes to stdout a minimal TLS 1.2 ClientHello (one
# record) naming SNI, as raw bytes: for a test that must see exactly what
# comes back for it, which a TLS client would not show.
hy_client_hello() {
    local sni=$1 n=${#1} name ext body hs
    name=$(printf %s "$sni" | od -An -tx1 | tr -d ' \n')
    ext=$(printf '0000%04x%04x00%04x' $((n + 5)) $((n + 3)) "$n")$name
    # version, random, no session id, one cipher suite, null compression
    body=0303$(printf 'ab%.0s' {1..32})000002002f0100$(printf %04x $((${#ext} / 2)))$ext
    hs=01$(printf %06x $((${#body} / 2)))$body
    printf "$(printf '16 0301 %04x %s' $((${#hs} / 2)) "$hs" | tr -d ' ' | sed 's/../\\x&/g')"
}

# hy_gone PID: true once PID has exited (a zombie not yet reaped counts as
# gone), for bounded waits on a process that was asked to stop.
hy_gone() {
    ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = Z ]
}

# hy_start_standalone_zone NAME [ARGS...]: starts hypha-zone NAME without a
# global CP (its own roots), data in $HY_TMP/szone-NAME, its DP server on a
# free port, with the default mesh of tests/data/resources/mesh.yaml and
# its intermediate CA. Sets SZONE_PID, SZONE_URL, SZONE_LOG, SZONE_DATA and
# SZONE_DP_PORT. Waits until the mesh's issuer exists.
hy_start_standalone_zone() {
    local name=$1 port
    shift
    SZONE_DATA=$HY_TMP/szone-$name
    SZONE_LOG=$HY_TMP/szone-$name.log
    SZONE_DP_PORT=$(hy_free_port)
    mkdir -p "$SZONE_DATA"
    "$HY_BIN/hypha-zone" --zone "$name" --data-dir "$SZONE_DATA" --api-address 127.0.0.1:0 \
        --dp-address "127.0.0.1:$SZONE_DP_PORT" "$@" >>"$SZONE_LOG" 2>&1 &
    SZONE_PID=$!
    HY_PIDS+=("$SZONE_PID")
    hy_wait_for 20 grep -q 'API listening on http://' "$SZONE_LOG" || {
        cat "$SZONE_LOG" >&2
        return 1
    }
    port=$(grep -o 'API listening on http://[^ ]*' "$SZONE_LOG" | tail -n 1 | sed 's/.*://')
    SZONE_URL=http://127.0.0.1:$port
    hy_wait_for 10 curl -sf "$SZONE_URL/ready"
    curl -sf -o /dev/null -X PUT "$SZONE_URL/meshes/default" -H 'Content-Type: application/yaml' \
        --data-binary @"$(dirname "${BASH_SOURCE[0]}")/../data/resources/mesh.yaml"
    hy_wait_for 20 curl -sf "$SZONE_URL/meshes/default/meshissuers/ca-1"
}

# For the HTTP (L7) sidecar tests, beside hy_start_mesh_zone:
# hy_start_http_app PORT NAME [ARGS...]: tests/tools/http_app.py on PORT,
# logging to $HY_TMP/app-NAME.log; sets APP_PID once it listens.
hy_start_http_app() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/../tools/http_app.py" "$@" >"$HY_TMP/app-$2.log" 2>&1 &
    APP_PID=$!
    HY_PIDS+=("$APP_PID")
    hy_wait_for 10 grep -q listening "$HY_TMP/app-$2.log"
}
# hy_start_http_dp NAME SERVICE PORT VERSION: a sidecar of
# tests/data/dp/dataplane-http.yaml (inbound PORT, app PORT+1, outbounds
# backend PORT+2 and backend-v2 PORT+3), two workers; sets DP_PID,
# DP_ADMIN and DP_LOG.
hy_start_http_dp() {
    local name=$1 svc=$2 port=$3 log=$HY_TMP/dp-$1.log
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)" # a restart keeps the earlier log aside
    hy_dp_token "$name" default "$svc"
    "$HY_BIN/hypha-dp" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
        --dataplane-file "$(dirname "${BASH_SOURCE[0]}")/../data/dp/dataplane-http.yaml" \
        --dataplane-token-file "$HY_TMP/$name.token" \
        --dataplane-var "name=$name,service=$svc,port=$port,app_port=$((port + 1)),out_port=$((port + 2)),out_port2=$((port + 3)),version=$4" \
        --admin-address 127.0.0.1:0 --workers 2 >"$log" 2>&1 &
    DP_PID=$!
    DP_LOG=$log
    HY_PIDS+=("$DP_PID")
    hy_wait_for 15 grep -q 'admin on http://' "$log"
    DP_ADMIN=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
}
# hy_metric URL NAME{LABELS}: the value of a series of URL/metrics, 0 when absent.
hy_metric() {
    curl -s "$1/metrics" | awk -v m="$2" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}
