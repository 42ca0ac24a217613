/* The Prometheus registry: families in a list, series in a sorted array per
 * family, values in atomics so that hot paths never take a lock. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "metrics_int.h"
#include "poison.h"

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct hy_series {
    struct hy_metric *family;
    _Atomic uint64_t count; /* counter: whole-number adds, kept exact */
    _Atomic uint64_t bits; /* as double bits: counter fractional adds, gauge value, histogram sum */
    const char *values[HY_METRICS_MAX_LABELS]; /* point into this allocation, after buckets */
    _Atomic uint64_t buckets[]; /* histogram: per-bucket counts (not cumulative), +Inf last */
};

struct hy_metric {
    struct hy_metric *next; /* registration order */
    enum hy_metric_kind kind;
    char *name, *help;
    size_t nlabels;
    char *labels[HY_METRICS_MAX_LABELS];
    double *bounds; /* histogram; nbounds finite, increasing */
    size_t nbounds;
    hy_metric_fn fn; /* value computed at render time; the family has one series */
    void *arg;
    pthread_mutex_t lock;      /* guards the series array, not the values */
    struct hy_series **series; /* sorted by label values, for lookup and stable output */
    size_t nseries, cap;
};

struct hy_metrics {
    pthread_mutex_t lock; /* registration and rendering */
    struct hy_metric *head, **tail;
    void (*collect)(void *state); /* refreshes state before each render */
    void *collect_state;          /* owned (free) */
};

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names the same without ':'. */
static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A copy of s with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD; NULL when out of memory. */
static char *utf8_fix(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = hy_utf8_seq(p);
        if (n) {
            memcpy(o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

static void family_free(struct hy_metric *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        free(f->series[i]);
    free(f->series);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static int cmp_values(size_t n, const char *const *a, const char *const *b)
{
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a[i], b[i]);
        if (c)
            return c;
    }
    return 0;
}

/* Finds or creates the series with values (valid UTF-8, no NULLs). Called
 * with f->lock held. */
static struct hy_series *series_get(struct hy_metric *f, const char *const *values)
{
    size_t lo = 0, hi = f->nseries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_values(f->nlabels, f->series[mid]->values, values);
        if (c == 0)
            return f->series[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (f->nseries == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        struct hy_series **v = realloc(f->series, cap * sizeof(*v));
        if (!v)
            return NULL;
        f->series = v;
        f->cap = cap;
    }
    size_t nbuckets = f->kind == HY_METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
    size_t len[HY_METRICS_MAX_LABELS], strings = 0;
    for (size_t i = 0; i < f->nlabels; i++)
        strings += (len[i] = strlen(values[i]) + 1);
    struct hy_series *s = calloc(1, sizeof(*s) + nbuckets * sizeof(s->buckets[0]) + strings);
    if (!s)
        return NULL;
    s->family = f;
    char *p = (char *)&s->buckets[nbuckets];
    for (size_t i = 0; i < f->nlabels; i++) {
        memcpy(p, values[i], len[i]);
        s->values[i] = p;
        p += len[i];
    }
    memmove(&f->series[lo + 1], &f->series[lo], (f->nseries - lo) * sizeof(f->series[0]));
    f->series[lo] = s;
    f->nseries++;
    return s;
}

/* Checks and registers one family; logs why when it cannot. Returns 0 (and
 * the family in *out, if out is not NULL), HY_EINVAL, HY_EEXIST or
 * HY_ENOMEM. */
static int family_new(struct hy_metrics *m, enum hy_metric_kind kind, const char *name,
                      const char *help, const double *bounds, size_t nbounds, size_t nlabels,
                      const char *const *labels, hy_metric_fn fn, void *arg, struct hy_metric **out)
{
    const char *why = NULL;
    if (!m)
        return HY_EINVAL;
    if (!valid_name(name, true))
        why = "the name must match [a-zA-Z_:][a-zA-Z0-9_:]*";
    else if (kind == HY_METRIC_COUNTER && !ends_with(name, "_total"))
        why = "a counter's name must end in _total";
    else if (!help || !*help)
        why = "help text is required";
    else if (nlabels > HY_METRICS_MAX_LABELS)
        why = "too many labels";
    else if (nbounds && !bounds)
        why = "no bucket bounds";
    for (size_t i = 0; !why && i < nlabels; i++) {
        if (!valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0)
            why = "a label name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __";
        else if (kind == HY_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)
            why = "\"le\" is reserved in histograms";
        for (size_t j = 0; !why && j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                why = "a label name is repeated";
    }
    if (!why && nbounds && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
        nbounds--; /* +Inf is always there */
    for (size_t i = 0; !why && i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
            why = "bucket bounds must be finite and strictly increasing";
    if (why) {
        hy_log(HY_LOG_ERROR, "metrics", "cannot register %s: %s", name ? name : "(null)", why);
        return HY_EINVAL;
    }

    struct hy_metric *f = calloc(1, sizeof(*f));
    if (!f)
        goto out_nomem;
    pthread_mutex_init(&f->lock, NULL);
    f->kind = kind;
    f->fn = fn;
    f->arg = arg;
    f->name = strdup(name);
    f->help = strdup(help);
    if (!f->name || !f->help)
        goto out_free_family;
    for (; f->nlabels < nlabels; f->nlabels++)
        if (!(f->labels[f->nlabels] = strdup(labels[f->nlabels])))
            goto out_free_family;
    if (nbounds) {
        if (!(f->bounds = malloc(nbounds * sizeof(*bounds))))
            goto out_free_family;
        memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
    }
    f->nbounds = nbounds;
    /* an unlabelled family renders its one series from the start */
    if (nlabels == 0 && !series_get(f, NULL))
        goto out_free_family;

    pthread_mutex_lock(&m->lock);
    for (struct hy_metric *g = m->head; g; g = g->next) {
        if (strcmp(g->name, name) == 0) {
            pthread_mutex_unlock(&m->lock);
            hy_log(HY_LOG_ERROR, "metrics", "cannot register %s: the name is taken", name);
            family_free(f);
            return HY_EEXIST;
        }
    }
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->lock);
    if (out)
        *out = f;
    return 0;

out_free_family:
    family_free(f);
out_nomem:
    hy_log(HY_LOG_ERROR, "metrics", "cannot register %s: out of memory", name);
    return HY_ENOMEM;
}

static struct hy_metric *family_new_va(struct hy_metrics *m, enum hy_metric_kind kind,
                                       const char *name, const char *help, const double *bounds,
                                       size_t nbounds, size_t nlabels, va_list ap)
{
    const char *labels[HY_METRICS_MAX_LABELS];
    struct hy_metric *f = NULL;
    for (size_t i = 0; i < nlabels && i < HY_METRICS_MAX_LABELS; i++)
        labels[i] = va_arg(ap, const char *);
    family_new(m, kind, name, help, bounds, nbounds, nlabels, labels, NULL, NULL, &f);
    return f;
}

struct hy_metric *hy_metric_counter(struct hy_metrics *m, const char *name, const char *help,
                                    size_t nlabels, ...)
{
    va_list ap;
    va_start(ap, nlabels);
    struct hy_metric *f = family_new_va(m, HY_METRIC_COUNTER, name, help, NULL, 0, nlabels, ap);
    va_end(ap);
    return f;
}

struct hy_metric *hy_metric_gauge(struct hy_metrics *m, const char *name, const char *help,
                                  size_t nlabels, ...)
{
    va_list ap;
    va_start(ap, nlabels);
    struct hy_metric *f = family_new_va(m, HY_METRIC_GAUGE, name, help, NULL, 0, nlabels, ap);
    va_end(ap);
    return f;
}

struct hy_metric *hy_metric_histogram(struct hy_metrics *m, const char *name, const char *help,
                                      const double *bounds, size_t nbounds, size_t nlabels, ...)
{
    va_list ap;
    va_start(ap, nlabels);
    struct hy_metric *f =
        family_new_va(m, HY_METRIC_HISTOGRAM, name, help, bounds, nbounds, nlabels, ap);
    va_end(ap);
    return f;
}

struct hy_metric *hy_metric_gauge_fn(struct hy_metrics *m, const char *name, const char *help,
                                     hy_metric_fn fn, void *arg)
{
    struct hy_metric *f = NULL;
    if (fn)
        family_new(m, HY_METRIC_GAUGE, name, help, NULL, 0, 0, NULL, fn, arg, &f);
    return f;
}

struct hy_series *hy_metric_series_v(struct hy_metric *f, const char *const *values)
{
    if (!f)
        return NULL;
    const char *vals[HY_METRICS_MAX_LABELS];
    char *fixed[HY_METRICS_MAX_LABELS] = {0};
    struct hy_series *s = NULL;
    for (size_t i = 0; i < f->nlabels; i++) {
        vals[i] = values[i] ? values[i] : "";
        if (!hy_utf8_valid(vals[i])) {
            if (!(fixed[i] = utf8_fix(vals[i])))
                goto out_free_fixed;
            vals[i] = fixed[i];
        }
    }
    pthread_mutex_lock(&f->lock);
    s = series_get(f, vals);
    pthread_mutex_unlock(&f->lock);
out_free_fixed:
    for (size_t i = 0; i < f->nlabels; i++)
        free(fixed[i]);
    return s;
}

struct hy_series *hy_metric_series(struct hy_metric *f, ...)
{
    if (!f)
        return NULL;
    const char *values[HY_METRICS_MAX_LABELS];
    va_list ap;
    va_start(ap, f);
    for (size_t i = 0; i < f->nlabels; i++)
        values[i] = va_arg(ap, const char *);
    va_end(ap);
    return hy_metric_series_v(f, values);
}

void hy_series_add(struct hy_series *s, double v)
{
    if (!s)
        return;
    switch (s->family->kind) {
    case HY_METRIC_COUNTER:
        if (!(v > 0)) /* also NaN */
            return;
        if (v < 9007199254740992.0 && v == (double)(uint64_t)v)
            atomic_fetch_add_explicit(&s->count, (uint64_t)v, memory_order_relaxed);
        else
            atomic_add_double(&s->bits, v);
        return;
    case HY_METRIC_GAUGE:
        atomic_add_double(&s->bits, v);
        return;
    case HY_METRIC_HISTOGRAM:
        return;
    }
}

void hy_series_inc(struct hy_series *s)
{
    hy_series_add(s, 1);
}

void hy_series_set(struct hy_series *s, double v)
{
    if (s && s->family->kind == HY_METRIC_GAUGE)
        atomic_store_explicit(&s->bits, dbits(v), memory_order_relaxed);
}

void hy_series_observe(struct hy_series *s, double v)
{
    if (!s || s->family->kind != HY_METRIC_HISTOGRAM || isnan(v))
        return;
    const struct hy_metric *f = s->family;
    size_t lo = 0, hi = f->nbounds; /* first bound >= v, or the +Inf bucket */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

static uint64_t histogram_count(const struct hy_series *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= s->family->nbounds; i++)
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    return n;
}

double hy_series_value(const struct hy_series *s)
{
    if (!s)
        return 0;
    const struct hy_metric *f = s->family;
    if (f->fn)
        return f->fn(f->arg);
    uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    double v = bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed));
    switch (f->kind) {
    case HY_METRIC_COUNTER:
        return (double)count + v;
    case HY_METRIC_GAUGE:
        return v;
    case HY_METRIC_HISTOGRAM:
        return (double)histogram_count(s);
    }
    return 0;
}

/* ---- rendering ---- */

/* Appends with a sticky error, so rendering code reads straight through. */
struct out {
    struct hy_buf *buf;
    int err;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (!o->err)
        o->err = hy_buf_append(o->buf, s, n);
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Shortest text that reads back as v; Prometheus spells the specials
 * NaN, +Inf and -Inf. */
static void format_double(double v, char *buf, size_t size)
{
    if (isnan(v))
        snprintf(buf, size, "NaN");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    else if (snprintf(buf, size, "%.15g", v) > 0 && strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
}

static void put_double(struct out *o, double v)
{
    char b[40];
    format_double(v, b, sizeof(b));
    puts_(o, b);
}

/* HELP text escapes \ and newline; label values also escape ". */
static void put_escaped(struct out *o, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (!esc)
            continue;
        put(o, run, (size_t)(s - run));
        puts_(o, esc);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

/* name{labels...,le="..."} followed by a space. */
static void put_sample_start(struct out *o, const struct hy_metric *f, const char *suffix,
                             const struct hy_series *s, const char *le)
{
    puts_(o, f->name);
    puts_(o, suffix);
    if (f->nlabels || le) {
        puts_(o, "{");
        for (size_t i = 0; i < f->nlabels; i++) {
            if (i)
                puts_(o, ",");
            puts_(o, f->labels[i]);
            puts_(o, "=\"");
            put_escaped(o, s->values[i], true);
            puts_(o, "\"");
        }
        if (le) {
            puts_(o, f->nlabels ? ",le=\"" : "le=\"");
            puts_(o, le);
            puts_(o, "\"");
        }
        puts_(o, "}");
    }
    puts_(o, " ");
}

static void render_series(struct out *o, const struct hy_metric *f, const struct hy_series *s)
{
    char b[40];
    if (f->fn) {
        put_sample_start(o, f, "", s, NULL);
        put_double(o, f->fn(f->arg));
        puts_(o, "\n");
        return;
    }
    double v = bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed));
    switch (f->kind) {
    case HY_METRIC_COUNTER: {
        uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
        put_sample_start(o, f, "", s, NULL);
        if (v == 0) { /* exact, however large */
            snprintf(b, sizeof(b), "%" PRIu64, count);
            puts_(o, b);
        } else {
            put_double(o, (double)count + v);
        }
        puts_(o, "\n");
        return;
    }
    case HY_METRIC_GAUGE:
        put_sample_start(o, f, "", s, NULL);
        put_double(o, v);
        puts_(o, "\n");
        return;
    case HY_METRIC_HISTOGRAM: {
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= f->nbounds; i++) {
            cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
            if (i < f->nbounds)
                format_double(f->bounds[i], b, sizeof(b));
            else
                snprintf(b, sizeof(b), "+Inf");
            put_sample_start(o, f, "_bucket", s, b);
            snprintf(b, sizeof(b), "%" PRIu64 "\n", cumulative);
            puts_(o, b);
        }
        /* _count is the +Inf bucket, so the two always agree */
        put_sample_start(o, f, "_sum", s, NULL);
        put_double(o, v);
        puts_(o, "\n");
        put_sample_start(o, f, "_count", s, NULL);
        snprintf(b, sizeof(b), "%" PRIu64 "\n", cumulative);
        puts_(o, b);
        return;
    }
    }
}

static void render_family(struct out *o, struct hy_metric *f)
{
    pthread_mutex_lock(&f->lock);
    if (f->nseries) {
        puts_(o, "# HELP ");
        puts_(o, f->name);
        puts_(o, " ");
        put_escaped(o, f->help, false);
        puts_(o, "\n# TYPE ");
        puts_(o, f->name);
        puts_(o, " ");
        puts_(o, kind_names[f->kind]);
        puts_(o, "\n");
        for (size_t i = 0; i < f->nseries; i++)
            render_series(o, f, f->series[i]);
    }
    pthread_mutex_unlock(&f->lock);
}

int hy_metrics_render(struct hy_metrics *m, struct hy_buf *out)
{
    if (!m || !out)
        return HY_EINVAL;
    size_t start = out->len;
    struct out o = {.buf = out};
    pthread_mutex_lock(&m->lock);
    if (m->collect)
        m->collect(m->collect_state);
    for (struct hy_metric *f = m->head; f; f = f->next)
        render_family(&o, f);
    pthread_mutex_unlock(&m->lock);
    if (o.err) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return o.err;
}

struct hy_metrics *hy_metrics_new(void)
{
    struct hy_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->head;
    return m;
}

void hy_metrics_free(struct hy_metrics *m)
{
    if (!m)
        return;
    for (struct hy_metric *f = m->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    free(m->collect_state);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int hy_metrics_collector(struct hy_metrics *m, void (*collect)(void *state), void *state)
{
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    if (m->collect) {
        rc = HY_EEXIST;
    } else {
        m->collect = collect;
        m->collect_state = state;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int hy_metrics_register_fn(struct hy_metrics *m, enum hy_metric_kind kind, const char *name,
                           const char *help, hy_metric_fn fn, void *arg)
{
    return family_new(m, kind, name, help, NULL, 0, 0, NULL, fn, arg, NULL);
}
