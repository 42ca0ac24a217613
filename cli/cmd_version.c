/* hyphactl version: the client's version, then the control plane's from
 * GET / (exit status 1 when it does not answer, like kubectl). */
#include <stdio.h>

#include "api.h"
#include "cli.h"
#include "error.h"
#include "poison.h"

int hy_cmd_version(struct hy_cli *cli)
{
    fprintf(cli->out, "Client: hyphactl %s\n", HYPHA_VERSION);
    if (hy_args_on(&cli->args, "client"))
        return 0;
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    struct hy_httpc_response resp;
    fflush(cli->out); /* the client's line first, even if the server fails */
    if ((rc = hy_api_call(cli, "GET", "/", NULL, 0, NULL, 0, &resp)) < 0)
        return rc;
    struct hy_json *j;
    if ((rc = hy_api_parse(cli, &resp, &j)) == 0) {
        const char *product = hy_json_get_str(j, "product");
        const char *version = hy_json_get_str(j, "version");
        const char *mode = hy_json_get_str(j, "mode");
        const char *id = hy_json_get_str(j, "instanceId");
        fprintf(cli->out, "Server: %s %s", product ? product : "?", version ? version : "?");
        if (mode || id)
            fprintf(cli->out, " (%s%s%s%s)", mode ? mode : "", mode && id ? ", " : "",
                    id ? "instance " : "", id ? id : "");
        fprintf(cli->out, " at %s\n", cli->base_url);
        hy_json_free(j);
    }
    hy_httpc_response_fini(&resp);
    return rc;
}
