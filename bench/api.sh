#!/usr/bin/env bash
# The HTTP API benchmark: hypha-global on loopback under wrk, against nginx
# serving the same bytes and raw LMDB doing the same durable puts; RSS with
# 10k policies; time to apply 10k policies with hyphactl and with curl.
# Rewrites the results:api section of bench/README.md.
#
# usage: bench/api.sh [--no-write] [--seconds S] [--connections N]
#                     [--policies N] [--reps N] [--dir D] [--before DIR]
#   --no-write       print the results, leave README.md alone
#   --seconds S      wrk duration of each rate row (HYPHA_BENCH_API_SECONDS, default 10)
#   --connections N  wrk connections, over 2 threads (HYPHA_BENCH_API_CONNECTIONS, default 8)
#   --policies N     policies loaded and applied (HYPHA_BENCH_API_POLICIES, default 10000)
#   --reps N         repetitions of the apply rows, medians shown (HYPHA_BENCH_REPS, default 5)
#   --dir D          where data dirs go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
#   --before DIR     bin dir of an older build: GETs beside PUTs measured on it too
#                    (HYPHA_BENCH_API_BEFORE)
# Installs missing Debian packages (wrk, nginx...) when run as root.
set -euo pipefail

write=1
seconds=${HYPHA_BENCH_API_SECONDS:-10}
conns=${HYPHA_BENCH_API_CONNECTIONS:-8}
policies=${HYPHA_BENCH_API_POLICIES:-10000}
reps=${HYPHA_BENCH_REPS:-5}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
before=${HYPHA_BENCH_API_BEFORE:-}
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --seconds) seconds=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --policies) policies=${2:?}; shift ;;
    --reps) reps=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --before) before=${2:?}; shift ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "api.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
for v in seconds conns policies reps; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "api.sh: $v must be a positive integer" >&2; exit 2 ;; esac
done
[ "$conns" -ge 2 ] || { echo "api.sh: --connections must be at least 2" >&2; exit 2; }
if [ -n "$before" ]; then
    before=$(cd "$before" && pwd) && [ -x "$before/hypha-global" ] ||
        { echo "api.sh: --before: no hypha-global in '$before'" >&2; exit 2; }
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build="build-bench"
readme=bench/README.md
batch=1000 # policies per _apply of the batched loads, and items per list page

# shellcheck source=deploy/local/deps.sh
. deploy/local/deps.sh
# shellcheck disable=SC2086
hy_install_packages $HY_BUILD_PACKAGES libcmocka-dev curl jq iproute2 wrk nginx

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-global hypha-bench-store -j "$(nproc)"
ctl_note=""
if ! cmake --build "$build" --target hyphactl -j "$(nproc)" >"${TMPDIR:-/tmp}/hypha-bench-ctl-build.$$" 2>&1; then
    ctl_note="hyphactl did not build"
fi
rm -f "${TMPDIR:-/tmp}/hypha-bench-ctl-build.$$"
global="$root/$build/bin/hypha-global"
ctl="$root/$build/bin/hyphactl"
[ -n "$ctl_note" ] || [ -x "$ctl" ] || ctl_note="hyphactl is not built"

tmp=$(mktemp -d "$dir/hypha-bench-api-XXXXXX")
pids=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "api.sh: $*" >&2
    exit 1
}
say() { echo "api.sh: $*" >&2; }
now_ns() { date +%s%N; }
forget_pid() { # drops $1 from pids once it is stopped
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# ---- hypha-global -----------------------------------------------------------
# start_global NAME [flags]: a fresh instance with its own data dir; sets
# G_PID and G_URL.
start_global() {
    local name=$1
    shift
    local log="$tmp/$name.log"
    "${G_BIN:-$global}" --data-dir "$tmp/$name.data" --api-address 127.0.0.1:0 \
        --kds-address 127.0.0.1:0 "$@" >"$log" 2>&1 &
    G_PID=$!
    pids+=("$G_PID")
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's|.*API listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log")
        [ -z "$port" ] || break
        kill -0 "$G_PID" 2>/dev/null || die "hypha-global exited at start: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$port" ] || die "hypha-global did not say where it listens: $(cat "$log")"
    G_URL="http://127.0.0.1:$port"
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "$G_URL/ready" 2>/dev/null && return 0
        sleep 0.1
    done
    die "hypha-global at $G_URL is not ready"
}

