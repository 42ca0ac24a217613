/* The CA module's DER writer (nested values with lengths patched on close)
 * and its bounds-checked reader. */
#include <string.h>

#include "ca_der.h"
#include "error.h"
#include "poison.h"

#define MAX_LEN_BYTES 3 /* 16 MiB: far beyond any certificate */

static void fail(struct hy_ca_der *d, int err)
{
    if (!d->err)
        d->err = err;
}

void hy_ca_der_raw(struct hy_ca_der *d, const void *p, size_t n)
{
    if (!d->err && n && hy_buf_append(&d->out, p, n) < 0)
        fail(d, HY_ENOMEM);
}

void hy_ca_der_begin(struct hy_ca_der *d, uint8_t tag)
{
    if (d->err)
        return;
    if (d->depth == HY_CA_DER_DEPTH) {
        fail(d, HY_EINVAL);
        return;
    }
    /* one length byte for now; _end widens it when the contents need more */
    uint8_t hdr[2] = {tag, 0};
    hy_ca_der_raw(d, hdr, sizeof(hdr));
    d->open[d->depth++] = d->out.len;
}

void hy_ca_der_end(struct hy_ca_der *d)
{
    if (d->err)
        return;
    if (d->depth == 0) {
        fail(d, HY_EINVAL);
        return;
    }
    size_t start = d->open[--d->depth];
    size_t n = d->out.len - start;
    if (n < 0x80) {
        d->out.data[start - 1] = (char)n;
        return;
    }
    int k = n <= 0xff ? 1 : n <= 0xffff ? 2 : n <= 0xffffff ? 3 : 0;
    if (k == 0 || k > MAX_LEN_BYTES) {
        fail(d, HY_EINVAL);
        return;
    }
    uint8_t pad[MAX_LEN_BYTES] = {0};
    hy_ca_der_raw(d, pad, (size_t)k);
    if (d->err)
        return;
    uint8_t *p = (uint8_t *)d->out.data;
    memmove(p + start + k, p + start, n);
    p[start - 1] = (uint8_t)(0x80 | k);
    for (int i = 0; i < k; i++)
        p[start + i] = (uint8_t)(n >> (8 * (k - 1 - i)));
}

void hy_ca_der_put(struct hy_ca_der *d, uint8_t tag, const void *p, size_t n)
{
    hy_ca_der_begin(d, tag);
    hy_ca_der_raw(d, p, n);
    hy_ca_der_end(d);
}

void hy_ca_der_fini(struct hy_ca_der *d)
{
    hy_buf_fini(&d->out);
    memset(d, 0, sizeof(*d));
}

bool hy_ca_der_read(const uint8_t **p, const uint8_t *end, struct hy_ca_der_tlv *out)
{
    const uint8_t *q = *p;
    if (end - q < 2 || (q[0] & 0x1f) == 0x1f) /* multi-byte tags never occur in X.509 */
        return false;
    uint8_t tag = *q++;
    size_t len = *q++;
    if (len & 0x80) {
        size_t k = len & 0x7f;
        if (k == 0 || k > MAX_LEN_BYTES || (size_t)(end - q) < k)
            return false;
        len = 0;
        for (size_t i = 0; i < k; i++)
            len = len << 8 | *q++;
    }
    if ((size_t)(end - q) < len)
        return false;
    out->tag = tag;
    out->start = *p;
    out->val = q;
    out->len = len;
    out->size = (size_t)(q - *p) + len;
    *p = q + len;
    return true;
}
