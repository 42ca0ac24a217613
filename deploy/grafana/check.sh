#!/usr/bin/env bash
# Checks the Grafana dashboards: each file is JSON with a uid and panels,
# every query is PromQL that promtool accepts (template variables replaced
# by what they can hold), and every metric a query names is one Hypha
# registers (a literal name in a hy_metric_* call of the sources, or one
# of the process_* metrics every component serves). With --pages DIR, also
# every metric must appear in one of the metric pages (*.prom) in DIR.
#
# usage: deploy/grafana/check.sh [--pages DIR] [FILE.json...]   (default: deploy/grafana/*.json)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pages=
if [ "${1:-}" = --pages ]; then pages=${2:?}; shift 2; fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$root"/deploy/grafana/*.json)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the names Hypha registers: the first string argument of hy_metric_counter,
# _gauge, _histogram and _gauge_fn (a name may sit on the next line)
find "$root" -path "$root/build*" -prune -o -path "$root/tests" -prune -o -name '*.c' -print0 |
    xargs -0 cat | tr '\n' ' ' |
    grep -oE 'hy_metric_(counter|gauge|histogram|gauge_fn) *\( *[^,]*, *"[a-z_:][a-z0-9_:]*"' |
    grep -oE '"[^"]*"$' | tr -d '"' | sort -u >"$tmp/registered"
grep -oE '"process_[a-z_]+"' "$root/common/metrics_process.c" | tr -d '"' >>"$tmp/registered"
[ -s "$tmp/registered" ] || { echo "check.sh: found no metric registrations in the sources" >&2; exit 1; }

bad=0
for f in "${files[@]}"; do
    name=$(basename "$f")
    if ! jq -e '.uid and .title and (.panels | length > 0)' "$f" >/dev/null 2>&1; then
        echo "check.sh: $name: not a dashboard (JSON with uid, title and panels)" >&2
        bad=1
        continue
    fi
    jq -r '[.panels[] | .targets[]?.expr] | .[]' "$f" >"$tmp/exprs"
    # the variables' label_values(SELECTOR, label) queries: their selectors
    jq -r '.templating.list[] | select(.type == "query") | .definition' "$f" |
        sed -E 's/^label_values\((.*), *[a-zA-Z_]+\)$/\1/' >>"$tmp/exprs"
    {
        echo "groups:"
        echo "  - name: dashboard"
        echo "    rules:"
        i=0
        while IFS= read -r e; do
            i=$((i + 1))
            e=${e//\$__rate_interval/1m}
            e=$(sed -E 's/\$[a-z_]+/.*/g' <<<"$e")
            printf '      - record: q%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$e" '$e')"
        done <"$tmp/exprs"
    } >"$tmp/rules.yml"
    if ! out=$(promtool check rules "$tmp/rules.yml" 2>&1); then
        echo "check.sh: $name: promtool refuses a query:" >&2
        echo "$out" >&2
        bad=1
    fi
    grep -oE '\b(hypha|process)_[a-z0-9_]+' "$tmp/exprs" | sed -E 's/_(bucket|sum|count)$//' |
        sort -u >"$tmp/used"
    while read -r m; do
        if ! grep -qx "$m" "$tmp/registered"; then
            echo "check.sh: $name: metric $m is not one Hypha registers" >&2
            bad=1
        elif [ -n "$pages" ] && ! cat "$pages"/*.prom | grep -q "^# TYPE $m "; then
            echo "check.sh: $name: metric $m is on none of the pages in $pages" >&2
            bad=1
        fi
    done <"$tmp/used"
done
[ "$bad" = 0 ] && echo "check.sh: ${#files[@]} dashboards, every query valid, every metric registered"
exit "$bad"
