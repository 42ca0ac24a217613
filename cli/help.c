/* hy_help: usage and flag listings for --help, from the command table. */
#include <stdio.h>
#include <string.h>

#include "help.h"
#include "poison.h"

static size_t flag_width(const struct hy_flag *f)
{
    return 10 + strlen(f->name) + (f->metavar ? strlen(f->metavar) + 1 : 0);
}

/* Prints flags under title, leaving out those that skip (the command's own
 * table) redefines. */
static void print_flags(FILE *f, const char *title, const struct hy_flag *flags,
                        const struct hy_flag *skip, size_t w)
{
    if (!flags->name)
        return;
    fprintf(f, "\n%s:\n", title);
    for (const struct hy_flag *fl = flags; fl->name; fl++) {
        const struct hy_flag *const tables[] = {skip, NULL};
        if (skip && hy_flag_find(tables, fl->name))
            continue;
        char left[160];
        snprintf(left, sizeof(left), "  %c%c%c --%s%s%s", fl->short_name ? '-' : ' ',
                 fl->short_name ? fl->short_name : ' ', fl->short_name ? ',' : ' ', fl->name,
                 fl->metavar ? " " : "", fl->metavar ? fl->metavar : "");
        fprintf(f, "%-*s%s\n", (int)w, left, fl->help);
    }
}

static size_t widest(const struct hy_flag *a, const struct hy_flag *b)
{
    size_t w = 0;
    for (const struct hy_flag *fl = a; fl && fl->name; fl++)
        if (flag_width(fl) > w)
            w = flag_width(fl);
    for (const struct hy_flag *fl = b; fl && fl->name; fl++)
        if (flag_width(fl) > w)
            w = flag_width(fl);
    return w + 2;
}

static bool under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return n == 0 || (strncmp(path, prefix, n) == 0 && (path[n] == ' ' || path[n] == '\0'));
}

void hy_help_group(FILE *f, const char *prefix)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    if (!prefix[0])
        fprintf(f, "hyphactl drives Hypha, the multi-zone service mesh.\n\n");
    fprintf(f, "Usage:\n  hyphactl %s%sCOMMAND [flags]\n\nCommands:\n", prefix,
            prefix[0] ? " " : "");
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(cmds[i].path) + (cmds[i].synopsis ? strlen(cmds[i].synopsis) + 1 : 0);
        if (under(cmds[i].path, prefix) && len > w)
            w = len;
    }
    for (size_t i = 0; i < n; i++) {
        if (!under(cmds[i].path, prefix))
            continue;
        char left[160];
        snprintf(left, sizeof(left), "%s%s%s", cmds[i].path, cmds[i].synopsis ? " " : "",
                 cmds[i].synopsis ? cmds[i].synopsis : "");
        fprintf(f, "  %-*s%s\n", (int)w + 3, left, cmds[i].summary);
    }
    print_flags(f, "Global flags", hy_cli_global_flags, NULL, widest(hy_cli_global_flags, NULL));
    fprintf(f, "\nRun 'hyphactl COMMAND --help' for the flags of a command.\n");
}

void hy_help_command(FILE *f, const struct hy_cmd *cmd)
{
    fprintf(f, "%s\n\nUsage:\n  hyphactl %s%s%s [flags]\n", cmd->summary, cmd->path,
            cmd->synopsis ? " " : "", cmd->synopsis ? cmd->synopsis : "");
    if (cmd->help)
        fprintf(f, "\n%s\n", cmd->help);
    size_t w = widest(cmd->flags, hy_cli_global_flags);
    print_flags(f, "Flags", cmd->flags, NULL, w);
    print_flags(f, "Global flags", hy_cli_global_flags, cmd->flags, w);
}
