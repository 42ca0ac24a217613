#!/usr/bin/env bash
# hypha-global on the PostgreSQL store: apply/get/list/delete through
# hyphactl, a restart keeps the data, `migrate` is idempotent, `store copy`
# moves an LMDB store in (verified), a write lock held by another session
# answers 503 after lock_timeout instead of hanging, PostgreSQL stopped under the
# running control plane: writes answer 503 with a clear message, the
# control plane recovers by itself once it is back and nothing
# acknowledged is lost. Skipped (77) only without the PostgreSQL binaries.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pg.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
hy_pg_find || exit 77
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG HYPHA_CA_CERT_FILE HYPHA_AUTH_TOKEN
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
run() {
    rc=0
    "$@" >"$HY_TMP/out" 2>&1 || rc=$?
    o=$(cat "$HY_TMP/out")
}
hy_pg_init
HY_CLEANUP+=("hy_pg_destroy")
PG=(--store postgres --store-postgres-url "$HY_PG_URL")

# ---- migrate: creates the schema, then finds it current
run "$HY_BIN/hypha-global" migrate "${PG[@]}"
hy_eq "migrate exits 0" 0 "$rc"
hy_contains "migrate creates the schema" "schema migrated from version 0 to 1" "$o"
run "$HY_BIN/hypha-global" migrate "${PG[@]}"
hy_eq "migrate again exits 0" 0 "$rc"
hy_contains "and finds it current" "schema is current (version 1)" "$o"
run "$HY_BIN/hypha-global" migrate --store postgres --store-postgres-url "$HY_PG_URL password=s3cr3t-pw"
hy_eq "migrate with a password in the URL exits 0" 0 "$rc"
hy_check "and never prints the password" bash -c "! grep -q s3cr3t-pw '$HY_TMP/out'"
run "$HY_BIN/hypha-global" migrate --store postgres
hy_check "migrate without a URL fails" test "$rc" -ne 0
hy_contains "and names the option" "--store-postgres-url" "$o"

# ---- CRUD through hyphactl
hy_start_global g "${PG[@]}" --no-migrate
hy_contains "the log names the backend" "store: postgres" "$(cat "$GLOBAL_LOG")"
run ctl apply -f "$DATA/mesh.yaml" -f "$DATA/meshtrafficpermission.yaml" -f "$DATA/meshretry.yaml"
hy_eq "apply" 0 "$rc"
hy_contains "reports created" "meshtrafficpermission/allow-web-to-backend created" "$o"
run ctl get meshtrafficpermissions -m default
hy_contains "list" "allow-web-to-backend" "$o"
run ctl get mtp allow-web-to-backend -m default -o yaml
hy_contains "get" "name: allow-web-to-backend" "$o"
sed 's/maxConnectAttempt: 5/maxConnectAttempt: 6/' "$DATA/meshretry.yaml" >"$HY_TMP/r6.yaml"
run ctl apply -f "$HY_TMP/r6.yaml"
hy_contains "update" "meshretry/retry-backend updated" "$o"
run ctl delete meshretry retry-backend -m default
hy_eq "delete" 0 "$rc"
run ctl get meshretry retry-backend -m default
hy_check "deleted is gone" test "$rc" -ne 0

# ---- restart keeps the data
hy_stop "$GLOBAL_PID"
hy_start_global g "${PG[@]}"
run ctl get mtp allow-web-to-backend -m default -o yaml
hy_contains "a restart keeps the data" "name: allow-web-to-backend" "$o"

# ---- a write lock held by another session (as a replica stopped inside a
# write transaction would): a write waits lock_timeout, then answers 503
# naming the cause instead of hanging, and writes work once the lock goes
"$HY_PG_BIN/psql" -q "$HY_PG_URL application_name=hy-blocker" \
    -c 'BEGIN' -c 'SELECT revision FROM hy_meta WHERE id = 1 FOR UPDATE' \
    -c 'SELECT pg_sleep(300)' >/dev/null 2>&1 &
