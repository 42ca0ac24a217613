#!/usr/bin/env bash
# The deployment files in deploy/kubernetes and deploy/systemd: yamllint;
# the Kubernetes manifests' structure (namespace, security context,
# probes, resources, what mounts, selects and references what); every
# Hypha resource they carry (mesh.yaml, the Dataplane and ZoneIngress in
# ConfigMaps and beside the units) through our codec on a real zone; every
# config file (in ConfigMaps and beside the units) started by the binary
# that reads it; every flag they pass known to that binary; the replica
# units and manifests on PostgreSQL (env files, Secrets, 3 replicas); and
# systemd-analyze verify and security on the units, where it exists.
. "$(dirname "$0")/lib.sh"
DEPLOY=$(cd "$(dirname "$0")/../../deploy" && pwd)
K8S=$DEPLOY/kubernetes
UNITS=$DEPLOY/systemd
CERTS=$(cd "$(dirname "$0")/../data/cli" && pwd) # a CA and a cert for localhost
export HOME=$HY_TMP/home
mkdir -p "$HOME"
unset HYPHA_CP HYPHACTL_CONFIG HYPHA_CONFIG HYPHA_DP_CONFIG HYPHA_INGRESS_CONFIG
# run CMD...: runs CMD, its stdout and stderr in $o and its exit code in $rc
run() {
    rc=0
    "$@" </dev/null >"$HY_TMP/out" 2>&1 || rc=$?
    o=$(cat "$HY_TMP/out")
}

# ---- yamllint, with the warnings as errors
if command -v yamllint >/dev/null; then
    run yamllint --strict -f parsable -c "$K8S/.yamllint" "$K8S" "$UNITS"
    hy_check "yamllint --strict passes deploy/kubernetes and deploy/systemd" test "$rc" -eq 0
    [ "$rc" -eq 0 ] || printf '%s\n' "$o"
else
    hy_fail "yamllint is not installed (deploy/local/deps.sh installs it)"
fi

# ---- the manifests' structure, and what they carry
# Kubernetes itself is not here, so this checks what a typo would break:
# every document names apiVersion, kind, name and namespace hypha-system;
# every container has requests and limits, runs without privileges on a
# read-only root; Hypha's containers have readiness and liveness probes on
# /ready; mounts name volumes; volumes and paths name ConfigMaps and keys
# that exist; every absolute path a Hypha container is given (flags, its
# config file) lies on one of its mounts, and the data dir on a writable
# one; Services select a pod template and name its ports. It also writes
# every ConfigMap entry to a file and lists them (resource or config), the
# Hypha resources files, and the flags each Hypha binary is given.
PY=python3
/usr/bin/python3 -c 'import yaml' 2>/dev/null && PY=/usr/bin/python3 # Debian's, with python3-yaml
cat >"$HY_TMP/manifests.py" <<'PY'
import os, shlex, sys
import yaml

out, files = sys.argv[1], sys.argv[2:]
EXTERNAL_CONFIGMAPS = {"hypha-ca"}  # made by hand from a CA file (deploy/README.md)
errors, lines = [], []
docs = []  # (file, index, document)
for f in files:
    try:
        found = [d for d in yaml.safe_load_all(open(f)) if d is not None]
        docs += [(f, i, d) for i, d in enumerate(found)]
    except yaml.YAMLError as e:
        errors.append(f"{f}: {e}")

def err(f, i, d, msg):
    kind = d.get("kind", "?") if isinstance(d, dict) else "?"
    name = (d.get("metadata") or {}).get("name", "?") if isinstance(d, dict) else "?"
    errors.append(f"{os.path.basename(f)}: document {i + 1} ({kind}/{name}): {msg}")

hypha_files = set()
configmaps = {}
for f, i, d in docs:
    if not isinstance(d, dict):
        err(f, i, d, "not a mapping")
    elif "type" in d and "apiVersion" not in d:
        hypha_files.add(f)  # a Hypha resource, for hyphactl
    elif not all(k in d for k in ("apiVersion", "kind", "metadata")):
        err(f, i, d, "needs apiVersion, kind and metadata")
    elif d["kind"].endswith("List"):
        err(f, i, d, "one resource per document, not a List")
    elif not d["metadata"].get("name"):
        err(f, i, d, "metadata.name is missing")
    elif d["kind"] != "Namespace" and d["metadata"].get("namespace") != "hypha-system":
        err(f, i, d, "metadata.namespace must be hypha-system")
    elif d["kind"] == "ConfigMap":
        configmaps[d["metadata"]["name"]] = d.get("data") or {}
