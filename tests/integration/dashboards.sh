#!/usr/bin/env bash
# The Grafana dashboards in deploy/grafana/: valid JSON, every query PromQL
# that promtool accepts, every metric one Hypha registers; and the checker
# itself refuses a dashboard naming an unknown metric or a broken query.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
top=$(cd "$(dirname "$0")/../.." && pwd)
command -v promtool >/dev/null || { hy_log "promtool is missing (Debian package prometheus)"; exit 77; }

hy_check "the dashboards pass the checker" "$top/deploy/grafana/check.sh"
for f in "$top"/deploy/grafana/*.json; do
    hy_check "$(basename "$f") has a datasource variable" \
        jq -e '.templating.list | map(select(.type == "datasource")) | length == 1' "$f"
done
jq '.panels[1].targets[0].expr = "sum(rate(hypha_dp_no_such_total[1m]))"' \
    "$top/deploy/grafana/hypha-mesh.json" >"$HY_TMP/unknown.json"
hy_check "an unknown metric is refused" bash -c "! '$top/deploy/grafana/check.sh' '$HY_TMP/unknown.json'"
jq '.panels[1].targets[0].expr = "sum(rate(hypha_dp_bytes_total[1m])"' \
    "$top/deploy/grafana/hypha-mesh.json" >"$HY_TMP/broken.json"
hy_check "a broken query is refused" bash -c "! '$top/deploy/grafana/check.sh' '$HY_TMP/broken.json'"
hy_done
