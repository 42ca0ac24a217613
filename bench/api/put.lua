-- wrk script for bench/api.sh: PUT updates of one MeshTrafficPermission.
-- Every body differs from the one stored before it (a label carries the
-- thread and a per-thread counter), so every PUT is a real, durable write,
-- whatever order the connections' requests reach the server in. Each
-- response must be 200 with "Hypha-Result: updated"; done() prints how
-- many were not, and bench/api.sh refuses to publish a number if any.
-- With "new" after NAME, every PUT creates a policy of its own instead
-- (NAME-<thread>-<counter>: no two write one key, so the server may commit
-- several in one transaction), each answered 201 "created".
--
-- usage: wrk -s put.lua URL -- NAME [new]   (URL without the path; NAME the policy)

local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

function init(args)
    name = args[1] or "bench-put"
    new = args[2] == "new"
    path = "/meshes/default/meshtrafficpermissions/" .. name
    headers = {["Content-Type"] = "application/yaml"}
    -- the example policy of tests/data/resources/meshtrafficpermission.yaml
    template = "type: MeshTrafficPermission\n" ..
        "mesh: default\n" ..
        "name: %s\n" ..
        "labels:\n" ..
        "  bench.hypha.io/put: \"%d-%d\"\n" ..
        "spec:\n" ..
        "  targetRef:\n" ..
        "    kind: MeshService\n" ..
        "    name: backend\n" ..
        "  from:\n" ..
        "    - targetRef:\n" ..
        "        kind: MeshService\n" ..
        "        name: web\n" ..
        "      default:\n" ..
        "        action: Allow\n" ..
        "    - targetRef:\n" ..
        "        kind: MeshSubset\n" ..
        "        tags:\n" ..
        "          kuma.io/zone: west\n" ..
        "      default:\n" ..
        "        action: Deny\n"
    n = 0
    bad = 0
end

function request()
    n = n + 1
    if new then
        local own = string.format("%s-%d-%d", name, id, n)
        return wrk.format("PUT", path .. "-" .. id .. "-" .. n, headers,
            string.format(template, own, id, n))
    end
    return wrk.format("PUT", path, headers, string.format(template, name, id, n))
end

function response(status, hdrs, body)
    local result = hdrs["hypha-result"] or hdrs["Hypha-Result"]
    local want, code = "updated", 200
    if new then
        want, code = "created", 201
    end
    if status ~= code or result ~= want then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, t in ipairs(threads) do
        total = total + t:get("bad")
    end
    -- done() runs in wrk's main state: the mode is the threads'
    local created = #threads > 0 and threads[1]:get("new")
    io.write(string.format("%s: %d\n", created and "not-created" or "not-updated", total))
end
