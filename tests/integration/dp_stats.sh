#!/usr/bin/env bash
# hyphactl inspect dataplane NAME --type=stats against a real standalone
# zone: the zone asks a real hypha-dp (and a real hypha-ingress) for its
# metrics over its DP session and serves the Prometheus text (what the
# sidecar's admin /metrics shows); 404 for no such Dataplane, 503 for one
# not connected; and hostile peers (hypha-dp-probe --stats): one that never
# answers (504 after 5 s, at most 4 questions in flight: 429), one that
# answers another id or sends answers nobody asked for (dropped and
# counted, never served), one that answers only an error (502), and one
# whose answer is over the limit (its session is refused, the question
# answered 503). The zone stays up throughout.
. "$(dirname "$0")/lib.sh"
DATA=$(cd "$(dirname "$0")/../data" && pwd)
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHA_CONFIG HYPHACTL_CONFIG
PROBE=${HY_DP_PROBE:-$HY_BIN/hypha-dp-probe}
[ -x "$PROBE" ] || { hy_log "no $PROBE: build the hypha-dp-probe target"; exit 1; }

hy_start_standalone_zone z1
E=$SZONE_URL
ZPID=$SZONE_PID
ZCA=$SZONE_DATA/dp/ca.pem
DP_PORT=$SZONE_DP_PORT
zctl() { "$HY_BIN/hyphactl" --cp "$E" "$@"; }
metric() { curl -s "$E/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
alive() { kill -0 "$ZPID" 2>/dev/null && curl -sf "$E/ready" >/dev/null; }
stats_url() { echo "$E/meshes/default/dataplanes/$1/stats"; }

# ---- a real sidecar
W_PORT=$(hy_free_ports 3)
hy_dp_token web-1 default web
hy_start_dp web-1 web "$W_PORT"
W_PID=$DP_PID
W_ADMIN=$DP_ADMIN
ready() { curl -sf "$W_ADMIN/ready" >/dev/null; }
hy_check "web-1 becomes ready" hy_wait_for 15 ready
# one connection to its outbound, so the labelled counter has a series
(exec 3<>"/dev/tcp/127.0.0.1/$((W_PORT + 2))" && exec 3>&-) 2>/dev/null || true
counted() { local m; m=$(curl -s "$W_ADMIN/metrics") && grep -q '^hypha_dp_connections_total{' <<<"$m"; }
hy_wait_for 10 counted

o=$(zctl inspect dataplane web-1 --type=stats)
hy_contains "inspect dataplane --type=stats: the sidecar's connection counter" \
    'hypha_dp_connections_total{direction="outbound"}' "$o"
hy_contains "and its other metrics" "hypha_dp_connected 1" "$o"
names() { grep -v '^#' | sed 's/[{ ].*//' | sort -u; }
hy_eq "the same metric families as its admin /metrics" "$(curl -s "$W_ADMIN/metrics" | names)" \
    "$(names <<<"$o")"
promtool_ok() { promtool check metrics <<<"$1" >/dev/null 2>&1; }
hy_check "valid Prometheus text (promtool check metrics)" promtool_ok "$o"
hy_eq "GET .../stats is 200" 200 "$(hy_status GET "$(stats_url web-1)")"
hy_contains "as text/plain" "text/plain" "$(curl -s -o /dev/null -w '%{content_type}' "$(stats_url web-1)")"
hy_eq "-o json changes nothing: it is Prometheus text" "$(names <<<"$o")" \
    "$(zctl inspect dataplane web-1 --type=stats -o json | names)"

# ---- errors
err() { # err EXPECTED-RC NEEDLE DESCRIPTION CMD...
    local want=$1 needle=$2 what=$3 rc=0 out
    shift 3
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    hy_eq "$what: exit $want" "$want" "$rc"
    hy_contains "$what: says why" "$needle" "$out"
}
err 1 "Error: Not found: no Dataplane nope in mesh default" "--type=stats of an unknown dataplane" \
    zctl inspect dataplane nope --type=stats
hy_eq "its API answer is a 404" 404 "$(hy_status GET "$(stats_url nope)")"
err 2 'unknown --type "envoy" (rules, policies, config or stats)' "an unknown --type" \
    zctl inspect dataplane web-1 --type=envoy
hy_eq "POST .../stats is a 405" 405 "$(hy_status POST "$(stats_url web-1)")"

# ---- a real ingress answers too (the agent code is shared)
I_PORT=$(hy_free_port)
zctl generate zone-ingress-token --name ingress-1 --valid-for 1h >"$HY_TMP/ingress-1.token"
"$HY_BIN/hypha-ingress" run --cp-address "wss://127.0.0.1:$DP_PORT" --ca-cert-file "$ZCA" \
    --ingress-file "$DATA/dp/ingress.yaml" \
    --ingress-var "name=ingress-1,address=127.0.0.1,advertised=127.0.0.1,port=$I_PORT" \
    --token-file "$HY_TMP/ingress-1.token" --admin-address 127.0.0.1:0 --workers 1 \
    >"$HY_TMP/ingress-1.log" 2>&1 &
I_PID=$!
HY_PIDS+=("$I_PID")
ingress_stats() { local m; m=$(curl -sf "$E/zoneingresses/ingress-1/stats") && grep -q '^hypha_ingress_connected 1' <<<"$m"; }
hy_check "GET /zoneingresses/NAME/stats: the ingress's own metrics" hy_wait_for 15 ingress_stats
hy_eq "an unknown ingress: 404" 404 "$(hy_status GET "$E/zoneingresses/nope/stats")"
hy_stop "$I_PID" || true

# ---- hostile peers
# probe_bg NAME STATS-MODE: a session as NAME answering as --stats says
probe_bg() {
    local name=$1 how=$2
    zctl generate dataplane-token --mesh default --name "$name" --tag hypha.io/service=web \
        --valid-for 1h >"$HY_TMP/$name.token"
    "$PROBE" session --url "wss://127.0.0.1:$DP_PORT" --ca-file "$ZCA" --name "$name" \
        --port "$(hy_free_port)" --token-file "$HY_TMP/$name.token" --stats "$how" --timeout 120s \
        >"$HY_TMP/$name.out" 2>"$HY_TMP/$name.log" &
    PROBE_PID=$!
    HY_PIDS+=("$PROBE_PID")
    hy_wait_for 15 grep -q '^config ' "$HY_TMP/$name.out"
}
dropped() { metric hypha_dp_server_stats_dropped_total; }

probe_bg forger unsolicited
FORGER=$PROBE_PID
dropped_one() { [ "$(dropped)" = 1 ]; }
hy_check "an answer nobody asked for is dropped and counted" hy_wait_for 10 dropped_one
o=$(zctl inspect dataplane forger --type=stats)
hy_contains "and its session still answers its own question" "hypha_probe_up 1" "$o"
no_forged() { ! grep -q forged <<<"$1"; }
hy_check "never the forged text" no_forged "$o"

probe_bg silent-1 silent
SILENT=$PROBE_PID
start=$(date +%s)
for i in 1 2 3 4; do
    curl -s -o "$HY_TMP/silent-$i.body" -w '%{http_code}' "$(stats_url silent-1)" >"$HY_TMP/silent-$i.code" &
    HY_PIDS+=($!)
done
in_flight() { [ "$(grep -c '^stats-request' "$HY_TMP/silent-1.out")" -ge 4 ]; }
hy_check "four questions reach the silent sidecar" hy_wait_for 5 in_flight
hy_eq "a fifth while four wait: 429" 429 "$(hy_status GET "$(stats_url silent-1)")"
hy_contains "saying why" "already wait" "$(hy_body)"
wait_codes() { for i in 1 2 3 4; do [ "$(cat "$HY_TMP/silent-$i.code" 2>/dev/null)" = 504 ] || return 1; done; }
hy_check "a sidecar that never answers: the four questions get 504" hy_wait_for 15 wait_codes
took=$(($(date +%s) - start))
hy_check "after the zone's 5 s, not the HTTP server's timeout (took $took s)" test "$took" -le 10
rc=0
o=$(zctl inspect dataplane silent-1 --type=stats 2>&1) || rc=$?
hy_eq "hyphactl: exit 1" 1 "$rc"
hy_contains "hyphactl: Timeout, naming the dataplane" \
    "Error: Timeout: Dataplane silent-1 in mesh default: the sidecar did not answer within 5000 ms" "$o"

probe_bg liar wrong-id
before=$(dropped)
hy_eq "an answer to another id: 504" 504 "$(hy_status GET "$(stats_url liar)")"
hy_eq "and it was dropped" $((before + 1)) "$(dropped)"
hy_check "never served" bash -c "! grep -q hypha_probe_up '$HY_TMP/last-body'"

probe_bg refuser error
hy_eq "a sidecar answering only an error: 502" 502 "$(hy_status GET "$(stats_url refuser)")"
hy_contains "with its error" "the probe refuses" "$(hy_body)"

probe_bg big oversized
BIG=$PROBE_PID
hy_eq "an answer over 1 MiB: 503, its session refused" 503 "$(hy_status GET "$(stats_url big)")"
hy_contains "saying the sidecar went away" "disconnected before answering" "$(hy_body)"
rc=0
wait "$BIG" || rc=$?
hy_eq "the peer got a Reject and 1008" 0 "$rc"
hy_check "the zone logged why" grep -q 'stats.text must be at most 1048576' "$SZONE_LOG"

# ---- not connected: a sidecar killed without goodbye keeps its Dataplane
kill -KILL "$W_PID"
wait "$W_PID" 2>/dev/null || true
HY_PIDS=("${HY_PIDS[@]/$W_PID/}")
gone() { [ "$(hy_status GET "$(stats_url web-1)")" = 503 ]; }
hy_check "web-1 killed: its Dataplane stays, its stats are a 503" hy_wait_for 15 gone
rc=0
o=$(zctl inspect dataplane web-1 --type=stats 2>&1) || rc=$?
hy_eq "exit 1" 1 "$rc"
hy_contains "saying it is not connected to this zone" \
    "Error: Not connected: Dataplane web-1 in mesh default is not connected to this zone control plane (zone z1)" "$o"

hy_check "the zone is alive and serving" alive
hy_eq "timeouts counted: five silent, one liar" 6 "$(metric 'hypha_dp_server_stats_total{result="timeout"}')"
hy_eq "the question over the cap counted" 1 "$(metric 'hypha_dp_server_stats_total{result="refused"}')"
for p in $FORGER $SILENT; do kill "$p" 2>/dev/null || true; done
hy_stop "$ZPID" || true
hy_check "no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$HY_TMP'/*.log"
hy_done