stop_global() {
    kill "$G_PID"
    wait "$G_PID" 2>/dev/null || true
    forget_pid "$G_PID"
    rm -rf "$tmp/$1.data"
}

# put_mesh: creates mesh default; sets MESH_BASE to what the store then
# holds (the Mesh and what its CA added: root, key, the MeshTrust listing it)
put_mesh() {
    local code
    code=$(curl -sS -o "$tmp/mesh.out" -w '%{http_code}' -X PUT \
        -H 'Content-Type: application/yaml' --data-binary @tests/data/resources/mesh.yaml \
        "$G_URL/meshes/default")
    [ "$code" = 201 ] || die "PUT /meshes/default: HTTP $code $(cat "$tmp/mesh.out")"
    MESH_BASE=$(store_count)
}

# curl_apply FILE...: one POST /_apply per file, over one connection; every
# result must be "created". (No Expect: 100-continue, which would make curl
# wait a second before sending a large body.)
curl_apply() {
    local args=() f first=1
    for f in "$@"; do
        [ $first = 1 ] || args+=(--next)
        first=0
        args+=(-sS -o "$f.out" -w '%{http_code}\n' -X POST -H 'Content-Type: application/yaml'
            -H 'Expect:' --data-binary "@$f" "$G_URL/_apply")
    done
    curl "${args[@]}" >"$tmp/apply.codes"
    local expect got
    for f in "$@"; do
        expect=$(grep -c '^---$' "$f")
        got=$(grep -o '"result":"created"' "$f.out" | wc -l)
        [ "$got" = "$expect" ] ||
            die "POST /_apply of $f: $got of $expect created: $(head -c 600 "$f.out")"
    done
}

# ctl_apply FILE...: hyphactl apply -f each; 1 if hyphactl failed.
ctl_apply() {
    local args=() f
    for f in "$@"; do args+=(-f "$f"); done
    local rc=0
    "$ctl" --cp "$G_URL" apply "${args[@]}" >"$tmp/ctl.out" 2>"$tmp/ctl.err" || rc=$?
    if [ $rc != 0 ]; then
        ctl_note="hyphactl apply exited with status $rc: $(head -c 300 "$tmp/ctl.err" | tr '\n' ' ')"
        return 1
    fi
    local expect
    expect=$(cat "$@" | grep -c '^---$')
    [ "$(grep -c ' created$' "$tmp/ctl.out")" = "$expect" ] ||
        die "hyphactl apply: not all of $expect created: $(tail -n 3 "$tmp/ctl.out")"
}

store_count() {
    curl -fsS "$G_URL/metrics" | awk '$1 == "hypha_store_resources" { print $2 }'
}

