# A throwaway PostgreSQL for tests and benches: Debian's server binaries,
# a cluster in its own temporary directory, reachable only through a unix
# socket there (no TCP), stopped by the caller. Works as root (initdb
# refuses root: the cluster then runs as the unprivileged user
# $HY_PG_USER, default nobody) and as any other user. Source it; needs no
# other helper.
#
#   hy_pg_find            sets HY_PG_BIN; 1 (and a line why) when missing
#   hy_pg_init            initdb + start; sets HY_PG_DIR and HY_PG_URL
#   hy_pg_stop / hy_pg_start   stop or start that cluster again (waits)
#   hy_pg_destroy         stops it and removes HY_PG_DIR

# hy_pg_find: HY_PG_BIN = the newest /usr/lib/postgresql/N/bin with initdb
# and pg_ctl (or $HY_PG_BIN as given).
hy_pg_find() {
    if [ -n "${HY_PG_BIN:-}" ] && [ -x "$HY_PG_BIN/initdb" ] && [ -x "$HY_PG_BIN/pg_ctl" ]; then
        return 0
    fi
    local d
    HY_PG_BIN=
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && HY_PG_BIN=$d
    done
    if [ -z "$HY_PG_BIN" ]; then
        printf 'PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): install the Debian package postgresql\n' >&2
        return 1
    fi
}

# Runs a command as the cluster's owner.
hy_pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "${HY_PG_USER:-nobody}" -- "$@"
    else
        "$@"
    fi
}

hy_pg_init() {
    hy_pg_find || return 1
    HY_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hypha-pg.XXXXXX")
    if [ "$(id -u)" = 0 ]; then
        chmod 0755 "$HY_PG_DIR" # the client (root) and the server (nobody) both reach the socket
        chown "${HY_PG_USER:-nobody}" "$HY_PG_DIR"
    fi
    hy_pg_as "$HY_PG_BIN/initdb" -D "$HY_PG_DIR/data" -U hypha -A trust -E UTF8 \
        --locale=C.UTF-8 >"$HY_PG_DIR/initdb.log" 2>&1 || {
        cat "$HY_PG_DIR/initdb.log" >&2
        return 1
    }
    cat >>"$HY_PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$HY_PG_DIR'
max_connections = 50
fsync = ${HY_PG_FSYNC:-on}
CONF
    HY_PG_URL="host=$HY_PG_DIR port=5432 user=hypha dbname=postgres"
    hy_pg_start
}

hy_pg_start() {
    hy_pg_as "$HY_PG_BIN/pg_ctl" -D "$HY_PG_DIR/data" -l "$HY_PG_DIR/server.log" -w -t 60 \
        start >/dev/null || {
        cat "$HY_PG_DIR/server.log" >&2
        return 1
    }
}

hy_pg_stop() {
    hy_pg_as "$HY_PG_BIN/pg_ctl" -D "$HY_PG_DIR/data" -m fast -w -t 60 stop >/dev/null
}

hy_pg_destroy() {
    [ -n "${HY_PG_DIR:-}" ] || return 0
    [ -f "$HY_PG_DIR/data/postmaster.pid" ] && hy_pg_stop 2>/dev/null
    rm -rf "$HY_PG_DIR"
    HY_PG_DIR=
}
