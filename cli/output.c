/* hy_output: ages, times, YAML documents and replies printed on standard
 * output. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "error.h"
#include "output.h"
#include "poison.h"

bool hy_output_parse(const char *s, enum hy_output_format *out)
{
    if (!s || strcmp(s, "table") == 0)
        *out = HY_OUTPUT_TABLE;
    else if (strcmp(s, "yaml") == 0)
        *out = HY_OUTPUT_YAML;
    else if (strcmp(s, "json") == 0)
        *out = HY_OUTPUT_JSON;
    else
        return false;
    return true;
}

/* kubectl's HumanDuration: more precision for short ages, less for long. */
void hy_output_age(int64_t s, char *buf, size_t size)
{
    if (s < -1) {
        snprintf(buf, size, "<invalid>");
        return;
    }
    if (s < 0)
        s = 0;
    int64_t m = s / 60, h = s / 3600, d = h / 24;
    if (s < 120)
        snprintf(buf, size, "%llds", (long long)s);
    else if (m < 10 && s % 60)
        snprintf(buf, size, "%lldm%llds", (long long)m, (long long)(s % 60));
    else if (m < 180)
        snprintf(buf, size, "%lldm", (long long)m);
    else if (h < 8 && m % 60)
        snprintf(buf, size, "%lldh%lldm", (long long)h, (long long)(m % 60));
    else if (h < 48)
        snprintf(buf, size, "%lldh", (long long)h);
    else if (h < 24 * 8 && h % 24)
        snprintf(buf, size, "%lldd%lldh", (long long)d, (long long)(h % 24));
    else if (h < 24 * 365 * 2)
        snprintf(buf, size, "%lldd", (long long)d);
    else if (h < 24 * 365 * 8 && d % 365)
        snprintf(buf, size, "%lldy%lldd", (long long)(d / 365), (long long)(d % 365));
    else
        snprintf(buf, size, "%lldy", (long long)(d / 365));
}

void hy_output_age_since(int64_t now, const Hypha__V1__Timestamp *ts, char *buf, size_t size)
{
    if (!ts)
        snprintf(buf, size, "-");
    else
        hy_output_age(now - ts->seconds, buf, size);
}

void hy_output_text(struct hy_cli *cli, const char *text, size_t len)
{
    fwrite(text, 1, len, cli->out);
    if (len == 0 || text[len - 1] != '\n')
        fputc('\n', cli->out);
}

int hy_output_yaml(struct hy_cli *cli, struct hy_resource *const *v, size_t n)
{
    struct hy_buf b = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc = hy_buf_puts(&b, "---\n");
        if (rc == 0)
            rc = hy_codec_encode_resource(v[i], HY_FORMAT_YAML, &b);
    }
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else if (b.len)
        hy_output_text(cli, b.data, b.len);
    hy_buf_fini(&b);
    return rc;
}

int hy_output_tree(struct hy_cli *cli, const struct hy_json *j, enum hy_output_format f)
{
    struct hy_buf b = {0};
    int rc = f == HY_OUTPUT_JSON ? hy_json_write(j, &b) : hy_json_write_yaml(j, &b);
    if (rc == HY_ENOMEM)
        hy_cli_error(cli, "out of memory");
    else if (rc < 0)
        hy_cli_error(cli, "cannot print the control plane's reply: %s", hy_strerror(rc));
    else
        hy_output_text(cli, b.data ? b.data : "", b.len);
    hy_buf_fini(&b);
    return rc;
}

int hy_output_json_text(struct hy_cli *cli, const char *text, size_t len, enum hy_output_format f)
{
    struct hy_json *j = NULL;
    char why[256];
    int rc = hy_json_parse(text ? text : "", len, &j, why, sizeof(why));
    if (rc < 0)
        hy_cli_error(cli, "cannot read the control plane's reply: %s", why);
    else
        rc = hy_output_tree(cli, j, f);
    hy_json_free(j);
    return rc;
}

void hy_output_time(const Hypha__V1__Timestamp *ts, char *buf, size_t size)
{
    struct tm tm;
    time_t t = ts ? (time_t)ts->seconds : 0;
    if (!ts || !gmtime_r(&t, &tm))
        snprintf(buf, size, "-");
    else
        strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}
