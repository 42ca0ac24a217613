/* libFuzzer target for KDS frames: any bytes as a KdsMessage; a Changes is
 * applied, as a zone's would be on the global CP and as the global CP's
 * would be in a zone, to a store that lives for the whole run. Nothing may
 * crash or leak, and nothing outside each direction's scope may be
 * written. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kds.h"
#include "fuzz_east.h"
#include "fuzz_store.h"
#include "poison.h"

static struct hy_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    store = fuzz_store_open("kds", 256u << 20);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, size, data);
    if (!m)
        return 0;
    if (m->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_CHANGES) {
        struct hy_kds_scope up = {from_east, NULL}, owned = {owned_by_east, NULL};
        struct hy_kds_scope down = {to_east, NULL};
        /* a snapshot in parts is gathered across inputs, as across messages */
        static struct hy_kds_snap_rx rx_global, rx_zone;
        struct hy_kds_apply_opts global_side = {
            .accept = &up, .replace = &owned, .transform = rename_east, .parts = &rx_global};
        struct hy_kds_apply_opts zone_side = {.accept = &down, .replace = &down, .parts = &rx_zone};
        char err[256];
        hy_kds_apply(store, m->changes, &global_side, NULL, err, sizeof(err));
        hy_kds_apply(store, m->changes, &zone_side, NULL, err, sizeof(err));
        /* what the store now holds must be collectable again */
        Hypha__V1__Changes *c = NULL;
        if (hy_kds_collect(store, 0, 0, &down, &c) == 0)
            hypha__v1__changes__free_unpacked(c, NULL);
        /* the first part of a snapshot of it, under a small budget */
        struct hy_kds_budget b = {.max_bytes = 1024};
        struct hy_kds_snap_tx tx = {0};
        if (hy_kds_collect_parts(store, UINT64_MAX, &down, &b, &tx, &c) == 0)
            hypha__v1__changes__free_unpacked(c, NULL);
        hy_kds_snap_tx_reset(&tx);
    }
    if (m->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_HELLO) {
        /* what a global CP reads of a Hello before admitting it */
        hy_kds_has_feature(m->hello->features, m->hello->n_features, HY_KDS_FEATURE_SNAPSHOT_PARTS);
        hy_kds_budget_bytes(4u << 20, m->hello->max_message);
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
    return 0;
}
