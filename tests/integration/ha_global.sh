#!/usr/bin/env bash
# High availability on PostgreSQL (issue 18): three hypha-global replicas
# on one database, zone west (LMDB) given all three KDS addresses, zone
# east as two replicas on a database of their own (only the leader holds
# the session to the global CP). Under a write load through every replica:
#   - kill -9 the replica a zone is connected to, HYPHA_HA_KILLS times
#     (default 3): every acknowledged write is then on every replica and in
#     both zones within 10 s (scaled by HY_WAIT_SCALE);
#   - a sampler reads hypha_leader of every live replica all along: never
#     two leaders at one moment, and one again after each kill;
#   - PostgreSQL restarted under the load: writes answer 503 with a clear
#     message, the replicas recover by themselves, nothing acknowledged lost;
#   - the zone replica holding the session is killed: the other takes over.
# At the end the zones' listings equal the global's (hashes).
# Skipped (77) only without the PostgreSQL binaries.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pg.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
hy_pg_find || exit 77
KILLS=${HYPHA_HA_KILLS:-3}
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG HYPHA_CA_CERT_FILE HYPHA_AUTH_TOKEN
hy_pg_init
HY_CLEANUP+=("hy_pg_destroy")
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c 'CREATE DATABASE east' >/dev/null
EAST_PG_URL="${HY_PG_URL/dbname=postgres/dbname=east}"

P=$(hy_free_ports 6)
API=($P $((P + 1)) $((P + 2)))
KDS=($((P + 3)) $((P + 4)) $((P + 5)))
KDS_ADDRS="wss://127.0.0.1:${KDS[0]},wss://127.0.0.1:${KDS[1]}"
URL=("http://127.0.0.1:${API[0]}" "http://127.0.0.1:${API[1]}" "http://127.0.0.1:${API[2]}")
GPID=("" "" "")
ctl() { "$HY_BIN/hyphactl" --cp "${URL[0]}" "$@"; }

# start_global I: replica I (0-2) on its fixed ports; the first start of
# replica 0 makes the secrets the others share (token signing key, admin
# token, KDS certificate): replicas of one global CP are one CP.
start_global() {
    local i=$1 d=$HY_TMP/g$1 extra=()
    mkdir -p "$d"
    if [ "$i" != 0 ]; then
        cp "$HY_TMP/g0/token-signing.key" "$HY_TMP/g0/admin-token" "$d/" 2>/dev/null || true
        extra=(--kds-tls-cert "$HY_TMP/g0/kds/server.pem" --kds-tls-key "$HY_TMP/g0/kds/server-key.pem")
    fi
    "$HY_BIN/hypha-global" --data-dir "$d" --api-address "127.0.0.1:${API[$i]}" \
        --kds-address "127.0.0.1:${KDS[$i]}" --kds-ping-interval 1s \
        --store postgres --store-postgres-url "$HY_PG_URL" "${extra[@]}" >>"$HY_TMP/g$i.log" 2>&1 &
    GPID[$i]=$!
    HY_PIDS+=("${GPID[$i]}")
    hy_wait_for 30 curl -sf "${URL[$i]}/ready" || {
        tail -20 "$HY_TMP/g$i.log" >&2
        return 1
    }
}

# start_zone NAME DIR ARGS...: a zone CP given all three global addresses
# (two in one comma list, one more flag); sets ZPID and ZURL.
start_zone() {
    local name=$1 dir=$2 port
    shift 2
    port=$(hy_free_port)
    mkdir -p "$HY_TMP/$dir"
    "$HY_BIN/hypha-zone" --zone "$name" --data-dir "$HY_TMP/$dir" --api-address "127.0.0.1:$port" \
        --dp-address 127.0.0.1:0 --global-address "$KDS_ADDRS" \
        --global-address "wss://127.0.0.1:${KDS[2]}" --global-ca-file "$HY_TMP/g0/kds/ca.pem" \
        --zone-token-file "$HY_TMP/$name.token" --kds-backoff-max 1s --kds-ping-interval 1s \
        "$@" >>"$HY_TMP/$dir.log" 2>&1 &
    ZPID=$!
    HY_PIDS+=("$ZPID")
    ZURL=http://127.0.0.1:$port
    hy_wait_for 30 curl -sf "$ZURL/ready" || {
        tail -20 "$HY_TMP/$dir.log" >&2
        return 1
    }
}

