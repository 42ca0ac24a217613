#!/usr/bin/env bash
# The policy engine's cost: computing every sidecar's config with the zone's
# generator now (cp/policy*.c wired into zone/dp_config.c) and before the
# engine (commit 1bb3583), on the same world, in the same run. Builds
# hypha-bench-policy here (Release), checks the old commit out with
# `git worktree add` into a temporary directory, builds its libraries and
# the same bench source against them (-DHY_BENCH_PRE_ENGINE=1; the old tree
# is not modified), runs both for every (Dataplanes, policies) pair, prints
# tables with engine / pre-engine ratios and rewrites the results:policy
# section of bench/README.md.
#
# usage: bench/policy.sh [--no-write] [--reps N] [--dataplanes "100 1000"]
#                        [--policies "10 100"] [--build DIR] [--dir D] [--old REV]
#   --no-write        print the results, leave README.md alone
#   --reps N          repetitions, each a process per generator; the fastest is shown
#                     (HYPHA_BENCH_REPS, default 5)
#   --dataplanes L    Dataplane counts (default "100 1000")
#   --policies L      policy counts (default "10 100")
#   --build DIR       this tree's build directory (HYPHA_BENCH_BUILD, default build-bench)
#   --dir D           where the scratch stores go (HYPHA_BENCH_DIR, default $TMPDIR or /tmp)
#   --old REV         the pre-engine commit (default 1bb3583)
# About 10 minutes on a 2-core VM, most of it the 1000-Dataplane rows.
set -euo pipefail

write=1
reps=${HYPHA_BENCH_REPS:-5}
dps_list="100 1000"
pol_list="10 100"
build=${HYPHA_BENCH_BUILD:-build-bench}
dir=${HYPHA_BENCH_DIR:-${TMPDIR:-/tmp}}
old_rev=1bb3583
while [ $# -gt 0 ]; do
    case "$1" in
    --no-write) write=0 ;;
    --reps) reps=${2:?}; shift ;;
    --dataplanes) dps_list=${2:?}; shift ;;
    --policies) pol_list=${2:?}; shift ;;
    --build) build=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --old) old_rev=${2:?}; shift ;;
    -h | --help)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "policy.sh: unknown argument '$1' (try --help)" >&2
        exit 2
        ;;
    esac
    shift
done
for v in $reps $dps_list $pol_list; do
    case "$v" in '' | *[!0-9]*) echo "policy.sh: '$v' is not a count" >&2; exit 2 ;; esac
done
if [ "$reps" -lt 1 ] || [ "$reps" -gt 15 ]; then
    echo "policy.sh: --reps must be 1..15" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. bench/lib.sh