metric() { # metric NAME-WITH-LABELS
    curl -fsS "$G_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# rss PID: "VmRSS RssAnon RssFile VmHWM" in kB
rss() {
    awk '/^(VmRSS|RssAnon|RssFile|VmHWM):/ { v[$1] = $2 }
         END { print v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["VmHWM:"] }' "/proc/$1/status"
}

# ---- inputs -------------------------------------------------------------
# gen FROM TO: the example policy renamed allow-web-to-backend-NNNNNN.
gen() {
    awk -v from="$1" -v to="$2" -v src=tests/data/resources/meshtrafficpermission.yaml '
        BEGIN {
            while ((getline l < src) > 0) t = t l "\n"
            for (i = from; i <= to; i++) {
                d = t
                if (!sub(/name: allow-web-to-backend\n/, sprintf("name: allow-web-to-backend-%06d\n", i), d))
                    exit 1
                printf "---\n%s", d
            }
        }'
}
gen 1 "$policies" >"$tmp/all.yaml"
all_bytes=$(wc -c <"$tmp/all.yaml")
codec_max=$((4 << 20)) # HY_CODEC_MAX_BYTES (common/codec.h): one input, all documents
[ "$all_bytes" -le "$codec_max" ] ||
    die "$policies policies make $all_bytes bytes, more than the $codec_max the codec reads in one input; lower --policies"
batch_files=()
for ((from = 1; from <= policies; from += batch)); do
    to=$((from + batch - 1))
    [ "$to" -le "$policies" ] || to=$policies
    f="$tmp/batch-$(printf '%06d' "$from").yaml"
    gen "$from" "$to" >"$f"
    batch_files+=("$f")
done
gen 1 "$batch" >"$tmp/list.yaml"

# ---- formatting -----------------------------------------------------------
fmt_rate() { # 33590.84 -> "33 591"; 254.3 -> "254"; 50.81 -> "50.8"
    awk -v x="$1" 'BEGIN {
        if (x < 100) { printf "%.1f", x; exit }
        s = sprintf("%.0f", x); o = ""
        while (length(s) > 3) { o = " " substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        printf "%s%s", s, o }'
}
fmt_us() { # microseconds -> "231 µs" or "31.40 ms" or "1.20 s"
    awk -v x="$1" 'BEGIN {
        if (x < 1000) printf "%.0f µs", x
        else if (x < 1000000) printf "%.2f ms", x / 1000
        else printf "%.2f s", x / 1000000 }'
}
fmt_ratio() {
    awk -v x="$1" 'BEGIN { if (x >= 0.1) printf "%.2f", x; else printf "%.2g", x }'
}
fmt_mib() { awk -v x="$1" 'BEGIN { printf "%.1f MiB", x / 1024 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6g", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- wrk --------------------------------------------------------------------
# run_wrk OUT WRK-ARGS...: runs wrk --latency; refuses errors and non-2xx.
run_wrk() {
    local out=$1
    shift
    wrk --latency "$@" >"$out" 2>&1 || die "wrk $*: $(cat "$out")"
    if grep -q 'Non-2xx' "$out" || grep -q 'Socket errors' "$out" ||
        grep -Eq '^not-(updated|created): [1-9]' "$out"; then
        die "wrk $* saw failures: $(cat "$out")"
    fi
}
wrk_rate() { awk '$1 == "Requests/sec:" { print $2 }' "$1"; }

wrk_requests() { awk '$2 == "requests" && $3 == "in" { print $1 }' "$1"; }
wrk_lat() { # wrk_lat FILE 50% -> microseconds
    awk -v p="$2" '$1 == p && NF == 2 {
        v = $2; m = 1
        if (v ~ /us$/) { sub(/us$/, "", v) }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); m = 60000000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); m = 1000000 }
        printf "%.0f\n", v * m }' "$1"
}

# ---- the heading: when, where, what --------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit + uncommitted changes"
else
    commit=uncommitted
fi
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
cc_version=$("${cc:-cc}" --version 2>/dev/null | head -n 1)
wrk_version=$( (wrk -v 2>&1 || true) | sed -n '1s|^wrk \(debian/\)\{0,1\}\([^ ]*\).*|\2|p')
nginx_version=$(nginx -v 2>&1 | sed 's|.*nginx/||')
libs="libwebsockets $(pkg-config --modversion libwebsockets | sed 's/-$//'), libuv $(pkg-config --modversion libuv), LMDB $(pkg-config --modversion lmdb); wrk $wrk_version, nginx $nginx_version"
heading="Run $(date -u '+%Y-%m-%d %H:%M UTC') on $cpu, $(nproc) CPUs, $mem_gib GiB RAM, Linux $(uname -r); commit $commit; Release build, $cc_version; $libs."
fs=$(df -PT "$tmp" | awk 'NR == 2 { print $2 }')
started=$(now_ns)
load_start=$(cut -d" " -f1-3 /proc/loadavg)

# ---- 1. rates: hypha-global with one Mesh and $batch policies --------------------
say "rates: hypha-global with $batch policies, nginx with the same bytes (${seconds}s per run)..."
start_global rates
put_mesh
curl_apply "$tmp/list.yaml"
one_path=/meshes/default/meshtrafficpermissions/allow-web-to-backend-000001
list_path="/meshes/default/meshtrafficpermissions?size=$batch"
put_name=$(printf 'allow-web-to-backend-%06d' "$batch")
mkdir -p "$tmp/nginx/www" "$tmp/nginx/logs" "$tmp/nginx/tmp"
curl -fsS -o "$tmp/nginx/www/one.json" "$G_URL$one_path"
curl -fsS -o "$tmp/nginx/www/list.json" "$G_URL$list_path"
[ "$(jq '.items | length' "$tmp/nginx/www/list.json")" = "$batch" ] || die "the list does not hold $batch items"
one_bytes=$(wc -c <"$tmp/nginx/www/one.json")
list_bytes=$(wc -c <"$tmp/nginx/www/list.json")

