/* MeshAccessLog in the sidecar: a record per TCP connection and per HTTP
 * request, formatted per backend (common/alog_fmt.h) on the worker that
 * saw it and queued; one writer thread appends the queues to files and
 * streams them to TCP collectors. Traffic never waits for a backend: each
 * queue is bounded, a line that does not fit is dropped and counted in
 * hypha_dp_access_log_dropped_total{backend}, and TCP backends reconnect
 * with jittered exponential backoff. */
#ifndef HY_ALOG_H
#define HY_ALOG_H

#include <stdbool.h>
#include <stdint.h>

#define HY_ALOG_QUEUE_BYTES (1024 * 1024) /* per backend, waiting for the writer */
#define HY_ALOG_TCP_SNDBUF (64 * 1024)    /* a TCP backend's socket send buffer */
#define HY_ALOG_BACKOFF_MIN_MS 100
#define HY_ALOG_BACKOFF_MAX_MS 10000
#define HY_ALOG_REOPEN_CHECK_MS 1000 /* how often a file backend looks for rotation */

struct hy_alog;
struct hy_alog_cfg;
struct hy_metrics;
struct hy_px_conn;
struct hy_l7_worker;
struct hy_l7_done;

/* The proxy's access logger: registers the drop counter in m and starts
 * the writer thread. 0 and *out, or HY_ENOMEM / a negative errno (*out
 * NULL). Control thread. */
int hy_alog_new(struct hy_metrics *m, struct hy_alog **out);
/* Stops the writer (what is queued gets one last non-blocking try), closes
 * every backend and frees a. After every worker has ended. NULL is fine. */
void hy_alog_free(struct hy_alog *a);

/* What a snapshot's access logs compile to (its backends' formats), kept
 * with the snapshot and freed with it (dp_snapshot.c). NULL is fine. */
void hy_alog_cfg_free(struct hy_alog_cfg *c);

/* The hooks, one per place a record ends; each returns true when a
 * MeshAccessLog applies to the traffic (the record went to its backends;
 * the stderr line then drops to debug level), false otherwise. Worker
 * thread; they never block. */
bool hy_alog_conn(struct hy_px_conn *c, uint64_t duration_ms);
bool hy_alog_http(struct hy_l7_worker *lw, const struct hy_l7_done *d);

#endif