readme=bench/README.md

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-policy-XXXXXX")
worktree="$tmp/old"
cleanup() {
    if [ -d "$worktree" ] && ! git -C "$root" worktree remove --force "$worktree" 2>/dev/null; then
        rm -rf "$worktree"
        git -C "$root" worktree prune 2>/dev/null || true
    fi
    [ -n "${HYPHA_BENCH_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- this tree ------------------------------------------------------------
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF -DHYPHA_FUZZ=OFF >/dev/null
cmake --build "$build" --target hypha-bench-policy -j "$(nproc)" >&2
new_bin="$root/$build/bin/hypha-bench-policy"
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")

# ---- the pre-engine tree: its own libraries, this bench source ------------
echo "policy.sh: checking out $old_rev into $worktree..." >&2
git worktree add --detach --quiet "$worktree" "$old_rev"
old_commit=$(git -C "$worktree" rev-parse --short HEAD)
mkdir "$tmp/wrap"
cat >"$tmp/wrap/CMakeLists.txt" <<'EOF'
# The old tree as a subproject, and the bench compiled against its headers
# and linked with its hypha-zone-core.
cmake_minimum_required(VERSION 3.18)
project(hypha_bench_policy_old LANGUAGES C)
set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_C_EXTENSIONS OFF)
add_subdirectory(${HY_OLD_TREE} old)
add_executable(hypha-bench-policy-old ${HY_BENCH_SRC}/bench_policy.c ${HY_BENCH_SRC}/bench_util.c)
target_include_directories(hypha-bench-policy-old PRIVATE ${HY_BENCH_SRC})
target_compile_options(hypha-bench-policy-old PRIVATE -Wall -Wextra)
target_compile_definitions(hypha-bench-policy-old PRIVATE _GNU_SOURCE HY_BENCH_PRE_ENGINE=1)
target_link_libraries(hypha-bench-policy-old PRIVATE hypha-zone-core)
set_target_properties(hypha-bench-policy-old PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
EOF
cmake -S "$tmp/wrap" -B "$tmp/old-build" -DCMAKE_BUILD_TYPE=Release -DHYPHA_SANITIZE=OFF \
    -DHYPHA_FUZZ=OFF -DCMAKE_C_COMPILER="${cc:-cc}" -DHY_OLD_TREE="$worktree" \
    -DHY_BENCH_SRC="$root/bench" >/dev/null
echo "policy.sh: building the pre-engine libraries and bench ($tmp/old-build.log)..." >&2
if ! cmake --build "$tmp/old-build" --target hypha-bench-policy-old -j "$(nproc)" >"$tmp/old-build.log" 2>&1; then
    tail -n 40 "$tmp/old-build.log" >&2
    echo "policy.sh: the pre-engine tree ($old_rev) did not build" >&2
    exit 1
fi
old_bin="$tmp/old-build/bin/hypha-bench-policy-old"

# ---- the heading: when, where, what ---------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit + uncommitted changes"
else
    commit=uncommitted
fi
cc_version=$("${cc:-cc}" --version 2>/dev/null | head -n 1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
heading="Run $(date -u '+%Y-%m-%d %H:%M UTC') on $cpu, $(nproc) CPUs, $mem_gib GiB RAM, Linux $(uname -r); engine: commit $commit, pre-engine: commit $old_commit; Release build, $cc_version, LMDB $(pkg-config --modversion lmdb). Load average at the start: $load."

# ---- run: both generators at every point, one repetition each in turn ------
# Each repetition is one process per generator (--reps 1), old and new taking
# turns going first, so a change in the machine's load falls on both; the
# first also counts the heap (--memory 1, which warms up and checks the
# configs). Within a process, the configs with and without policies are
# built in turns, Dataplane by Dataplane (--floor 1).
t_start=$SECONDS
for n in $dps_list; do
    for p in $pol_list; do
        echo "policy.sh: $n Dataplanes, $p policies, $reps repetitions..." >&2
        for r in $(seq 1 "$reps"); do
            order="old new"
            [ $((r % 2)) = 0 ] && order="new old"
            memory=0
            [ "$r" = 1 ] && memory=1
            for tree in $order; do
                bin=$new_bin
                [ "$tree" = old ] && bin=$old_bin
                if ! "$bin" --dataplanes "$n" --policies "$p" --reps 1 --floor 1 \
                    --memory "$memory" --dir "$dir" --format tsv >"$tmp/one.tsv" 2>"$tmp/one.err"; then
                    cat "$tmp/one.err" >&2
                    echo "policy.sh: the $tree generator's bench failed" >&2
                    exit 1
                fi
                awk -v t="$tree" -v n="$n" -v p="$p" '{ print t, n, p, $1, $2 }' "$tmp/one.tsv" >>"$tmp/all.tsv"
            done
        done
    done
done
elapsed=$((SECONDS - t_start))

# ---- the tables -----------------------------------------------------------
{
    echo "$heading"
    echo
    awk -v dps="$dps_list" -v pols="$pol_list" -v reps="$reps" \
        -v elapsed="$elapsed" '
    # times: every repetition kept (C, with their count in NC); the rest: one value
    $4 ~ /_(cpu|wall)$/ { k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; C[k, ++NC[k]] = $5; next }
    { V[$1, $2, $3, $4] = $5 }
    function ftime(s,   a) {
        if (s == "") return "?"
        a = s < 0 ? -s : s
        if (a >= 1) return sprintf("%.2f s", s)
        if (a >= 1e-3) return sprintf("%.2f ms", s * 1e3)
        if (a >= 1e-6) return sprintf("%.1f µs", s * 1e6)
        return sprintf("%.0f ns", s * 1e9)
    }
    function fbytes(b) {
        if (b >= 1048576) return sprintf("%.1f MiB", b / 1048576)
        if (b >= 1024) return sprintf("%.1f KiB", b / 1024)
        return sprintf("%.0f B", b)
    }
    function fcount(c) { return c >= 100 ? sprintf("%.0f", c) : sprintf("%.1f", c) }
    function ratio(a, b,   r) {
        if (a == "" || b == "" || a <= 0 || b <= 0) return "—"
        r = a / b
        return sprintf(r < 0.1 ? "%.3f" : "%.2f", r)
    }
    # get(tree, n, p, key): "" when absent
    function get(t, n, p, k) { return ((t, n, p, k) in V) ? V[t, n, p, k] : "" }
    # the repetitions of a time, sorted into S[1..m]; returns m
    function sorted(t, n, p, key,   k, m, i, j, x) {
        k = t SUBSEP n SUBSEP p SUBSEP key
        m = NC[k]
        for (i = 1; i <= m; i++) S[i] = C[k, i]
        for (i = 2; i <= m; i++) {
            x = S[i]
            for (j = i - 1; j >= 1 && S[j] > x; j--) S[j + 1] = S[j]
            S[j + 1] = x
        }
        return m
    }
    # the fastest repetition of a row (seconds per pass); "" when not run
    function best(t, n, p, row,   m) { m = sorted(t, n, p, row "_cpu"); return m ? S[1] : "" }
    function med(t, n, p, row,   m) {
        m = sorted(t, n, p, row "_cpu")
        if (!m) return ""
        return m % 2 ? S[(m + 1) / 2] : (S[m / 2] + S[m / 2 + 1]) / 2
    }
    # how far the second-fastest repetition lies from the fastest
    function gap(t, n, p, row,   m) { m = sorted(t, n, p, row "_cpu"); return m > 1 ? S[2] - S[1] : 0 }
    # "(+6 %)": the median over the fastest
    function over(t, n, p, row,   b) {
        b = best(t, n, p, row)
        if (b <= 0) return ""
        return sprintf("(+%.0f %%)", 100 * (med(t, n, p, row) - b) / b)
    }
    # the part of a config spent on policies, per Dataplane: the median over the
    # repetitions of row 1 - row 2 (timed side by side in each), and half
    # their range
    function part(t, n, p,   m) {
        m = sorted(t, n, p, "part_cpu")
        if (!m) return ""
        return (m % 2 ? S[(m + 1) / 2] : (S[m / 2] + S[m / 2 + 1]) / 2) / n
    }
    function noise(t, n, p,   m) { m = sorted(t, n, p, "part_cpu"); return m ? (S[m] - S[1]) / 2 / n : 0 }
    function noisy(t, n, p,   x) { x = part(t, n, p); return (x < 0 ? -x : x) <= noise(t, n, p) }
    # the part as a share of the floor, the median over the repetitions
    # (each its own process): a machine slower in one process than in
    # another changes both alike, and the share not at all
    function share(t, n, p,   k, m, i, j, x) {
        k = t SUBSEP n SUBSEP p SUBSEP
        m = NC[k "part_cpu"]
        for (i = 1; i <= m; i++) S[i] = C[k "part_cpu", i] / C[k "nopol_cpu", i]
        for (i = 2; i <= m; i++) {
            x = S[i]
            for (j = i - 1; j >= 1 && S[j] > x; j--) S[j + 1] = S[j]
            S[j + 1] = x
        }
        if (!m) return ""
        return m % 2 ? S[(m + 1) / 2] : (S[m / 2] + S[m / 2 + 1]) / 2
    }
    function partcell(t, n, p) {
        if (noisy(t, n, p)) return sprintf("noise (%s ± %s)", ftime(part(t, n, p)), ftime(noise(t, n, p)))
        return sprintf("%s ± %s (%.1f %%)", ftime(part(t, n, p)), ftime(noise(t, n, p)), 100 * share(t, n, p))
    }
    END {
        nd = split(dps, D, " "); np = split(pols, P, " ")

        print "| Dataplanes | Policies | Config per Dataplane, pre-engine | Config per Dataplane, engine | Engine / pre-engine | Every Dataplane once, pre-engine → engine | No policies in the store, pre-engine · engine | Policies\x27 part, pre-engine | Policies\x27 part, engine | Engine / pre-engine |"
        print "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= nd; i++) for (j = 1; j <= np; j++) {
            n = D[i]; p = P[j]
            go = best("old", n, p, "gen"); gn = best("new", n, p, "gen")
            fo = best("old", n, p, "nopol"); fn = best("new", n, p, "nopol")
            printf "| %d | %d | %s %s | %s %s | %s | %s → %s | %s · %s | %s | %s | %s |\n", n, p,
                ftime(go / n), over("old", n, p, "gen"), ftime(gn / n), over("new", n, p, "gen"),
                ratio(gn, go), ftime(go), ftime(gn), ftime(fo / n), ftime(fn / n),
                partcell("old", n, p), partcell("new", n, p),
                (noisy("old", n, p) || noisy("new", n, p)) ? "—" : ratio(share("new", n, p), share("old", n, p))
        }
        print ""
        printf "CPU time of the benchmark thread in hy_zone_dp_config_build for every Dataplane, the fastest of %d repetitions (each its own process, the two generators taking turns), divided by the Dataplanes; in brackets how much slower the median repetition was (the machine\x27s noise). \"Every Dataplane once\": the whole pass, what one change costs the zone when every sidecar is connected. No policies: the same Dataplanes in a store without policies (the endpoints and the rest: the floor), built in turns with the first, Dataplane by Dataplane. Policies\x27 part: the first minus the floor in each repetition, the median ± half the range, and in brackets as a share of that repetition\x27s floor; \"noise\" where it is no larger than its ± (then no ratio). Its engine / pre-engine is the ratio of those shares, which a machine slower in one process than in another does not move.\n", reps
        print ""

        print "| Dataplanes | Policies | Allocations per config, pre-engine → engine | Engine / pre-engine | Of which for the policies, pre-engine → engine | Engine / pre-engine | Heap allocated per config, pre-engine → engine | Engine / pre-engine | Peak heap of a pass, pre-engine → engine | Peak RSS of a pass, pre-engine → engine |"
        print "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= nd; i++) for (j = 1; j <= np; j++) {
            n = D[i]; p = P[j]
            ao = get("old", n, p, "gen_allocs") / n; an = get("new", n, p, "gen_allocs") / n
            bo = get("old", n, p, "gen_bytes") / n; bn = get("new", n, p, "gen_bytes") / n
            pao = ao - get("old", n, p, "nopol_allocs") / n
            pan = an - get("new", n, p, "nopol_allocs") / n
            printf "| %d | %d | %s → %s | %s | %s → %s | %s | %s → %s | %s | %s → %s | %s → %s |\n", n, p,
                fcount(ao), fcount(an), ratio(an, ao), fcount(pao), fcount(pan), ratio(pan, pao),
                fbytes(bo), fbytes(bn), ratio(bn, bo),
                fbytes(get("old", n, p, "gen_peak_heap")), fbytes(get("new", n, p, "gen_peak_heap")),
                fbytes(get("old", n, p, "gen_hwm_kib") * 1024), fbytes(get("new", n, p, "gen_hwm_kib") * 1024)
        }
        print ""
        print "One more pass over every Dataplane with malloc counted (exact and the same in every run, unlike the times): calls that allocate (malloc, calloc, realloc) and the bytes they ask for, per config; \"for the policies\": minus the same in the store without policies. Peak heap: the most in use above the pass\x27s start (a config is built and freed at a time, so this is one config\x27s working set). Peak RSS: VmHWM, reset before the pass; it includes both stores\x27 mapped LMDB pages."
        print ""

        print "| Dataplanes | Policies | Load the policies (once) | hy_policy_select_all per Dataplane | All the generator asks of the engine, per Dataplane | Engine\x27s share of a config (load + all) | Allocations per Dataplane: load · select_all · all | Policies selected per Dataplane |"
        print "|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= nd; i++) for (j = 1; j <= np; j++) {
            n = D[i]; p = P[j]
            l = best("new", n, p, "load"); s = best("new", n, p, "select") / n
            e = best("new", n, p, "engine") / n; g = best("new", n, p, "gen") / n
            printf "| %d | %d | %s | %s | %s | %.0f %% | %s · %s · %s | %.1f |\n", n, p,
                ftime(l), ftime(s), ftime(e), (g > 0 ? 100 * (l + e) / g : 0),
                fcount(get("new", n, p, "load_allocs")), fcount(get("new", n, p, "select_allocs") / n),
                fcount(get("new", n, p, "engine_allocs") / n), get("new", n, p, "selected") / n
        }
        print ""
        print "The engine alone (HEAD only: before it the generator walked the store\x27s policies itself, with nothing to time apart), fastest repetition; each repetition runs a pass again for at least 0.5 s of CPU and takes the mean. Load: hy_policy_world_load, which the generator runs for every Dataplane it builds a config for. All it asks: hy_policy_select_all, hy_policy_inbound_permissions for each inbound and hy_policy_merge of the five `to` types for each outbound, with the policies already in memory. Share: (load + all) over the first table\x27s config per Dataplane."
        print ""

        printf "What the configs held (all Dataplanes, pre-engine / engine):"
        for (i = 1; i <= nd; i++) for (j = 1; j <= np; j++) {
            n = D[i]; p = P[j]
            printf " %d×%d: permission entries %s / %s, endpoints %s / %s, outbounds with a timeout %s / %s, retries %s / %s, limits %s / %s, a balancer %s / %s, health checks %s / %s;",
                n, p, get("old", n, p, "inbound_entries"), get("new", n, p, "inbound_entries"),
                get("old", n, p, "endpoints"), get("new", n, p, "endpoints"),
                get("old", n, p, "timeouts"), get("new", n, p, "timeouts"),
                get("old", n, p, "retries"), get("new", n, p, "retries"),
                get("old", n, p, "breakers"), get("new", n, p, "breakers"),
                get("old", n, p, "lbs"), get("new", n, p, "lbs"),
                get("old", n, p, "health"), get("new", n, p, "health")
        }
        n = D[nd]; p = P[np]
        printf " wall-clock time of a pass at %d×%d, fastest, pre-engine / engine: %s / %s. %d s in all.\n", n, p,
            ftime(wbest("old", n, p)), ftime(wbest("new", n, p)), elapsed
    }
    function wbest(t, n, p,   m) { m = sorted(t, n, p, "gen_wall"); return m ? S[1] : "" }
    ' "$tmp/all.tsv"
    echo
    echo "Published, not measured here: Kuma's documentation sizes a control plane of 4 vCPU and 2 GB of memory for more than 1000 data planes, with about 1 MB of memory per data plane as a rule of thumb, and names config generation time (the \`xds_generation\` metric) and propagation time (\`xds_delivery\`) as what to watch (kuma.io/docs/2.9.x/introduction/kuma-requirements, \"Sizing your control-plane\"; Kong Mesh's resource sizing guide says the same). It publishes no generation times to compare with."
} >"$tmp/policy.md"

if [ "$write" = 1 ]; then
    bench_write_section "$readme" policy "$tmp/policy.md" || exit 1
fi
cat "$tmp/policy.md"
[ "$write" = 0 ] || echo "policy.sh: results written to $readme" >&2
