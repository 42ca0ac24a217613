/* The data plane's websocket frame parser (net/ws_frame.c) on arbitrary
 * bytes, as a hostile or broken control plane could send them: the first
 * byte picks the side (masked frames or not) and a small message limit,
 * the rest is fed in pieces whose sizes come from the input too. Every
 * message handed out must fit the limit, every control frame 125 bytes, an
 * error must carry a close code the RFC allows. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ws_frame.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    size_t max;
};

static int check(void *ud, int opcode, const uint8_t *d, size_t len)
{
    const struct ctx *c = ud;
    if (opcode == HY_WSF_BINARY) {
        if (len > c->max)
            abort();
    } else if (opcode == HY_WSF_PING || opcode == HY_WSF_PONG || opcode == HY_WSF_CLOSE) {
        if (len > HY_WSF_CONTROL_MAX)
            abort();
    } else {
        abort();
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++)
        sink ^= d[i]; /* every byte handed out is readable */
    (void)sink;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct ctx c = {.max = (size_t)1 + (data[0] & 0x7f) * 97u};
    struct hy_wsf_parser p;
    hy_wsf_parser_init(&p, c.max, data[0] & 0x80);
    size_t step = (size_t)data[1] % 17 + 1, i = 2;
    while (i < size) {
        size_t n = size - i < step ? size - i : step;
        int rc = hy_wsf_feed(&p, data + i, n, check, &c);
        if (rc < 0) {
            if (!p.err_why || (p.err_code != 1002 && p.err_code != 1003 && p.err_code != 1009 &&
                               p.err_code != 1011))
                abort();
            break;
        }
        i += n;
    }
    hy_wsf_parser_fini(&p);
    return 0;
}
