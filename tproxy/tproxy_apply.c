/* Installing, checking and removing the rule set in the current network
 * namespace: read it with iptables-save, change it with one
 * iptables-restore --noflush transaction per family, so a failure leaves
 * the tables as they were. Only chains named HYPHA_MESH_* and the rules
 * jumping to them are ever touched. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "tproxy.h"
#include "poison.h"

#define MAX_LINES 4096

/* Runs argv[0] (from PATH) with in on its stdin; collects stdout into out
 * and stderr into errout. Returns the exit status (0-255), or -errno when it
 * could not run. */
static int run_tool(char *const argv[], const char *in, struct hy_buf *out, struct hy_buf *errout)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    int rc = 0;
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        rc = -errno;
        goto out_close;
    }
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto out_close;
    }
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s (install Debian's iptables package)", argv[0],
                strerror(errno));
        _exit(127);
    }
    close(pin[0]), close(pout[1]), close(perr[1]);
    pin[0] = pout[1] = perr[1] = -1;
    /* The tools read all their input before writing much, but poll anyway
     * so neither side can block the other. */
    size_t inlen = in ? strlen(in) : 0, done = 0;
    if (inlen == 0)
        close(pin[1]), pin[1] = -1;
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[3] = {{pin[1], POLLOUT, 0}, {pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pin[1] >= 0 && p[0].revents) {
            ssize_t w = write(pin[1], in + done, inlen - done);
            if (w > 0)
                done += (size_t)w;
            if (w < 0 || done == inlen)
                close(pin[1]), pin[1] = -1;
        }
        for (int i = 1; i < 3; i++) {
            int *fd = i == 1 ? &pout[0] : &perr[0];
            if (*fd < 0 || !p[i].revents)
                continue;
            char buf[4096];
            ssize_t r = read(*fd, buf, sizeof(buf));
            if (r > 0)
                hy_buf_append(i == 1 ? out : errout, buf, (size_t)r);
            else if (r == 0 || errno != EINTR)
                close(*fd), *fd = -1;
        }
    }
    signal(SIGPIPE, old);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
out_close:
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0)
            close(pin[i]);
        if (pout[i] >= 0)
            close(pout[i]);
        if (perr[i] >= 0)
            close(perr[i]);
    }
    return rc;
}

/* Last line of a tool's stderr, for an error message. */
static const char *last_line(struct hy_buf *b)
{
    if (!b->data)
        return "no message";
    while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' '))
        b->data[--b->len] = '\0';
    char *nl = strrchr(b->data, '\n');
    /* iptables-restore ends with "Try `iptables-restore -h'...": the
     * reason is the line before. */
    if (nl && strstr(nl, "-h'")) {
        *nl = '\0';
        nl = strrchr(b->data, '\n');
    }
    return nl ? nl + 1 : b->data;
}

static int save_nat(int family, struct hy_buf *out, char *err, size_t errlen)
{
    char *argv[] = {(char *)hy_tproxy_tool(family, true), "-t", "nat", NULL};
    struct hy_buf e = {0};
    int rc = run_tool(argv, NULL, out, &e);
    if (rc != 0) {
        if (rc < 0)
            snprintf(err, errlen, "cannot run %s: %s", argv[0], hy_strerror(rc));
        else
            snprintf(err, errlen, "%s -t nat failed (exit %d): %s", argv[0], rc, last_line(&e));
        rc = rc < 0 ? rc : HY_EINVAL;
    }
    hy_buf_fini(&e);
    return rc;
}

static int restore(int family, const char *text, char *err, size_t errlen)
{
    char *argv[] = {(char *)hy_tproxy_tool(family, false), "-w", "--noflush", NULL};
    struct hy_buf o = {0}, e = {0};
    int rc = run_tool(argv, text, &o, &e);
    if (rc != 0) {
        if (rc < 0)
            snprintf(err, errlen, "cannot run %s: %s", argv[0], hy_strerror(rc));
        else
            snprintf(err, errlen, "%s failed (exit %d), nothing changed: %s", argv[0], rc,
                     last_line(&e));
        rc = rc < 0 ? rc : HY_EINVAL;
    }
    hy_buf_fini(&o);
    hy_buf_fini(&e);
    return rc;
}

/* Our lines of an iptables-save (or generated) nat text: chain declarations
 * and rules of our chains, and rules elsewhere that jump to ours. Pointers
 * into text, whose newlines become NULs. */