# names URL: the sorted names of every MeshRetry in mesh default, page by page.
names() {
    local url=$1 off="" body next
    while :; do
        body=$(curl -sf --max-time 10 "$url/meshes/default/meshretries?size=1000${off:+&offset=$off}") || return 1
        printf '%s\n' "$body" | grep -o '"name":"[^"]*"' | sed 's/"name":"//; s/"$//' | grep '^w-' || true
        next=$(printf '%s\n' "$body" | grep -o '"next":"[^"]*"' | sed 's/.*offset=//; s/"$//' || true)
        [ -n "$next" ] || break
        off=$next
    done | sort
}

# has_acked URL: every write acknowledged before this call is listed at URL.
has_acked() {
    names "$1" >"$HY_TMP/have.$$" || return 1
    sort "$HY_TMP/acked.snap" | comm -23 - "$HY_TMP/have.$$" | grep -q . && return 1
    return 0
}

# ---- three replicas on one database
start_global 0
start_global 1
start_global 2
hy_ok "three global replicas serve on one PostgreSQL"
ctl apply -f "$DATA/mesh.yaml" >/dev/null
for z in east west; do
    "$HY_BIN/hyphactl" --cp "${URL[1]}" generate zone-token --zone $z --valid-for 24h >"$HY_TMP/$z.token"
done
verify_on() {
    curl -sf -X POST -H 'Content-Type: application/json' "${URL[$1]}/tokens/zone/verify" \
        --data-binary "{\"token\":\"$(cat "$HY_TMP/west.token")\"}" | grep -q '"valid":true'
}
hy_check "a zone token issued by one replica is accepted by another (shared key)" verify_on 2

start_zone west zwest
WEST=$ZURL WEST_PID=$ZPID
start_zone east zeast-a --store postgres --store-postgres-url "$EAST_PG_URL"
EAST_A=$ZPID EAST_A_URL=$ZURL
start_zone east zeast-b --store postgres --store-postgres-url "$EAST_PG_URL"
EAST_B=$ZPID EAST_B_URL=$ZURL
connected() { [ "$(hy_metric "$1" hypha_kds_connected)" = 1 ]; }
hy_check "zone west connects to a replica" hy_wait_for 30 connected "$WEST"
one_east_session() {
    local a b
    a=$(hy_metric "$EAST_A_URL" hypha_kds_connected)
    b=$(hy_metric "$EAST_B_URL" hypha_kds_connected)
    [ "$((a + b))" = 1 ]
}
hy_check "of the two east replicas exactly one holds the global session" \
    hy_wait_for 30 one_east_session

# ---- leader sampler: never two leaders at one moment. The replicas are
# read one after another, so a round reads each twice (held and its
# transitions counter) and counts a replica only when it answered both
# alike: one that died or handed over in between (a kill while the round
# ran) is not counted, a second leader that holds steadily is.
leader_state() {
    curl -s --max-time 2 "${URL[$1]}/metrics" 2>/dev/null |
        awk '/^hypha_leader\{component="global"/ { h = $2 }
             /^hypha_leader_transitions_total\{component="global"/ { t = $2 }
             END { if (h != "") print h "/" t }' || true
}
sampler() {
    local a b n who i
    while :; do
        a=() b=() n=0 who=""
        for i in 0 1 2; do a[$i]=$(leader_state "$i"); done
        for i in 0 1 2; do b[$i]=$(leader_state "$i"); done
        for i in 0 1 2; do
            [ -n "${a[$i]}" ] && [ "${a[$i]}" = "${b[$i]}" ] && [ "${a[$i]%%/*}" = 1 ] &&
                n=$((n + 1)) && who="$who g$i"
        done
        printf '%s %d%s\n' "$(date +%s.%N)" "$n" "$who" >>"$HY_TMP/leaders"
        sleep 0.2
    done
}
: >"$HY_TMP/leaders"
sampler &
SAMPLER=$!
HY_PIDS+=("$SAMPLER")
one_leader() { [ "$(tail -n 1 "$HY_TMP/leaders" | cut -d' ' -f2)" = 1 ]; }
hy_check "one replica is the leader" hy_wait_for 20 one_leader

# ---- write load through every replica; acknowledged names in acked
sed 's/name: retry-backend/name: NAME/' "$DATA/meshretry.yaml" >"$HY_TMP/tmpl.yaml"
: >"$HY_TMP/acked"
: >"$HY_TMP/refused503"
loader() {
    local i=0 r code
    while :; do
        i=$((i + 1))
        r=$((i % 3))
        sed "s/NAME/w-$i/" "$HY_TMP/tmpl.yaml" >"$HY_TMP/body.$r"
        code=$(curl -s -o "$HY_TMP/lbody" -w '%{http_code}' --max-time 5 -X PUT \
            -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/body.$r" \
            "${URL[$r]}/meshes/default/meshretries/w-$i" 2>/dev/null || true)
        case $code in
        200 | 201) echo "w-$i" >>"$HY_TMP/acked" ;;
        503) cat "$HY_TMP/lbody" >>"$HY_TMP/refused503" && echo >>"$HY_TMP/refused503" ;;
        esac
        sleep 0.05
    done
}
loader &
LOADER=$!
HY_PIDS+=("$LOADER")
acked_some() { [ "$(wc -l <"$HY_TMP/acked")" -ge "$1" ]; }
hy_check "writes are acknowledged through the replicas" hy_wait_for 30 acked_some 20

