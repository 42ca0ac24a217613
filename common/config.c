/* One option table per binary: its flags, environment variables, config file
 * keys and --help, applied as defaults < file < environment < flags. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_tree.h"
#include "config_int.h"
#include "diag.h"
#include "error.h"
#include "poison.h"

#define FILE_MAX_DEPTH 16 /* nesting allowed in a config file */
#define MAX_KEY 256       /* bytes in a dotted config file key */

enum builtin { B_NONE = -1, B_CONFIG, B_HELP, B_VERSION };
static const char *const builtin_names[] = {"config", "help", "version"};

struct ctx {
    const struct hy_config_spec *spec;
    void *cfg;
    struct hy_config_result *res;
    const char *path; /* config file being read */
    int *set_line;    /* per option: line where the file set it, to catch repeats */
};

/* Records the message (the first error wins) and returns rc. */
__attribute__((format(printf, 3, 4))) static int fail(struct hy_config_result *res, int rc,
                                                      const char *fmt, ...)
{
    if (!res->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->error, sizeof(res->error), fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Edit distance ignoring case, for "did you mean"; SIZE_MAX for long input. */
static size_t distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            char ca = a[i - 1], cb = b[j - 1];
            if (ca >= 'A' && ca <= 'Z')
                ca = (char)(ca - 'A' + 'a');
            if (cb >= 'A' && cb <= 'Z')
                cb = (char)(cb - 'A' + 'a');
            size_t best = diag + (ca != cb);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Keeps cand as the suggestion when it is the closest yet and close enough. */
static void consider(const char *typed, size_t len, const char *cand, const char *suggest,
                     const char **best, size_t *best_d)
{
    if (!cand)
        return;
    size_t d = distance(typed, len, cand);
    if (d < *best_d && (d <= 2 || d * 3 <= strlen(cand))) {
        *best = suggest;
        *best_d = d;
    }
}

static const char *suggest_flag(const struct hy_config_spec *spec, const char *name, size_t len)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < spec->nopts; i++)
        consider(name, len, spec->opts[i].name, spec->opts[i].name, &best, &best_d);
    for (size_t i = 0; i < 3; i++)
        consider(name, len, builtin_names[i], builtin_names[i], &best, &best_d);
    return best;
}

/* Matches the file key, or its flag or variable spelled in the file. */
static const char *suggest_key(const struct hy_config_spec *spec, const char *key)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, len = strlen(key);
    for (size_t i = 0; i < spec->nopts; i++) {
        const struct hy_option *o = &spec->opts[i];
        if (!o->key)
            continue;
        consider(key, len, o->key, o->key, &best, &best_d);
        consider(key, len, o->name, o->key, &best, &best_d);
        consider(key, len, o->env, o->key, &best, &best_d);
    }
    return best;
}

static enum builtin find_builtin(const char *name, size_t len)
{
    for (int i = 0; i < 3; i++)
        if (strlen(builtin_names[i]) == len && memcmp(builtin_names[i], name, len) == 0)
            return (enum builtin)i;
    return B_NONE;
}

static const struct hy_option *find_flag(const struct hy_config_spec *spec, const char *name,
                                         size_t len)
{
    for (size_t i = 0; i < spec->nopts; i++)
        if (strlen(spec->opts[i].name) == len && memcmp(spec->opts[i].name, name, len) == 0)
            return &spec->opts[i];
    return NULL;
}

