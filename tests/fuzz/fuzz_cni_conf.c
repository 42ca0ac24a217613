/* hypha-cni's network configuration reader (tproxy/cni_conf.c): any bytes
 * as the runtime's stdin, no crash, no leak. A config that parses must
 * give settings in range and rules for both families, and its prevResult
 * must write back as JSON that parses again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hy_cni_conf c;
    char err[512];
    if (hy_cni_conf_parse((const char *)data, size, &c, err, sizeof(err))) {
        if (c.root || !err[0])
            abort();
        return 0;
    }
    if (!c.tp.port_outbound || !c.tp.port_inbound || !c.tp.port_dns ||
        c.tp.n_excl_in_ports > HY_TPROXY_MAX_LIST || c.tp.n_excl_out_ports > HY_TPROXY_MAX_LIST ||
        c.tp.n_excl_out_cidrs > HY_TPROXY_MAX_LIST || c.tp.n_excl_out_uids > HY_TPROXY_MAX_LIST ||
        c.n_exclude_namespaces > HY_CNI_MAX_NAMESPACES)
        abort();
    for (int family = 4; family <= 6; family += 2) {
        struct hy_buf b = {0};
        if (hy_tproxy_rules(&c.tp, family, &b) || strncmp(b.data, "*nat\n", 5) ||
            !strstr(b.data, "COMMIT\n"))
            abort();
        hy_buf_fini(&b);
    }
    if (c.prev_result) {
        struct hy_buf b = {0};
        struct hy_json *again = NULL;
        if (hy_json_write(c.prev_result, &b) == 0 &&
            hy_json_parse(b.data, b.len, &again, err, sizeof(err)))
            abort();
        hy_json_free(again);
        hy_buf_fini(&b);
    }
    hy_cni_conf_fini(&c);
    return 0;
}
