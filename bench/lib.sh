# shellcheck shell=bash
# Shared by the benchmark scripts. Sourced; defines functions only.

# bench_cleanup: stops every pid in the caller's pids array (SIGTERM, then
# waits for each) and removes $tmp unless HYPHA_BENCH_KEEP is set. For
# `trap bench_cleanup EXIT`.
# shellcheck disable=SC2154 # pids and tmp are the caller's
bench_cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [ -n "${HYPHA_BENCH_KEEP:-}" ] || rm -rf "$tmp"
}

# bench_write_section README NAME BODY: replaces what lies between the
# <!-- results:NAME:begin --> and <!-- results:NAME:end --> lines of
# README with the file BODY; fails, saying so, when a marker is missing.
bench_write_section() {
    local readme=$1 name=$2 body=$3
    local begin="<!-- results:$name:begin -->" end="<!-- results:$name:end -->"
    if ! grep -qx "$begin" "$readme" || ! grep -qx "$end" "$readme"; then
        echo "bench: $readme lacks the <!-- results:$name:begin/end --> markers; put them back" >&2
        return 1
    fi
    awk -v begin="$begin" -v end="$end" -v body="$body" '
        $0 == begin {
            print; print ""
            while ((getline line < body) > 0) print line
            print ""; skip = 1; next
        }
        $0 == end { skip = 0 }
        !skip { print }
    ' "$readme" >"$readme.new"
    mv "$readme.new" "$readme"
}

# wait_for SECONDS CMD...: retries CMD (quietly) until it succeeds, at most
# SECONDS; then fails, saying what it waited for.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "$(basename "$0"): timed out waiting for: $*" >&2; return 1; }
        sleep 0.05
    done
}

# to_ms VALUE: wrk's 1.23ms / 456.00us / 1.2s in milliseconds ("?" otherwise)
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else print "?" }'
}