struct ours {
    char *decl[MAX_LINES], *rule[MAX_LINES], *jump[MAX_LINES];
    size_t ndecl, nrule, njump;
};

static bool is_ours(const char *rule)
{
    return strstr(rule, " -j " HY_TPROXY_CHAIN_PREFIX) ||
           strstr(rule, " -g " HY_TPROXY_CHAIN_PREFIX);
}

static int split_ours(char *text, struct ours *o)
{
    memset(o, 0, sizeof(*o));
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (o->ndecl == MAX_LINES || o->nrule == MAX_LINES || o->njump == MAX_LINES)
            return HY_ETOOBIG;
        if (!strncmp(line, ":" HY_TPROXY_CHAIN_PREFIX, strlen(HY_TPROXY_CHAIN_PREFIX) + 1))
            o->decl[o->ndecl++] = line;
        else if (!strncmp(line, "-A " HY_TPROXY_CHAIN_PREFIX, strlen(HY_TPROXY_CHAIN_PREFIX) + 3))
            o->rule[o->nrule++] = line;
        else if (!strncmp(line, "-A ", 3) && is_ours(line))
            o->jump[o->njump++] = line;
    }
    return 0;
}

/* Length of a rule's chain name ("-A NAME ..."). */
static size_t chain_len(const char *rule)
{
    return strcspn(rule + 3, " ");
}

