/* Registry internals for the collectors built into common/ (the process
 * collector in metrics_process.c); not for use outside the metrics module. */
#ifndef HY_METRICS_INT_H
#define HY_METRICS_INT_H

#include "metrics.h"

enum hy_metric_kind { HY_METRIC_COUNTER, HY_METRIC_GAUGE, HY_METRIC_HISTOGRAM };

/* Registers an unlabelled counter or gauge whose value is fn(arg) at render
 * time. Returns 0, HY_EINVAL (bad name or help), HY_EEXIST (name taken) or
 * HY_ENOMEM; the reason is logged. */
int hy_metrics_register_fn(struct hy_metrics *m, enum hy_metric_kind kind, const char *name,
                           const char *help, hy_metric_fn fn, void *arg);

/* Installs the registry's one collector: collect(state) runs under the
 * registry's lock before each render. On success the registry owns state
 * (released with free()); returns HY_EEXIST, leaving state to the caller, if
 * a collector is already installed. */
int hy_metrics_collector(struct hy_metrics *m, void (*collect)(void *state), void *state);

#endif
