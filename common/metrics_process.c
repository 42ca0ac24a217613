/* The standard process_* metrics, read from Linux /proc/self each time the
 * registry renders (the names every Prometheus client library exports). */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "error.h"
#include "metrics.h"
#include "metrics_int.h"
#include "poison.h"

struct proc_stats {
    double rss, vsize, cpu, open_fds, max_fds, start;
};

/* Reads a small /proc file whole into buf; false when it cannot. */
static bool read_small(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

/* Seconds since the epoch at boot, from /proc/stat's btime; NaN if unknown. */
static double boot_time(void)
{
    char line[256];
    double t = NAN;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return t;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long b;
        if (sscanf(line, "btime %llu", &b) == 1) {
            t = (double)b;
            break;
        }
    }
    fclose(f);
    return t;
}

static void proc_refresh(void *state)
{
    struct proc_stats *p = state;
    char stat[1024];
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    p->rss = p->vsize = p->cpu = NAN;
    /* fields after "pid (comm) ", counted from 0 = state; comm may hold spaces */
    char *rest = read_small("/proc/self/stat", stat, sizeof(stat)) ? strrchr(stat, ')') : NULL;
    if (rest) {
        unsigned long long utime = 0, stime = 0, starttime = 0, vsize = 0, rss = 0;
        char *save = NULL;
        int k = 0, seen = 0;
        for (char *t = strtok_r(rest + 1, " ", &save); t; t = strtok_r(NULL, " ", &save), k++) {
            unsigned long long *dst = k == 11   ? &utime
                                      : k == 12 ? &stime
                                      : k == 19 ? &starttime
                                      : k == 20 ? &vsize
                                      : k == 21 ? &rss
                                                : NULL;
            if (dst) {
                *dst = strtoull(t, NULL, 10);
                seen++;
            }
        }
        if (seen == 5 && ticks > 0) {
            p->cpu = (double)(utime + stime) / ticks;
            p->vsize = (double)vsize;
            p->rss = (double)rss * page;
            if (p->start == 0)
                p->start = boot_time() + (double)starttime / ticks;
        }
    }
    p->open_fds = NAN;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int n = 0, self = dirfd(d);
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.' && atoi(e->d_name) != self)
                n++;
        closedir(d);
        p->open_fds = n;
    }
    struct rlimit rl;
    p->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                     ? (double)rl.rlim_cur
                     : NAN;
}

static double read_stat(void *arg)
{
    return *(const double *)arg;
}

int hy_metrics_add_process(struct hy_metrics *m)
{
    if (!m)
        return HY_EINVAL;
    struct proc_stats *p = calloc(1, sizeof(*p));
    if (!p)
        return HY_ENOMEM;
    proc_refresh(p);
    int rc = hy_metrics_collector(m, proc_refresh, p);
    if (rc < 0) {
        free(p);
        return rc;
    }
    /* the registry owns p from here, whatever follows */
    const struct {
        enum hy_metric_kind kind;
        const char *name, *help;
        double *value;
    } defs[] = {
        {HY_METRIC_COUNTER, "process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds.", &p->cpu},
        {HY_METRIC_GAUGE, "process_open_fds", "Number of open file descriptors.", &p->open_fds},
        {HY_METRIC_GAUGE, "process_max_fds", "Maximum number of open file descriptors.",
         &p->max_fds},
        {HY_METRIC_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
         &p->vsize},
        {HY_METRIC_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes.",
         &p->rss},
        {HY_METRIC_GAUGE, "process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", &p->start},
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        rc = hy_metrics_register_fn(m, defs[i].kind, defs[i].name, defs[i].help, read_stat,
                                    defs[i].value);
        if (rc < 0)
            return rc; /* families registered so far stay, reading p */
    }
    return 0;
}
