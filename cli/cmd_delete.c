/* hyphactl delete TYPE NAME [-m MESH]. */
#include <stdio.h>

#include "api.h"
#include "cli.h"
#include "error.h"
#include "poison.h"

int hy_cmd_delete(struct hy_cli *cli)
{
    const struct hy_rtype *t = hy_cmd_find_type(cli, cli->args.pos[0]);
    if (!t)
        return HY_EINVAL;
    const char *name = cli->args.pos[1];
    const char *mesh = hy_args_get(&cli->args, "mesh");
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    struct hy_buf path = {0};
    if (hy_cmd_resource_path(&path, t, mesh ? mesh : "default", name) < 0) {
        hy_buf_fini(&path);
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    struct hy_httpc_response resp;
    rc = hy_api_call(cli, "DELETE", path.data, NULL, 0, NULL, 0, &resp);
    hy_buf_fini(&path);
    if (rc < 0)
        return rc;
    hy_httpc_response_fini(&resp);
    hy_cmd_print_done(cli, t->name, name, "deleted");
    return 0;
}
