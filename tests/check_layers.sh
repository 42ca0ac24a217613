#!/usr/bin/env bash
# The layer rule of DESIGN.md and the README's "Layout": a file includes
# headers only from its own folder and the folders its layer may use. Fails
# naming every include that breaks the rule, every header name two folders
# share (the rule is checked by name, so names must say where they live) and
# every quoted include that names no header of ours.
#
#   tests/check_layers.sh        check the tree (run by tests/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# folder -> the folders its files may include besides its own (proto/'s
# generated *.pb-c.h headers count as proto/)
declare -A may=(
    [proto]=""
    [common]="proto"
    [crypto]="common proto"
    [net]="common proto"
    [store]="common proto"
    [tproxy]="common proto"
    [cp]="common crypto net store proto"
    [agent]="common crypto net proto"
    [global]="cp common crypto net store proto"
    [zone]="cp common crypto net store proto"
    [sidecar]="agent common crypto net proto tproxy"
    [ingress]="agent common crypto net proto"
    [cli]="common crypto proto"
)

declare -A home=() # header name -> folder
bad=0
complain() { echo "check_layers: $*" >&2; bad=1; }

while read -r f; do
    dir=${f%%/*} name=${f##*/}
    [ -n "${may[$dir]+x}" ] || continue
    if [ -n "${home[$name]+x}" ] && [ "${home[$name]}" != "$dir" ]; then
        complain "$name is in both ${home[$name]}/ and $dir/: give one another name"
    fi
    home[$name]=$dir
done < <(git ls-files '*.h' 2>/dev/null || find . -name '*.h' -printf '%P\n')
for p in proto/*.proto; do
    n=${p##*/}
    home[${n%.proto}.pb-c.h]=proto
done

while read -r f; do
    dir=${f%%/*}
    [ -n "${may[$dir]+x}" ] || continue # tests/, bench/: anything
    while IFS=: read -r line inc; do
        h=${inc#*\"}
        h=${h%%\"*}
        if [ -z "${home[$h]+x}" ]; then
            complain "$f:$line: includes \"$h\", which no folder of ours holds"
            continue
        fi
        to=${home[$h]}
        [ "$to" = "$dir" ] && continue
        [ "$h" = poison.h ] && continue # banned functions, no code: every folder's
        case " ${may[$dir]} " in
            *" $to "*) ;;
            *) complain "$f:$line: includes $to/$h, but $dir/ may include only: ${may[$dir]:-nothing}" ;;
        esac
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find . \( -name '*.c' -o -name '*.h' \) -printf '%P\n')

[ "$bad" -eq 0 ] || { echo "check_layers: the layer rule is broken (DESIGN.md, README \"Layout\")" >&2; exit 1; }
echo "check_layers: every include keeps its layer's rule"