# synced [SKIP]: every acknowledged write (up to now) on all replicas (but
# the one killed, index SKIP) and in both zones
synced() {
    cp "$HY_TMP/acked" "$HY_TMP/acked.snap"
    local t0=$SECONDS u i
    for i in 0 1 2 w e; do
        [ "$i" != "${1:-}" ] || continue
        case $i in w) u=$WEST ;; e) u=$EAST_A_URL ;; *) u=${URL[$i]} ;; esac
        hy_wait_for 10 has_acked "$u" || return 1
    done
    printf '%s\n' $((SECONDS - t0)) >>"$HY_TMP/sync-secs"
}

# connected_replica ZONE_URL: the index of the global replica it uses
connected_replica() {
    curl -s "$1/metrics" | awk '/^hypha_kds_global_address\{/ && $2 == 1' |
        { grep -o 'address="[^"]*"' || true; } | sed 's/.*://; s/"//' | while read -r p; do
        for i in 0 1 2; do [ "${KDS[$i]}" = "$p" ] && echo "$i"; done
    done || true
}

# ---- kill -9 the replica a zone is connected to, KILLS times
bad=0
for k in $(seq 1 "$KILLS"); do
    zurl=$WEST
    [ $((k % 2)) = 0 ] && { connected "$EAST_A_URL" && zurl=$EAST_A_URL || zurl=$EAST_B_URL; }
    hy_wait_for 30 connected "$zurl" || true
    i=$(connected_replica "$zurl")
    [ -n "$i" ] || i=$((k % 3))
    printf '%s 0 lost g%s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$i" >>"$HY_TMP/kills"
    kill -9 "${GPID[$i]}"
    wait "${GPID[$i]}" 2>/dev/null || true
    HY_PIDS=("${HY_PIDS[@]/${GPID[$i]}/}")
    printf '%s kill g%s\n' "$(date +%s.%N)" "$i" >>"$HY_TMP/leaders"
    hy_wait_for 30 connected "$zurl" || { bad=$((bad + 1)) && hy_log "kill $k: zone did not reconnect"; }
    synced "$i" || { bad=$((bad + 1)) && hy_log "kill $k: acknowledged writes missing after the kill of g$i"; }
    start_global "$i"
    hy_wait_for 20 one_leader || { bad=$((bad + 1)) && hy_log "kill $k: no leader after the kill of g$i"; }
done
hy_eq "after each of $KILLS kills: zone reconnected, every acknowledged write everywhere, one leader" 0 "$bad"
hy_log "seconds to sync after a kill: $(tr '\n' ' ' <"$HY_TMP/sync-secs" 2>/dev/null || true)"
hy_log "zone reconnects: $(grep -c 'connected to the global control plane' "$HY_TMP/zwest.log") (west)"
hy_check "the zone moved between replica addresses (log)" grep -q 'retrying with wss://' "$HY_TMP/zwest.log"
hy_check "zones resumed from their revision (no snapshot after the first)" \
    test "$(grep -c 'from a snapshot' "$HY_TMP/zwest.log")" -le 1

# ---- PostgreSQL restarted under the load
hy_pg_stop
sed 's/NAME/while-down/' "$HY_TMP/tmpl.yaml" >"$HY_TMP/down.yaml"
down503() {
    [ "$(hy_status PUT "${URL[1]}/meshes/default/meshretries/while-down" \
        -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/down.yaml")" = 503 ]
}
hy_check "a write while PostgreSQL is down answers 503" hy_wait_for 10 down503
hy_contains "with a clear message" "cannot be reached" "$(hy_body)"
hy_pg_start
write_back() {
    [ "$(hy_status PUT "${URL[$1]}/meshes/default/meshretries/back-$1" \
        -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/down.yaml")" = 201 ] ||
        [ "$(hy_status GET "${URL[$1]}/meshes/default/meshretries/back-$1")" = 200 ]
}
for i in 0 1 2; do
    sed -i "s/^name: .*/name: back-$i/" "$HY_TMP/down.yaml"
    hy_check "replica g$i takes writes again by itself" hy_wait_for 30 write_back "$i"