for f in sorted(hypha_files):
    lines.append(f"resource {f}")
for cm, data in sorted(configmaps.items()):
    os.makedirs(os.path.join(out, cm), exist_ok=True)
    for key, text in sorted(data.items()):
        path = os.path.join(out, cm, key)
        with open(path, "w") as fh:
            fh.write(text)
        try:
            content = yaml.safe_load(text)
        except yaml.YAMLError:
            content = None  # hyphactl or the binary will say what is wrong
        is_resource = isinstance(content, dict) and "type" in content
        lines.append(f"{'resource' if is_resource else 'config'} {path}")

def under(path, mounts):
    return [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]

def config_paths(cm, key):
    """Absolute paths named by a config file kept in a ConfigMap."""
    try:
        conf = yaml.safe_load(configmaps.get(cm, {}).get(key, "")) or {}
    except yaml.YAMLError:
        return {}
    return {k: v for k, v in conf.items() if isinstance(v, str) and v.startswith("/")}

templates = []  # (labels, containers)
for f, i, d in docs:
    if not isinstance(d, dict) or d.get("kind") not in ("Deployment", "StatefulSet"):
        continue
    spec = d.get("spec") or {}
    tpl = spec.get("template") or {}
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    if not match or any(labels.get(k) != v for k, v in match.items()):
        err(f, i, d, "spec.selector.matchLabels must match the pod template's labels")
    pod = tpl.get("spec") or {}
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        err(f, i, d, "pod securityContext.runAsNonRoot must be true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        err(f, i, d, "pod securityContext.seccompProfile.type must be RuntimeDefault")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for v in volumes.values():
        ref = (v.get("configMap") or {}).get("name")
        if ref and ref not in configmaps and ref not in EXTERNAL_CONFIGMAPS:
            err(f, i, d, f"volume {v['name']}: no ConfigMap {ref}")
    init = pod.get("initContainers") or []
    containers = pod.get("containers") or []
    templates.append((labels, containers))
    for c in init + containers:
        cn = f"container {c.get('name')}"
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not all(k in (res.get(part) or {}) for k in ("cpu", "memory")):
                err(f, i, d, f"{cn}: resources.{part} needs cpu and memory")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f, i, d, f"{cn}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f, i, d, f"{cn}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            err(f, i, d, f"{cn}: capabilities.drop must hold ALL")
        mounts = c.get("volumeMounts") or []
        for m in mounts:
            if m.get("name") not in volumes:
                err(f, i, d, f"{cn}: mount {m.get('mountPath')} names no volume ({m.get('name')})")
        if not str(c.get("image", "")).startswith("hypha:"):
            continue
        command = c.get("command") or []
        args = [str(a) for a in c.get("args") or []]
        binary = os.path.basename(command[0]) if command else ""
        if binary.startswith("hypha-"):
            lines.append("flags " + binary + " " + " ".join(a for a in args if a.startswith("--")))
            if c in containers:
                for probe in ("readinessProbe", "livenessProbe"):
                    if "/ready" not in str(c.get(probe)):
                        err(f, i, d, f"{cn}: needs a {probe} on /ready")
        # every absolute path it is given lies on one of its mounts, and
        # a path inside a ConfigMap mount is one of that ConfigMap's keys
        paths = {f"argument {a}": a for a in args if a.startswith("/")}
        for a, nxt in zip(args, args[1:]):
            if a == "--config":
                for m in under(nxt, mounts):
                    cm = (volumes.get(m["name"]) or {}).get("configMap", {}).get("name")
                    for k, p in config_paths(cm, nxt[len(m["mountPath"]):].lstrip("/")).items():
                        paths[f"{k} in {nxt}"] = p
        for what, p in paths.items():
            ms = under(p, mounts)
            if not ms:
                err(f, i, d, f"{cn}: {what}: not on any of its mounts (the root is read-only)")
                continue
            m = max(ms, key=lambda m: len(m["mountPath"]))
            cm = (volumes.get(m["name"]) or {}).get("configMap", {}).get("name")
            key = p[len(m["mountPath"]):].lstrip("/")
            if cm in configmaps and "subPath" not in m and key not in configmaps[cm]:
                err(f, i, d, f"{cn}: {what}: ConfigMap {cm} has no key {key}")
            if what.startswith("dataDir ") and m.get("readOnly"):
                err(f, i, d, f"{cn}: {what}: the data dir must be on a writable mount")

for f, i, d in docs:
    if not isinstance(d, dict) or d.get("kind") != "Service":
        continue
    sel = (d.get("spec") or {}).get("selector") or {}
    pods = [cs for labels, cs in templates if sel and all(labels.get(k) == v for k, v in sel.items())]
    if not pods:
        err(f, i, d, "its selector matches no pod template")
        continue
    names = {p.get("name") for cs in pods for c in cs for p in c.get("ports") or []}
    for p in (d.get("spec") or {}).get("ports") or []:
        t = p.get("targetPort")
        if isinstance(t, str) and t not in names:
            err(f, i, d, f"port {p.get('name')}: targetPort {t} is no container port's name")

for e in errors:
    print(e, file=sys.stderr)
print("\n".join(lines))
sys.exit(1 if errors else 0)
PY
mkdir -p "$HY_TMP/cm"
rc=0
"$PY" "$HY_TMP/manifests.py" "$HY_TMP/cm" "$K8S"/*.yaml >"$HY_TMP/carried" 2>"$HY_TMP/manifest-errors" || rc=$?
hy_check "the Kubernetes manifests hold together" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$HY_TMP/manifest-errors"
# the systemd examples: Hypha resources have a type, the rest are configs
for f in "$UNITS"/*.yaml; do
    if grep -q '^type:' "$f"; then echo "resource $f"; else echo "config $f"; fi
done >>"$HY_TMP/carried"

# ---- Hypha resources through our codec, on a standalone zone
# A standalone zone accepts every type, global-origin (Mesh, policies) and
# zone-origin (Dataplane, ZoneIngress) alike, so `apply --dry-run` runs
# each resource through the same decoding and validation as a real write.
ZDATA=$HY_TMP/zone-lint
ZLOG=$HY_TMP/zone-lint.log
"$HY_BIN/hypha-zone" --zone lint --data-dir "$ZDATA" --api-address 127.0.0.1:0 \
    --dp-address 127.0.0.1:0 >"$ZLOG" 2>&1 &
HY_PIDS+=("$!")
hy_wait_for 20 grep -q 'DP server listening on wss://' "$ZLOG" || cat "$ZLOG" >&2
Z=http://127.0.0.1:$(grep -o 'API listening on http://[^ ]*' "$ZLOG" | sed 's/.*://')
ZDP=$(grep -o 'DP server listening on wss://[^ ]*' "$ZLOG" | sed 's/.*listening on //')
hy_check "a standalone zone is ready" hy_wait_for 10 curl -sf "$Z/ready"
zctl() { "$HY_BIN/hyphactl" --cp "$Z" "$@"; }

# fill FILE: FILE with its {{ vars }} given sample values; fails on a
# placeholder it has no value for
fill() {
    sed -e 's/{{ *name *}}/lint-1/g' -e 's/{{ *address *}}/127.0.0.1/g' \
        -e 's/{{ *service *}}/web/g' -e 's/{{ *port *}}/20000/g' -e 's/{{ *app_port *}}/8080/g' \
        -e 's/{{ *backend_port *}}/20001/g' "$1" >"$HY_TMP/filled.yaml"
    ! grep -n '{{' "$HY_TMP/filled.yaml" >&2
}
# mesh.yaml first, written for real: the Dataplanes need their mesh
run zctl apply --dry-run -f "$K8S/mesh.yaml"
hy_eq "mesh.yaml passes apply --dry-run" 0 "$rc"
[ "$rc" -eq 0 ] || printf '%s\n' "$o"
run zctl apply -f "$K8S/mesh.yaml"
hy_eq "mesh.yaml applies (for the Dataplanes' mesh)" 0 "$rc"
n=0
while read -r what f; do
    if [ "$what" != resource ] || [ "$f" = "$K8S/mesh.yaml" ]; then continue; fi
    n=$((n + 1))
    name=${f#"$HY_TMP/cm/"}
    name=${name#"$DEPLOY/"}
    if ! fill "$f"; then
        hy_fail "$name: a placeholder has no sample value here"
        continue
    fi
    run zctl apply --dry-run -f "$HY_TMP/filled.yaml"
    hy_eq "$name passes apply --dry-run" 0 "$rc"
    [ "$rc" -eq 0 ] || printf '%s\n' "$o"
done <"$HY_TMP/carried"
hy_check "the Dataplanes and ZoneIngresses were found (4 or more)" test "$n" -ge 4
printf 'type: ZoneIngress\nname: i\nnetworking:\n  adress: 10.0.0.5\n  port: 10001\n' >"$HY_TMP/typo.yaml"
run zctl apply --dry-run -f "$HY_TMP/typo.yaml"
hy_check "the control: a misspelt field fails apply --dry-run" test "$rc" -ne 0
hy_contains "and is named" 'unknown field "adress"' "$o"

# ---- config files, each started by its binary
# The flags move every address, file and directory the file names onto
# loopback and into this test's directory; what is checked is that the
# binary takes every key and value and comes up. A copy with a bogus key
# must be refused (exit 2): the check bites.
NOPORT=$(hy_free_port) # no global CP listens here: the zone keeps retrying
echo not-a-token >"$HY_TMP/dummy.token"
TLS=(--api-tls-address 127.0.0.1:0 --api-tls-cert "$CERTS/server.pem" --api-tls-key "$CERTS/server.key")
zctl generate dataplane-token --mesh default --name lint-1 --tag hypha.io/service=web \
    --valid-for 1h >"$HY_TMP/lint-1.token"
# overrides BINARY N: the flags of BINARY for check N (in $args)
overrides() {
    local d=$HY_TMP/cfg-data-$2
    case $1 in
        hypha-global)
            args=(--data-dir "$d" --api-address 127.0.0.1:0 "${TLS[@]}" --kds-address 127.0.0.1:0
                --kds-tls-cert "$CERTS/server.pem" --kds-tls-key "$CERTS/server.key") ;;
        hypha-zone)
            args=(--data-dir "$d" --api-address 127.0.0.1:0 "${TLS[@]}" --dp-address 127.0.0.1:0
                --dp-tls-cert "$CERTS/server.pem" --dp-tls-key "$CERTS/server.key"
                --global-address "wss://127.0.0.1:$NOPORT" --global-ca-file "$CERTS/ca.pem"
                --zone-token-file "$HY_TMP/dummy.token") ;;
        hypha-dp)
            # the systemd Dataplane template, filled by hypha-dp itself
            local p
            p=$(hy_free_ports 3)
            args=(run --cp-address "$ZDP" --ca-cert-file "$ZDATA/dp/ca.pem"
                --dataplane-file "$UNITS/dataplane.yaml" --dataplane-token-file "$HY_TMP/lint-1.token"
                --dataplane-var "name=lint-1,address=127.0.0.1,service=web,port=$p,app_port=$((p + 1)),backend_port=$((p + 2))"
                --admin-address 127.0.0.1:0 --workers 1) ;;
    esac
}
# comes_up PID LOG PATTERN: waits until LOG has PATTERN while PID lives
comes_up() {
    local deadline=$((SECONDS + 20))
    until grep -q "$3" "$2"; do
        kill -0 "$1" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
n=0
while read -r what f; do
    [ "$what" = config ] || continue
    n=$((n + 1))
    name=${f#"$HY_TMP/cm/"}
    name=${name#"$DEPLOY/"}
    case $(basename "$f") in
        global*.yaml) bin=hypha-global ;;
        zone*.yaml) bin=hypha-zone ;;
        dp*.yaml) bin=hypha-dp ;;
        *)
            hy_fail "$name: which binary reads it? (teach deploy_lint.sh)"
            continue
            ;;
    esac
    overrides "$bin" "$n"
    log=$HY_TMP/cfg-$n.log
    : >"$log"
    "$HY_BIN/$bin" --config "$f" "${args[@]}" </dev/null >"$log" 2>&1 &
    pid=$!
    HY_PIDS+=("$pid")
    if [ "$bin" = hypha-dp ]; then
        ok=0
        if comes_up "$pid" "$log" 'admin on http://'; then
            admin=$(grep -o 'admin on http://[^ ]*' "$log" | sed 's/admin on //')
            hy_wait_for 15 curl -sf "$admin/ready" && ok=1
        fi
        hy_check "$name: $bin takes it, registers with the zone and is ready" test "$ok" -eq 1
    else
        ok=0
        if comes_up "$pid" "$log" 'API listening on http://'; then
            api=$(grep -o 'API listening on http://[^ ]*' "$log" | head -n 1 | sed 's/API listening on //')
            hy_wait_for 10 curl -sf "$api/ready" && ok=1
        fi
        hy_check "$name: $bin takes it and answers /ready" test "$ok" -eq 1
    fi
    [ "$ok" -eq 1 ] || cat "$log"
    hy_check "$name: $bin stops cleanly" hy_stop "$pid"
    { cat "$f"; echo "bogusKey: 1"; } >"$HY_TMP/bogus.yaml"
    run timeout 20 "$HY_BIN/$bin" --config "$HY_TMP/bogus.yaml" "${args[@]}"
    hy_eq "$name: with a bogus key $bin refuses to start (exit 2)" 2 "$rc"
    hy_contains "$name: and names the key" 'unknown key "bogusKey"' "$o"
done <"$HY_TMP/carried"
hy_check "the config files were found (5 or more)" test "$n" -ge 5

# ---- the units: what they run, and where
# every file in /etc/hypha that a unit or an example names has an example
# beside the units (certificates and tokens excepted: never shipped)
while read -r p; do
    ex=$(basename "${p//%i/web-1}")
    hy_check "$p has an example in deploy/systemd ($ex)" test -f "$UNITS/$ex"
done < <(grep -ohE '/etc/hypha/[A-Za-z0-9_.%@-]+\.(yaml|env)' "$UNITS"/*.service "$UNITS"/*.yaml |
    sort -u)
# ExecStart's flags join the manifests' in the list
for u in "$UNITS"/*.service; do
    cmd=$(awk '/^ExecStart=/ { on = 1; sub(/^ExecStart=/, "") }
        on { more = sub(/\\$/, ""); printf "%s ", $0; if (!more) exit }' "$u")
    bin=$(basename "${cmd%% *}")
    # shellcheck disable=SC2086 # the words of the command line
    echo "flags $bin $(printf '%s\n' $cmd | grep '^--' | tr '\n' ' ')" >>"$HY_TMP/carried"
done
# every flag given to a Hypha binary (manifests and units) is one it knows
while read -r what bin flags; do
    [ "$what" = flags ] || continue
    for flag in $flags; do echo "$bin $flag"; done
done <"$HY_TMP/carried" | sort -u >"$HY_TMP/flags"
noted=
while read -r bin flag; do
    if [ -x "$HY_BIN/$bin" ]; then
        hy_contains "$bin knows $flag" "  $flag " "$("$HY_BIN/$bin" --help)"
    elif [ "$noted" != "$bin" ]; then
        echo "note: $bin is not built; its flags are not checked"
        noted=$bin
    fi
done <"$HY_TMP/flags"

# ---- replicas on PostgreSQL (issue 18): the environment files and the
# manifests' env name variables their binary knows; the replica units
# and manifests run on postgres with the URL kept out of the unit and
# the ConfigMap, and share the per-process secrets
known_env() { # known_env BINARY VAR: VAR is one of BINARY's variables
    local help
    help=$("$HY_BIN/$1" --help 2>&1 || "$HY_BIN/$1" run --help 2>&1)
    [[ "$help" == *" $2 "* ]]
}
for env in "$UNITS"/*-replica.env; do
    b=$(basename "$env")
    bin=hypha-${b%%-*}
    [ -x "$HY_BIN/$bin" ] || continue
    while IFS='=' read -r var value; do
        case $var in '' | '#'*) continue ;; esac
        hy_check "$b: $bin knows $var" known_env "$bin" "$var"
    done <"$env"
    hy_check "$b: sets HYPHA_STORE=postgres" grep -qx 'HYPHA_STORE=postgres' "$env"
    hy_check "$b: gives HYPHA_STORE_POSTGRES_URL" grep -q '^HYPHA_STORE_POSTGRES_URL=postgresql://' "$env"
done
for u in "$UNITS"/hypha-*-replica.service; do
    b=$(basename "$u")
    kind=${b#hypha-}
    kind=${kind%-replica.service}
    hy_check "$b: reads /etc/hypha/$kind-replica.env" grep -qx "EnvironmentFile=/etc/hypha/$kind-replica.env" "$u"
    hy_check "$b: no database URL in the unit itself" bash -c "! grep -q 'postgres' <(grep -v '^#' '$u')"
    hy_check "$b: copies the shared admin token and token signing key into its state dir" \
        grep -q "ExecStartPre=.*%d/admin-token %d/token-signing.key %S/hypha-$kind/" "$u"
    hy_check "$b: which is its StateDirectory" grep -qx "StateDirectory=hypha-$kind" "$u"
done
cat >"$HY_TMP/ha.py" <<'PY'
import sys
import yaml

errors = []
for f in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(f)) if d]
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deps) != 1:
        errors.append(f"{f}: one Deployment expected")
        continue
    d = deps[0]
    if d["spec"].get("replicas") != 3:
        errors.append(f"{f}: replicas must be 3")
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env") or []}
    if (env.get("HYPHA_STORE") or {}).get("value") != "postgres":
        errors.append(f"{f}: HYPHA_STORE must be postgres")
    url = ((env.get("HYPHA_STORE_POSTGRES_URL") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if not url or not url.get("name") or not url.get("key"):
        errors.append(f"{f}: HYPHA_STORE_POSTGRES_URL must come from a Secret (secretKeyRef)")
    for cm in (x for x in docs if x.get("kind") == "ConfigMap"):
        if "postgres" in yaml.safe_dump(cm.get("data")):
            errors.append(f"{f}: ConfigMap {cm['metadata']['name']} names postgres: keep the URL in the Secret")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    for fname in ("admin-token", "token-signing.key"):
        m = mounts.get("/var/lib/hypha/" + fname)
        if not m or "secret" not in vols.get(m["name"], {}):
            errors.append(f"{f}: /var/lib/hypha/{fname} must be mounted from a Secret (shared by the replicas)")
    for e in env:
        print(f"env {c['command'][0].rsplit('/', 1)[-1]} {e}")
    if not any(x.get("kind") == "Service" for x in docs):
        errors.append(f"{f}: needs a Service")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
rc=0
"$PY" "$HY_TMP/ha.py" "$K8S"/*-ha.yaml >"$HY_TMP/ha-env" 2>"$HY_TMP/ha-errors" || rc=$?
hy_check "the replica manifests: 3 replicas on postgres, the URL and shared keys from Secrets" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$HY_TMP/ha-errors"
while read -r _ bin var; do
    [ -x "$HY_BIN/$bin" ] || continue
    hy_check "$bin knows $var (the replica manifests' env)" known_env "$bin" "$var"
done <"$HY_TMP/ha-env"

if command -v systemd-analyze >/dev/null; then
    # verify wants the programs to exist: the units are copied with this
    # build's binaries (or /bin/true for one not built) in their place
    mkdir -p "$HY_TMP/units"
    for u in "$UNITS"/*.service; do
        b=$(basename "$u")
        bin=$(sed -n 's|^ExecStart=/usr/local/bin/\([^ ]*\).*|\1|p' "$u")
        real=$HY_BIN/$bin
        [ -x "$real" ] || { echo "note: $bin is not built; $b is verified with /bin/true"; real=/bin/true; }
        sed "s|/usr/local/bin/$bin|$real|" "$u" >"$HY_TMP/units/${b/@./@lint.}"
    done
    for u in "$HY_TMP"/units/*.service; do
        b=$(basename "$u")
        run systemd-analyze verify "$u"
        # it warns about unknown keys and bad values and still exits 0
        hy_check "systemd-analyze verify $b: no error, no warning" test "$rc" -eq 0 -a -z "$o"
        [ -z "$o" ] || printf '%s\n' "$o"
        run systemd-analyze security --offline=yes --threshold=20 "$u"
        hy_check "systemd-analyze security $b: exposure 2.0 or less" test "$rc" -eq 0
        [ "$rc" -eq 0 ] || printf '%s\n' "$o" | tail -n 3
    done
else
    echo "note: systemd-analyze is not installed; the units are not verified"
fi

hy_done
