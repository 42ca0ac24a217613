/* The main() of a Hypha binary: parse the option table (and the command),
 * open, run the loop until SIGINT/SIGTERM and the shutdown that follows,
 * stop, let libwebsockets close its handles, close. */
#include <signal.h>
#include <stdio.h>

#include "cp.h"
#include "log.h"
#include "poison.h"

static void on_signal(uv_signal_t *s, int signum)
{
    const struct hy_cp_program *p = s->data;
    hy_log(HY_LOG_INFO, p->component, "signal %d: shutting down", signum);
    if (p->shutdown)
        p->shutdown(p->state);
    else
        uv_stop(s->loop);
}

int hy_cp_main(const struct hy_cp_program *p, int argc, char **argv)
{
    const struct hy_config_spec *spec = p->spec;
    int rc = hy_config_run_command(spec, p->cfg, argc, argv, p->command, p->hint);
    if (rc >= 0)
        return rc;
    hy_log_threshold = *(const enum hy_log_level *)((const char *)p->cfg + p->log_level_offset);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sigs[2];
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = (void *)p;
        uv_signal_start(&sigs[i], on_signal, signums[i]);
    }
    rc = p->open(p->state, p->cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    /* close our handles; lws closes its own: run until all have finished */
    p->stop(p->state);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    p->close(p->state);
    uv_loop_close(&loop);
    hy_config_fini(spec, p->cfg);
    hy_log(HY_LOG_INFO, p->component, "stopped");
    return rc < 0 ? 1 : 0;
}
