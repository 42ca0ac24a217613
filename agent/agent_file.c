/* The file a sidecar (Dataplane) or an ingress (ZoneIngress) presents:
 * Kuma's universal shape, with {{ NAME }} placeholders filled from
 * --dataplane-var NAME=VALUE before it is decoded and validated like any
 * resource; and the token file beside it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "agent_file.h"
#include "log.h"
#include "error.h"
#include "poison.h"

#define MAX_VAR_NAME 128 /* bytes of a placeholder name */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* The value of variable name[0..n) in vars, or NULL; *index its position. */
static const char *lookup(const struct hy_strings *vars, const char *name, size_t n, size_t *index)
{
    for (size_t i = 0; vars && i < vars->n; i++) {
        const char *eq = strchr(vars->v[i], '=');
        if (eq && (size_t)(eq - vars->v[i]) == n && memcmp(vars->v[i], name, n) == 0) {
            *index = i;
            return eq + 1;
        }
    }
    return NULL;
}

/* Every variable is NAME=VALUE with a name a placeholder can hold, given
 * once, and a single-line value. */
static bool check_vars(const struct hy_strings *vars, struct hy_diag *diag)
{
    size_t before = diag->n;
    for (size_t i = 0; vars && i < vars->n; i++) {
        const char *v = vars->v[i], *eq = strchr(v, '=');
        size_t n = eq ? (size_t)(eq - v) : 0, j;
        bool ok = eq && n > 0 && n <= MAX_VAR_NAME;
        for (size_t k = 0; ok && k < n; k++)
            ok = name_char(v[k]);
        if (!ok)
            hy_diag_add(diag, 0, 0, "",
                        "--dataplane-var \"%.200s\": expected NAME=VALUE, NAME of "
                        "letters, digits, '_', '-' and '.'",
                        v);
        else if (lookup(vars, v, n, &j) && j < i)
            hy_diag_add(diag, 0, 0, "", "--dataplane-var %.*s is given twice", (int)n, v);
        else if (strpbrk(eq + 1, "\r\n"))
            hy_diag_add(diag, 0, 0, "", "--dataplane-var %.*s: the value must be a single line",
                        (int)n, v);
    }
    return diag->n == before;
}

int hy_agent_file_expand(const char *text, size_t len, const struct hy_strings *vars, char **out,
                         size_t *out_len, struct hy_diag *diag)
{
    struct hy_buf b = {0};
    size_t errors = diag->n;
    int rc = 0, line = 1, col = 1;
    *out = NULL;
    if (!check_vars(vars, diag))
        return HY_EINVAL;
    size_t i = 0, copied = 0;
    while (i < len && rc == 0) {
        if (text[i] == '\n') {
            line++;
            col = 1;
            i++;
            continue;
        }
        if (text[i] != '{' || i + 1 >= len || text[i + 1] != '{') {
            col++;
            i++;
            continue;
        }
        /* "{{", blanks, a name, blanks, "}}" */
        size_t p = i + 2, name, n;
        while (p < len && (text[p] == ' ' || text[p] == '\t'))
            p++;
        for (name = p; p < len && name_char(text[p]); p++)
            ;
        n = p - name;
        while (p < len && (text[p] == ' ' || text[p] == '\t'))
            p++;
        if (n == 0 || n > MAX_VAR_NAME || p + 1 >= len || text[p] != '}' || text[p + 1] != '}') {
            size_t shown = strcspn(text + i, "\n");
            hy_diag_add(diag, line, col, "",
                        "\"%.*s\" is not a placeholder: write {{ NAME }}, NAME of letters, digits, "
                        "'_', '-' and '.'",
                        (int)(shown > 40 ? 40 : shown), text + i);
            col += 2;
            i += 2;
            continue;
        }
        size_t index;
        const char *value = lookup(vars, text + name, n, &index);
        if (!value) {
            hy_diag_add(diag, line, col, "",
                        "unknown placeholder {{ %.*s }}: give its value with --dataplane-var "
                        "%.*s=VALUE",
                        (int)n, text + name, (int)n, text + name);
        } else if ((rc = hy_buf_append(&b, text + copied, i - copied)) == 0 &&
                   (rc = hy_buf_puts(&b, value)) == 0) {
            copied = p + 2;
        }
        col += (int)(p + 2 - i);
        i = p + 2;
    }
    if (rc == 0 && diag->n > errors)
        rc = HY_EINVAL;
    if (rc == 0)
        rc = hy_buf_append(&b, text + copied, len - copied);
    if (rc == 0 && !b.data) /* empty text: still a string */
        rc = hy_buf_append(&b, "", 0);
    if (rc < 0) {
        hy_buf_fini(&b);
        return rc;
    }
    *out = b.data;
    *out_len = b.len;
    return 0;
}

