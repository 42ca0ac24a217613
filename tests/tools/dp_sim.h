/* hypha-dp-sim: many simulated sidecars in one process, each a real DP
 * session to a zone (its own websocket client, a real dataplane token, a
 * real CSR, acks like hypha-dp), for measuring a zone with thousands of
 * sidecars. What its files share: the flags, the state of the sessions and
 * of the writer thread, and the output. dp_sim.c holds main and the run's
 * phases, dp_sim_session.c one simulated sidecar, dp_sim_writer.c the
 * thread that mints tokens, applies policy changes and waits for them. */
#ifndef HY_DP_SIM_H
#define HY_DP_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ca.h"
#include "dp.pb-c.h"
#include "dp_parts.h"
#include "log.h"
#include "ws.h"

/* Exit codes, as the probes use them. */
enum {
    SIM_OK = 0,         /* every goal of the run was reached */
    SIM_UNEXPECTED = 1, /* a Reject, a failed PUT or token, sessions that did not converge */
    SIM_USAGE = 2,      /* bad flags, unreadable token or CA files */
    SIM_NOCONNECT = 3,  /* the first connection attempt failed (refused, TLS, upgrade) */
    SIM_TIMEOUT = 4,    /* --timeout passed before the run's goals were reached */
};

/* What each change applies: a MeshTrafficPermission whose `from` names a
 * new service each time (every sidecar's inbound sees it), or a MeshTimeout
 * whose connectionTimeout changes (only outbounds see it). */
enum sim_change { SIM_CHANGE_MTP, SIM_CHANGE_TIMEOUT };

/* The flags (one table in dp_sim.c). Strings are owned by the config. */
struct sim_cfg {
    char *cp_address;   /* wss://127.0.0.1:PORT of the zone's DP server */
    char *ca_cert_file; /* its CA ($ZONE_DATA/dp/ca.pem) */
    char *mesh;
    uint64_t count;    /* sessions sim-0 .. sim-<count-1> */
    uint64_t services; /* sidecar i serves svc-(i mod services) */
    uint64_t outbounds;
    uint64_t policies; /* standing policies applied before the sessions connect */
    char *token_dir;   /* DIR/sim-<i>.token, or: */
    char *api;         /* the zone's API: the simulator mints the tokens */
    char *auth_token;
    int64_t token_valid_for; /* ms */
    uint64_t ramp;           /* sessions between connecting and their first config */
    char *put_api;           /* the zone's API where changes are applied */
    uint64_t changes;
    char *change; /* "mtp" or "timeout" */
    char *change_name;
    bool burst;        /* apply a round's changes without waiting for each */
    uint64_t restarts; /* rounds that wait for every session to reconnect first */
    bool join;
    int64_t zone_pid;
    int64_t timeout; /* ms */
    bool trace;
    bool context_per_session; /* each client its own lws context (as before the shared one) */
    enum hy_log_level log_level;
};

struct sim;

/* One simulated sidecar. Loop thread only, except what the writer reads
 * through struct writer under its lock. */
struct sim_session {
    struct sim *sim;
    struct hy_ws_client *ws;
    size_t k; /* index: its name is sim-<k> */
    char *token;
    bool open, ever_open, configured, rejected;
    bool fresh;     /* a config arrived since the last open */
    bool has_svc0;  /* one of its outbounds is svc-0 (the join watches it) */
    bool join_seen; /* it has the joiner among svc-0's endpoints */
    uint64_t opens, closes, configs, nacks, renewals, bytes;
    uint64_t cert_hash;      /* of the last certificate, to spot a new one */
    int64_t renew_at;        /* Unix seconds: send a DpCsr then (0: none planned) */
    uint64_t t_first_config; /* ns, 0 before */
    uint64_t t_join;         /* ns: when it saw the joiner */
    /* the config's parts it holds, by name only (kind, key and version,
     * strings owned, sorted), kept across sessions as hypha-dp keeps them */
    struct hy_dp_ref *held;
    size_t nheld;
    char held_version[HY_DP_VERSION_LEN + 1];
    Hypha__V1__DpPart *inbounds, *outbounds; /* the last of each: what measurements read */
};

/* The writer thread: it applies changes, the loop records their arrival;
 * mu guards what both touch. */
