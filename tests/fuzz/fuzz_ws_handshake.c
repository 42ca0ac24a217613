/* The check of a server's websocket upgrade response (hy_wsf_response) on
 * arbitrary bytes: it must accept only a complete head within the input
 * and the size bound, and say why when it refuses. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[160] = "";
    /* the key whose accept value is s3pPLMBiTxaQ9kYGzzhZRbK+xOo= (RFC 6455 1.3) */
    long n = hy_wsf_response((const char *)data, size, "dGhlIHNhbXBsZSBub25jZQ==", "hypha.dp.v1",
                             why, sizeof(why));
    if (n > 0) {
        if ((size_t)n > size || n < 4 || memcmp(data + n - 4, "\r\n\r\n", 4) != 0)
            abort();
    } else if (n == 0) {
        if (size >= HY_WSF_RESPONSE_MAX)
            abort();
    } else if (!why[0]) {
        abort();
    }
    return 0;
}