# nginx: one worker (hypha-global serves from one thread), no access log, the
# files kept open; its workers run as nobody when we are root, so they must
# be able to read the files.
chmod 711 "$tmp"
chmod -R a+rX "$tmp/nginx/www"
ngx_pid=""
for _ in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    [ -z "$(ss -Htln "sport = :$port" 2>/dev/null)" ] || continue
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    types { }
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    open_file_cache max=16;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root www;
    }
}
EOF
    nginx -p "$tmp/nginx/" -c nginx.conf -e logs/error.log -g 'daemon off;' \
        >>"$tmp/nginx/logs/stderr" 2>&1 &
    ngx_pid=$!
    pids+=("$ngx_pid")
    ngx_url="http://127.0.0.1:$port"
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "$ngx_url/one.json" 2>/dev/null && break 2
        kill -0 "$ngx_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$ngx_pid" 2>/dev/null || true
    wait "$ngx_pid" 2>/dev/null || true
    forget_pid "$ngx_pid"
    ngx_pid=""
done
[ -n "$ngx_pid" ] || die "nginx did not start: $(tail -n 5 "$tmp/nginx/logs/error.log" 2>/dev/null)"
for f in one list; do
    curl -fsS -o "$tmp/$f.nginx" "$ngx_url/$f.json"
    cmp -s "$tmp/$f.nginx" "$tmp/nginx/www/$f.json" || die "nginx does not serve $f.json as hypha-global answered it"
done

wrk2=(-t2 "-c$conns" "-d${seconds}s")
half=$((conns / 2))
wrk1=(-t1 "-c$half" "-d${seconds}s")
warm=(-t2 "-c$conns" -d2s)
# each target warmed for 2 s first (untimed); hypha and nginx take turns
for target in "$G_URL$one_path h_one" "$ngx_url/one.json n_one" "$G_URL$list_path h_list" "$ngx_url/list.json n_list"; do
    read -r url out <<<"$target"
    say "  wrk $url"
    run_wrk "$tmp/warm.txt" "${warm[@]}" "$url"
    run_wrk "$tmp/$out.txt" "${wrk2[@]}" "$url"
done
say "  wrk PUT $put_name"
run_wrk "$tmp/warm.txt" "${warm[@]}" -s bench/api/put.lua "$G_URL" -- "$put_name"
rev0=$(metric hypha_store_revision)
run_wrk "$tmp/h_put.txt" "${wrk2[@]}" -s bench/api/put.lua "$G_URL" -- "$put_name"
rev1=$(metric hypha_store_revision)
puts=$(wrk_requests "$tmp/h_put.txt")
commits=$((rev1 - rev0))
[ "$commits" -ge "$puts" ] || die "$puts PUTs answered but only $commits store revisions"
# beside_puts PREFIX: GETs of one policy alone, then with 7c's PUTs beside
# them (PREFIX_mix*), then during a burst of PUTs of new policies on twice
# as many connections (PREFIX_burst*)
beside_puts() {
    local p=$1 bp
    say "  wrk GET one alone, then with PUTs beside it, then during a PUT burst ($p)"
    run_wrk "$tmp/${p}_alone.txt" "${wrk1[@]}" "$G_URL$one_path"
    run_wrk "$tmp/${p}_mixput.txt" "${wrk1[@]}" -s bench/api/put.lua "$G_URL" -- "$put_name" &
    bp=$!
    pids+=("$bp")
    run_wrk "$tmp/${p}_mixget.txt" "${wrk1[@]}" "$G_URL$one_path"
    wait "$bp" || die "the PUTs beside the GETs failed: $(cat "$tmp/${p}_mixput.txt")"
    forget_pid "$bp"
    local r0 r1
    r0=$(metric hypha_store_revision)
    run_wrk "$tmp/${p}_burstput.txt" -t1 "-c$conns" "-d${seconds}s" -s bench/api/put.lua "$G_URL" -- "burst-$p" new &
    bp=$!
    pids+=("$bp")
    run_wrk "$tmp/${p}_burstget.txt" "${wrk1[@]}" "$G_URL$one_path"
    wait "$bp" || die "the PUT burst failed: $(cat "$tmp/${p}_burstput.txt")"
    forget_pid "$bp"
    grep -q '^not-created: 0$' "$tmp/${p}_burstput.txt" || die "$p: the PUT burst said nothing of its answers"
    r1=$(metric hypha_store_revision)
    [ $((r1 - r0)) -ge "$(wrk_requests "$tmp/${p}_burstput.txt")" ] ||
        die "$p: $(wrk_requests "$tmp/${p}_burstput.txt") PUTs answered but only $((r1 - r0)) store revisions"
}
beside_puts h
kill "$ngx_pid"
wait "$ngx_pid" 2>/dev/null || true
forget_pid "$ngx_pid"
stop_global rates
if [ -n "$before" ]; then # the same rows on the older build, same machine, same run
    G_BIN=$before/hypha-global start_global before
    put_mesh
    curl_apply "$tmp/list.yaml"
    beside_puts b
    stop_global before
    before_commit=$(cd "$before" && git rev-parse --short HEAD 2>/dev/null || echo "?")
