/* The zone's questions to its sidecars and ingresses for their own
 * metrics (hyphactl inspect dataplane NAME --type=stats, as kumactl asks
 * Envoy through its control plane): each DpStatsRequest sent on a session
 * waits here for the DpStats of its id, at most HY_ZONE_DP_STATS_PER_SESSION
 * per session and HY_ZONE_DP_STATS_MAX in all, until its answer, its
 * timeout or the session's end, whichever comes first. What a peer sends
 * is hostile: an answer to an id not asked on its session is dropped and
 * counted, never matched to another's question.
 *
 * Threads: the zone's loop thread only. */
#ifndef HY_ZONE_DP_STATS_H
#define HY_ZONE_DP_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dp.pb-c.h"

#define HY_ZONE_DP_STATS_TIMEOUT_MS 5000 /* a sidecar's answer, at most this late */
#define HY_ZONE_DP_STATS_PER_SESSION 4   /* questions in flight on one session */
#define HY_ZONE_DP_STATS_MAX 256         /* questions in flight in all */

struct hy_metrics;
struct hy_series;
struct stats_wait;

/* What a question comes to, once: status 200 with the text (len bytes,
 * NUL-terminated) and, when the peer cut it short, its note; 502 when the
 * peer answered only an error (note); 503 when the session ended first;
 * 504 when no answer came in time (note says so). text and note are
 * borrowed for the call. */
typedef void (*hy_zone_dp_stats_done_fn)(void *ud, int status, const char *text, size_t len,
                                         const char *note);

/* Sends one packed DpMessage on a session (hy_cp_session_send_packed's
 * shape): 0 when queued, or a negative code. */
typedef int (*hy_zone_dp_stats_send_fn)(void *to, const void *data, size_t len);

/* A session's share: embedded in the session, zeroed at its start. */
struct hy_zone_dp_stats_session {
    unsigned n; /* its questions in flight */
};

/* The server's: embedded in the DP server. */
struct hy_zone_dp_stats {
    uv_loop_t *loop;
    uv_timer_t timer; /* at the oldest question's deadline */
    bool timer_init;
    uint64_t timeout_ms;
    uint64_t next_id;
    struct stats_wait *head, *tail; /* every question in flight, oldest first */
    size_t n;
    struct hy_series *ok, *timeouts, *ended, *refused, *dropped;
};

/* Starts st on loop, answering timeout_ms after each question (0:
 * HY_ZONE_DP_STATS_TIMEOUT_MS); registers hypha_dp_server_stats_total{result}
 * and hypha_dp_server_stats_dropped_total in m (may be NULL: no metrics).
 * 0, or HY_ENOMEM (metrics). */
int hy_zone_dp_stats_init(struct hy_zone_dp_stats *st, uv_loop_t *loop, struct hy_metrics *m,
                          uint64_t timeout_ms);
/* Answers every question left 503 and closes the timer; run the loop
 * afterwards. Repeats are fine. */
void hy_zone_dp_stats_stop(struct hy_zone_dp_stats *st);

/* Asks session ss (send(to, ...)) for its metrics; done(ud, ...) is called
 * exactly once later, never from within this call. 0; HY_EFULL when ss
 * (or the zone) already has as many questions in flight as it may (done
 * is not called); HY_ENOMEM; or send's code (done is not called). */
int hy_zone_dp_stats_ask(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss,
                         hy_zone_dp_stats_send_fn send, void *to, hy_zone_dp_stats_done_fn done,
                         void *ud);
/* A DpStats (checked by hy_zone_dp_check_message) that session ss sent:
 * the question of its id on ss gets its answer. true, or false when ss
 * asked no such question (a late, repeated or forged answer): dropped and
 * counted. */
bool hy_zone_dp_stats_answer(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss,
                             const Hypha__V1__DpStats *m);
/* Session ss ends: each of its questions is answered 503. Cannot fail. */
void hy_zone_dp_stats_end(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss);

#endif