/* Catches table mistakes on the first run of any binary, not in the field. */
static int check_table(const struct hy_config_spec *spec, struct hy_config_result *res)
{
    for (size_t i = 0; i < spec->nopts; i++) {
        const struct hy_option *o = &spec->opts[i];
        if (!o->name || !o->name[0] || o->name[0] == '-' || strchr(o->name, '='))
            return fail(res, HY_EINVAL, "option table: row %zu has no usable flag name", i);
        if (find_builtin(o->name, strlen(o->name)) != B_NONE)
            return fail(res, HY_EINVAL, "option table: --%s is built in", o->name);
        if ((unsigned)o->type > HY_OPT_STRINGS)
            return fail(res, HY_EINVAL, "option table: --%s has an unknown type", o->name);
        for (size_t j = 0; j < i; j++) {
            const struct hy_option *p = &spec->opts[j];
            if (strcmp(o->name, p->name) == 0 || (o->env && p->env && !strcmp(o->env, p->env)) ||
                (o->key && p->key && !strcmp(o->key, p->key)))
                return fail(res, HY_EINVAL,
                            "option table: --%s and --%s share a flag, variable or key", p->name,
                            o->name);
        }
    }
    return 0;
}

/* ---- the config file ---- */

static bool is_prefix_of_key(const struct hy_config_spec *spec, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < spec->nopts; i++) {
        const char *k = spec->opts[i].key;
        if (k && strncmp(k, prefix, n) == 0 && k[n] == '.')
            return true;
    }
    return false;
}

/* A YAML list for a list option: its items replace what lower sources set. */
static int apply_list(struct ctx *c, const struct hy_option *o, const char *key,
                      const struct hy_node *seq)
{
    char why[HY_CONFIG_ERROR_MAX];
    int rc = hy_config_set(o, c->cfg, "", why, sizeof(why));
    for (size_t i = 0; i < seq->n && rc == 0; i++) {
        const struct hy_node *item = seq->items[i];
        if (item->kind != HY_NODE_SCALAR || hy_node_is_null(item))
            return fail(c->res, HY_EINVAL, "%s:%d:%d: %s[%zu]: expected a single value", c->path,
                        item->line, item->col, key, i);
        if ((rc = hy_config_add(o, c->cfg, item->value, why, sizeof(why))) < 0)
            return fail(c->res, rc, "%s:%d:%d: %s[%zu]: %s", c->path, item->line, item->col, key, i,
                        why);
    }
    return rc < 0 ? fail(c->res, rc, "%s: %s", key, why) : 0;
}

static int apply_map(struct ctx *c, const struct hy_node *map, const char *prefix)
{
    const struct hy_config_spec *spec = c->spec;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct hy_node *k = map->items[i], *v = map->items[i + 1];
        char key[MAX_KEY];
        if (k->kind != HY_NODE_SCALAR)
            return fail(c->res, HY_EINVAL, "%s:%d:%d: keys must be plain names", c->path, k->line,
                        k->col);
        int n = snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", k->value);
        const struct hy_option *o = NULL;
        if (n > 0 && (size_t)n < sizeof(key))
            for (size_t j = 0; j < spec->nopts && !o; j++)
                if (spec->opts[j].key && strcmp(spec->opts[j].key, key) == 0)
                    o = &spec->opts[j];
        if (o) {
            int *first = &c->set_line[o - spec->opts];
            if (*first)
                return fail(c->res, HY_EINVAL, "%s:%d:%d: %s is set twice (first on line %d)",
                            c->path, k->line, k->col, key, *first);
            *first = k->line;
            if (v->kind == HY_NODE_SEQ && o->type == HY_OPT_STRINGS) {
                int rc = apply_list(c, o, key, v);
                if (rc < 0)
                    return rc;
                continue;
            }
            if (v->kind != HY_NODE_SCALAR)
                return fail(c->res, HY_EINVAL, "%s:%d:%d: %s: expected a single value, not a %s",
                            c->path, v->line, v->col, key,
                            v->kind == HY_NODE_MAP ? "mapping" : "list");
            if (hy_node_is_null(v))
                continue;
            char why[HY_CONFIG_ERROR_MAX];
            int rc = hy_config_set(o, c->cfg, v->value, why, sizeof(why));
            if (rc < 0)
                return fail(c->res, rc, "%s:%d:%d: %s: %s", c->path, v->line, v->col, key, why);
        } else if (n > 0 && (size_t)n < sizeof(key) && is_prefix_of_key(spec, key)) {
            if (v->kind != HY_NODE_MAP && !hy_node_is_null(v))
                return fail(c->res, HY_EINVAL, "%s:%d:%d: %s: expected a mapping of settings",
                            c->path, v->line, v->col, key);
            int rc = v->kind == HY_NODE_MAP ? apply_map(c, v, key) : 0;
            if (rc < 0)
                return rc;
        } else {
            const char *hint = suggest_key(spec, key);
            return fail(c->res, HY_EINVAL, "%s:%d:%d: unknown key \"%s\"%s%s%s", c->path, k->line,
                        k->col, key, hint ? "; did you mean " : "", hint ? hint : "",
                        hint ? "?" : "");
        }
    }
    return 0;
}

