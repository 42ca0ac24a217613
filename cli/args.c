/* hy_args: parsing a command line against the commands' flag tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "error.h"
#include "poison.h"

const struct hy_flag *hy_flag_find(const struct hy_flag *const tables[], const char *name)
{
    for (size_t t = 0; tables[t]; t++)
        for (const struct hy_flag *f = tables[t]; f->name; f++)
            if (strcmp(f->name, name) == 0)
                return f;
    return NULL;
}

static const struct hy_flag *find_short(const struct hy_flag *const tables[], char c)
{
    for (size_t t = 0; tables[t]; t++)
        for (const struct hy_flag *f = tables[t]; f->name; f++)
            if (f->short_name == c)
                return f;
    return NULL;
}

static int push_flag(struct hy_args *a, const struct hy_flag *f, const char *value)
{
    struct hy_arg *s = realloc(a->set, (a->nset + 1) * sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    a->set = s;
    a->set[a->nset++] = (struct hy_arg){f, value};
    return 0;
}

static int take_value(const struct hy_flag *f, const char *shown, const char *attached, int argc,
                      char *const argv[], int *i, const char **value, char *err, size_t errsize)
{
    if (!f->metavar) {
        if (!attached) {
            *value = "true";
        } else if (strcmp(attached, "true") == 0 || strcmp(attached, "false") == 0) {
            *value = attached;
        } else {
            snprintf(err, errsize, "flag %s takes no value (or =true, =false), got \"%s\"", shown,
                     attached);
            return HY_EINVAL;
        }
        return 0;
    }
    if (attached) {
        *value = attached;
        return 0;
    }
    if (*i + 1 >= argc) {
        snprintf(err, errsize, "flag %s needs a value (%s)", shown, f->metavar);
        return HY_EINVAL;
    }
    *value = argv[++*i];
    return 0;
}

int hy_args_parse(int argc, char *const argv[], const struct hy_flag *const tables[],
                  struct hy_args *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof(*out));
    if (argc > 0 && !(out->pos = calloc((size_t)argc, sizeof(*out->pos))))
        return HY_ENOMEM;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (only_pos || s[0] != '-' || s[1] == '\0') {
            out->pos[out->npos++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_pos = true;
            continue;
        }
        const struct hy_flag *f;
        const char *attached = NULL;
        char shown[128];
        if (s[1] == '-') {
            const char *eq = strchr(s + 2, '=');
            size_t n = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
            snprintf(shown, sizeof(shown), "--%.*s", (int)n, s + 2);
            if (eq)
                attached = eq + 1;
            f = hy_flag_find(tables, shown + 2);
        } else {
            snprintf(shown, sizeof(shown), "-%c", s[1]);
            f = find_short(tables, s[1]);
            if (s[2])
                attached = s[2] == '=' ? s + 3 : s + 2;
        }
        if (!f) {
            snprintf(err, errsize, "unknown flag %s", shown);
            return HY_EINVAL;
        }
        const char *value;
        int rc = take_value(f, shown, attached, argc, argv, &i, &value, err, errsize);
        if (rc == 0)
            rc = push_flag(out, f, value);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void hy_args_fini(struct hy_args *a)
{
    free(a->pos);
    free(a->set);
    memset(a, 0, sizeof(*a));
}

const char *hy_args_get(const struct hy_args *a, const char *name)
{
    for (size_t i = a->nset; i-- > 0;)
        if (strcmp(a->set[i].flag->name, name) == 0)
            return a->set[i].value;
    return NULL;
}

bool hy_args_on(const struct hy_args *a, const char *name)
{
    const char *v = hy_args_get(a, name);
    return v && strcmp(v, "false") != 0;
}

const char *hy_args_nth(const struct hy_args *a, const char *name, size_t n)
{
    for (size_t i = 0; i < a->nset; i++)
        if (strcmp(a->set[i].flag->name, name) == 0 && n-- == 0)
            return a->set[i].value;
    return NULL;
}
