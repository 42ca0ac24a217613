/* hyphactl config control-planes add|list|switch|remove: the control
 * planes in the configuration file and which one is current. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "error.h"
#include "table.h"
#include "poison.h"

static bool valid_cp_name(const char *s)
{
    return s[0] && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                       strlen(s);
}

static int save(struct hy_cli *cli)
{
    int rc = hy_cliconfig_save(&cli->cfg);
    if (rc < 0)
        hy_cli_error(cli, "cannot write %s: %s", cli->cfg.path, hy_strerror(rc));
    return rc;
}

/* Checks that the new control plane answers GET / before it is saved. */
static int verify(struct hy_cli *cli, const char *address, const char *ca, const char *token)
{
    cli->base_url = address;
    cli->ca_file = cli->http.ca_file = ca;
    cli->token = token;
    cli->http.user_agent = "hyphactl/" HYPHA_VERSION;
    struct hy_httpc_response resp;
    int rc = hy_api_call(cli, "GET", "/", NULL, 0, NULL, 0, &resp);
    if (rc == 0) {
        struct hy_json *j = NULL;
        char why[256];
        if (hy_json_parse(resp.body.data ? resp.body.data : "", resp.body.len, &j, why,
                          sizeof(why)) < 0 ||
            !hy_json_get_str(j, "product")) {
            hy_cli_error(cli, "%s answered, but not like a Hypha control plane", address);
            rc = HY_EINVAL;
        }
        hy_json_free(j);
        hy_httpc_response_fini(&resp);
    }
    if (rc < 0)
        fprintf(cli->err, "(pass --skip-verify to save it anyway)\n");
    return rc;
}

int hy_cmd_cp_add(struct hy_cli *cli)
{
    const char *name = hy_args_get(&cli->args, "name");
    const char *address = hy_args_get(&cli->args, "address");
    const char *ca = hy_args_get(&cli->args, "ca-cert-file");
    const char *token = hy_args_get(&cli->args, "auth-token");
    if (!name || !address)
        return hy_cli_usage(cli, "--name and --address are required");
    if (!valid_cp_name(name))
        return hy_cli_usage(cli, "--name \"%s\": use letters, digits, '.', '_' and '-'", name);
    struct hy_httpc_url u;
    char why[512];
    if (hy_httpc_url_parse(address, &u, why, sizeof(why)) < 0)
        return hy_cli_usage(cli, "--address: %s", why);
    hy_httpc_url_fini(&u);
    /* the file is read from wherever hyphactl runs later: keep it absolute */
    char abs_ca[PATH_MAX];
    if (ca && ca[0]) {
        if (!realpath(ca, abs_ca)) {
            hy_cli_error(cli, "--ca-cert-file %s: %s", ca, strerror(errno));
            return HY_EINVAL;
        }
        ca = abs_ca;
    }
    int rc = hy_cli_load_config(cli);
    if (rc < 0)
        return rc;
    bool overwrite = hy_args_on(&cli->args, "overwrite");
    if (hy_cliconfig_find(&cli->cfg, name) && !overwrite) {
        hy_cli_error(cli,
                     "a control plane called \"%s\" exists already; pass --overwrite to "
                     "replace it",
                     name);
        return HY_EEXIST;
    }
    if (!hy_args_on(&cli->args, "skip-verify") && (rc = verify(cli, address, ca, token)) < 0)
        return rc;
    if ((rc = hy_cliconfig_add(&cli->cfg, name, address, ca, token, overwrite)) < 0) {
        hy_cli_error(cli, "out of memory");
        return rc;
    }
    if ((rc = save(cli)) < 0)
        return rc;
    fprintf(cli->out, "added control plane \"%s\" at %s\n", name, address);
    fprintf(cli->out, "switched the active control plane to \"%s\"\n", name);
    return 0;
}

int hy_cmd_cp_list(struct hy_cli *cli)
{
    int rc = hy_cli_load_config(cli);
    if (rc < 0)
        return rc;
    static const char *const head[] = {"ACTIVE", "NAME", "ADDRESS"};
    struct hy_table t;
    struct hy_buf text = {0};
    const hy_cp *cur = hy_cliconfig_current(&cli->cfg);
    rc = hy_table_init(&t, 3, head);
    const Hypha__V1__CliConfig *m = cli->cfg.msg;
    for (size_t i = 0; rc == 0 && i < m->n_control_planes; i++) {
        const hy_cp *cp = m->control_planes[i];
        const char *row[] = {cp == cur ? "*" : " ", cp->name, cp->address};
        rc = hy_table_add(&t, row);
    }
    if (rc == 0)
        rc = hy_table_render(&t, &text);
    if (rc == 0)
        fwrite(text.data, 1, text.len, cli->out);
    else
        hy_cli_error(cli, "out of memory");
    hy_buf_fini(&text);
    hy_table_fini(&t);
    return rc;
}

static int by_name(struct hy_cli *cli, bool remove)
{
    const char *name = hy_args_get(&cli->args, "name");
    if (!name || !name[0])
        return hy_cli_usage(cli, "--name is required");
    int rc = hy_cli_load_config(cli);
    if (rc < 0)
        return rc;
    rc = remove ? hy_cliconfig_remove(&cli->cfg, name) : hy_cliconfig_switch(&cli->cfg, name);
    if (rc == HY_ENOTFOUND) {
        hy_cli_error(cli,
                     "no control plane is called \"%s\"; see 'hyphactl config control-planes "
                     "list'",
                     name);
        return rc;
    }
    if (rc < 0) {
        hy_cli_error(cli, "out of memory");
        return rc;
    }
    if ((rc = save(cli)) < 0)
        return rc;
    if (remove)
        fprintf(cli->out, "removed control plane \"%s\"\n", name);
    else
        fprintf(cli->out, "switched the active control plane to \"%s\"\n", name);
    return 0;
}

int hy_cmd_cp_switch(struct hy_cli *cli)
{
    return by_name(cli, false);
}

int hy_cmd_cp_remove(struct hy_cli *cli)
{
    return by_name(cli, true);
}
