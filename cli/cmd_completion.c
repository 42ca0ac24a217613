/* hyphactl completion bash: a bash completion script generated from the
 * command table and the resource-type registry, so it never falls behind
 * either. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "resource.h"
#include "poison.h"

/* Calls fn for each distinct prefix of the command paths (whole words:
 * "config", "config control-planes", "config control-planes add"). */
static void each_prefix(void (*fn)(FILE *f, const char *prefix, size_t len, bool *first), FILE *f)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const char *p = cmds[i].path;
        for (size_t len = 0;; len++) {
            if (p[len] != ' ' && p[len] != '\0')
                continue;
            bool seen = false; /* by an earlier command */
            for (size_t j = 0; j < i && !seen; j++)
                seen = strncmp(cmds[j].path, p, len) == 0 &&
                       (cmds[j].path[len] == ' ' || cmds[j].path[len] == '\0');
            if (!seen)
                fn(f, p, len, &first);
            if (p[len] == '\0')
                break;
        }
    }
}

static void print_pattern(FILE *f, const char *prefix, size_t len, bool *first)
{
    fprintf(f, "%s\"%.*s\"", *first ? "" : "|", (int)len, prefix);
    *first = false;
}

/* The words that can follow path ("" for the top level). */
static void next_words(FILE *f, const char *path)
{
    size_t n, plen = strlen(path);
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const char *p = cmds[i].path;
        if (plen && (strncmp(p, path, plen) != 0 || p[plen] != ' '))
            continue;
        const char *w = p + plen + (plen ? 1 : 0);
        size_t wl = strcspn(w, " ");
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *q = cmds[j].path;
            if (plen && (strncmp(q, path, plen) != 0 || q[plen] != ' '))
                continue;
            const char *v = q + plen + (plen ? 1 : 0);
            seen = strcspn(v, " ") == wl && strncmp(v, w, wl) == 0;
        }
        if (!seen)
            fprintf(f, "%s%.*s", first ? "" : " ", (int)wl, w);
        first = false;
    }
}

static void print_group_case(FILE *f, const char *prefix, size_t len, bool *first)
{
    (void)first;
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    for (size_t i = 0; i < n; i++)
        if (strlen(cmds[i].path) == len && strncmp(cmds[i].path, prefix, len) == 0)
            return; /* a command, not a group */
    char path[256];
    snprintf(path, sizeof(path), "%.*s", (int)len, prefix);
    fprintf(f, "        \"%s\") words=\"", path);
    next_words(f, path);
    fprintf(f, "\" ;;\n");
}

static void print_flag_words(FILE *f, const struct hy_flag *flags)
{
    for (const struct hy_flag *fl = flags; fl->name; fl++) {
        fprintf(f, " --%s", fl->name);
        if (fl->short_name)
            fprintf(f, " -%c", fl->short_name);
    }
}

struct seen {
    const char *names[128];
    size_t n;
};

/* True the first time name is offered (several commands share flags). */
static bool first_time(struct seen *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return false;
    if (s->n < sizeof(s->names) / sizeof(s->names[0]))
        s->names[s->n++] = name;
    return true;
}

/* Appends "|--name|-n" for every flag that takes a value (only those whose
 * value is a file name when files). */
static void print_value_flags(FILE *f, const struct hy_flag *flags, bool files, struct seen *s)
{
    for (const struct hy_flag *fl = flags; fl->name; fl++) {
        if (!fl->metavar || (files && !(fl->complete && strcmp(fl->complete, "@file") == 0)) ||
            !first_time(s, fl->name))
            continue;
        fprintf(f, "%s--%s", s->n == 1 ? "" : "|", fl->name);
        if (fl->short_name)
            fprintf(f, "|-%c", fl->short_name);
    }
}

static void print_all_value_flags(FILE *f, bool files)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    struct seen s = {.n = 0};
    print_value_flags(f, hy_cli_global_flags, files, &s);
    for (size_t i = 0; i < n; i++)
        print_value_flags(f, cmds[i].flags, files, &s);
    if (s.n == 0)
        fprintf(f, "--never-a-flag");
}

