/* The sidecar's reading of an app's metrics answer (sidecar/dp_prom.c):
 * the HTTP/1 answer an app sends when MeshMetric has the sidecar scrape
 * it, then its page merged after the sidecar's own (families already
 * there left out). Anything an app sends must be read within bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dp_prom.h"
#include "poison.h"

static const char OURS[] = "# HELP process_open_fds Open fds.\n# TYPE process_open_fds gauge\n"
                           "process_open_fds 12\n# TYPE hypha_dp_connected gauge\n"
                           "hypha_dp_connected 1\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body;
    size_t blen;
    char why[160];
    struct hy_dp_prom_names seen = {0};
    struct hy_buf out = {0};
    size_t dropped;
    if (hy_dp_prom_names_add(&seen, OURS, sizeof(OURS) - 1) == 0 &&
        hy_dp_prom_app_page((const char *)data, size, &body, &blen, why, sizeof(why)) == 0)
        hy_dp_prom_merge_app(&seen, body, blen, &out, &dropped);
    /* and the bytes as a page on their own, as a second app's */
    hy_dp_prom_merge_app(&seen, (const char *)data, size, &out, &dropped);
    hy_buf_fini(&out);
    hy_dp_prom_names_fini(&seen);
    return 0;
}
