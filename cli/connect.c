/* Which control plane a command talks to, and with what credentials: flags
 * over environment over the configuration file over the built-in default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "poison.h"

/* The flag's value, else the environment variable's; NULL if neither is
 * set to something non-empty. */
static const char *setting(const struct hy_cli *cli, const char *flag, const char *env)
{
    const char *v = hy_args_get(&cli->args, flag);
    if (!v || !v[0])
        v = getenv(env);
    return v && v[0] ? v : NULL;
}

int hy_cli_load_config(struct hy_cli *cli)
{
    if (cli->cfg_loaded)
        return 0;
    const char *path = setting(cli, "config", "HYPHACTL_CONFIG");
    char *def = NULL;
    if (!path && !(path = def = hy_cliconfig_default_path())) {
        hy_cli_error(cli, "cannot find the configuration file: HOME is not set; pass --config");
        return HY_EINVAL;
    }
    struct hy_diag diag = {0};
    int rc = hy_cliconfig_load(path, &cli->cfg, &diag);
    if (rc < 0) {
        char line[1024];
        for (size_t i = 0; i < diag.n; i++)
            hy_cli_error(cli, "%s", hy_diag_format(&diag, i, line, sizeof(line)));
        if (!diag.n)
            hy_cli_error(cli, "cannot read %s: %s", path, hy_strerror(rc));
        hy_cliconfig_fini(&cli->cfg);
    } else {
        cli->cfg_loaded = true;
    }
    hy_diag_fini(&diag);
    free(def);
    return rc;
}

int hy_cli_connect(struct hy_cli *cli)
{
    const char *cp = setting(cli, "cp", "HYPHA_CP");
    const hy_cp *conf = NULL;
    int rc;
    if (cp && strstr(cp, "://")) {
        cli->base_url = cp;
    } else {
        if ((rc = hy_cli_load_config(cli)) < 0)
            return rc;
        conf = cp ? hy_cliconfig_find(&cli->cfg, cp) : hy_cliconfig_current(&cli->cfg);
        if (cp && !conf)
            return hy_cli_usage(cli,
                                "no control plane is called \"%s\": --cp takes a URL or a name "
                                "from 'hyphactl config control-planes list'",
                                cp);
        cli->base_url = conf ? conf->address : HY_CLICONFIG_DEFAULT_ADDRESS;
    }
    cli->ca_file = setting(cli, "ca-cert-file", "HYPHA_CA_CERT_FILE");
    if (!cli->ca_file && conf)
        cli->ca_file = conf->ca_cert_file;
    cli->token = setting(cli, "auth-token", "HYPHA_AUTH_TOKEN");
    if (!cli->token && conf)
        cli->token = conf->auth_token;
    cli->http.ca_file = cli->ca_file;
    cli->http.user_agent = "hyphactl/" HYPHA_VERSION;
    struct hy_httpc_url u;
    char why[512];
    if ((rc = hy_httpc_url_parse(cli->base_url, &u, why, sizeof(why))) < 0) {
        hy_cli_error(cli, "control plane address: %s", why);
        return rc;
    }
    hy_httpc_url_fini(&u);
    return 0;
}