/* Reads and applies the config file; source names where its path came from. */
static int load_file(struct ctx *c, const char *path, const char *source)
{
    struct hy_buf text = {0};
    struct hy_diag diag = {.source = path};
    struct hy_node **docs = NULL;
    size_t ndocs = 0;
    int rc;
    if (!*path)
        return fail(c->res, HY_EINVAL, "%s: empty file name", source);
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(c->res, -errno, "%s: cannot read \"%s\": %s", source, path, strerror(errno));
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= HY_CODEC_MAX_BYTES) {
        if ((rc = hy_buf_append(&text, chunk, n)) < 0) {
            fclose(f);
            fail(c->res, rc, "%s: out of memory", path);
            goto out_free_text;
        }
    }
    rc = ferror(f) ? -EIO : 0;
    fclose(f);
    if (rc < 0) {
        fail(c->res, rc, "%s: cannot read \"%s\": %s", source, path, strerror(-rc));
        goto out_free_text;
    }
    rc = hy_tree_parse(text.data ? text.data : "", text.len, HY_CODEC_MAX_BYTES, FILE_MAX_DEPTH,
                       &docs, &ndocs, &diag);
    if (rc < 0) {
        char line[HY_CONFIG_ERROR_MAX];
        fail(c->res, rc, "%s", diag.n ? hy_diag_format(&diag, 0, line, sizeof(line)) : path);
        goto out_free_diag;
    }
    c->path = path;
    c->set_line = calloc(c->spec->nopts + 1, sizeof(*c->set_line));
    if (!c->set_line) {
        rc = fail(c->res, HY_ENOMEM, "%s: out of memory", path);
        goto out_free_docs;
    }
    for (size_t i = 0; i < ndocs && rc == 0; i++) {
        const struct hy_node *root = docs[i];
        if (i > 0 && root)
            rc = fail(c->res, HY_EINVAL, "%s:%d:%d: expected one YAML document", path, root->line,
                      root->col);
        else if (root && !hy_node_is_null(root) && root->kind != HY_NODE_MAP)
            rc = fail(c->res, HY_EINVAL, "%s:%d:%d: expected a mapping of settings (key: value)",
                      path, root->line, root->col);
        else if (root && root->kind == HY_NODE_MAP)
            rc = apply_map(c, root, "");
    }
    free(c->set_line);
    c->set_line = NULL;
out_free_docs:
    hy_tree_free_docs(docs, ndocs);
out_free_diag:
    hy_diag_fini(&diag);
out_free_text:
    hy_buf_fini(&text);
    return rc;
}

/* ---- flags ---- */

struct flag {
    const struct hy_option *opt;
    const char *value;
};

/* Moves the positional arguments (pos, ascending indexes) to the end of
 * argv, keeping their order and the order of everything else. */
static void move_args_last(int argc, char **argv, const int *pos, int npos, char **tmp)
{
    int k = 0, p = 0;
    for (int i = 0; i < argc; i++) {
        if (p < npos && pos[p] == i)
            p++;
        else
            tmp[k++] = argv[i];
    }
    for (p = 0; p < npos; p++)
        tmp[k++] = argv[pos[p]];
    memcpy(argv, tmp, (size_t)argc * sizeof(*argv));
}

