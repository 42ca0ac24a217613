/* RFC 6455 framing and the client's handshake check (ws_frame.h). The
 * parser reads a frame header byte by byte (it may arrive split across
 * reads), decides on it alone whether the frame is allowed and fits, and
 * only then takes payload bytes. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "base64.h"
#include "ws_frame.h"
#include "poison.h"

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { ST_HEAD, ST_PAYLOAD };

void hy_wsf_parser_init(struct hy_wsf_parser *p, size_t max_message, bool masked)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message ? max_message : (4u << 20);
    p->masked = masked;
    p->hneed = 2;
}

void hy_wsf_parser_fini(struct hy_wsf_parser *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
}

bool hy_wsf_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

static int error(struct hy_wsf_parser *p, int code, const char *why)
{
    p->err_code = code;
    p->err_why = why;
    return -1;
}

/* The header is whole (hlen == hneed) or needs more bytes: decides which,
 * and checks it once whole. Returns 0, or -1 on a protocol error. */
static int header_step(struct hy_wsf_parser *p)
{
    const uint8_t *h = p->hdr;
    if (p->hlen == 2) {
        unsigned len7 = h[1] & 0x7f;
        p->hneed = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
        if (p->hlen < p->hneed)
            return 0;
    }
    if (p->hlen < p->hneed)
        return 0;
    /* whole: check it */
    p->fin = h[0] & 0x80;
    p->opcode = h[0] & 0x0f;
    bool masked = h[1] & 0x80;
    unsigned len7 = h[1] & 0x7f, off = 2;
    if (h[0] & 0x70)
        return error(p, 1002, "reserved bits set (no extension was negotiated)");
    if (masked != p->masked)
        return error(p, 1002,
                     p->masked ? "unmasked frame from a client" : "masked frame from a server");
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        off = 4;
        if (len < 126)
            return error(p, 1002, "frame length not in its shortest form");
    } else if (len7 == 127) {
        len = 0;
        for (unsigned i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        off = 10;
        if (len >> 63)
            return error(p, 1002, "frame length with its top bit set");
        if (len <= 0xffff)
            return error(p, 1002, "frame length not in its shortest form");
    }
    if (masked)
        memcpy(p->mask, h + off, 4);
    p->plen = len;
    p->pgot = 0;
    switch (p->opcode) {
    case HY_WSF_CLOSE:
    case HY_WSF_PING:
    case HY_WSF_PONG:
        if (!p->fin)
            return error(p, 1002, "fragmented control frame");
        if (len > HY_WSF_CONTROL_MAX)
            return error(p, 1002, "control frame longer than 125 bytes");
        if (p->opcode == HY_WSF_CLOSE && len == 1)
            return error(p, 1002, "close frame with a 1-byte payload");
        return 0;
    case HY_WSF_CONT:
        if (!p->in_msg)
            return error(p, 1002, "continuation frame without a message under way");
        break;
    case HY_WSF_TEXT:
        if (p->in_msg)
            return error(p, 1002, "new message before the last one's final fragment");
        return error(p, 1003, "only binary messages are accepted");
    case HY_WSF_BINARY:
        if (p->in_msg)
            return error(p, 1002, "new message before the last one's final fragment");
        p->in_msg = true;
        p->msg_len = 0;
        break;
    default:
        return error(p, 1002, "unknown opcode");
    }
    if (len > p->max_message || p->msg_len > p->max_message - len)
        return error(p, 1009, "message larger than the limit");
    size_t need = p->msg_len + (size_t)len;
    if (need > p->msg_cap) {
        size_t cap = p->msg_cap ? p->msg_cap : 4096;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > p->max_message)
            cap = p->max_message;
        uint8_t *m = realloc(p->msg, cap ? cap : 1);
        if (!m)
            return error(p, 1011, "out of memory");
        p->msg = m;
        p->msg_cap = cap;
    }
    return 0;
}

/* The frame's payload is all in: hands it on. Returns 0, 1 (stop) or -1. */
static int frame_done(struct hy_wsf_parser *p, hy_wsf_event_fn fn, void *ud)
{
    p->state = ST_HEAD;
    p->hlen = 0;
    p->hneed = 2;
    if (p->opcode >= HY_WSF_CLOSE) {
        if (p->opcode == HY_WSF_CLOSE && p->plen >= 2 &&
            !hy_wsf_code_valid(p->ctl[0] << 8 | p->ctl[1]))
            return error(p, 1002, "close frame with an invalid code");
        return fn(ud, p->opcode, p->ctl, (size_t)p->plen) ? 1 : 0;
    }
    if (!p->fin)
        return 0;
    p->in_msg = false;
    size_t n = p->msg_len;
    p->msg_len = 0;
    int rc = fn(ud, HY_WSF_BINARY, p->msg, n) ? 1 : 0;
    if (p->msg_cap > HY_WSF_RX_KEEP) { /* do not hold megabytes per idle connection */
        free(p->msg);
        p->msg = NULL;
        p->msg_cap = 0;
    }
    return rc;
}

