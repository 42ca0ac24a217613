/* hyphactl explain --from CALLER --to CALLEE: whether a caller may call a
 * Dataplane's inbound (or a service), from the control plane's _explain,
 * which decides with the function the sidecar enforces with. For each
 * inbound: the decision, the deciding policy and entry, and every entry
 * and rules matcher the caller matched, in order, in plain lines. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "error.h"
#include "output.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static const char *str(const struct hy_json *j, const char *key)
{
    return S(hy_json_get_str(j, key));
}

static size_t count(const struct hy_json *j)
{
    return j && j->kind != HY_JSON_SCALAR ? (j->kind == HY_JSON_OBJECT ? j->n / 2 : j->n) : 0;
}

/* "denied", "allowed", "shadow-denied (...)" for the API's decision. */
static const char *verdict(const char *decision)
{
    if (!strcmp(decision, "Allow"))
        return "allowed";
    if (!strcmp(decision, "AllowWithShadowDeny"))
        return "shadow-denied (let in, logged and counted as denied)";
    return "denied";
}

/* "    2. MeshTrafficPermission/deny-dev from[0]: env=dev -> Deny (decides)" */
static int put_match(struct hy_buf *b, size_t i, const struct hy_json *m)
{
    int rc = hy_buf_printf(b, "    %zu. %s: ", i + 1, str(m, "origin"));
    const struct hy_json *tags = hy_json_get(m, "tags"), *id = hy_json_get(m, "spiffeID");
    if (rc == 0 && id)
        rc = hy_buf_printf(b, "spiffeID %s %s", str(id, "type"), str(id, "value"));
    else if (rc == 0 && !count(tags))
        rc = hy_buf_puts(b, "any caller");
    for (size_t k = 0; rc == 0 && !id && count(tags) && k + 1 < tags->n; k += 2)
        rc = hy_buf_printf(b, "%s%s=%s", k ? "," : "", S(tags->items[k]->value),
                           S(hy_json_str(tags->items[k + 1])));
    if (rc == 0)
        rc = hy_buf_printf(b, " -> %s%s\n", str(m, "action"),
                           !strcmp(str(m, "decides"), "true") ? " (decides)" : "");
    return rc;
}

static int put_result(struct hy_buf *b, const struct hy_json *r)
{
    int rc = hy_buf_printf(b, "%s -> %s inbound %s (%s): %s\n", str(r, "caller"), str(r, "callee"),
                           str(r, "inbound"), str(r, "service"), verdict(str(r, "decision")));
    if (rc == 0)
        rc = hy_buf_printf(b, "  %s\n", str(r, "reason"));
    const struct hy_json *tags = hy_json_get(r, "callerTags"), *m = hy_json_get(r, "matched");
    if (rc == 0)
        rc = hy_buf_printf(b, "  caller: %s",
                           str(r, "callerSpiffeID")[0] ? str(r, "callerSpiffeID") : "no SPIFFE ID");
    for (size_t k = 0; rc == 0 && k < count(tags); k++)
        rc = hy_buf_printf(b, "%s%s", k ? ", " : "; tags ", S(hy_json_str(tags->items[k])));
    if (rc == 0 && !count(m))
        rc = hy_buf_printf(b, "\n  matched nothing (of %s entries and rules matchers)\n",
                           hy_json_get_str(r, "checked") ? str(r, "checked") : "?");
    else if (rc == 0)
        rc = hy_buf_printf(b, "\n  matched, in order (%zu of %s entries and rules matchers):\n",
                           count(m), hy_json_get_str(r, "checked") ? str(r, "checked") : "?");
    for (size_t i = 0; rc == 0 && i < count(m); i++)
        rc = put_match(b, i, m->items[i]);
    return rc;
}

static int render(const struct hy_json *j, struct hy_buf *b)
{
    int rc = 0;
    if (hy_json_get_str(j, "note"))
        rc = hy_buf_printf(b, "Note: %s\n\n", str(j, "note"));
    const struct hy_json *results = hy_json_get(j, "results");
    for (size_t i = 0; rc == 0 && i < count(results); i++) {
        if (i)
            rc = hy_buf_puts(b, "\n");
        if (rc == 0)
            rc = put_result(b, results->items[i]);
    }
    if (rc == 0 && !count(results))
        rc = hy_buf_puts(b, "Nothing to explain: no inbound matches --to.\n");
    if (rc == 0 && !strcmp(str(j, "truncated"), "true"))
        rc = hy_buf_puts(b, "\nNote: only the first results are shown; narrow --from or --to.\n");
    return rc;
}

int hy_cmd_explain(struct hy_cli *cli)
{
    const char *from = hy_args_get(&cli->args, "from"), *to = hy_args_get(&cli->args, "to");
    if (!from || !from[0] || !to || !to[0])
        return hy_cli_usage(cli,
                            "%s required: --from DATAPLANE|SERVICE|KEY=VALUE,... --to "
                            "DATAPLANE[:INBOUND]|SERVICE",
                            (!from || !from[0]) && (!to || !to[0]) ? "--from and --to are"
                            : !from || !from[0]                    ? "--from is"
                                                                   : "--to is");
    enum hy_output_format f;
    const char *o = hy_args_get(&cli->args, "output");
    if (!hy_output_parse(o, &f))
        return hy_cli_usage(cli, "unknown output format \"%s\" (table, yaml or json)", o);
    const char *mesh = hy_args_get(&cli->args, "mesh");
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    struct hy_buf path = {0};
    if (hy_buf_puts(&path, "/meshes/") < 0 ||
        hy_api_escape(&path, mesh ? mesh : "default", false) < 0 ||
        hy_buf_puts(&path, "/_explain?from=") < 0 || hy_api_escape(&path, from, true) < 0 ||
        hy_buf_puts(&path, "&to=") < 0 || hy_api_escape(&path, to, true) < 0) {
        hy_buf_fini(&path);
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    struct hy_httpc_response resp;
    rc = hy_api_call(cli, "GET", path.data, NULL, 0, NULL, 0, &resp);
    hy_buf_fini(&path);
    if (rc < 0)
        return rc;
    struct hy_json *j = NULL;
    struct hy_buf b = {0};
    if (f == HY_OUTPUT_JSON) {
        hy_output_text(cli, resp.body.data ? resp.body.data : "", resp.body.len);
    } else if ((rc = hy_api_parse(cli, &resp, &j)) == 0) {
        if (f == HY_OUTPUT_YAML) {
            rc = hy_output_tree(cli, j, f);
        } else if ((rc = render(j, &b)) < 0) {
            hy_cli_error(cli, "out of memory");
        } else {
            fwrite(b.data ? b.data : "", 1, b.len, cli->out);
        }
    }
    hy_buf_fini(&b);
    hy_json_free(j);
    hy_httpc_response_fini(&resp);
    return rc;
}
