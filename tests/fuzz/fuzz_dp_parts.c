/* libFuzzer target for what a sidecar does with a zone's DpConfigUpdate
 * (common/dp_parts.c): any bytes in, no crash, no leak; an update applied
 * twice in a row, or on the wrong version, is refused; what is accepted
 * assembles or is refused with why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dp_parts.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Hypha__V1__DpConfigUpdate *u = hypha__v1__dp_config_update__unpack(NULL, size, data);
    if (!u)
        return 0;
    struct hy_dp_parts held = {0}, staged;
    char why[512];
    if (hy_dp_parts_stage(&held, u, &staged, why, sizeof(why)) == 0) {
        Hypha__V1__DpConfig *c = NULL;
        if (hy_dp_parts_assemble(&staged, &c, why, sizeof(why)) == 0) {
            if (strcmp(c->version, staged.version))
                abort();
            hypha__v1__dp_config__free_unpacked(c, NULL);
        }
        char version[HY_DP_VERSION_LEN + 1];
        memcpy(version, staged.version, sizeof(version));
        hy_dp_parts_commit(&held, &staged, u);
        if (strcmp(held.version, version))
            abort();
        /* the same update again applies on "" or on another version */
        if (u->from_version && u->from_version[0] &&
            hy_dp_parts_stage(&held, u, &staged, why, sizeof(why)) == 0)
            abort();
        Hypha__V1__DpPartRef **refs = NULL;
        size_t n = 0;
        if (hy_dp_parts_refs(&held, &refs, &n) == 0) {
            for (size_t i = 0; i < n; i++)
                free(refs[i]);
            free(refs);
        }
    }
    hy_dp_parts_fini(&held);
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    return 0;
}