BLOCKER_PID=$!
HY_PIDS+=("$BLOCKER_PID")
blocking() {
    [ "$("$HY_PG_BIN/psql" -tAq "$HY_PG_URL" -c "SELECT count(*) FROM pg_stat_activity
        WHERE application_name = 'hy-blocker' AND query LIKE '%pg_sleep%'")" = 1 ]
}
hy_check "another session holds the write lock" hy_wait_for 20 blocking
sed 's/name: retry-backend/name: while-locked/' "$DATA/meshretry.yaml" >"$HY_TMP/locked.yaml"
code=$(hy_status PUT "$GLOBAL_URL/meshes/default/meshretries/while-locked" \
    -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/locked.yaml")
hy_eq "a write behind the held lock answers 503" 503 "$code"
hy_contains "saying the lock was not granted" "did not grant the write lock" "$(hy_body)"
hy_contains "the log names the lock timeout" "lock timeout" "$(cat "$GLOBAL_LOG")"
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE application_name = 'hy-blocker'" >/dev/null
wait "$BLOCKER_PID" 2>/dev/null || true
code=$(hy_status PUT "$GLOBAL_URL/meshes/default/meshretries/while-locked" \
    -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/locked.yaml")
hy_eq "once the lock is gone the write succeeds" 201 "$code"
run ctl get meshretry while-locked -m default
hy_eq "and is there" 0 "$rc"

# ---- PostgreSQL goes away under the running control plane
sed 's/name: retry-backend/name: while-down/' "$DATA/meshretry.yaml" >"$HY_TMP/down.yaml"
sed 's/name: retry-backend/name: after-restart/' "$DATA/meshretry.yaml" >"$HY_TMP/after.yaml"
hy_pg_stop
code=$(hy_status PUT "$GLOBAL_URL/meshes/default/meshretries/while-down" \
    -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/down.yaml")
hy_eq "a write while PostgreSQL is down answers 503" 503 "$code"
hy_contains "with a clear message" "cannot be reached" "$(hy_body)"
code=$(hy_status GET "$GLOBAL_URL/meshes/default/meshtrafficpermissions/allow-web-to-backend")
hy_check "a read while down answers 200 or a clear 503" \
    bash -c "[ $code = 200 ] || { [ $code = 503 ] && grep -q 'cannot be reached' '$HY_TMP/last-body'; }"
hy_check "the control plane is still running" kill -0 "$GLOBAL_PID"
hy_pg_start
# recovers by itself: the first write after the restart may still find the
# dropped connection; writes succeed again within the backoff
write_back() {
    [ "$(hy_status PUT "$GLOBAL_URL/meshes/default/meshretries/after-restart" \
        -H 'Content-Type: application/yaml' --data-binary @"$HY_TMP/after.yaml")" = 201 ] ||
        [ "$(hy_status GET "$GLOBAL_URL/meshes/default/meshretries/after-restart")" = 200 ]
}
hy_check "writes work again after PostgreSQL restarts" hy_wait_for 30 write_back
run ctl get mtp allow-web-to-backend -m default -o yaml
hy_contains "nothing acknowledged was lost" "name: allow-web-to-backend" "$o"
hy_contains "the log says the connection came back" "connection back" "$(cat "$GLOBAL_LOG")"
run ctl get meshretry while-down -m default
hy_check "the write refused while down was not applied" test "$rc" -ne 0
hy_stop "$GLOBAL_PID"

# ---- store copy: an LMDB store into an empty PostgreSQL database
hy_start_global lm
run ctl apply -f "$DATA/mesh.yaml" -f "$DATA/meshtrafficpermission.yaml" -f "$DATA/meshretry.yaml"
hy_eq "apply to the LMDB control plane" 0 "$rc"
hy_stop "$GLOBAL_PID"
"$HY_BIN/hypha-global" store copy --from "lmdb:$HY_TMP/lm/store" \
    --to "postgres:$HY_PG_URL" >"$HY_TMP/copy.out" 2>&1 && rc=0 || rc=$?
hy_check "copy into a non-empty database is refused" test "$rc" -ne 0
hy_contains "saying why" "not empty" "$(cat "$HY_TMP/copy.out")"
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c 'CREATE DATABASE copied' >/dev/null
COPY_URL="${HY_PG_URL/dbname=postgres/dbname=copied}"
run "$HY_BIN/hypha-global" store copy --from "lmdb:$HY_TMP/lm/store" --to "postgres:$COPY_URL"
hy_eq "copy from LMDB exits 0" 0 "$rc"
hy_contains "and says it verified" "verified" "$o"
hy_start_global g2 --store postgres --store-postgres-url "$COPY_URL"
run ctl get meshretry retry-backend -m default -o yaml
hy_contains "the copy serves what LMDB held" "maxConnectAttempt: 5" "$o"
run ctl get meshtrafficpermissions -m default
hy_contains "listing the copy" "allow-web-to-backend" "$o"
hy_stop "$GLOBAL_PID"

# ---- federation: the global and a zone CP each on a PostgreSQL database
"$HY_PG_BIN/psql" -q "$HY_PG_URL" -c 'CREATE DATABASE zonedb' >/dev/null
ZONE_PG_URL="${HY_PG_URL/dbname=postgres/dbname=zonedb}"
KDS_PORT=$(hy_free_port)
hy_start_global fed "${PG[@]}" --kds-address "127.0.0.1:$KDS_PORT" --kds-ping-interval 1s
ctl generate zone-token --zone east --valid-for 24h >"$HY_TMP/east.token"
hy_start_zone east --store postgres --store-postgres-url "$ZONE_PG_URL"
sed 's/name: allow-web-to-backend/name: fed-1/' "$DATA/meshtrafficpermission.yaml" >"$HY_TMP/fed.yaml"
run ctl apply -f "$HY_TMP/fed.yaml"
hy_eq "apply on the global CP (postgres)" 0 "$rc"
hy_check "KDS brings it to the zone CP (postgres)" hy_wait_for 20 \
    curl -sf "$ZONE_URL_east/meshes/default/meshtrafficpermissions/fed-1"
hy_contains "the zone logs its postgres store" "store: postgres" "$(cat "$ZONE_LOG_east")"
hy_stop "$ZONE_PID_east"
hy_stop "$GLOBAL_PID"

hy_done
