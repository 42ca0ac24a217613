/* Command-line flags as data: every command lists its flags in a table that
 * parsing, --help and the bash completion script all read. */
#ifndef HY_CLI_ARGS_H
#define HY_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

struct hy_flag {
    const char *name;     /* long name without dashes: "mesh"; NULL ends a table */
    char short_name;      /* 'm', or 0 */
    const char *metavar;  /* "MESH" for a flag that takes a value; NULL for a switch */
    const char *help;     /* one line for --help */
    const char *complete; /* bash completion of the value: "table yaml json", "@file" */
};

struct hy_arg {
    const struct hy_flag *flag; /* borrowed from the tables */
    const char *value;          /* borrowed from argv; "true"/"false" for switches */
};

struct hy_args {
    const char **pos; /* owned array of borrowed argv strings */
    size_t npos;
    struct hy_arg *set; /* owned; in command-line order */
    size_t nset;
};

/* Parses argv[0..argc) (no program name) against the flag tables, a
 * NULL-terminated list searched in order. Accepts --name VALUE, --name=VALUE,
 * -m VALUE, -mVALUE, --switch, --switch=true|false, "-" as an argument and
 * "--" before arguments that start with a dash. Returns 0, HY_EINVAL with a
 * message in err (unknown flag, missing value), or HY_ENOMEM; *out is
 * freed with hy_args_fini in every case. */
int hy_args_parse(int argc, char *const argv[], const struct hy_flag *const tables[],
                  struct hy_args *out, char *err, size_t errsize);
void hy_args_fini(struct hy_args *a);

/* The last value given for the flag called name, or NULL. */
const char *hy_args_get(const struct hy_args *a, const char *name);
/* True when the switch was given (and not as --name=false). */
bool hy_args_on(const struct hy_args *a, const char *name);
/* The i-th value of a repeatable flag (NULL past the end). */
const char *hy_args_nth(const struct hy_args *a, const char *name, size_t i);

/* Finds a flag by long name in a NULL-terminated list of tables. */
const struct hy_flag *hy_flag_find(const struct hy_flag *const tables[], const char *name);

#endif
