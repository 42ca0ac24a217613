#!/usr/bin/env bash
# hypha-dp-sim against a real standalone zone: 500 simulated sidecars (each
# a real DP session with a minted dataplane token) register and get
# configs; a burst of 200 MeshTrafficPermission changes reaches every one
# and they all end on the same policy state; the zone is stopped (SIGTERM)
# and started again on the same data dir and ports: every session
# reconnects, still agrees, and converges again after a second burst.
. "$(dirname "$0")/lib.sh"
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG
SESSIONS=${HY_DP_SIM_SESSIONS:-500}
CHANGES=${HY_DP_SIM_CHANGES:-200}

# ---- a standalone zone on fixed ports, so a restart keeps them
ZDATA=$HY_TMP/zone
mkdir -p "$ZDATA"
API_PORT=$(hy_free_port)
DP_PORT=$(hy_free_port)
API=http://127.0.0.1:$API_PORT
start_zone() {
    local log=$HY_TMP/zone.log
    [ ! -f "$log" ] || mv "$log" "$log.$(date +%s%N)"
    "$HY_BIN/hypha-zone" --zone sim --data-dir "$ZDATA" --api-address "127.0.0.1:$API_PORT" \
        --dp-address "127.0.0.1:$DP_PORT" >"$log" 2>&1 &
    ZONE_PID=$!
    HY_PIDS+=("$ZONE_PID")
    hy_wait_for 20 curl -sf "$API/ready" || { cat "$log" >&2; return 1; }
}
start_zone
"$HY_BIN/hyphactl" --cp "$API" apply -f - >/dev/null <<'YAML'
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
YAML
hy_check "the zone has its CA for mesh default" \
    hy_wait_for 15 curl -sf "$API/meshes/default/meshissuers/ca-1"

# ---- the simulator: two bursts, the zone restarted between them
OUT=$HY_TMP/sim.out
"$HY_BIN/hypha-dp-sim" --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZDATA/dp/ca.pem" \
    --api "$API" --put-api "$API" --count "$SESSIONS" --services 20 --outbounds 1 \
    --changes "$CHANGES" --burst --restarts 1 --timeout 600s >"$OUT" 2>"$HY_TMP/sim.err" &
SIM_PID=$!
HY_PIDS+=("$SIM_PID")
converged() { grep -q "^converged round=$1 " "$OUT"; }
sim_failed() { ! kill -0 "$SIM_PID" 2>/dev/null; }
until converged 1 || sim_failed; do sleep 0.1; done
hy_check "every session converged after the first burst" converged 1
line=$(grep "^converged round=1 " "$OUT" || true)
hy_contains "all $SESSIONS sessions have its last change" \
    "sessions=$SESSIONS change=$((CHANGES - 1)) states=1" "$line"
hy_eq "the zone lists every simulated Dataplane" "$SESSIONS" \
    "$(curl -s "$API/meshes/default/dataplanes?size=1" | jq -r .total)"
hy_contains "and their insights hold an acked config" "configVersion" \
    "$(curl -s "$API/meshes/default/dataplaneinsights/sim-$((SESSIONS - 1))")"

# ---- restart the zone: the sessions reconnect to the same ports
hy_check "the zone stops on SIGTERM" hy_stop "$ZONE_PID"
start_zone
hy_check "the simulator finishes its second round" wait "$SIM_PID"
HY_PIDS=("${HY_PIDS[@]/$SIM_PID/}")
hy_contains "every session reconnected and got a config again" \
    "reconnected round=2 sessions=$SESSIONS" "$(cat "$OUT")"
hy_contains "and still agreed on the first burst's last change" \
    "converged round=2 sessions=$SESSIONS change=$((CHANGES - 1)) states=1" "$(cat "$OUT")"
hy_contains "then converged on the second burst" \
    "converged round=2 sessions=$SESSIONS change=$((2 * CHANGES - 1)) states=1" "$(cat "$OUT")"
hy_contains "no config was refused" "nacks=0" "$(grep '^sessions ' "$OUT")"
hy_contains "the simulator exits 0" "exit code=0" "$(tail -n 1 "$OUT")"
grep -q '^reject ' "$OUT" && hy_fail "a session was rejected: $(grep -m1 '^reject ' "$OUT")"

if [ "$HY_FAILS" -gt 0 ]; then
    tail -n 30 "$OUT" >&2
    tail -n 20 "$HY_TMP/sim.err" >&2
fi
hy_done
