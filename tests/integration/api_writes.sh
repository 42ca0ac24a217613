#!/usr/bin/env bash
# API writes off the loop thread (cp/cp_writer.c): GETs are answered while
# a burst of PUTs is being committed; every PUT of the burst gets its own
# answer (CAS conflicts among successes); a Mesh deleted during a burst of
# writes into it leaves nothing behind; clients that hang up while their
# write is in flight crash nothing and their writes still land; a
# standalone zone's API does the same.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)

hy_start_global g1 --log-level debug
U=$GLOBAL_URL
Y='Content-Type: application/yaml'
port=${U##*:}

retry() { # MESH NAME N: a MeshRetry document
    printf 'type: MeshRetry\nmesh: %s\nname: %s\nspec:\n  targetRef: {kind: Mesh}\n  to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: %s}}}]\n' "$1" "$2" "$3"
}
put_retry() { # BASEURL MESH NAME N [CURL ARGS...] -> status
    local base=$1 mesh=$2 name=$3 n=$4
    shift 4
    curl -s -o /dev/null -w '%{http_code}\n' -X PUT -H "$Y" "$@" \
        "$base/meshes/$mesh/meshretries/$name" --data-binary "$(retry "$mesh" "$name" "$n")"
}

# burst PREFIX WRITERS COUNT BASEURL MESH: WRITERS background loops of
# COUNT PUTs each (PREFIX<w>-<i>), answers in $HY_TMP/PREFIX<w>.out; sets pids
burst() {
    local prefix=$1 writers=$2 count=$3 base=$4 mesh=$5 w
    pids=()
    for w in $(seq 1 "$writers"); do
        (for i in $(seq 1 "$count"); do put_retry "$base" "$mesh" "$prefix$w-$i" "$i"; done) \
            >"$HY_TMP/$prefix$w.out" 2>&1 &
        pids+=($!)
    done
}

hy_eq "create the default mesh" 201 \
    "$(hy_status PUT "$U/meshes/default" -H "$Y" --data-binary @"$DATA/mesh.yaml")"
hy_eq "a resource to read" 201 "$(put_retry "$U" default seed 1)"

# ---- GETs during a burst of PUTs: 20 writers x 20 PUTs, 2 readers
writer() { # W: 20 PUTs, every fourth with a stale If-Match (a conflict)
    local i
    for i in $(seq 1 20); do
        if [ $((i % 4)) -eq 0 ]; then
            put_retry "$U" default seed 9 -H 'If-Match: 999' | sed 's/^/cas /'
        else
            put_retry "$U" default "b$1-$i" "$i"
        fi
    done
}
reader() { # until the writers are done: GET, status and seconds
    while [ ! -e "$HY_TMP/writers-done" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$U/meshes/default/meshretries/seed"
    done
}
reader >"$HY_TMP/r1.out" &
r1=$!
reader >"$HY_TMP/r2.out" &
r2=$!
pids=()
for w in $(seq 1 20); do
    writer "$w" >"$HY_TMP/w$w.out" &
    pids+=($!)
done
wait "${pids[@]}"
touch "$HY_TMP/writers-done"
wait "$r1" "$r2"
hy_eq "every PUT of the burst created its resource" 300 "$(cat "$HY_TMP"/w*.out | grep -c '^201$')"
hy_eq "every stale If-Match got its own 409" 100 "$(cat "$HY_TMP"/w*.out | grep -c '^cas 409$')"
hy_eq "nothing else was answered" 400 "$(cat "$HY_TMP"/w*.out | wc -l)"
gets=$(cat "$HY_TMP"/r*.out | wc -l)
hy_check "GETs were answered during the burst ($gets)" test "$gets" -gt 0
hy_eq "every GET during the burst succeeded" "$gets" "$(cat "$HY_TMP"/r*.out | grep -c '^200 ')"
hy_log "slowest GET during the burst: $(sort -k2 -n "$HY_TMP"/r*.out | tail -n 1 | cut -d' ' -f2) s"
hy_eq "every write is there" 301 "$(curl -s "$U/meshes/default/meshretries?size=1000" | jq .total)"
hy_eq "the stale CAS writes changed nothing" '"1"' \
    "$(curl -s -D - -o /dev/null "$U/meshes/default/meshretries/seed" | tr -d '\r' | sed -n 's/^etag: //p')"
n=$(grep -c "requests' writes committed in one transaction" "$GLOBAL_LOG" || true)
hy_log "transactions that committed several requests' writes: $n"

# ---- a Mesh deleted during a burst of writes into it leaves no orphans
sed 's/^name: default/name: doomed/' "$DATA/mesh.yaml" >"$HY_TMP/doomed.yaml"
hy_eq "create mesh doomed" 201 \
    "$(hy_status PUT "$U/meshes/doomed" -H "$Y" --data-binary @"$HY_TMP/doomed.yaml")"
burst d 10 15 "$U" doomed
hy_wait_for 30 bash -c "cat '$HY_TMP'/d*.out | grep -q 201"
hy_eq "delete mesh doomed mid-burst" 200 "$(hy_status DELETE "$U/meshes/doomed")"
wait "${pids[@]}"
other=$(cat "$HY_TMP"/d*.out | grep -vc '^201$\|^400$' || true)
hy_eq "each write was created or refused (no mesh)" 0 "$other"
hy_eq "mesh doomed is gone" 404 "$(hy_status GET "$U/meshes/doomed")"
hy_eq "no MeshRetry outlived its mesh" 0 \
    "$(curl -s "$U/meshes/doomed/meshretries?size=1000" | jq .total)"

# ---- clients that hang up while their write is in flight
pids=()
for i in $(seq 1 30); do
    body=$(retry default "gone-$i" "$i")
    (
        exec 3<>/dev/tcp/127.0.0.1/"$port"
        printf 'PUT /meshes/default/meshretries/gone-%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: %s\r\n\r\n%s' \
            "$i" "${#body}" "$body" >&3
        exec 3>&-
    ) 2>/dev/null &
    pids+=($!)
done
wait "${pids[@]}"
gone_all() { [ "$(curl -s "$U/meshes/default/meshretries?size=1000" | jq '[.items[] | select(.name | startswith("gone-"))] | length')" = 30 ]; }
hy_check "writes whose clients hung up still landed" hy_wait_for 20 gone_all
hy_eq "the API still answers" 200 "$(hy_status GET "$U/ready")"
hy_log "answers dropped because the client had gone: $(grep -c 'client has gone' "$GLOBAL_LOG" || true)"

# ---- a standalone zone's API: the same burst
hy_start_standalone_zone z1
Z=$SZONE_URL
burst z 10 10 "$Z" default
zgets=0
while kill -0 "${pids[0]}" 2>/dev/null; do
    [ "$(hy_status GET "$Z/meshes/default")" = 200 ] && zgets=$((zgets + 1))
done
wait "${pids[@]}"
hy_eq "every zone PUT created its resource" 100 "$(cat "$HY_TMP"/z*.out | grep -c '^201$')"
hy_log "zone GETs answered during its burst: $zgets"

hy_check "zone stops cleanly" hy_stop "$SZONE_PID"

# ---- stopped in the middle of a burst: the writes in flight finish or
# are dropped whole, their connections close, nothing is touched after free
burst stop- 10 50 "$U" default
hy_wait_for 30 bash -c "cat '$HY_TMP'/stop-*.out | grep -q 201"
hy_check "global stops cleanly in the middle of a burst" hy_stop "$GLOBAL_PID"
wait "${pids[@]}" || true
hy_start_global g1 # the same data dir: what was answered 201 is there
U=$GLOBAL_URL
created=$(cat "$HY_TMP"/stop-*.out | grep -c '^201$' || true)
stored=$(curl -s "$U/meshes/default/meshretries?size=1000" | jq '[.items[] | select(.name | startswith("stop-"))] | length')
hy_check "every write answered 201 before the stop is stored ($created answered, $stored stored)" \
    test "$stored" -ge "$created"
hy_check "global stops cleanly" hy_stop "$GLOBAL_PID"
hy_check "no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error' '$HY_TMP'/*.log"
hy_done