int hy_config_parse(const struct hy_config_spec *spec, void *cfg, int argc, char **argv,
                    struct hy_config_result *res)
{
    memset(res, 0, sizeof(*res));
    res->args = argv + (argc > 0 ? argc : 0);
    int rc = check_table(spec, res);
    if (rc < 0)
        return rc;
    size_t slots = argc > 0 ? (size_t)argc : 1;
    struct flag *flags = calloc(slots, sizeof(*flags));
    int *pos = calloc(slots, sizeof(*pos));
    char **tmp = calloc(slots, sizeof(*tmp));
    if (!flags || !pos || !tmp) {
        rc = fail(res, HY_ENOMEM, "out of memory");
        goto out_free;
    }

    /* Pass 1: read the command line, so --config and --help are known
     * before anything is applied. The first mistake is kept; scanning goes
     * on in case --help follows it. */
    int nflags = 0, npos = 0, rest = -1;
    const char *config_path = NULL;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || a[1] == '\0') { /* "-" alone is an argument (stdin) */
            if (spec->stop_at_args) {
                rest = i;
                break;
            }
            pos[npos++] = i;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = true;
            if (spec->stop_at_args) {
                rest = i + 1;
                break;
            }
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            res->help = true;
            continue;
        }
        if (a[1] != '-') {
            fail(res, HY_EINVAL, "unknown flag \"%s\": flags are spelled --name", a);
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        enum builtin b = find_builtin(name, len);
        const struct hy_option *o = b == B_NONE ? find_flag(spec, name, len) : NULL;
        if (b == B_HELP || b == B_VERSION) {
            if (eq)
                fail(res, HY_EINVAL, "--%s takes no value", builtin_names[b]);
            else
                *(b == B_HELP ? &res->help : &res->version) = true;
            continue;
        }
        if (b == B_NONE && !o) {
            const char *hint = suggest_flag(spec, name, len);
            fail(res, HY_EINVAL, "unknown flag \"--%.*s\"%s%s%s", (int)len, name,
                 hint ? "; did you mean --" : "", hint ? hint : "", hint ? "?" : "");
            continue;
        }
        const char *value;
        if (o && o->type == HY_OPT_BOOL)
            value = eq ? eq + 1 : "true";
        else if (eq)
            value = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            value = argv[++i];
        else {
            fail(res, HY_EINVAL, "--%.*s: missing value", (int)len, name);
            continue;
        }
        if (b == B_CONFIG)
            config_path = value;
        else
            flags[nflags++] = (struct flag){o, value};
    }
    if (rest >= 0) {
        res->args = argv + rest;
        res->nargs = argc - rest;
    } else if (npos > 0) {
        move_args_last(argc, argv, pos, npos, tmp);
        res->args = argv + argc - npos;
        res->nargs = npos;
    }
    if (res->help || res->version) {
        res->error[0] = '\0';
        rc = 0;
        goto out_free;
    }
    if (res->error[0]) {
        rc = HY_EINVAL;
        goto out_free;
    }
    if (res->nargs > 0 && !spec->args) {
        rc = fail(res, HY_EINVAL, "unexpected argument \"%s\": %s takes only flags (see --help)",
                  res->args[0], spec->program ? spec->program : "this program");
        goto out_free;
    }

    /* Pass 2: every source in order of precedence, lowest first. */
    char why[HY_CONFIG_ERROR_MAX];
    for (size_t i = 0; i < spec->nopts; i++) {
        const struct hy_option *o = &spec->opts[i];
        if (o->def && (rc = hy_config_set(o, cfg, o->def, why, sizeof(why))) < 0) {
            fail(res, rc, "default of --%s: %s", o->name, why);
            goto out_free;
        }
    }
    const char *source = "--config";
    if (!config_path && spec->config_env) {
        const char *e = getenv(spec->config_env);
        if (e && *e) {
            config_path = e;
            source = spec->config_env;
        }
    }
    if (config_path) {
        struct ctx c = {.spec = spec, .cfg = cfg, .res = res};
        res->config_file = config_path;
        if ((rc = load_file(&c, config_path, source)) < 0)
            goto out_free;
    }
    for (size_t i = 0; i < spec->nopts; i++) {
        const struct hy_option *o = &spec->opts[i];
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v && *v && (rc = hy_config_set(o, cfg, v, why, sizeof(why))) < 0) {
            fail(res, rc, "%s: %s", o->env, why);
            goto out_free;
        }
    }
    for (int i = 0; i < nflags; i++) {
        /* a list flag given again adds to what its first occurrence set */
        bool again = false;
        for (int j = 0; j < i && !again; j++)
            again = flags[j].opt == flags[i].opt;
        if ((rc = (again ? hy_config_add : hy_config_set)(flags[i].opt, cfg, flags[i].value, why,
                                                          sizeof(why))) < 0) {
            fail(res, rc, "--%s: %s", flags[i].opt->name, why);
            goto out_free;
        }
    }
    rc = 0;