struct writer {
    pthread_t th;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool quit; /* stop now (set under mu, so waiters see it) */
    size_t n;         /* sessions measured (the joiner is not one) */
    size_t per_round; /* changes per round */
    size_t total;     /* per_round * rounds */
    size_t rounds;
    unsigned *count;                     /* mu: sessions whose config has change i */
    uint64_t *arrive;                    /* mu: [session * total + i], ns; 0 = not yet */
    long *seen;                          /* mu: [session] newest change in its config, -1 none */
    uint64_t *digest;                    /* mu: [session] hash of its config's policy part */
    uint64_t *t_sent, *t_ack, *t_done;   /* writer thread's until `finished` */
    uint64_t *bytes, *configs, *cpu_ms;  /* per change: received by all sessions, zone CPU */
    uint64_t bytes_total, configs_total; /* mu: every config any session received */
    bool watch_reconnect;                /* mu: count sessions that closed, then got a config */
    uint8_t *closed_since; /* mu: [session] 0, 1 closed while watched, 2 then configured */
    size_t nreconf;        /* mu */
    atomic_bool finished;
    int rc;
    char err[512];
    uv_async_t async; /* writer -> loop: finished */
    bool async_init;
};

struct sim {
    const struct sim_cfg *cfg;
    uv_loop_t *loop;
    uv_timer_t deadline, tick;
    uv_signal_t sigs[2];
    struct sim_session *v; /* count sessions, plus the joiner with --join */
    size_t n;              /* measured sessions (cfg->count) */
    size_t started;        /* clients created so far (the ramp) */
    size_t nconfigured;    /* of the n, those that got their first config */
    size_t nopen;          /* of the n, those open now */
    bool connected;        /* every one of the n got a config */
    bool any_open;
    char marker[40]; /* change i names service <marker><i> (mtp) */
    uint64_t timeout_base_ms;
    struct hy_ca_pem csr;            /* one key and CSR shared by every session */
    struct hy_ws_client_ctx *ws_ctx; /* the lws context every session shares; NULL: one each */
    uint64_t t_start, t_connected, t_join;
    long zone_rss_start_kb, sim_rss_start_kb;
    bool has_writer, writer_reported;
    bool joining, joined;
    size_t join_watchers, join_seen;
    bool finished;
    int exit_code;
    struct writer w;
};

/* One output line on stdout, flushed: an event name and key=value fields;
 * a free-text field (reason, error) comes last. */
void sim_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* CLOCK_MONOTONIC in ns: every time of a run comes from it. */
uint64_t sim_now_ns(void);
/* Ends the run with code (the first call wins). Loop thread only. */
void sim_finish(struct sim *s, int code);
/* Printable copy of a peer's text (control bytes become '?'). Returns buf. */
const char *sim_clean(const char *text, char *buf, size_t size);
/* VmRSS of /proc/<pid>/status in KiB (pid 0: this process), or -1. */
long sim_rss_kb(long pid);
/* Prints latency percentiles of v (ns, sorted here) in the probes' style:
 * `latency what=WHAT from=FROM sessions=N n=.. min_us p50_us p90_us p99_us
 * max_us mean_us`. */
void sim_print_latency(const char *what, const char *from, size_t sessions, int64_t *v, size_t n);
/* Every measured session got its first config: the writer or the join
 * starts (dp_sim.c). */
void sim_on_connected(struct sim *s);
/* The writer is done (its results printed): the join, or the end. */
void sim_on_writer_done(struct sim *s);
/* The joiner and every session watching svc-0 have it: the end. */
void sim_on_joined(struct sim *s);

/* dp_sim_session.c. sim_session_start creates session k's client (its
 * token already read); 0 or an exit code after printing why. */
int sim_session_start(struct sim *s, size_t k);
/* Frees what session x holds of its config (at the end of the run). */
void sim_session_parts_fini(struct sim_session *x);
/* Starts the next batch of --ramp sessions when the last one is done
 * (dp_sim_session.c says why in batches); the first batch at the start. */
void sim_ramp(struct sim *s);
/* Creates the joiner, sim-<count> of svc-0, and starts timing the join. */
void sim_join_start(struct sim *s);
/* The 1 s tick: certificate renewals that are due. */
void sim_sessions_tick(struct sim *s);
/* Service index of the j-th outbound of session k. */
size_t sim_outbound_service(const struct sim_cfg *c, size_t k, size_t j);

/* dp_sim_writer.c. Tokens: reads or mints one per session (before the
 * loop runs; blocking); 0 or an exit code after printing why. */
int sim_tokens_load(struct sim *s, size_t nsessions);
/* Applies --policies standing policies in one POST /_apply (before the
 * loop runs; blocking); 0 or an exit code after printing why. */
int sim_policies_apply(struct sim *s);
/* Starts the writer thread (after every session got its first config). */
int sim_writer_start(struct sim *s);
/* Stops it (on the loop, before its last run) and frees its state. */
void sim_writer_stop(struct sim *s);
void sim_writer_free(struct sim *s);
/* A session's config arrived with change idx (-1: none) and policy digest:
 * records the arrival for the writer (loop thread). */
void sim_writer_config(struct sim *s, size_t k, long idx, uint64_t digest, size_t bytes);
/* A session that had been open closed (loop thread). */
void sim_writer_closed(struct sim *s, size_t k);

#endif
