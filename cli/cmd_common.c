/* What several commands share: the resource type a user means, the API
 * path of a resource or a collection, and kubectl-style result lines. */
#include <ctype.h>
#include <stdio.h>

#include "api.h"
#include "cli.h"
#include "resource.h"
#include "poison.h"

const struct hy_rtype *hy_cmd_find_type(struct hy_cli *cli, const char *s)
{
    const struct hy_rtype *t = hy_rtype_find(s);
    if (t)
        return t;
    size_t n;
    const struct hy_rtype *all = hy_rtype_all(&n);
    struct hy_buf names = {0};
    for (size_t i = 0; i < n; i++)
        hy_buf_printf(&names, "%s%s", i ? ", " : "", all[i].plural);
    hy_cli_usage(cli, "unknown resource type \"%s\" (one of: %s)", s, names.data ? names.data : "");
    hy_buf_fini(&names);
    return NULL;
}

int hy_cmd_resource_path(struct hy_buf *b, const struct hy_rtype *t, const char *mesh,
                         const char *name)
{
    int rc = 0;
    if (t->scope == HY_SCOPE_MESH && mesh) {
        rc = hy_buf_puts(b, "/meshes/");
        if (rc == 0)
            rc = hy_api_escape(b, mesh, false);
    }
    if (rc == 0)
        rc = hy_buf_printf(b, "/%s", t->plural);
    if (rc == 0 && name) {
        rc = hy_buf_puts(b, "/");
        if (rc == 0)
            rc = hy_api_escape(b, name, false);
    }
    return rc;
}

void hy_cmd_print_done(struct hy_cli *cli, const char *type, const char *name, const char *what)
{
    for (const char *p = type; *p; p++)
        fputc(tolower((unsigned char)*p), cli->out);
    fprintf(cli->out, "/%s %s\n", name, what);
}
