/* hyphactl generate zone-token --zone Z [--valid-for 720h]: asks the global
 * control plane to sign a token that admits zone Z, and prints it. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

#define DEFAULT_VALID_FOR "720h"

int hy_cmd_generate_zone_token(struct hy_cli *cli)
{
    const char *zone = hy_args_get(&cli->args, "zone");
    const char *valid_for = hy_args_get(&cli->args, "valid-for");
    if (!zone || !zone[0])
        return hy_cli_usage(cli, "--zone is required");
    if (!hy_valid_name(zone))
        return hy_cli_usage(cli,
                            "--zone \"%s\" is not a valid zone name (lowercase letters, "
                            "digits, '-' and '.')",
                            zone);
    int64_t secs;
    int32_t nanos;
    if (!valid_for)
        valid_for = DEFAULT_VALID_FOR;
    if (!hy_duration_parse(valid_for, &secs, &nanos) || (secs == 0 && nanos == 0))
        return hy_cli_usage(cli, "--valid-for \"%s\" is not a duration like 24h, 30d or 1y",
                            valid_for);
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    struct hy_buf body = {0};
    rc = hy_buf_puts(&body, "{\"zone\":");
    if (rc == 0)
        rc = hy_codec_json_string(&body, zone, strlen(zone));
    if (rc == 0)
        rc = hy_buf_puts(&body, ",\"validFor\":");
    if (rc == 0)
        rc = hy_codec_json_string(&body, valid_for, strlen(valid_for));
    if (rc == 0)
        rc = hy_buf_puts(&body, "}");
    if (rc < 0) {
        hy_buf_fini(&body);
        hy_cli_error(cli, "out of memory");
        return rc;
    }
    const struct hy_http_header h[] = {{"Content-Type", "application/json"}};
    struct hy_http_response resp;
    rc = hy_api_call(cli, "POST", "/tokens/zone", h, 1, body.data, body.len, &resp);
    hy_buf_fini(&body);
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
    hy_http_response_fini(&resp);
    return rc;
}