/* One case per flag whose values are a fixed list ("table yaml json"):
 * those values complete it. */
static void print_value_cases(FILE *f, const struct hy_flag *flags, struct seen *s)
{
    for (const struct hy_flag *fl = flags; fl->name; fl++) {
        if (!fl->metavar || !fl->complete || fl->complete[0] == '@' || !first_time(s, fl->name))
            continue;
        fprintf(f, "    ");
        if (fl->short_name)
            fprintf(f, "-%c|", fl->short_name);
        fprintf(f, "--%s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return ;;\n", fl->name,
                fl->complete);
    }
}

static void print_all_value_cases(FILE *f)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    struct seen s = {.n = 0};
    print_value_cases(f, hy_cli_global_flags, &s);
    for (size_t i = 0; i < n; i++)
        print_value_cases(f, cmds[i].flags, &s);
}

static void print_types(FILE *f)
{
    size_t n;
    const struct hy_rtype *t = hy_rtype_all(&n);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s%s", i ? " " : "", t[i].plural);
        if (t[i].short_name)
            fprintf(f, " %s", t[i].short_name);
    }
}

static void print_bash(FILE *f)
{
    size_t n;
    const struct hy_cmd *cmds = hy_cli_commands(&n);
    fprintf(f, "# bash completion for hyphactl, generated by 'hyphactl completion bash'.\n"
               "# Load it with: source <(hyphactl completion bash)\n"
               "_hyphactl()\n{\n"
               "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
               "    local path=\"\" nargs=0 words=\"\" w i\n"
               "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
               "        w=\"${COMP_WORDS[i]}\"\n"
               "        case \"$w\" in\n"
               "        --*=*) ;;\n"
               "        ");
    print_all_value_flags(f, false);
    fprintf(f, ") ((i++)) ;;\n"
               "        -*) ;;\n"
               "        *)\n"
               "            case \"${path:+$path }$w\" in\n"
               "            ");
    each_prefix(print_pattern, f);
    fprintf(f, ") [ $nargs -eq 0 ] && path=\"${path:+$path }$w\" || ((nargs++)) ;;\n"
               "            *) ((nargs++)) ;;\n"
               "            esac ;;\n"
               "        esac\n"
               "    done\n"
               "    case \"$prev\" in\n"
               "    ");
    print_all_value_flags(f, true);
    fprintf(f, ")\n        compopt -o filenames 2>/dev/null\n"
               "        COMPREPLY=($(compgen -f -- \"$cur\"))\n        return ;;\n");
    print_all_value_cases(f);
    fprintf(f, "    ");
    print_all_value_flags(f, false);
    fprintf(f, ") COMPREPLY=(); return ;;\n"
               "    esac\n"
               "    if [[ \"$cur\" == -* ]]; then\n"
               "        words=\"");
    print_flag_words(f, hy_cli_global_flags);
    fprintf(f, "\"\n        case \"$path\" in\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "        \"%s\") words+=\"", cmds[i].path);
        print_flag_words(f, cmds[i].flags);
        fprintf(f, "\" ;;\n");
    }
    fprintf(f, "        esac\n"
               "    else\n"
               "        case \"$path\" in\n"
               "        \"\") words=\"");
    next_words(f, "");
    fprintf(f, "\" ;;\n");
    each_prefix(print_group_case, f);
    for (size_t i = 0; i < n; i++) {
        if (!cmds[i].complete)
            continue;
        fprintf(f, "        \"%s\") [ $nargs -eq 0 ] && words=\"", cmds[i].path);
        if (strcmp(cmds[i].complete, "@types") == 0)
            print_types(f);
        else
            fprintf(f, "%s", cmds[i].complete);
        fprintf(f, "\" ;;\n");
    }
    fprintf(f, "        esac\n"
               "    fi\n"
               "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
               "}\n"
               "complete -F _hyphactl hyphactl\n");
}

int hy_cmd_completion(struct hy_cli *cli)
{
    const char *shell = cli->args.pos[0];
    if (strcmp(shell, "bash") != 0)
        return hy_cli_usage(cli, "unsupported shell \"%s\" (only bash)", shell);
    print_bash(cli->out);
    return 0;
}
