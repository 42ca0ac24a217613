/* The control planes' explanations of the policy engine (cp_inspect.c):
 * _rules of a Dataplane, _explain of a call, and the changes a dry-run
 * apply would make; _config is the zone's (a 400 elsewhere). */
#ifndef HY_CP_INSPECT_H
#define HY_CP_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#include "cp_api.h"

/* Serves GET /meshes/{mesh}/dataplanes/{name}/_rules, .../_config (a 400
 * naming the zone that computes it: a zone CP serves it before this) and
 * GET /meshes/{mesh}/_explain; s[0..n) are the path's segments. false when
 * the path is none of them. */
bool hy_cp_inspect_handle(struct hy_cp_api *api, const struct hy_http_req *req,
                          struct hy_http_resp *resp, char **s, size_t n);

/* For a dry run of writes[0..n): appends to out a JSON array of the
 * Dataplanes whose enforced policies would change, each with its changes
 * ("inbound 8080 from web-1: now Deny (was Allow)", "outbound backend
 * MeshTimeout: now {...} (was none)"). At every inbound it tries the first
 * 100 Dataplanes of the mesh as callers; *untried gets how many of a mesh
 * were left out (0: all tried), which the answer must say. The writes stay
 * the caller's. 0 or a negative code. */
int hy_cp_inspect_changes(struct hy_cp_api *api, const struct hy_resource *const *writes, size_t n,
                          struct hy_buf *out, size_t *untried);

#endif