out_free:
    free(tmp);
    free(pos);
    free(flags);
    return rc;
}

void hy_config_fini(const struct hy_config_spec *spec, void *cfg)
{
    for (size_t i = 0; i < spec->nopts; i++) {
        void *field = (char *)cfg + spec->opts[i].offset;
        if (spec->opts[i].type == HY_OPT_STRINGS) {
            hy_strings_fini(field);
        } else if (spec->opts[i].type == HY_OPT_STRING) {
            free(*(char **)field);
            *(char **)field = NULL;
        }
    }
}

/* ---- --help ---- */

enum { COL_FLAG, COL_ENV, COL_KEY, COL_DEFAULT, COL_HELP, NCOLS };
#define COLW 256 /* bytes per cell; longer text is cut */

static const char *metavar(enum hy_opt_type t)
{
    static const char *const names[] = {
        [HY_OPT_STRING] = " TEXT",
        [HY_OPT_INT] = " INT",
        [HY_OPT_UINT] = " N",
        [HY_OPT_BOOL] = "",
        [HY_OPT_DURATION] = " DURATION",
        [HY_OPT_SIZE] = " SIZE",
        [HY_OPT_LOG_LEVEL] = " LEVEL",
        [HY_OPT_ADDRESS] = " HOST:PORT",
        [HY_OPT_STRINGS] = " TEXT[,TEXT...]",
    };
    return (unsigned)t <= HY_OPT_STRINGS ? names[t] : "";
}

/* Appends one row, padding every column but the last to its width. */
static int put_row(struct hy_buf *out, char cols[NCOLS][COLW], const int *width)
{
    int rc = hy_buf_puts(out, "  ");
    for (int c = 0; c < NCOLS && rc == 0; c++)
        rc = hy_buf_printf(out, "%s%-*s", c ? "  " : "", c == NCOLS - 1 ? 0 : width[c], cols[c]);
    /* no trailing blanks when the last columns are empty */
    while (rc == 0 && out->len && out->data[out->len - 1] == ' ')
        out->data[--out->len] = '\0';
    return rc ? rc : hy_buf_puts(out, "\n");
}

