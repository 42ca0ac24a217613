/* The main() of a Hypha binary: parse the option table (and the command),
 * open, run the loop until SIGINT/SIGTERM and the shutdown that follows,
 * stop, let libwebsockets close its handles, close.
 *
 * Signals: a real sigaction handler (not uv_signal, whose pipe only a
 * turning loop reads) wakes the loop with uv_async_send, which is
 * async-signal-safe, and arms a watchdog with alarm(2): a loop stuck in a
 * callback cannot keep the process alive past the shutdown timeout
 * (finding 2). */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"
#include "log.h"
#include "poison.h"

/* What the handlers share with the loop; one runner per process. */
static _Atomic(uv_async_t *) wake;
static atomic_int in_handler;  /* handlers between loading wake and using it */
static atomic_int signals_got; /* SIGINT/SIGTERM received */
static atomic_int last_signal; /* the latest of them, for the log */
static atomic_bool watchdog_armed;
static unsigned watchdog_sec;  /* 0: no watchdog */
static char watchdog_msg[160]; /* written by the SIGALRM handler */
static size_t watchdog_msg_len;
static volatile sig_atomic_t watchdog_fired;

static void on_term(int signum)
{
    int saved = errno;
    atomic_fetch_add(&in_handler, 1);
    atomic_store(&last_signal, signum);
    atomic_fetch_add(&signals_got, 1);
    if (watchdog_sec && !atomic_exchange(&watchdog_armed, true))
        alarm(watchdog_sec);
    uv_async_t *a = atomic_load(&wake);
    if (a)
        uv_async_send(a);
    atomic_fetch_sub(&in_handler, 1);
    errno = saved;
}

/* Only write(2) and _exit(2). If the write blocks (stderr a full pipe: one
 * way a loop gets stuck), the alarm re-armed here fires inside it and the
 * second call exits at once (SA_NODEFER lets it in). */
static void on_alarm(int signum)
{
    (void)signum;
    if (watchdog_fired)
        _exit(HY_EXIT_SHUTDOWN_TIMEOUT);
    watchdog_fired = 1;
    alarm(1);
    (void)!write(STDERR_FILENO, watchdog_msg, watchdog_msg_len);
    _exit(HY_EXIT_SHUTDOWN_TIMEOUT);
}

static void on_wake(uv_async_t *a)
{
    static int handled;
    const struct hy_main_program *p = a->data;
    for (int got = atomic_load(&signals_got); handled < got; handled++) {
        hy_log(HY_LOG_INFO, p->component, "signal %d: shutting down", atomic_load(&last_signal));
        if (p->shutdown)
            p->shutdown(p->state);
        else
            uv_stop(a->loop);
    }
}

/* The binary's "shutdown-timeout" row (HY_SHUTDOWN_OPTION), else the
 * default; in whole seconds, rounded up (alarm's unit). */
static unsigned shutdown_timeout(const struct hy_main_program *p)
{
    int64_t ms = 10000;
    for (size_t i = 0; i < p->spec->nopts; i++) {
        const struct hy_option *o = &p->spec->opts[i];
        if (strcmp(o->name, "shutdown-timeout") == 0 && o->type == HY_OPT_DURATION)
            ms = *(const int64_t *)((const char *)p->cfg + o->offset);
    }
    if (ms <= 0)
        return 0;
    return (unsigned)((ms + 999) / 1000);
}

static void set_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
}

int hy_main(const struct hy_main_program *p, int argc, char **argv)
{
    const struct hy_config_spec *spec = p->spec;
    int rc = hy_config_run_command(spec, p->cfg, argc, argv, p->command, p->hint);
    if (rc >= 0)
        return rc;
    hy_log_threshold = *(const enum hy_log_level *)((const char *)p->cfg + p->log_level_offset);
    signal(SIGPIPE, SIG_IGN);
    watchdog_sec = shutdown_timeout(p);
    int n = snprintf(watchdog_msg, sizeof(watchdog_msg),
                     "hypha %s: still running %u s after SIGINT/SIGTERM (shutdown-timeout); "
                     "exiting with status %d\n",
                     p->component, watchdog_sec, HY_EXIT_SHUTDOWN_TIMEOUT);
    watchdog_msg_len = n > 0 && (size_t)n < sizeof(watchdog_msg) ? (size_t)n : 0;

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_async_t async;
    uv_async_init(&loop, &async, on_wake);
    async.data = (void *)p;
    atomic_store(&wake, &async);
    set_handlers();
    rc = p->open(p->state, p->cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    /* close our handles; lws closes its own: run until all have finished.
     * A signal from now on only arms the watchdog: no handler may still be
     * using the async handle once it is closed. */
    atomic_store(&wake, NULL);
    while (atomic_load(&in_handler))
        ;
    p->stop(p->state);
    uv_close((uv_handle_t *)&async, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    p->close(p->state);
    uv_loop_close(&loop);
    hy_config_fini(spec, p->cfg);
    hy_log(HY_LOG_INFO, p->component, "stopped");
    alarm(0); /* done in time: the watchdog must not cut the exit (or ASan's report) short */
    return rc < 0 ? 1 : 0;
}