fi

# raw LMDB and hy_store_put durable puts on the same filesystem, for row 7c
say "  hypha-bench-store row 1 (durable puts) on the same filesystem"
"$build/bin/hypha-bench-store" --reps 3 --dir "$tmp" --single 2000 --total 1000 --batch 1000 \
    --gets 1000 --changes 1000 --read-reps 1 --page-total 1000 --page-size 100 >"$tmp/store.md" 2>"$tmp/store.err" ||
    die "hypha-bench-store failed: $(tail -n 5 "$tmp/store.err")"
store_row() { # store_row COLUMN -> puts/s of row 1 (4 Hypha, 5 baseline)
    awk -F'|' -v c="$1" '$2 ~ /^ 1\. Single durable puts/ { v = $c; gsub(/[^0-9.]/, "", v); print v }' "$tmp/store.md"
}
lmdb_rate=$(store_row 5)
store_rate=$(store_row 4)
{ [ -n "$lmdb_rate" ] && [ -n "$store_rate" ]; } || die "cannot read row 1 of hypha-bench-store: $(cat "$tmp/store.md")"

# ---- 2. RSS with $policies policies ------------------------------------------------
say "memory: $policies policies applied in batches of $batch, then listed..."
start_global rss
read -r e_rss e_anon e_file e_hwm <<<"$(rss "$G_PID")"
put_mesh
read -r m_rss m_anon m_file m_hwm <<<"$(rss "$G_PID")"
curl_apply "${batch_files[@]}"
[ "$(store_count)" = $((policies + MESH_BASE)) ] || die "the store does not hold $policies policies"
read -r l_rss l_anon l_file l_hwm <<<"$(rss "$G_PID")"
next="$list_path"
listed=0
while [ "$next" != null ]; do
    curl -fsS -o "$tmp/page.json" "$G_URL$next"
    listed=$((listed + $(jq '.items | length' "$tmp/page.json")))
    next=$(jq -r '.next' "$tmp/page.json")
done
[ "$listed" = "$policies" ] || die "the list walk saw $listed policies, not $policies"
read -r w_rss w_anon w_file w_hwm <<<"$(rss "$G_PID")"
prom_rss=$(metric process_resident_memory_bytes)
store_bytes=$(du -sk "$tmp/rss.data/store" | cut -f1)
stop_global rss

# ---- 3. apply $policies policies: hyphactl vs curl ---------------------------------
say "apply: $policies policies in one file and in files of $batch, hyphactl and curl, $reps repetitions..."
ctl_one=() ctl_batches=() curl_one=() curl_batches=() srv_one=()
big_rss=""
ctl_ok=1
[ -z "$ctl_note" ] || ctl_ok=0
for rep in $(seq "$reps"); do
    # hyphactl and curl take turns going first
    if [ $((rep % 2)) = 1 ]; then order="ctl curl"; else order="curl ctl"; fi
    for who in $order; do
        [ "$who" = curl ] || [ $ctl_ok = 1 ] || continue
        for what in one batches; do
            # a 10k-document body is over the default 1 MiB limit
            start_global apply --api-max-body 64Mi
            put_mesh
            if [ "$what" = one ]; then files=("$tmp/all.yaml"); else files=("${batch_files[@]}"); fi
            t0=$(now_ns)
            if [ "$who" = ctl ]; then
                if ! ctl_apply "${files[@]}"; then
                    ctl_ok=0
                    say "  $ctl_note; measuring curl only"
                    stop_global apply
                    continue 2
                fi
            else
                curl_apply "${files[@]}"
            fi
            t1=$(now_ns)
            [ "$(store_count)" = $((policies + MESH_BASE)) ] || die "$who apply: the store does not hold $policies policies"
            ms=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')
            eval "${who}_${what}+=(\"$ms\")"
            if [ "$who" = curl ] && [ "$what" = one ]; then
                srv_one+=("$(metric 'hypha_api_request_duration_seconds_sum{route="/_apply"}' | awk '{ printf "%.1f", $1 * 1000 }')")
                [ -n "$big_rss" ] || big_rss=$(rss "$G_PID")
            fi
            stop_global apply
        done
    done
