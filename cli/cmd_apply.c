/* hyphactl apply -f FILE...: every file is decoded and validated locally
 * (errors with file:line:col), then each is sent whole to POST /_apply,
 * which writes all of its resources or none. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

#define STDIN_NAME "<stdin>"

struct input {
    const char *name; /* as given, or STDIN_NAME */
    struct hy_buf text;
};

static int read_stream(FILE *f, struct hy_buf *b)
{
    char chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b->len + n > HY_CODEC_MAX_BYTES)
            return HY_ETOOBIG;
        if (hy_buf_append(b, chunk, n) < 0)
            return HY_ENOMEM;
    }
    return ferror(f) ? -EIO : 0;
}

static int read_input(struct hy_cli *cli, const char *arg, struct input *in)
{
    in->name = strcmp(arg, "-") == 0 ? STDIN_NAME : arg;
    FILE *f = strcmp(arg, "-") == 0 ? cli->in : fopen(arg, "rb");
    if (!f) {
        int e = errno;
        hy_cli_error(cli, "cannot open %s: %s", arg, strerror(e));
        return -e;
    }
    int rc = read_stream(f, &in->text);
    if (f != cli->in)
        fclose(f);
    if (rc == HY_ETOOBIG)
        hy_cli_error(cli, "%s: larger than %u bytes; split it into several files", in->name,
                     HY_CODEC_MAX_BYTES);
    else if (rc < 0)
        hy_cli_error(cli, "cannot read %s: %s", in->name, hy_strerror(rc));
    else if (hy_buf_append(&in->text, "", 0) < 0) /* a NUL-terminated empty text */
        rc = HY_ENOMEM;
    return rc;
}

/* Decodes and validates one input; prints every problem. Returns the number
 * of resources, or a negative code. */
static int check_input(struct hy_cli *cli, const struct input *in)
{
    struct hy_docs docs;
    struct hy_diag diag = {0};
    int rc = hy_codec_decode_resources(in->name, in->text.data, in->text.len, NULL, &docs, &diag);
    if (rc == 0 && !hy_docs_validate(&docs, &diag))
        rc = HY_EINVAL;
    char line[1024];
    for (size_t i = 0; i < diag.n; i++)
        hy_cli_error(cli, "%s", hy_diag_format(&diag, i, line, sizeof(line)));
    if (rc == 0 && docs.n == 0) {
        hy_cli_error(cli, "%s: no resources in it", in->name);
        rc = HY_EINVAL;
    }
    if (rc == 0)
        rc = (int)docs.n;
    hy_docs_fini(&docs);
    hy_diag_fini(&diag);
    return rc;
}

static bool looks_json(const struct hy_buf *text)
{
    size_t i = strspn(text->data, " \t\r\n");
    return text->data[i] == '{';
}

/* A dry run's "changes": the Dataplanes whose enforced policies the write
 * would change, one line each, then what changes. */
static void print_changes(struct hy_cli *cli, const struct hy_json *changes)
{
    size_t n = changes && changes->kind == HY_JSON_ARRAY ? changes->n : 0;
    if (!changes || changes->kind != HY_JSON_ARRAY) {
        fprintf(cli->out, "(the server did not say which dataplanes would change)\n");
        return;
    }
    fprintf(cli->out, "%zu dataplane%s would change%s", n, n == 1 ? "" : "s", n ? ": " : "\n");
    for (size_t i = 0; i < n; i++) {
        const char *dp = hy_json_get_str(changes->items[i], "dataplane");
        fprintf(cli->out, "%s%s", i ? ", " : "", dp ? dp : "?");
    }
    if (n)
        fprintf(cli->out, "\n");
    for (size_t i = 0; i < n; i++) {
        const char *dp = hy_json_get_str(changes->items[i], "dataplane");
        const struct hy_json *c = hy_json_get(changes->items[i], "changes");
        for (size_t k = 0; c && c->kind == HY_JSON_ARRAY && k < c->n; k++)
            if (c->items[k]->value)
                fprintf(cli->out, "  %s: %s\n", dp ? dp : "?", c->items[k]->value);
    }
}

static int apply_one(struct hy_cli *cli, const struct input *in, bool dry_run)
{
    const struct hy_httpc_header h[] = {
        {"Content-Type", looks_json(&in->text) ? "application/json" : "application/yaml"},
        {"Hypha-Source", in->name},
    };
    struct hy_httpc_response resp;
    int rc = hy_api_call(cli, "POST", dry_run ? "/_apply?dryRun=true" : "/_apply", h, 2,
                         in->text.data, in->text.len, &resp);
    if (rc < 0)
        return rc;
    struct hy_json *j;
    if ((rc = hy_api_parse(cli, &resp, &j)) == 0) {
        /* what was accepted but is not enforced yet: said, as kubectl and
         * kumactl say it */
        const struct hy_json *warnings = hy_json_get(j, "warnings");
        for (size_t i = 0; warnings && warnings->kind == HY_JSON_ARRAY && i < warnings->n; i++)
            if (warnings->items[i]->value)
                fprintf(cli->err, "Warning: %s\n", warnings->items[i]->value);
        const struct hy_json *results = hy_json_get(j, "results");
        for (size_t i = 0; results && results->kind == HY_JSON_ARRAY && i < results->n; i++) {
            const struct hy_json *r = results->items[i];
            const char *type = hy_json_get_str(r, "type"), *name = hy_json_get_str(r, "name");
            const char *what = hy_json_get_str(r, "result");
            char done[64];
            snprintf(done, sizeof(done), "%s%s", what ? what : "applied",
                     dry_run ? " (dry run)" : "");
            hy_cmd_print_done(cli, type ? type : "?", name ? name : "?", done);
        }
        if (dry_run)
            print_changes(cli, hy_json_get(j, "changes"));
        const char *untried = hy_json_get_str(j, "callersNotTried");
        if (untried)
            fprintf(cli->out,
                    "Note: at each inbound only the mesh's first 100 dataplanes were tried "
                    "as callers; %s more were not, and a change for them is not listed\n",
                    untried);
        hy_json_free(j);
    }
    hy_httpc_response_fini(&resp);
    return rc;
}

int hy_cmd_apply(struct hy_cli *cli)
{
    size_t n = 0, nstdin = 0;
    while (hy_args_nth(&cli->args, "file", n)) {
        if (strcmp(hy_args_nth(&cli->args, "file", n), "-") == 0)
            nstdin++;
        n++;
    }
    if (n == 0)
        return hy_cli_usage(cli, "nothing to apply: give -f FILE (or -f - for standard input)");
    if (nstdin > 1)
        return hy_cli_usage(cli, "-f - (standard input) can be given once");
    struct input *in = calloc(n, sizeof(*in));
    if (!in) {
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    int rc = 0;
    /* every file is read and checked before anything is sent */
    for (size_t i = 0; i < n; i++) {
        int r = read_input(cli, hy_args_nth(&cli->args, "file", i), &in[i]);
        if (r == 0)
            r = check_input(cli, &in[i]);
        if (r < 0 && rc == 0)
            rc = r;
    }
    if (rc == 0)
        rc = hy_cli_connect(cli);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(cli, &in[i], hy_args_on(&cli->args, "dry-run"));
    for (size_t i = 0; i < n; i++)
        hy_buf_fini(&in[i].text);
    free(in);
    return rc;
}
