/* hy_cli_main: finds the command a command line names, parses its flags,
 * checks its arguments, runs it and turns the outcome into an exit status. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "error.h"
#include "help.h"
#include "poison.h"

void hy_cli_error(struct hy_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", cli->err);
    vfprintf(cli->err, fmt, ap);
    fputc('\n', cli->err);
    va_end(ap);
}

int hy_cli_usage(struct hy_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", cli->err);
    vfprintf(cli->err, fmt, ap);
    fputc('\n', cli->err);
    va_end(ap);
    fprintf(cli->err, "Run 'hyphactl%s%s --help' for usage.\n", cli->cmd ? " " : "",
            cli->cmd ? cli->cmd->path : "");
    cli->usage_error = true;
    return HY_EINVAL;
}

/* The command whose path is exactly words, or NULL. */
static const struct hy_cmd *find_cmd(const char *words)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(cmds[i].path, words) == 0)
            return &cmds[i];
    return NULL;
}

/* True when words names a command or a group of them ("config"). */
static bool names_something(const char *words)
{
    size_t n, len = strlen(words);
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    for (size_t i = 0; i < n; i++)
        if (strncmp(cmds[i].path, words, len) == 0 &&
            (cmds[i].path[len] == '\0' || cmds[i].path[len] == ' '))
            return true;
    return false;
}

static bool global_takes_value(const char *s)
{
    const struct hy_flag *const tables[] = {hy_cli_global_flags, NULL};
    const struct hy_flag *f = NULL;
    if (s[1] == '-' && !strchr(s, '='))
        f = hy_flag_find(tables, s + 2);
    else if (s[1] != '-' && s[2] == '\0')
        for (const struct hy_flag *g = hy_cli_global_flags; g->name; g++)
            if (g->short_name == s[1])
                f = g;
    return f && f->metavar;
}

/* Splits argv into the words that name the command (into words) and the
 * rest (flags and arguments, into rest; its strings borrowed). Global flags
 * may come before the command words. */
static void split(int argc, char **argv, char *words, size_t wsize, char **rest, int *nrest)
{
    bool matching = true;
    words[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (matching && s[0] == '-' && strcmp(s, "-") != 0) {
            if (strcmp(s, "--") == 0) {
                matching = false;
            } else if (global_takes_value(s) && i + 1 < argc) {
                rest[(*nrest)++] = argv[i++];
            }
            rest[(*nrest)++] = argv[i];
            continue;
        }
        if (matching) {
            char candidate[256];
            snprintf(candidate, sizeof(candidate), "%s%s%s", words, words[0] ? " " : "", s);
            if (strlen(candidate) < wsize && names_something(candidate)) {
                snprintf(words, wsize, "%s", candidate);
                continue;
            }
            matching = false;
        }
        rest[(*nrest)++] = argv[i];
    }
}

static bool wants_help(int n, char **v)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i], "--") == 0)
            return false;
        if (strcmp(v[i], "--help") == 0 || strcmp(v[i], "-h") == 0)
            return true;
    }
    return false;
}

/* No command named: a group's help, or an unknown command. */
static int no_command(struct hy_cli *cli, const char *words, int nrest, char **rest)
{
    if (wants_help(nrest, rest)) {
        hy_help_group(cli->out, words);
        return 0;
    }
    const struct hy_flag *const tables[] = {hy_cli_global_flags, NULL};
    char why[256];
    int rc = hy_args_parse(nrest, rest, tables, &cli->args, why, sizeof(why));
    if (rc == 0 && cli->args.npos > 0)
        return hy_cli_usage(cli, "unknown command \"%s\" for \"hyphactl%s%s\"", cli->args.pos[0],
                            words[0] ? " " : "", words);
    if (rc == HY_EINVAL)
        return hy_cli_usage(cli, "%s", why);
    hy_help_group(cli->err, words);
    cli->usage_error = true;
    return HY_EINVAL;
}

static int run(struct hy_cli *cli, int argc, char **argv)
{
    char words[256];
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest) {
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    int nrest = 0, rc;
    split(argc, argv, words, sizeof(words), rest, &nrest);
    cli->cmd = find_cmd(words);
    if (!cli->cmd) {
        rc = no_command(cli, words, nrest, rest);
        goto out_free_rest;
    }
    const struct hy_flag *const tables[] = {cli->cmd->flags, hy_cli_global_flags, NULL};
    char why[256];
    if ((rc = hy_args_parse(nrest, rest, tables, &cli->args, why, sizeof(why))) < 0) {
        if (rc == HY_EINVAL)
            hy_cli_usage(cli, "%s", why);
        else
            hy_cli_error(cli, "out of memory");
        goto out_free_rest;
    }
    if (hy_args_on(&cli->args, "help")) {
        hy_help_command(cli->out, cli->cmd);
        goto out_free_rest;
    }
    const struct hy_cmd *c = cli->cmd;
    if ((int)cli->args.npos < c->min_args) {
        rc = hy_cli_usage(cli, "missing arguments: hyphactl %s %s", c->path, c->synopsis);
        goto out_free_rest;
    }
    if ((int)cli->args.npos > c->max_args) {
        rc = hy_cli_usage(cli, "unexpected argument \"%s\"", cli->args.pos[c->max_args]);
        goto out_free_rest;
    }
    rc = c->run(cli);
out_free_rest:
    free(rest);
    return rc;
}

int hy_cli_run(struct hy_cli *cli, int argc, char **argv)
{
    int rc = run(cli, argc, argv);
    hy_args_fini(&cli->args);
    hy_cliconfig_fini(&cli->cfg);
    cli->cfg_loaded = false;
    fflush(cli->out);
    fflush(cli->err);
    if (rc == 0)
        return 0;
    return cli->usage_error ? 2 : 1;
}

int hy_cli_main(int argc, char **argv, FILE *in, FILE *out, FILE *err)
{
    struct hy_cli cli = {.in = in, .out = out, .err = err, .now = (int64_t)time(NULL)};
    return hy_cli_run(&cli, argc, argv);
}
