/* hy_strerror: one place that names every error code. */
#include <string.h>

#include "error.h"
#include "poison.h"

const char *hy_strerror(int err)
{
    static const char *const names[] = {
        [HY_EINVAL - HY_EFIRST] = "invalid input",
        [HY_ENOTFOUND - HY_EFIRST] = "not found",
        [HY_ECONFLICT - HY_EFIRST] = "version conflict",
        [HY_EEXIST - HY_EFIRST] = "already exists",
        [HY_ETOOOLD - HY_EFIRST] = "revision too old: change log compacted, take a snapshot",
        [HY_EFULL - HY_EFIRST] = "store is full",
        [HY_ETOOBIG - HY_EFIRST] = "input too large",
        [HY_EDEPTH - HY_EFIRST] = "input nested too deeply",
        [HY_ESTORE - HY_EFIRST] = "store failure",
        [HY_ENOMEM - HY_EFIRST] = "out of memory",
        [HY_ECRYPTO - HY_EFIRST] = "crypto library failure",
        [HY_EVERIFY - HY_EFIRST] = "verification failed",
        [HY_EUNAVAIL - HY_EFIRST] = "store database unavailable",
        [HY_EBUSY - HY_EFIRST] = "store database busy (lock wait timed out)",
    };
    if (err == 0)
        return "success";
    if (err >= HY_EFIRST && err < HY_ELAST)
        return names[err - HY_EFIRST];
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}