static int chain_cmp(const char *a, const char *b)
{
    size_t la = chain_len(a), lb = chain_len(b);
    int c = strncmp(a + 3, b + 3, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* Stable sort by chain name: iptables-save groups rules by chain in its own
 * chain order, while order matters only inside a chain. */
static void sort_by_chain(char **v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        char *x = v[i];
        size_t j = i;
        for (; j > 0 && chain_cmp(v[j - 1], x) > 0; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* First difference between two line lists (sorted as above), or NULL when
 * equal; *missing says whether it is in want but not in have. */
static const char *diff(char **want, size_t nw, char **have, size_t nh, bool *missing)
{
    for (size_t i = 0; i < nw || i < nh; i++) {
        if (i >= nh || (i < nw && strcmp(want[i], have[i]))) {
            *missing = true;
            return want[i];
        }
        if (i >= nw) {
            *missing = false;
            return have[i];
        }
    }
    return NULL;
}

static void normalise(struct ours *o)
{
    qsort(o->decl, o->ndecl, sizeof(char *), str_cmp);
    sort_by_chain(o->rule, o->nrule);
    sort_by_chain(o->jump, o->njump);
}

/* NULL when have is exactly want, else the first differing line. */
static const char *compare(struct ours *want, struct ours *have, bool *missing)
{
    const char *d = diff(want->decl, want->ndecl, have->decl, have->ndecl, missing);
    if (!d)
        d = diff(want->jump, want->njump, have->jump, have->njump, missing);
    if (!d)
        d = diff(want->rule, want->nrule, have->rule, have->nrule, missing);
    return d;
}

/* Appends what removes every line of ours in have: jumps first, then our
 * chains flushed (so they reference nothing), then deleted unless keep
 * declares them again. */
static int append_removal(struct hy_buf *b, const struct ours *have, const struct ours *keep)
{
    int rc = 0;
    for (size_t i = 0; i < have->njump && !rc; i++)
        rc = hy_buf_printf(b, "-D%s\n", have->jump[i] + 2);
    for (size_t i = 0; i < have->ndecl && !rc; i++)
        rc = hy_buf_printf(b, "%.*s - [0:0]\n", (int)strcspn(have->decl[i], " "), have->decl[i]);
    for (size_t i = 0; i < have->ndecl && !rc; i++) {
        int n = (int)strcspn(have->decl[i], " ");
        bool kept = false;
        for (size_t j = 0; keep && j < keep->ndecl; j++)
            kept |= !strncmp(keep->decl[j], have->decl[i], (size_t)n) && keep->decl[j][n] == ' ';
        if (!kept)
            rc = hy_buf_printf(b, "-X %.*s\n", n - 1, have->decl[i] + 1);
    }
    return rc;
}

static bool family_available(const struct hy_tproxy_cfg *cfg, int family, bool any_mode)
{
    if (!any_mode && !hy_tproxy_wants(cfg, family))
        return false;
    if (family == 6 && (any_mode || cfg->family_mode == HY_TPROXY_DUALSTACK) &&
        access("/proc/net/if_inet6", F_OK) != 0) {
        hy_log(HY_LOG_WARN, "tproxy", "IPv6 is not available in this kernel: IPv4 rules only");
        return false;
    }
    return true;
}

enum op { OP_INSTALL, OP_UNINSTALL, OP_CHECK };

static int run_family(const struct hy_tproxy_cfg *cfg, int family, enum op op, char *err,
                      size_t errlen)
{
    struct hy_buf saved = {0}, gen = {0}, in = {0};
    struct ours *have = calloc(1, sizeof(*have)), *want = calloc(1, sizeof(*want));
    const char *v = family == 4 ? "IPv4" : "IPv6";
    int rc = HY_ENOMEM;
    if (!have || !want)
        goto out;
    rc = save_nat(family, &saved, err, errlen);
    if (rc)
        goto out;
    if ((rc = hy_tproxy_rules(cfg, family, &gen)))
        goto out;
    if ((rc = split_ours(saved.data ? saved.data : (char[]){""}, have)) ||
        (rc = split_ours(gen.data, want))) {
        snprintf(err, errlen, "%s nat table: too many rules to read", v);
        goto out;
    }
    normalise(have);
    normalise(want);
    bool missing = false;
    const char *d = compare(want, have, &missing);

    switch (op) {
    case OP_CHECK:
        if (d) {
            snprintf(err, errlen, "%s nat table: rule %s: %s", v,
                     missing ? "missing" : "not expected", d);
            rc = HY_ENOTFOUND;
        }
        goto out;
    case OP_INSTALL:
        if (!d) {
            hy_log(HY_LOG_INFO, "tproxy", "%s rules already installed, nothing to change", v);
            goto out;
        }
        if ((rc = hy_buf_puts(&in, "*nat\n")) || (rc = append_removal(&in, have, want)))
            goto out;
        /* The generated set minus its "*nat" line: declarations (which flush
         * our chains that survive) and rules. */
        hy_buf_fini(&gen);
        if (!(rc = hy_tproxy_rules(cfg, family, &gen)))
            rc = hy_buf_puts(&in, strchr(gen.data, '\n') + 1);
        break;
    case OP_UNINSTALL:
        if (!have->ndecl && !have->njump) {
            hy_log(HY_LOG_INFO, "tproxy", "no %s rules of ours installed, nothing to remove", v);
            goto out;
        }
        if (!(rc = hy_buf_puts(&in, "*nat\n")) && !(rc = append_removal(&in, have, NULL)))
            rc = hy_buf_puts(&in, "COMMIT\n");
        break;
    }
    if (rc)
        goto out;
    rc = restore(family, in.data, err, errlen);
    if (!rc)
        hy_log(HY_LOG_INFO, "tproxy", "%s rules %s", v,
               op == OP_INSTALL ? (have->ndecl ? "replaced" : "installed") : "removed");
out:
    if (rc == HY_ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(have);
    free(want);
    hy_buf_fini(&saved);
    hy_buf_fini(&gen);
    hy_buf_fini(&in);
    return rc;
}

static int run(const struct hy_tproxy_cfg *cfg, enum op op, char *err, size_t errlen)
{
    static const int families[] = {4, 6};
    int rc = 0;
    for (size_t i = 0; i < 2 && !rc; i++) {
        /* Uninstall cleans every family, whatever the mode said at install. */
        if (!family_available(cfg, families[i], op == OP_UNINSTALL))
            continue;
        rc = run_family(cfg, families[i], op, err, errlen);
        if (rc && op == OP_INSTALL && i > 0 && family_available(cfg, 4, false)) {
            /* Not half-installed: IPv6 failed, take IPv4 back out. */
            char ignored[256];
            run_family(cfg, 4, OP_UNINSTALL, ignored, sizeof(ignored));
        }
    }
    return rc;
}

int hy_tproxy_install(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen)
{
    return run(cfg, OP_INSTALL, err, errlen);
}

int hy_tproxy_uninstall(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen)
{
    return run(cfg, OP_UNINSTALL, err, errlen);
}

int hy_tproxy_check(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen)
{
    return run(cfg, OP_CHECK, err, errlen);
}
