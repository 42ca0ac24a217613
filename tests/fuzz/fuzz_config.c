/* libFuzzer target for the YAML configuration file (common/config.h): any
 * bytes as the file given with --config, read by hy_config_parse with an
 * option table of every type and nested keys; no crash, no leak, and every
 * failure says what is wrong.
 *
 * The file lives in memory: a memfd opened by its /proc/self/fd path (or,
 * without /proc, one file in /dev/shm reused by every run and removed at
 * exit). The environment variables of the table are cleared once, so runs
 * do not depend on the caller's environment. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "poison.h"

/* A control plane's settings, one of each type, some nested. */
struct cfg {
    char *data_dir;
    struct hy_addr api_address;
    struct hy_addr kds_address;
    char *tls_cert;
    char *tls_key;
    int64_t workers;
    uint64_t max_conns;
    bool debug;
    int64_t timeout_ms;
    uint64_t max_body;
    uint64_t map_size;
    enum hy_log_level log_level;
    char *zone;
    char *global_url;
    struct hy_strings vars;
};

#define F(field) offsetof(struct cfg, field)
static const struct hy_option opts[] = {
    {"data-dir", "HYPHA_FUZZ_DATA_DIR", "dataDir", HY_OPT_STRING, F(data_dir), "./data", "store"},
    {"api-address", "HYPHA_FUZZ_API_ADDRESS", "apiServer.address", HY_OPT_ADDRESS, F(api_address),
     "127.0.0.1:5681", "HTTP API"},
    {"kds-address", "HYPHA_FUZZ_KDS_ADDRESS", "kds.address", HY_OPT_ADDRESS, F(kds_address),
     "0.0.0.0:5685", "KDS"},
    {"api-tls-cert", "HYPHA_FUZZ_API_TLS_CERT", "apiServer.tls.cert", HY_OPT_STRING, F(tls_cert),
     NULL, "certificate"},
    {"api-tls-key", "HYPHA_FUZZ_API_TLS_KEY", "apiServer.tls.key", HY_OPT_STRING, F(tls_key), NULL,
     "key"},
    {"workers", "HYPHA_FUZZ_WORKERS", "workers", HY_OPT_INT, F(workers), "2", "threads"},
    {"max-conns", "HYPHA_FUZZ_MAX_CONNS", "kds.maxConns", HY_OPT_UINT, F(max_conns), "1000",
     "zones"},
    {"debug", "HYPHA_FUZZ_DEBUG", "debug", HY_OPT_BOOL, F(debug), "false", "debug"},
    {"timeout", "HYPHA_FUZZ_TIMEOUT", "apiServer.timeout", HY_OPT_DURATION, F(timeout_ms), "30s",
     "timeout"},
    {"api-max-body", "HYPHA_FUZZ_API_MAX_BODY", "apiServer.maxBody", HY_OPT_SIZE, F(max_body),
     "1Mi", "body"},
    {"store-map-size", "HYPHA_FUZZ_STORE_MAP_SIZE", "store.mapSize", HY_OPT_SIZE, F(map_size),
     "1Gi", "LMDB"},
    {"log-level", "HYPHA_FUZZ_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, F(log_level), "info",
     "level"},
    {"zone", NULL, "zone", HY_OPT_STRING, F(zone), "", "zone name"},
    {"global-url", NULL, "multizone.zone.globalAddress", HY_OPT_STRING, F(global_url), NULL,
     "global"},
    {"var", "HYPHA_FUZZ_VAR", "dataplane.vars", HY_OPT_STRINGS, F(vars), NULL, "variables"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const struct hy_config_spec spec = {
    .program = "hypha-fuzz",
    .opts = opts,
    .nopts = NOPTS,
};

static int fd = -1;
static char path[64];
static bool path_is_file; /* the /dev/shm fallback, to remove at exit */

static void remove_file(void)
{
    if (path_is_file)
        unlink(path);
}

static void open_file(void)
{
    fd = memfd_create("hypha-fuzz-config", MFD_CLOEXEC);
    if (fd >= 0) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (access(path, R_OK) == 0)
            return;
        close(fd);
    }
    snprintf(path, sizeof(path), "/dev/shm/hypha-fuzz-config-XXXXXX");
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        perror("fuzz_config: mkostemp in /dev/shm");
        abort();
    }
    path_is_file = true;
    atexit(remove_file);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].env)
            unsetenv(opts[i].env);
    open_file();
    return 0;
}

static void put_file(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            abort();
        off += (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    put_file(data, size);
    char prog[] = "hypha-fuzz", flag[] = "--config";
    char *argv[] = {prog, flag, path, NULL};
    struct cfg cfg = {0};
    struct hy_config_result res;
    int rc = hy_config_parse(&spec, &cfg, 3, argv, &res);
    if (rc < 0) {
        if (!res.error[0] || !memchr(res.error, '\0', sizeof(res.error)))
            abort(); /* every failure says what is wrong */
    } else {
        if (rc != 0 || res.error[0] || res.nargs != 0 || !res.config_file ||
            (unsigned)cfg.log_level > HY_LOG_ERROR || !cfg.data_dir || !cfg.zone)
            abort();
        char buf[300];
        hy_addr_format(&cfg.api_address, buf, sizeof(buf));
        hy_addr_format(&cfg.kds_address, buf, sizeof(buf));
        /* what the file set parses again as a flag would */
        struct hy_addr again;
        if (hy_addr_parse(hy_addr_format(&cfg.api_address, buf, sizeof(buf)), &again, NULL, 0) <
                0 ||
            again.kind != cfg.api_address.kind || again.port != cfg.api_address.port ||
            strcmp(again.host, cfg.api_address.host) != 0)
            abort();
        /* a list holds non-empty items without commas */
        if ((cfg.vars.n == 0) != (cfg.vars.v == NULL))
            abort();
        for (size_t i = 0; i < cfg.vars.n; i++)
            if (!cfg.vars.v[i][0] || strchr(cfg.vars.v[i], ','))
                abort();
    }
    hy_config_fini(&spec, &cfg);
    return 0;
}
