/* Helpers shared by the benchmarks: clock, scratch directories, options
 * table and the markdown results table. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "bench_util.h"
#include "poison.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_die(const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bench: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- scratch directories ----------------------------------------------- */

void bench_mkdtemp(const char *base, const char *tag, char *buf, size_t size)
{
    if (!base || !base[0])
        base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    int n = snprintf(buf, size, "%s/hypha-bench-%s-XXXXXX", base, tag);
    if (n < 0 || (size_t)n >= size)
        bench_die(base, "directory name too long");
    if (!mkdtemp(buf))
        bench_die(buf, "cannot create a scratch directory: %s; pass --dir or set TMPDIR",
                  strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path) < 0)
        fprintf(stderr, "bench: %s: cannot remove: %s\n", path, strerror(errno));
    return 0;
}

void bench_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *bench_fs_name(const char *dir)
{
    static const struct {
        unsigned long magic;
        const char *name;
    } fs[] = {
        {0xEF53, "ext4"},      {0x01021994, "tmpfs"},     {0x58465342, "xfs"},
        {0x9123683E, "btrfs"}, {0x794C7630, "overlayfs"}, {0x6969, "nfs"},
        {0x2FC12FC1, "zfs"},   {0xF2F52010, "f2fs"},
    };
    struct statfs st;
    if (statfs(dir, &st) < 0)
        return "unknown";
    for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
        if ((unsigned long)st.f_type == fs[i].magic)
            return fs[i].name;
    return "other";
}

/* ---- options ----------------------------------------------------------- */

static void usage(FILE *out, const char *prog, const char *about, const struct bench_opt *opts,
                  size_t n)
{
    fprintf(out, "usage: %s [options]\n%s\n\noptions (flag, or env variable when absent):\n", prog,
            about);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-12s %-22s %s\n", opts[i].flag, opts[i].env ? opts[i].env : "",
                opts[i].help);
    fprintf(out, "  %-12s %-22s %s\n", "--help", "", "print this and exit");
}

static bool set_opt(const struct bench_opt *o, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case BENCH_OPT_DOUBLE: {
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d > 0))
            return false;
        *(double *)o->ptr = d;
        return true;
    }
    case BENCH_OPT_SIZE: {
        unsigned long long u = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-' || u > SIZE_MAX)
            return false;
        *(size_t *)o->ptr = (size_t)u;
        return true;
    }
    case BENCH_OPT_INT: {
        long l = strtol(v, &end, 10);
        if (errno || end == v || *end || l < 0 || l > 1000000)
            return false;
        *(int *)o->ptr = (int)l;
        return true;
    }
    case BENCH_OPT_STR:
        *(const char **)o->ptr = v;
        return true;
    }
    return false;
}

void bench_opts_parse(int argc, char **argv, const char *about, const struct bench_opt *opts,
                      size_t n)
{
    bool *seen = calloc(n ? n : 1, sizeof(*seen));
    if (!seen)
        bench_die("options", "out of memory");
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, argv[0], about, opts, n);
            exit(0);
        }
        size_t j = 0;
        while (j < n && strcmp(argv[i], opts[j].flag) != 0)
            j++;
        if (j == n || i + 1 == argc || !set_opt(&opts[j], argv[i + 1])) {
            fprintf(stderr, "bench: %s: %s\n", argv[i],
                    j == n ? "unknown option" : "needs a valid value");
            usage(stderr, argv[0], about, opts, n);
            exit(2);
        }
        seen[j] = true;
    }
    for (size_t j = 0; j < n; j++) {
        const char *v = opts[j].env ? getenv(opts[j].env) : NULL;
        if (seen[j] || !v || !v[0])
            continue;
        if (!set_opt(&opts[j], v)) {
            fprintf(stderr, "bench: %s=%s: not a valid value for %s\n", opts[j].env, v,
                    opts[j].flag);
            exit(2);
        }
    }
    free(seen);
}

/* ---- results ----------------------------------------------------------- */

void bench_row_add(struct bench_row *r, double ops, double hypha_s, double base_s)
{
    if (r->n == BENCH_MAX_REPS)
        return;
    r->hypha[r->n] = hypha_s > 0 ? ops / hypha_s : 0;
    r->base[r->n] = base_s > 0 ? ops / base_s : 0;
    r->n++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[BENCH_MAX_REPS];
    if (n == 0)
        return 0;
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* "12 345" style grouping keeps wide rates readable in a table. */
static void fmt_rate(char *buf, size_t size, double v)
{
    char digits[32];
    if (v < 100) {
        snprintf(buf, size, "%.1f", v);
        return;
    }
    int n = snprintf(digits, sizeof(digits), "%.0f", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ' ';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

static void fmt_time(char *buf, size_t size, double seconds)
{
    if (seconds >= 1)
        snprintf(buf, size, "%.2f s", seconds);
    else if (seconds >= 1e-3)
        snprintf(buf, size, "%.2f ms", seconds * 1e3);
    else if (seconds >= 1e-6)
        snprintf(buf, size, "%.2f µs", seconds * 1e6);
    else
        snprintf(buf, size, "%.0f ns", seconds * 1e9);
}

void bench_table_print(FILE *out, const struct bench_row *rows, size_t n)
{
    fprintf(out, "| Benchmark | Work per repetition | Hypha | Baseline | Hypha / baseline | "
                 "Hypha per op | Baseline per op |\n");
    fprintf(out, "|---|---|--:|--:|--:|--:|--:|\n");
    for (size_t i = 0; i < n; i++) {
        const struct bench_row *r = &rows[i];
        double h = median(r->hypha, r->n), b = median(r->base, r->n);
        char hs[32], bs[32], ht[32], bt[32];
        fmt_rate(hs, sizeof(hs), h);
        fmt_rate(bs, sizeof(bs), b);
        fmt_time(ht, sizeof(ht), h > 0 ? 1 / h : 0);
        fmt_time(bt, sizeof(bt), b > 0 ? 1 / b : 0);
        double ratio = b > 0 ? h / b : 0;
        /* small ratios keep two significant digits: 0.023, not 0.02 */
        fprintf(out, "| %s | %s | %s %s/s | %s %s/s | %.*f | %s | %s |\n", r->name, r->work, hs,
                r->unit, bs, r->unit, ratio < 0.1 ? 3 : 2, ratio, ht, bt);
    }
}

/* ---- files ------------------------------------------------------------- */

char *bench_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        bench_die(path, "cannot open: %s", strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *b = realloc(buf, cap);
            if (!b)
                bench_die(path, "out of memory");
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        bench_die(path, "cannot read: %s", strerror(errno));
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}
