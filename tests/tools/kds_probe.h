/* hypha-kds-probe: a KDS client for tests and benchmarks, built on the same
 * websocket module as hypha-zone. What its modes share: the options, the
 * output (one machine-readable line per event on stdout), the end of a run
 * and its exit code. kds_probe.c holds main and the single-connection
 * modes; kds_probe_zones.c the modes that speak KDS as one or many zones. */
#ifndef HY_KDS_PROBE_H
#define HY_KDS_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "codec.h"
#include "config.h"
#include "kds.pb-c.h"
#include "log.h"
#include "ws.h"

/* Exit codes: the outcome each mode expects (--help lists them), or why not. */
enum {
    PROBE_OK = 0,         /* the expected outcome */
    PROBE_UNEXPECTED = 1, /* another outcome: a different close, no Reject, a failed PUT... */
    PROBE_USAGE = 2,      /* bad flags */
    PROBE_NOCONNECT = 3,  /* the first connection attempt failed (refused, TLS, upgrade) */
    PROBE_TIMEOUT = 4,    /* --timeout passed before the expected outcome */
};

/* The flags (one table in kds_probe.c). Strings are owned by the config. */
struct probe_cfg {
    char *url;            /* wss://127.0.0.1:PORT of the global CP's KDS */
    char *ca_file;        /* the KDS CA ($GLOBAL_DATA/kds/ca.pem) */
    bool insecure;        /* skip certificate verification instead */
    int64_t timeout;      /* ms: the run never lasts longer */
    uint64_t count;       /* garbage: messages sent */
    uint64_t size;        /* garbage: bytes per message; huge: bytes of the one message */
    uint64_t seed;        /* garbage, huge: xorshift seed of the random bytes */
    int64_t expect_code;  /* huge: the close code that counts as the expected outcome */
    char *first;          /* before-hello: "changes" or "ack" */
    char *zone;           /* silent-hello (and garbage after a Hello): the zone's name */
    char *token_file;     /* ... and its token */
    uint64_t zones;       /* zones: how many */
    uint64_t first_zone;  /* zones: number of the first (names PREFIX<k>) */
    char *zone_prefix;    /* zones: "zone-" */
    char *token_dir;      /* zones: DIR/PREFIX<k>.token */
    int64_t ack_delay;    /* zones: ms before each Ack */
    char *expect_name;    /* zones: done once every zone received a resource of that name */
    char *put_api;        /* zones: http://127.0.0.1:PORT of the global CP: the probe PUTs */
    char *zone_api;       /* zones: a real zone's API, polled for each change */
    char *mesh;           /* zones: mesh of the PUT policies */
    char *name_prefix;    /* zones: names of the PUT policies, PREFIX<6 digits> */
    uint64_t puts;        /* zones: measured changes */
    uint64_t warmup;      /* zones: changes before them, not measured (the first is a barrier) */
    int64_t put_interval; /* zones: ms between a change's arrival and the next PUT */
    char *arrivals;       /* zones: file for every latency sample */
    bool hold;            /* zones: stay connected once done, until SIGTERM or --timeout */
    bool trace;           /* print every message received */
    char *resources;      /* send, zones: YAML file of the resources sent up */
    uint64_t copies;      /* send, zones: copies of each (names get -<k>) */
    uint64_t batch;       /* send, zones: upserts per Changes */
    struct hy_strings tweaks;  /* send: null-label-key, dup-label, dup-service-tag */
    struct hy_strings deletes; /* send: TYPE/MESH/NAME keys deleted in the last Changes */
    enum hy_log_level log_level;
};

enum probe_mode {
    MODE_GARBAGE,
    MODE_HUGE,
    MODE_BEFORE_HELLO,
    MODE_SILENT_HELLO,
    MODE_ZONES,
    MODE_SEND
};

struct probe {
    const struct probe_cfg *cfg;
    enum probe_mode mode;
    uv_loop_t *loop;
    uv_timer_t deadline;
    uv_signal_t sigs[2];
    uint64_t t_start; /* probe_now_ns() at the start */
    bool finished;
    int exit_code;
    void *zones; /* kds_probe_zones.c's state */
    void *raw;   /* kds_probe.c's single connection */
};

/* One output line: printed to stdout and flushed. Every line is an event
 * name and key=value fields; a free-text field (reason, error) comes last
 * and runs to the end of the line. */
void probe_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* CLOCK_MONOTONIC in ns (all times of one run come from it). */
uint64_t probe_now_ns(void);
/* Ends the run with code (the first call wins): the loop stops, the mode is
 * torn down, main exits with it. Any thread but the loop's must not call it. */
void probe_finish(struct probe *p, int code);
/* The websocket client config every mode starts from; cb and ud are the
 * mode's. Strings are borrowed from p->cfg. */
struct hy_ws_client_config probe_ws_config(const struct probe *p, struct hy_ws_callbacks cb,
                                           void *ud);
/* Packs m and queues it on c. Returns what hy_ws_send returns, or HY_ENOMEM. */
int probe_send(struct hy_ws_conn *c, const Hypha__V1__KdsMessage *m);
/* Sends a Hello as --zone with the token in --token-file, saying the zone
 * has applied the global CP's changes up to acked. Ends the run with
 * PROBE_USAGE when the token cannot be read. */
void probe_send_hello(struct probe *p, struct hy_ws_conn *c, uint64_t acked);
/* The first line of a token file, without surrounding blanks; the caller
 * frees it. NULL if the file cannot be read or is empty (errno says why). */
char *probe_read_token(const char *path);
/* Printable copy of a peer's text (at most size - 1 bytes; control bytes
 * become '?'). Returns buf. */
const char *probe_clean(const char *s, char *buf, size_t size);

/* The zone-speaking modes (silent-hello, zones). start: 0 or an exit code
 * (after printing why); stop: on the loop, before its last run (stops the
 * clients and the writer); free: after it. goal_reached: the run's goal is
 * met (what a --hold or silent-hello run ends on with exit 0). */
int probe_zones_start(struct probe *p);
void probe_zones_stop(struct probe *p);
void probe_zones_free(struct probe *p);
bool probe_zones_goal_reached(const struct probe *p);

/* The send mode (kds_probe_send.c): start, stop and free as above. */
/* Reads the resources of a YAML file into out (hy_docs_fini frees them).
 * PROBE_OK, or PROBE_USAGE after printing why (none in it is an error). */
int probe_load_resources(const char *path, struct hy_docs *out);
/* Copy k of src as an envelope, renamed NAME-<k> when --copies > 1 and
 * bent by --tweak; the caller frees it. NULL when out of memory. */
Hypha__V1__Envelope *probe_envelope(const struct probe_cfg *c, const struct hy_resource *src,
                                    uint64_t k);
int probe_send_start(struct probe *p);
void probe_send_stop(struct probe *p);
void probe_send_free(struct probe *p);

#endif
