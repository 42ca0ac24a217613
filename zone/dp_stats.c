/* The zone's questions to sidecars for their metrics, each waiting for
 * its answer, its timeout or its session's end (dp_stats.h). One timer
 * serves them all: every question gets the same timeout, so the list in
 * asking order is also in deadline order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_stats.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"
#include "poison.h"

struct stats_wait {
    struct stats_wait *prev, *next;
    struct hy_zone_dp_stats_session *owner;
    uint64_t id;
    uint64_t deadline; /* uv_now, ms */
    hy_zone_dp_stats_done_fn done;
    void *ud;
};

static void on_timer(uv_timer_t *t);

static void arm(struct hy_zone_dp_stats *st)
{
    if (!st->timer_init)
        return;
    if (!st->head) {
        uv_timer_stop(&st->timer);
        return;
    }
    uint64_t now = uv_now(st->loop);
    uv_timer_start(&st->timer, on_timer, st->head->deadline > now ? st->head->deadline - now : 0,
                   0);
}

static void unlink_wait(struct hy_zone_dp_stats *st, struct stats_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        st->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        st->tail = w->prev;
    w->owner->n--;
    st->n--;
}

/* Takes w off the lists, then tells its asker (who may ask again). */
static void finish(struct hy_zone_dp_stats *st, struct stats_wait *w, int status, const char *text,
                   size_t len, const char *note)
{
    unlink_wait(st, w);
    w->done(w->ud, status, text, len, note);
    free(w);
}

static void on_timer(uv_timer_t *t)
{
    struct hy_zone_dp_stats *st = t->data;
    uint64_t now = uv_now(st->loop);
    char note[160];
    snprintf(note, sizeof(note), "the sidecar did not answer within %llu ms",
             (unsigned long long)st->timeout_ms);
    while (st->head && st->head->deadline <= now) {
        hy_series_inc(st->timeouts);
        finish(st, st->head, 504, "", 0, note);
    }
    arm(st);
}

int hy_zone_dp_stats_init(struct hy_zone_dp_stats *st, uv_loop_t *loop, struct hy_metrics *m,
                          uint64_t timeout_ms)
{
    memset(st, 0, sizeof(*st));
    st->loop = loop;
    st->timeout_ms = timeout_ms ? timeout_ms : HY_ZONE_DP_STATS_TIMEOUT_MS;
    st->next_id = 1;
    uv_timer_init(loop, &st->timer);
    st->timer.data = st;
    st->timer_init = true;
    if (!m)
        return 0;
    struct hy_metric *f = hy_metric_counter(
        m, "hypha_dp_server_stats_total",
        "Questions to sidecars and ingresses for their metrics, by outcome: answered, timeout, "
        "ended (the session closed first), refused (too many in flight)",
        1, "result");
    struct hy_metric *d =
        hy_metric_counter(m, "hypha_dp_server_stats_dropped_total",
                          "Metrics answers dropped: for no question in flight on their session", 0);
    st->ok = hy_metric_series(f, "answered");
    st->timeouts = hy_metric_series(f, "timeout");
    st->ended = hy_metric_series(f, "ended");
    st->refused = hy_metric_series(f, "refused");
    st->dropped = hy_metric_series(d);
    return st->ok && st->timeouts && st->ended && st->refused && st->dropped ? 0 : HY_ENOMEM;
}

void hy_zone_dp_stats_stop(struct hy_zone_dp_stats *st)
{
    while (st->head) {
        hy_series_inc(st->ended);
        finish(st, st->head, 503, "", 0, "the zone control plane is shutting down");
    }
    if (st->timer_init)
        uv_close((uv_handle_t *)&st->timer, NULL);
    st->timer_init = false;
}

int hy_zone_dp_stats_ask(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss,
                         hy_zone_dp_stats_send_fn send, void *to, hy_zone_dp_stats_done_fn done,
                         void *ud)
{
    if (!st->timer_init || ss->n >= HY_ZONE_DP_STATS_PER_SESSION || st->n >= HY_ZONE_DP_STATS_MAX) {
        hy_series_inc(st->refused);
        return HY_EFULL;
    }
    struct stats_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return HY_ENOMEM;
    Hypha__V1__DpStatsRequest q = HYPHA__V1__DP_STATS_REQUEST__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    q.has_id = 1;
    q.id = st->next_id++;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_STATS_REQUEST;
    m.stats_request = &q;
    size_t len;
    void *data = hy_wire_pack(&m.base, &len);
    int rc = data ? send(to, data, len) : HY_ENOMEM;
    free(data);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *w = (struct stats_wait){.prev = st->tail,
                             .owner = ss,
                             .id = q.id,
                             .deadline = uv_now(st->loop) + st->timeout_ms,
                             .done = done,
                             .ud = ud};
    if (st->tail)
        st->tail->next = w;
    else
        st->head = w;
    st->tail = w;
    ss->n++;
    st->n++;
    if (st->head == w)
        arm(st);
    return 0;
}

bool hy_zone_dp_stats_answer(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss,
                             const Hypha__V1__DpStats *m)
{
    struct stats_wait *w = st->head;
    while (w && (w->owner != ss || !m->has_id || w->id != m->id))
        w = w->next;
    if (!w) {
        hy_series_inc(st->dropped);
        return false;
    }
    bool head = w == st->head;
    const char *text = m->text ? m->text : "";
    hy_series_inc(st->ok);
    if (!text[0] && m->error)
        finish(st, w, 502, "", 0, m->error);
    else
        finish(st, w, 200, text, strlen(text), m->error);
    if (head)
        arm(st);
    return true;
}

void hy_zone_dp_stats_end(struct hy_zone_dp_stats *st, struct hy_zone_dp_stats_session *ss)
{
    bool head = false;
    for (struct stats_wait *w = st->head, *next; ss->n && w; w = next) {
        next = w->next;
        if (w->owner != ss)
            continue;
        head = head || w == st->head;
        hy_series_inc(st->ended);
        finish(st, w, 503, "", 0, "the sidecar disconnected before answering");
    }
    if (head)
        arm(st);
}
