/* hyphactl generate zone-token --zone Z [--valid-for 720h]: asks the global
 * control plane to sign a token that admits zone Z, and prints it.
 * hyphactl generate dataplane-token --mesh M --name N [--tag k=v]...
 * [--zone Z] [--valid-for 24h]: asks a zone control plane (or the global
 * one, for zone Z) for a token a sidecar presents, and prints it.
 * hyphactl generate zone-ingress-token --name N [--zone Z] [--valid-for
 * 24h]: the same for a zone ingress. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

#define DEFAULT_VALID_FOR "720h"

/* Parses --valid-for (or the default) and appends it as ,"validFor". */
static int valid_for(struct hy_cli *cli, const char *def, struct hy_buf *body)
{
    const char *v = hy_args_get(&cli->args, "valid-for");
    int64_t secs;
    int32_t nanos;
    if (!v)
        v = def;
    if (!hy_duration_parse(v, &secs, &nanos) || (secs == 0 && nanos == 0))
        return hy_cli_usage(cli, "--valid-for \"%s\" is not a duration like 24h, 30d or 1y", v);
    if (hy_buf_puts(body, ",\"validFor\":") < 0 || hy_codec_json_string(body, v, strlen(v)) < 0)
        return HY_ENOMEM;
    return 0;
}

/* Appends ,"key":"value" to body. */
static int json_field(struct hy_buf *body, const char *key, const char *value)
{
    if (hy_buf_printf(body, ",\"%s\":", key) < 0 ||
        hy_codec_json_string(body, value, strlen(value)) < 0)
        return HY_ENOMEM;
    return 0;
}

/* POSTs body ({...} being built, closed here) to path and prints the token. */
static int post_token(struct hy_cli *cli, const char *path, struct hy_buf *body)
{
    int rc = hy_buf_puts(body, "}");
    if (rc < 0) {
        hy_cli_error(cli, "out of memory");
        return rc;
    }
    if ((rc = hy_cli_connect(cli)) < 0)
        return rc;
    const struct hy_httpc_header h[] = {{"Content-Type", "application/json"}};
    struct hy_httpc_response resp;
    rc = hy_api_call(cli, "POST", path, h, 1, body->data, body->len, &resp);
    if (rc < 0)
        return rc;
    const char *token = resp.body.data ? resp.body.data : "";
    size_t len = strcspn(token, "\r\n");
    if (len == 0) {
        hy_cli_error(cli, "the control plane answered with an empty token");
        rc = HY_EINVAL;
    } else {
        fprintf(cli->out, "%.*s\n", (int)len, token);
    }
    hy_httpc_response_fini(&resp);
    return rc;
}

static int valid_name_flag(struct hy_cli *cli, const char *flag, const char *v, bool required)
{
    if (!v || !v[0])
        return required ? hy_cli_usage(cli, "--%s is required", flag) : 0;
    if (!hy_valid_name(v))
        return hy_cli_usage(cli,
                            "--%s \"%s\" is not a valid name (lowercase letters, digits, "
                            "'-' and '.')",
                            flag, v);
    return 0;
}

int hy_cmd_generate_zone_token(struct hy_cli *cli)
{
    const char *zone = hy_args_get(&cli->args, "zone");
    int rc = valid_name_flag(cli, "zone", zone, true);
    if (rc == 0 && !hy_valid_zone_name(zone))
        rc = hy_cli_usage(cli, "--zone \"%s\": %s", zone, HY_ZONE_NAME_RULE);
    if (rc < 0)
        return rc;
    struct hy_buf body = {0};
    if ((rc = hy_buf_puts(&body, "{\"zone\":")) == 0 &&
        (rc = hy_codec_json_string(&body, zone, strlen(zone))) == 0 &&
        (rc = valid_for(cli, DEFAULT_VALID_FOR, &body)) == 0)
        rc = post_token(cli, "/tokens/zone", &body);
    hy_buf_fini(&body);
    return rc;
}

int hy_cmd_generate_dataplane_token(struct hy_cli *cli)
{
    const char *mesh = hy_args_get(&cli->args, "mesh"), *name = hy_args_get(&cli->args, "name");
    const char *zone = hy_args_get(&cli->args, "zone");
    int rc;
    if ((rc = valid_name_flag(cli, "mesh", mesh, true)) < 0 ||
        (rc = valid_name_flag(cli, "name", name, true)) < 0 ||
        (rc = valid_name_flag(cli, "zone", zone, false)) < 0)
        return rc;
    struct hy_buf body = {0};
    if ((rc = hy_buf_puts(&body, "{\"mesh\":")) < 0 ||
        (rc = hy_codec_json_string(&body, mesh, strlen(mesh))) < 0 ||
        (rc = valid_for(cli, "24h", &body)) < 0 || (rc = json_field(&body, "name", name)) < 0 ||
        (zone && (rc = json_field(&body, "zone", zone)) < 0) ||
        (rc = hy_buf_puts(&body, ",\"tags\":{")) < 0)
        goto out;
    const char *tag;
    for (size_t i = 0; (tag = hy_args_nth(&cli->args, "tag", i)); i++) {
        const char *eq = strchr(tag, '=');
        if (!eq || eq == tag) {
            rc = hy_cli_usage(cli, "--tag \"%s\" is not KEY=VALUE", tag);
            goto out;
        }
        char key[300];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - tag), tag);
        if ((i && hy_buf_puts(&body, ",") < 0) ||
            hy_codec_json_string(&body, key, strlen(key)) < 0 || hy_buf_puts(&body, ":") < 0 ||
            hy_codec_json_string(&body, eq + 1, strlen(eq + 1)) < 0) {
            rc = HY_ENOMEM;
            goto out;
        }
    }
    if ((rc = hy_buf_puts(&body, "}")) == 0)
        rc = post_token(cli, "/tokens/dataplane", &body);
out:
    hy_buf_fini(&body);
    return rc;
}

int hy_cmd_generate_ingress_token(struct hy_cli *cli)
{
    const char *name = hy_args_get(&cli->args, "name"), *zone = hy_args_get(&cli->args, "zone");
    int rc;
    if ((rc = valid_name_flag(cli, "name", name, true)) < 0 ||
        (rc = valid_name_flag(cli, "zone", zone, false)) < 0)
        return rc;
    struct hy_buf body = {0};
    if ((rc = hy_buf_puts(&body, "{\"name\":")) == 0 &&
        (rc = hy_codec_json_string(&body, name, strlen(name))) == 0 &&
        (rc = valid_for(cli, "24h", &body)) == 0 &&
        (!zone || (rc = json_field(&body, "zone", zone)) == 0))
        rc = post_token(cli, "/tokens/zone-ingress", &body);
    hy_buf_fini(&body);
    return rc;
}
