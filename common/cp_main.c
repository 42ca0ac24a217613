/* The main() of a control plane: parse the option table, open, run the loop
 * until SIGINT/SIGTERM, stop, let libwebsockets close its handles, close. */
#include <signal.h>
#include <stdio.h>

#include "cp.h"
#include "log.h"
#include "poison.h"

static void on_signal(uv_signal_t *s, int signum)
{
    hy_log(HY_LOG_INFO, (const char *)s->data, "signal %d: shutting down", signum);
    uv_stop(s->loop);
}

int hy_cp_main(const struct hy_cp_program *p, int argc, char **argv)
{
    const struct hy_config_spec *spec = p->spec;
    struct hy_config_result res = {0};
    int rc = hy_config_parse(spec, p->cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf out = {0};
        if (rc < 0)
            fprintf(stderr, "%s: %s\n(see %s --help)\n", spec->program, res.error, spec->program);
        else if (res.help && hy_config_usage(spec, &out) == 0)
            fputs(out.data, stdout);
        else if (res.version)
            printf("%s %s\n", spec->program, HYPHA_VERSION);
        hy_buf_fini(&out);
        hy_config_fini(spec, p->cfg);
        return rc < 0 ? 2 : 0;
    }
    hy_log_threshold = ((const struct hy_cp_cfg *)((const char *)p->cfg + p->cp_offset))->log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sigs[2];
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = (void *)p->component;
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
