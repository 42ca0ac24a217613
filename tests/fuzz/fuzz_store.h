/* What the fuzz targets that apply messages to a real store share: one
 * scratch LMDB store for the whole run, in /dev/shm when there is one,
 * removed at exit. Header-only: each target is one file. */
#ifndef HY_FUZZ_STORE_H
#define HY_FUZZ_STORE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"

static struct hy_store *fuzz_store;
static char fuzz_store_dir[64];

static void fuzz_store_cleanup(void)
{
    char cmd[128];
    hy_store_close(fuzz_store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_store_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fuzz_store_dir);
}

/* Opens the run's store (tag names its directory) or aborts. */
static struct hy_store *fuzz_store_open(const char *tag, size_t map_size)
{
    snprintf(fuzz_store_dir, sizeof(fuzz_store_dir), "%s/hy-fuzz-%s-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", tag);
    if (!mkdtemp(fuzz_store_dir))
        abort();
    struct hy_store_config c = {
        .path = fuzz_store_dir, .map_size = map_size, .log_retention = 2000};
    if (hy_store_open(&c, &fuzz_store) < 0)
        abort();
    atexit(fuzz_store_cleanup);
    return fuzz_store;
}

#endif
