/* A small Prometheus registry: counters, gauges and histograms with fixed label
 * names, rendered in the text exposition format 0.0.4 for /metrics. */
#ifndef HY_METRICS_H
#define HY_METRICS_H

#include <stddef.h>

#include "buf.h"

#define HY_METRICS_MAX_LABELS 8
/* The Content-Type of what hy_metrics_render writes. */
#define HY_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct hy_metrics; /* the registry: one per process, usually */
struct hy_metric;  /* one family: a name, its help, type and label names */
struct hy_series;  /* one time series of a family: its label values and value */

/* A value computed at render time (under the registry's lock: it must not
 * register metrics). */
typedef double (*hy_metric_fn)(void *arg);

/* Creates an empty registry; NULL when out of memory. Free with
 * hy_metrics_free. */
struct hy_metrics *hy_metrics_new(void);

/* Frees the registry with every family and series it holds; every handle it
 * gave out dies with it. No other thread may use it any more. NULL is a
 * no-op. */
void hy_metrics_free(struct hy_metrics *m);

/* Registers a family and returns its handle, owned by the registry. nlabels
 * label names (const char *) follow; a family without labels has its one
 * series from the start, so it renders 0 before it is first touched.
 *
 * Names follow hypha_<component>_<what>_<unit>; a counter's name must end in
 * "_total". Returns NULL (and logs why) when a name or label name is invalid,
 * the name is taken, nlabels > HY_METRICS_MAX_LABELS, or memory runs out.
 * Thread-safe. */
struct hy_metric *hy_metric_counter(struct hy_metrics *m, const char *name, const char *help,
                                    size_t nlabels, ...);
struct hy_metric *hy_metric_gauge(struct hy_metrics *m, const char *name, const char *help,
                                  size_t nlabels, ...);

/* A histogram with nbounds bucket upper bounds (in the family's unit, seconds
 * for latencies), finite and strictly increasing; they are copied. The +Inf
 * bucket is implicit (a trailing INFINITY is accepted and dropped). "le" is
 * not allowed as a label name. NULL on the same failures as above. */
struct hy_metric *hy_metric_histogram(struct hy_metrics *m, const char *name, const char *help,
                                      const double *bounds, size_t nbounds, size_t nlabels, ...);

/* An unlabelled gauge whose value is fn(arg), called each time the registry
 * is rendered. NULL on the same failures as above. */
struct hy_metric *hy_metric_gauge_fn(struct hy_metrics *m, const char *name, const char *help,
                                     hy_metric_fn fn, void *arg);

/* Returns the series of family f with the given label values (as many
 * const char * as f has label names; NULL counts as ""), creating it on
 * first use. Look it up once and keep it for hot paths. Values that are not
 * valid UTF-8 have each bad byte replaced by U+FFFD. The series is owned by
 * the registry. NULL when f is NULL or memory runs out; the hy_series_*
 * functions accept NULL and do nothing, so a failed registration never
 * crashes a hot path. Thread-safe (takes the family's mutex). */
struct hy_series *hy_metric_series(struct hy_metric *f, ...);
/* The same with the values in an array of f's label count. */
struct hy_series *hy_metric_series_v(struct hy_metric *f, const char *const *values);

/* Hot-path updates: lock-free atomics, callable from any thread, cannot fail.
 * Each does nothing on NULL or on a series of a kind it does not apply to. */

/* Counters and gauges: adds v. Counters ignore v < 0 and NaN (they only go
 * up); whole numbers take a single atomic add. */
void hy_series_add(struct hy_series *s, double v);
/* Counters and gauges: adds 1. */
void hy_series_inc(struct hy_series *s);
/* Gauges: sets the value. */
void hy_series_set(struct hy_series *s, double v);
/* Histograms: counts v into the first bucket whose bound is >= v, and adds it
 * to the sum. */
void hy_series_observe(struct hy_series *s, double v);

/* The current value: a counter's or gauge's value, a histogram's count. For
 * tests and health checks. 0 for NULL. */
double hy_series_value(const struct hy_series *s);

/* Appends every family in registration order, series sorted by label
 * values, in the Prometheus text format 0.0.4 (# HELP and # TYPE once per
 * family; families without any series yet are left out). Refreshes the
 * process metrics and calls gauge callbacks first. Returns 0, or HY_ENOMEM
 * with out as it was before the call (HY_EINVAL for a NULL argument).
 * Thread-safe; renders are serialised. */
int hy_metrics_render(struct hy_metrics *m, struct hy_buf *out);

/* Registers the standard process metrics, read from /proc/self at render
 * time: process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_open_fds, process_max_fds and
 * process_start_time_seconds. Returns 0, HY_EEXIST if already registered (or
 * a name is taken), HY_EINVAL for NULL, or HY_ENOMEM; on failure after the
 * first family the ones already registered stay and keep working. */
int hy_metrics_add_process(struct hy_metrics *m);

#endif