/* Logs the variables text never names (probably a typo in a name). */
static void warn_unused(const char *source, const char *text, const struct hy_strings *vars)
{
    for (size_t i = 0; vars && i < vars->n; i++) {
        size_t n = strcspn(vars->v[i], "="), used = 0;
        for (const char *p = strstr(text, "{{"); p && !used; p = strstr(p + 2, "{{")) {
            const char *q = p + 2 + strspn(p + 2, " \t");
            used = strncmp(q, vars->v[i], n) == 0 && !name_char(q[n]);
        }
        if (!used)
            hy_log(HY_LOG_WARN, "dp", "%s: --dataplane-var %.*s is not used: no {{ %.*s }} in it",
                   source, (int)n, vars->v[i], (int)n, vars->v[i]);
    }
}

int hy_agent_file_parse(const char *source, const char *text, size_t len,
                        const struct hy_strings *vars, struct hy_agent_file *out,
                        struct hy_diag *diag)
{
    return hy_agent_file_parse_type(source, text, len, vars, "Dataplane", out, diag);
}

int hy_agent_file_parse_type(const char *source, const char *text, size_t len,
                             const struct hy_strings *vars, const char *type,
                             struct hy_agent_file *out, struct hy_diag *diag)
{
    struct hy_docs docs = {0};
    char *expanded;
    size_t elen;
    memset(out, 0, sizeof(*out));
    diag->source = source;
    int rc = hy_agent_file_expand(text, len, vars, &expanded, &elen, diag);
    if (rc < 0)
        return rc;
    rc = hy_codec_decode_resources(source, expanded, elen, NULL, &docs, diag);
    if (rc < 0)
        goto out_free_text;
    rc = HY_EINVAL;
    if (docs.n != 1) {
        hy_diag_add(diag, docs.n ? docs.v[1].line : 0, docs.n ? 1 : 0, "",
                    "expected one %s, found %zu documents", type, docs.n);
        goto out_free_docs;
    }
    struct hy_resource *r = docs.v[0].res;
    if (strcmp(r->type->name, type) != 0) {
        hy_diag_add(diag, docs.v[0].line, 1, "type", "expected %s, found %s", type, r->type->name);
        goto out_free_docs;
    }
    if (!hy_docs_validate(&docs, diag))
        goto out_free_docs;
    size_t plen;
    uint8_t *packed = hy_resource_pack(r, &plen);
    rc = HY_ENOMEM;
    if (!packed)
        goto out_free_docs;
    out->env = hypha__v1__envelope__unpack(NULL, plen, packed);
    free(packed);
    if (!out->env)
        goto out_free_docs;
    out->res = r;
    docs.v[0].res = NULL;
    warn_unused(source, text, vars);
    rc = 0;
out_free_docs:
    hy_docs_fini(&docs);
out_free_text:
    free(expanded);
    return rc;
}

int hy_agent_file_load(const char *path, const struct hy_strings *vars, struct hy_agent_file *out,
                       struct hy_diag *diag)
{
    return hy_agent_file_load_type(path, vars, "Dataplane", out, diag);
}

int hy_agent_file_load_type(const char *path, const struct hy_strings *vars, const char *type,
                            struct hy_agent_file *out, struct hy_diag *diag)
{
    struct hy_buf text = {0};
    char chunk[4096];
    size_t n;
    int rc = 0;
    memset(out, 0, sizeof(*out));
    diag->source = path;
    FILE *f = fopen(path, "re");
    if (!f) {
        rc = -errno;
        hy_diag_add(diag, 0, 0, "", "cannot read the %s file: %s", type, strerror(-rc));
        return rc;
    }
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (text.len + n > HY_CODEC_MAX_BYTES) {
            hy_diag_add(diag, 0, 0, "", "larger than %u bytes", HY_CODEC_MAX_BYTES);
            rc = HY_ETOOBIG;
        } else {
            rc = hy_buf_append(&text, chunk, n);
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = -EIO;
        hy_diag_add(diag, 0, 0, "", "cannot read the %s file: %s", type, strerror(EIO));
    }
    fclose(f);
    if (rc == 0)
        rc = hy_agent_file_parse_type(path, text.data ? text.data : "", text.len, vars, type, out,
                                      diag);
    hy_buf_fini(&text);
    return rc;
}

void hy_agent_file_fini(struct hy_agent_file *f)
{
    hy_resource_free(f->res);
    if (f->env)
        hypha__v1__envelope__free_unpacked(f->env, NULL);
    memset(f, 0, sizeof(*f));
}

char *hy_agent_read_token(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = calloc(1, 16384);
    size_t n = buf ? fread(buf, 1, 16383, f) : 0;
    int err = !buf ? ENOMEM : ferror(f) ? EIO : 0;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    while (n && strchr(" \t\r\n", buf[n - 1]))
        buf[--n] = '\0';
    size_t lead = strspn(buf, " \t\r\n");
    memmove(buf, buf + lead, n - lead + 1);
    if (!buf[0]) {
        free(buf);
        errno = ENODATA;
        return NULL;
    }
    return buf;
}
