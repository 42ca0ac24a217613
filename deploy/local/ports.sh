# shellcheck shell=bash
# Free TCP ports on 127.0.0.1, for the demo, the benchmarks and the tests.
# Sourced; defines functions only.

# hy_free_port: prints a TCP port free on 127.0.0.1 right now, below the
# ephemeral range (32768+), so it stays free for a process that must come
# back on the same port after a restart.
hy_free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((10000 + RANDOM % 20000))
        (: </dev/tcp/127.0.0.1/"$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# hy_free_ports N: prints a TCP port P such that P..P+N-1 are all free on
# 127.0.0.1 right now (a Dataplane file that derives its ports from one).
hy_free_ports() {
    local p i ok
    for _ in $(seq 1 50); do
        p=$((10000 + RANDOM % 20000))
        ok=1
        for ((i = 0; i < $1; i++)); do
            (: </dev/tcp/127.0.0.1/$((p + i))) 2>/dev/null && { ok=0; break; }
        done
        [ "$ok" = 1 ] && { echo "$p"; return 0; }
    done
    return 1
}
