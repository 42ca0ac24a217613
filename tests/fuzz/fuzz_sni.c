/* hy_sni_parse on arbitrary bytes: the first thing the ingress does with
 * what any client on the network sends. A found name must be a DNS name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[HY_SNI_MAX];
    const char *why = NULL;
    int rc = hy_sni_parse(data, size, name, &why);
    if (rc == HY_SNI_FOUND) {
        size_t n = strlen(name);
        if (n == 0 || n >= HY_SNI_MAX)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                  name[i] == '-' || name[i] == '.'))
                abort();
    } else if (rc < 0 && (!why || name[0])) {
        abort();
    }
    return 0;
}