int hy_wsf_feed(struct hy_wsf_parser *p, const uint8_t *in, size_t len, hy_wsf_event_fn fn,
                void *ud)
{
    size_t i = 0;
    if (p->err_code)
        return -1;
    while (i < len) {
        if (p->state == ST_HEAD) {
            p->hdr[p->hlen++] = in[i++];
            if (header_step(p) < 0)
                return -1;
            if (p->hlen < p->hneed)
                continue;
            p->state = ST_PAYLOAD;
            if (p->plen)
                continue;
        } else {
            uint64_t want = p->plen - p->pgot;
            size_t n = len - i < want ? len - i : (size_t)want;
            uint8_t *dst = p->opcode >= HY_WSF_CLOSE ? p->ctl + p->pgot : p->msg + p->msg_len;
            memcpy(dst, in + i, n);
            if (p->masked)
                hy_wsf_mask(dst, n, p->mask, p->pgot);
            p->pgot += n;
            if (p->opcode < HY_WSF_CLOSE)
                p->msg_len += n;
            i += n;
            if (p->pgot < p->plen)
                continue;
        }
        int rc = frame_done(p, fn, ud);
        if (rc)
            return rc;
    }
    return 0;
}

size_t hy_wsf_header(uint8_t out[HY_WSF_HEADER_MAX], int opcode, bool fin, uint64_t len,
                     const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void hy_wsf_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(offset + i) & 3];
}

void hy_wsf_key(const uint8_t rnd[16], char out[25])
{
    hy_base64_encode(rnd, 16, out, false);
}

int hy_wsf_accept(const char *key, char out[29])
{
    char in[128];
    uint8_t sha[WC_SHA_DIGEST_SIZE];
    int n = snprintf(in, sizeof(in), "%s%s", key, GUID);
    if (n < 0 || (size_t)n >= sizeof(in) || wc_ShaHash((const uint8_t *)in, (word32)n, sha) != 0)
        return -1;
    hy_base64_encode(sha, sizeof(sha), out, false);
    return 0;
}

/* Whether the comma-separated list v[0..n) holds token (any case). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

static bool value_is(const char *v, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(v, want, n) == 0;
}

long hy_wsf_response(const char *buf, size_t len, const char *key, const char *subprotocol,
                     char *why, size_t why_size)
{
    size_t end = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = i + 4;
            break;
        }
    if (!end) {
        if (len < HY_WSF_RESPONSE_MAX)
            return 0;
        snprintf(why, why_size, "response head longer than %d bytes", HY_WSF_RESPONSE_MAX);
        return -1;
    }
    /* status line: HTTP/1.1 SP 3DIGIT SP reason */
    const char *eol = memchr(buf, '\r', end);
    size_t sl = (size_t)(eol - buf);
    if (sl < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0 || !isdigit((unsigned char)buf[9]) ||
        !isdigit((unsigned char)buf[10]) || !isdigit((unsigned char)buf[11]) ||
        (sl > 12 && buf[12] != ' ')) {
        snprintf(why, why_size, "not an HTTP/1.1 response");
        return -1;
    }
    if (memcmp(buf + 9, "101", 3) != 0) {
        size_t rl = sl > 13 ? sl - 13 : 0;
        if (rl > 60)
            rl = 60;
        char reason[64];
        size_t k = 0;
        for (size_t i = 0; i < rl; i++)
            reason[k++] = buf[13 + i] >= 0x20 && buf[13 + i] < 0x7f ? buf[13 + i] : '?';
        reason[k] = '\0';
        snprintf(why, why_size, "HTTP status %.3s%s%s", buf + 9, k ? " " : "", reason);
        return -1;
    }
    char accept[29];
    if (hy_wsf_accept(key, accept) < 0) {
        snprintf(why, why_size, "cannot compute the expected Sec-WebSocket-Accept");
        return -1;
    }
    bool upgrade = false, connection = false, acc = false, proto = false;
    const char *p = eol + 2, *stop = buf + end - 2;
    while (p < stop) {
        const char *le = memchr(p, '\r', (size_t)(stop - p));
        if (!le || le[1] != '\n') {
            snprintf(why, why_size, "malformed header line");
            return -1;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p) {
            snprintf(why, why_size, "malformed header line");
            return -1;
        }
        for (const char *c = p; c < colon; c++)
            if (*c <= 0x20 || *c >= 0x7f) {
                snprintf(why, why_size, "malformed header name");
                return -1;
            }
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        for (const char *c = v; c < ve; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t') {
                snprintf(why, why_size, "control character in a header value");
                return -1;
            }
#define NAME(s) (nl == sizeof(s) - 1 && strncasecmp(p, s, nl) == 0)
        if (NAME("upgrade")) {
            upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
        } else if (NAME("connection")) {
            connection = connection || has_token(v, vl, "upgrade");
        } else if (NAME("sec-websocket-accept")) {
            if (acc || !value_is(v, vl, accept)) {
                snprintf(why, why_size, "wrong Sec-WebSocket-Accept");
                return -1;
            }
            acc = true;
        } else if (NAME("sec-websocket-protocol")) {
            if (proto || !value_is(v, vl, subprotocol)) {
                snprintf(why, why_size, "the server chose another subprotocol (%.*s)",
                         (int)(vl > 40 ? 40 : vl), v);
                return -1;
            }
            proto = true;
        } else if (NAME("sec-websocket-extensions")) {
            snprintf(why, why_size, "the server chose an extension we did not offer");
            return -1;
        }
#undef NAME
        p = le + 2;
    }
    if (!upgrade || !connection)
        snprintf(why, why_size, "no \"Upgrade: websocket\" and \"Connection: upgrade\"");
    else if (!acc)
        snprintf(why, why_size, "no Sec-WebSocket-Accept");
    else if (!proto)
        snprintf(why, why_size, "the server did not accept subprotocol %s", subprotocol);
    else
        return (long)end;
    return -1;
}