done
hy_check "a leader again after the restart" hy_wait_for 20 one_leader
hy_check "and the zones reconnect" hy_wait_for 30 connected "$WEST"
hy_check "nothing acknowledged lost across the restart" synced

# ---- the east replica holding the session dies: the other takes over
if connected "$EAST_A_URL"; then
    victim=$EAST_A other=$EAST_B_URL
else
    victim=$EAST_B other=$EAST_A_URL
fi
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$victim/}")
hy_check "the other east replica takes the global session over" hy_wait_for 20 connected "$other"
EAST_A_URL=$other
hy_check "and east gets what is written meanwhile" synced

# ---- every replica still answers (with HY_HA_GDB=1, a stuck one's threads
# are dumped into the test's output for diagnosis)
for i in 0 1 2; do
    if hy_wait_for 10 curl -sf --max-time 5 "${URL[$i]}/ready"; then
        hy_ok "replica g$i still answers"
        continue
    fi
    hy_fail "replica g$i still answers"
    if [ -n "${HY_HA_GDB:-}" ] && command -v gdb >/dev/null; then
        gdb -batch -p "${GPID[$i]}" -ex 'thread apply all bt' 2>&1 | grep -E '^(#|Thread)' >&2 || true
    fi
done

# ---- end: stop the load; the zones' listings equal the global's
kill "$LOADER"
wait "$LOADER" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$LOADER/}")
cp "$HY_TMP/acked" "$HY_TMP/acked.snap"
same() { [ "$(names "${URL[0]}" | sha256sum)" = "$(names "$1" | sha256sum)" ]; }
for u in "${URL[1]}" "${URL[2]}" "$WEST" "$EAST_A_URL"; do
    hy_check "the listing at $u equals the global's (hash)" hy_wait_for 10 same "$u"
done
hy_log "acknowledged writes: $(wc -l <"$HY_TMP/acked"), refused with 503: $(grep -c . "$HY_TMP/refused503" || true)"
kill "$SAMPLER"
wait "$SAMPLER" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$SAMPLER/}")
hy_check "never two leaders at one sampled moment ($(grep -vc kill "$HY_TMP/leaders") samples)" \
    bash -c "! awk '\$2 ~ /^[0-9]+\$/ && \$2 > 1' '$HY_TMP/leaders' | grep -q ."
# the logs' acquired/lost lines (and the kills, stamped just before) never
# give two replicas the lease at once
overlap() {
    for i in 0 1 2; do
        grep -h 'leader global: \(acquired\|lost\)' "$HY_TMP/g$i.log" |
            awk -v g="g$i" '{ print $1, ($0 ~ /acquired/ ? 1 : 0), ($0 ~ /acquired/ ? "acq" : "lost"), g }'
    done
    cat "$HY_TMP/kills" 2>/dev/null
}
overlap | sort | awk '{ if ($3 == "acq") { for (h in held) if (held[h] && h != $4) { print "two leaders at", $1, h, $4; bad = 1 } held[$4] = 1 } else held[$4] = 0 }
    END { exit bad }' >"$HY_TMP/overlap" || true
hy_check "the leader logs never overlap ($(cat "$HY_TMP"/g?.log | grep -c 'leader global: acquired') acquisitions)" \
    bash -c "! grep -q . '$HY_TMP/overlap'"
hy_check "leader changes are logged (acquired, replica id)" \
    grep -q 'leader global: acquired by replica' "$HY_TMP/g0.log" "$HY_TMP/g1.log" "$HY_TMP/g2.log"

# graceful stops hand the lease over too, and leave no sanitizer report
for i in 0 1 2; do
    hy_stop "${GPID[$i]}" || true
done
for p in "$WEST_PID" "$EAST_A" "$EAST_B"; do
    kill -0 "$p" 2>/dev/null && { hy_stop "$p" || true; }
done
hy_check "no sanitizer report" bash -c "! grep -l 'Sanitizer\|runtime error' '$HY_TMP'/*.log"
hy_done
