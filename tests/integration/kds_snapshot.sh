#!/usr/bin/env bash
# A zone whose --kds-max-message (64Ki) is far below what the global CP
# holds for it (about 500 KiB of policies) still syncs: at first connect
# (deltas cut under the limit the zone announced in its Hello) and when the
# global CP's log no longer serves it. The store has no flag to shrink the
# log, so the second case is the other one that takes a snapshot: the
# global CP restored from a backup, behind what the zone applied. The
# snapshot then comes in parts, each under the limit; the zone removes
# what the backup lacks only with the last part, and converges.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data/resources" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG

KDS_PORT=$(hy_free_port)
start_global() { hy_start_global g --kds-address "127.0.0.1:$KDS_PORT" --kds-ping-interval 1s; }
start_global
ctl() { "$HY_BIN/hyphactl" --cp "$GLOBAL_URL" "$@"; }
ZLOG=$HY_TMP/zone-small.log

# N policies PREFIX-<k> of about 1 KiB each (16 labels), as one YAML file.
policies() {
    local prefix=$1 n=$2 k l v
    v=$(printf 'x%.0s' $(seq 60))
    for ((k = 0; k < n; k++)); do
        printf -- '---\ntype: MeshTrafficPermission\nmesh: default\nname: %s-%04d\nlabels:\n' \
            "$prefix" "$k"
        for ((l = 0; l < 16; l++)); do printf '  label-%02d: %s\n' "$l" "$v"; done
        printf 'spec:\n  targetRef: {kind: Mesh}\n  from:\n'
        printf '    - targetRef: {kind: Mesh}\n      default: {action: Allow}\n'
    done
}
count() { curl -s "$1/meshes/default/meshtrafficpermissions?size=1" | jq -r .total; }
items() { curl -s "$1/meshes/default/meshtrafficpermissions?size=1000" | jq -S '[.items[]]'; }
same() { [ "$(items "$GLOBAL_URL")" = "$(items "$ZURL")" ]; }

ctl generate zone-token --zone small --valid-for 24h >"$HY_TMP/small.token"
ctl apply -f "$DATA/mesh.yaml" >/dev/null
policies base 500 >"$HY_TMP/base.yaml"
ctl apply -f "$HY_TMP/base.yaml" >/dev/null
hy_eq "the global CP holds 500 policies" 500 "$(count "$GLOBAL_URL")"
bytes=$(curl -s "$GLOBAL_URL/meshes/default/meshtrafficpermissions?size=1000" | wc -c)
hy_check "they weigh far more than 64 KiB ($bytes bytes as JSON)" [ "$bytes" -gt 262144 ]

# the backup the global CP is restored from later: taken stopped
hy_stop "$GLOBAL_PID"
cp -a "$GLOBAL_DATA" "$HY_TMP/backup"
start_global

# ---- first connect
hy_start_zone small --kds-max-message 64Ki
ZURL=$ZONE_URL_small
hy_check "the zone converges on the 500 policies" hy_wait_for 60 same
hy_check "it was never sent a message over its limit (no 1009)" \
    bash -c "! grep -q '1009' '$ZLOG' && ! grep -q 'over --kds-max-message' '$GLOBAL_LOG'"
n=$(grep -c 'applied .* from the global control plane' "$ZLOG" || true)
hy_check "the changes came in many messages ($n)" [ "$n" -ge 8 ]

# ---- more, then the global CP goes back to its backup
policies late 100 >"$HY_TMP/late.yaml"
ctl apply -f "$HY_TMP/late.yaml" >/dev/null
hy_check "the zone gets 100 more" hy_wait_for 30 bash -c "[ \$(curl -s '$ZURL/meshes/default/meshtrafficpermissions?size=1' | jq -r .total) = 600 ]"
hy_stop "$GLOBAL_PID"
rm -rf "$GLOBAL_DATA"
cp -a "$HY_TMP/backup" "$GLOBAL_DATA"
start_global
hy_eq "the restored global CP holds the 500 again" 500 "$(count "$GLOBAL_URL")"
hy_check "the zone converges on it: the 100 are gone" hy_wait_for 60 same
hy_eq "it holds 500" 500 "$(count "$ZURL")"
hy_check "through a snapshot in parts" grep -q 'from snapshot part 1 (more to come)' "$ZLOG"
hy_check "whose last part came last" grep -q 'from snapshot part [0-9]* (the last)' "$ZLOG"
last=$(grep -n 'from snapshot part [0-9]* (the last)' "$ZLOG" | tail -n 1 | cut -d: -f1)
deleted=$(sed -n "${last}p" "$ZLOG" | grep -o '[0-9]* deletes' | cut -d' ' -f1)
hy_eq "the 100 were deleted with the last part, not before" 100 "$deleted"
early=$(grep 'more to come' "$ZLOG" | grep -vc ' 0 deletes' || true)
hy_eq "no part before the last deleted anything" 0 "$early"
hy_check "still no message over the zone's limit" \
    bash -c "! grep -q '1009' '$ZLOG' && ! grep -q 'over --kds-max-message' '$GLOBAL_LOG'"

# ---- the zone survives a restart in the middle of nothing: it resumes
hy_stop "$ZONE_PID_small"
hy_start_zone small --kds-max-message 64Ki
ZURL=$ZONE_URL_small
ctl apply -f "$DATA/meshtrafficpermission.yaml" >/dev/null
hy_check "after a restart it syncs again" hy_wait_for 30 same

hy_done