done
read -r b_rss b_anon b_file b_hwm <<<"$big_rss"

elapsed=$(awk -v d=$(($(now_ns) - started)) 'BEGIN { printf "%.0f", d / 1e9 }')

# ---- the tables -------------------------------------------------------------------
rate_row() { # rate_row LABEL WORK HYPHA-FILE BASE-FILE BASE-LABEL
    local h b
    h=$(wrk_rate "$3")
    b=$(wrk_rate "$4")
    printf '| %s | %s | %s req/s | %s | %s | %s | %s req/s | %s | %s | %s |\n' "$1" "$2" \
        "$(fmt_rate "$h")" "$(fmt_us "$(wrk_lat "$3" 50%)")" "$(fmt_us "$(wrk_lat "$3" 99%)")" \
        "$5" "$(fmt_rate "$b")" "$(fmt_us "$(wrk_lat "$4" 50%)")" "$(fmt_us "$(wrk_lat "$4" 99%)")" \
        "$(fmt_ratio "$(div "$h" "$b")")"
}
mem_row() { # mem_row LABEL RSS ANON FILE HWM
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt_mib "$2")" "$(fmt_mib "$3")" \
        "$(fmt_mib "$4")" "$(fmt_mib "$5")" \
        "$(awk -v a="$2" -v e="$e_rss" 'BEGIN { printf "%+.1f MiB", (a - e) / 1024 }')"
}
apply_row() { # apply_row LABEL CTL-MEDIAN-MS CURL-MEDIAN-MS
    local c=$2 b=$3
    if [ -z "$c" ]; then
        printf '| %s | n/a | — | %s ms | %s µs | — |\n' "$1" "$b" \
            "$(awk -v m="$b" -v n="$policies" 'BEGIN { printf "%.0f", m * 1000 / n }')"
        return
    fi
    printf '| %s | %s ms | %s µs | %s ms | %s µs | %s |\n' "$1" "$c" \
        "$(awk -v m="$c" -v n="$policies" 'BEGIN { printf "%.0f", m * 1000 / n }')" "$b" \
        "$(awk -v m="$b" -v n="$policies" 'BEGIN { printf "%.0f", m * 1000 / n }')" \
        "$(fmt_ratio "$(div "$b" "$c")")"
}
nfiles=${#batch_files[@]}
m_ctl_one="" m_ctl_batches=""
if [ $ctl_ok = 1 ]; then # a failure in any repetition voids the hyphactl column
    m_ctl_one=$(median "${ctl_one[@]}")
    m_ctl_batches=$(median "${ctl_batches[@]}")
fi
m_curl_one=$(median "${curl_one[@]}")
m_curl_batches=$(median "${curl_batches[@]}")
m_srv_one=$(median "${srv_one[@]}")
put_rate=$(wrk_rate "$tmp/h_put.txt")

{
    echo "$heading"
    echo
    echo "| Benchmark | Work | Hypha | p50 | p99 | Baseline | Baseline rate | p50 | p99 | Hypha / baseline |"
    echo "|---|---|--:|--:|--:|---|--:|--:|--:|--:|"
    rate_row "7a. GET one policy" "$one_bytes-byte JSON, ${seconds} s" "$tmp/h_one.txt" "$tmp/n_one.txt" "nginx, the same bytes"
    rate_row "7b. GET a list of $batch" "$list_bytes-byte JSON, ${seconds} s" "$tmp/h_list.txt" "$tmp/n_list.txt" "nginx, the same bytes"
    printf '| 7c. PUT an update | durable, %s s | %s req/s | %s | %s | raw LMDB durable put | %s puts/s | — | — | %s |\n' \
        "$seconds" "$(fmt_rate "$put_rate")" "$(fmt_us "$(wrk_lat "$tmp/h_put.txt" 50%)")" \
        "$(fmt_us "$(wrk_lat "$tmp/h_put.txt" 99%)")" "$(fmt_rate "$lmdb_rate")" \
        "$(fmt_ratio "$(div "$put_rate" "$lmdb_rate")")"
    rate_row "7d. GET one beside PUTs" "$half conns GET + $half conns PUT, ${seconds} s" "$tmp/h_mixget.txt" "$tmp/h_alone.txt" "the same GETs, no PUTs"
    rate_row "7e. GET one during a PUT burst" "$half conns GET + $conns conns PUT new, ${seconds} s" "$tmp/h_burstget.txt" "$tmp/h_alone.txt" "the same GETs, no PUTs"
    if [ -n "$before" ]; then
        rate_row "7d before ($before_commit)" "$half conns GET + $half conns PUT, ${seconds} s" "$tmp/b_mixget.txt" "$tmp/b_alone.txt" "the same GETs, no PUTs"
        rate_row "7e before ($before_commit)" "$half conns GET + $conns conns PUT new, ${seconds} s" "$tmp/b_burstget.txt" "$tmp/b_alone.txt" "the same GETs, no PUTs"
    fi
    echo
    echo "wrk: 2 threads and $conns connections (7d: one wrk of 1 thread and $half connections for each kind), keep-alive, on the same $(nproc) CPUs as the server; one run of ${seconds} s per row after 2 s of warm-up. Hypha served $puts PUTs in 7c and its store revision rose by $commits: every PUT committed. In 7d the PUTs beside ran at $(fmt_rate "$(wrk_rate "$tmp/h_mixput.txt")") req/s; in 7e the burst (1 thread, $conns connections, each PUT a new policy) at $(fmt_rate "$(wrk_rate "$tmp/h_burstput.txt")") req/s.$(
        [ -z "$before" ] || printf ' Before (%s, built from that commit, same machine and run): PUTs at %s req/s beside 7d, %s req/s in the 7e burst.' \
            "$before_commit" "$(fmt_rate "$(wrk_rate "$tmp/b_mixput.txt")")" "$(fmt_rate "$(wrk_rate "$tmp/b_burstput.txt")")") 7c's hy_store_put durable rate in the same run: $(fmt_rate "$store_rate") puts/s. Data on $fs. Load average at the start: $load_start (other work on the machine shows there)."
    echo
    echo "| Memory of hypha-global | VmRSS | RssAnon | RssFile | VmHWM | VmRSS − empty |"
    echo "|---|--:|--:|--:|--:|--:|"
    mem_row "8a. Empty (fresh start, empty store)" "$e_rss" "$e_anon" "$e_file" "$e_hwm"
    mem_row "8b. Mesh default created" "$m_rss" "$m_anon" "$m_file" "$m_hwm"
    mem_row "8c. $policies policies applied in $nfiles batches of $batch" "$l_rss" "$l_anon" "$l_file" "$l_hwm"
    mem_row "8d. Then every page of $batch listed" "$w_rss" "$w_anon" "$w_file" "$w_hwm"
    mem_row "8e. $policies policies applied in one request (fresh instance)" "$b_rss" "$b_anon" "$b_file" "$b_hwm"
    echo
    echo "From /proc/PID/status; the store holds $(fmt_mib "$store_bytes") on disk after 8c. process_resident_memory_bytes after 8d: $(fmt_mib $((prom_rss / 1024)))."
    echo
    echo "| Apply $policies policies | hyphactl apply -f | per policy | curl POST /_apply | per policy | Hypha / baseline |"
    echo "|---|--:|--:|--:|--:|--:|"
    apply_row "9a. One file ($all_bytes bytes)" "$m_ctl_one" "$m_curl_one"
    apply_row "9b. $nfiles files of $batch (one transaction each)" "$m_ctl_batches" "$m_curl_batches"
    echo
    echo -n "Median of $reps repetition(s), each on a fresh hypha-global with the Mesh created (started with --api-max-body 64Mi: the one-file body is over the default 1 MiB). Server time of 9a's POST (hypha_api_request_duration_seconds_sum): $m_srv_one ms. "
    if [ $ctl_ok = 1 ]; then
        echo "$elapsed s in all."
    else
        echo "**hyphactl not measured: $ctl_note** — curl only. $elapsed s in all."
    fi
} >"$tmp/api.md"

if [ "$write" = 0 ]; then
    cat "$tmp/api.md"
    exit 0
fi
bench_write_section "$readme" api "$tmp/api.md" || exit 1
cat "$tmp/api.md"
say "results written to $readme"