/* Fills cols for row r: the options, then --config, --help and --version. */
static void fill_row(const struct hy_config_spec *spec, size_t r, char cols[NCOLS][COLW])
{
    static const char *const help[] = {"YAML configuration file (keys as listed here)",
                                       "print this help and exit", "print the version and exit"};
    if (r < spec->nopts) {
        const struct hy_option *o = &spec->opts[r];
        snprintf(cols[COL_FLAG], COLW, "--%s%s", o->name, metavar(o->type));
        snprintf(cols[COL_ENV], COLW, "%s", o->env ? o->env : "");
        snprintf(cols[COL_KEY], COLW, "%s", o->key ? o->key : "");
        snprintf(cols[COL_DEFAULT], COLW, "%s", !o->def ? "" : o->def[0] ? o->def : "\"\"");
        snprintf(cols[COL_HELP], COLW, "%s", o->help ? o->help : "");
        return;
    }
    r -= spec->nopts;
    snprintf(cols[COL_FLAG], COLW, "%s",
             r == B_CONFIG ? "--config FILE"
             : r == B_HELP ? "--help, -h"
                           : "--version");
    snprintf(cols[COL_ENV], COLW, "%s", r == B_CONFIG && spec->config_env ? spec->config_env : "");
    cols[COL_KEY][0] = cols[COL_DEFAULT][0] = '\0';
    snprintf(cols[COL_HELP], COLW, "%s", help[r]);
}

int hy_config_usage(const struct hy_config_spec *spec, struct hy_buf *out)
{
    char cols[NCOLS][COLW] = {"FLAG", "ENVIRONMENT", "FILE KEY", "DEFAULT", ""};
    int width[NCOLS] = {0};
    size_t nrows = spec->nopts + 3;
    for (size_t r = 0; r <= nrows; r++) {
        if (r > 0)
            fill_row(spec, r - 1, cols);
        for (int c = 0; c < NCOLS; c++)
            if ((int)strlen(cols[c]) > width[c])
                width[c] = (int)strlen(cols[c]);
    }
    const char *prog = spec->program ? spec->program : "program";
    int rc = hy_buf_printf(out, "Usage: %s [OPTIONS]%s%s\n", prog, spec->args ? " " : "",
                           spec->args ? spec->args : "");
    if (rc == 0 && spec->summary)
        rc = hy_buf_printf(out, "%s\n", spec->summary);
    if (rc == 0)
        rc = hy_buf_puts(out, "\nOptions (flags override the environment, which overrides the "
                              "config file):\n");
    char head[NCOLS][COLW] = {"FLAG", "ENVIRONMENT", "FILE KEY", "DEFAULT", ""};
    if (rc == 0)
        rc = put_row(out, head, width);
    for (size_t r = 0; r < nrows && rc == 0; r++) {
        fill_row(spec, r, cols);
        rc = put_row(out, cols, width);
    }
    return rc;
}

int hy_config_run_command(const struct hy_config_spec *spec, void *cfg, int argc, char **argv,
                          const char *command, const char *hint)
{
    struct hy_config_result res = {0};
    int rc = hy_config_parse(spec, cfg, argc, argv, &res);
    if (rc == 0 && command && !res.help && !res.version &&
        (res.nargs != 1 || strcmp(res.args[0], command))) {
        if (!res.nargs)
            snprintf(res.error, sizeof(res.error), "missing command: %s %s %s", spec->program,
                     command, hint ? hint : "");
        else if (strcmp(res.args[0], command))
            snprintf(res.error, sizeof(res.error), "unknown command \"%s\"; expected %s",
                     res.args[0], command);
        else
            snprintf(res.error, sizeof(res.error),
                     "unexpected argument \"%s\" after %s: everything else is a flag", res.args[1],
                     command);
        rc = -1;
    }
    if (rc == 0 && !res.help && !res.version)
        return -1;
    struct hy_buf out = {0};
    if (rc < 0)
        fprintf(stderr, "%s: %s\n(see %s --help)\n", spec->program, res.error, spec->program);
    else if (res.help && hy_config_usage(spec, &out) == 0)
        fputs(out.data, stdout);
    else if (res.version)
        printf("%s %s\n", spec->program, HYPHA_VERSION);
    hy_buf_fini(&out);
    hy_config_fini(spec, cfg);
    return rc < 0 ? 2 : 0;
}
