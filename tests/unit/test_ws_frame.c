/* The frame parser, encoder and handshake check of net/ws_frame.c: masks,
 * the three length encodings at their edges, fragmentation, control frames
 * between fragments, limits (1009), what the RFC forbids (1002, 1003), and
 * the server's upgrade response (accept key, subprotocol, status). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_frame.h"
#include "poison.h"

struct got {
    int n;
    int opcode[16];
    size_t len[16];
    uint8_t *data[16];
    int stop_after; /* 0: never */
};

static int collect(void *ud, int opcode, const uint8_t *data, size_t len)
{
    struct got *g = ud;
    assert_true(g->n < 16);
    g->opcode[g->n] = opcode;
    g->len[g->n] = len;
    g->data[g->n] = malloc(len ? len : 1);
    if (len)
        memcpy(g->data[g->n], data, len);
    g->n++;
    return g->stop_after && g->n >= g->stop_after;
}

static void got_free(struct got *g)
{
    for (int i = 0; i < g->n; i++)
        free(g->data[i]);
}

/* A frame as a server (unmasked) or a client (masked) writes it; its length. */
static size_t frame(uint8_t *out, int opcode, bool fin, const uint8_t *p, size_t len, bool mask)
{
    static const uint8_t m[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = hy_wsf_header(out, opcode, fin, len, mask ? m : NULL);
    if (len)
        memcpy(out + h, p, len);
    if (mask)
        hy_wsf_mask(out + h, len, m, 0);
    return h + len;
}

static void test_mask_roundtrip(void **state)
{
    (void)state;
    uint8_t d[11] = "hello world", mask[4] = {1, 2, 3, 4}, orig[11];
    memcpy(orig, d, sizeof(d));
    hy_wsf_mask(d, 5, mask, 0);
    hy_wsf_mask(d + 5, 6, mask, 5); /* in two pieces, offset kept */
    assert_memory_not_equal(d, orig, sizeof(d));
    hy_wsf_mask(d, sizeof(d), mask, 0);
    assert_memory_equal(d, orig, sizeof(d));
}

/* Every length encoding at its edges, each frame fed one byte at a time
 * and whole, masked (a server's parser) and not (a client's). */
static void test_lengths(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    for (int masked = 0; masked < 2; masked++)
        for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
            size_t len = lens[k];
            uint8_t *p = malloc(len + 1), *f = malloc(len + HY_WSF_HEADER_MAX);
            for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(i * 7);
            size_t n = frame(f, HY_WSF_BINARY, true, p, len, masked);
            size_t want_h = (len < 126 ? 2 : len <= 65535 ? 4 : 10) + (masked ? 4 : 0);
            assert_int_equal(n, want_h + len);
            for (int bytewise = 0; bytewise < 2; bytewise++) {
                struct hy_wsf_parser ps;
                struct got g = {0};
                hy_wsf_parser_init(&ps, 1 << 20, masked);
                if (bytewise)
                    for (size_t i = 0; i < n; i++)
                        assert_int_equal(hy_wsf_feed(&ps, f + i, 1, collect, &g), 0);
                else
                    assert_int_equal(hy_wsf_feed(&ps, f, n, collect, &g), 0);
                assert_int_equal(g.n, 1);
                assert_int_equal(g.opcode[0], HY_WSF_BINARY);
                assert_int_equal(g.len[0], len);
                if (len)
                    assert_memory_equal(g.data[0], p, len);
                got_free(&g);
                hy_wsf_parser_fini(&ps);
            }
            free(p);
            free(f);
        }
}

/* A message in three fragments with a ping between two of them: the ping
 * comes out at once, the message whole after its last fragment. */
static void test_fragments_and_control(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n = 0;
    n += frame(buf + n, HY_WSF_BINARY, false, (const uint8_t *)"abc", 3, false);
    n += frame(buf + n, HY_WSF_PING, true, (const uint8_t *)"pi", 2, false);
    n += frame(buf + n, HY_WSF_CONT, false, (const uint8_t *)"def", 3, false);
    n += frame(buf + n, HY_WSF_CONT, true, (const uint8_t *)"g", 1, false);
    n += frame(buf + n, HY_WSF_PONG, true, NULL, 0, false);
    uint8_t cl[] = {0x03, 0xe8, 'b', 'y', 'e'};
    n += frame(buf + n, HY_WSF_CLOSE, true, cl, sizeof(cl), false);
    struct hy_wsf_parser ps;
    struct got g = {0};
    hy_wsf_parser_init(&ps, 0, false);
    assert_int_equal(hy_wsf_feed(&ps, buf, n, collect, &g), 0);
    assert_int_equal(g.n, 4);
    assert_int_equal(g.opcode[0], HY_WSF_PING);
    assert_memory_equal(g.data[0], "pi", 2);
    assert_int_equal(g.opcode[1], HY_WSF_BINARY);
    assert_int_equal(g.len[1], 7);
    assert_memory_equal(g.data[1], "abcdefg", 7);
    assert_int_equal(g.opcode[2], HY_WSF_PONG);
    assert_int_equal(g.opcode[3], HY_WSF_CLOSE);
    assert_int_equal(g.len[3], sizeof(cl));
    got_free(&g);
    hy_wsf_parser_fini(&ps);
}

/* The callback asks to stop: the rest of the input is left alone. */
static void test_stop(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = frame(buf, HY_WSF_BINARY, true, (const uint8_t *)"a", 1, false);
    n += frame(buf + n, HY_WSF_BINARY, true, (const uint8_t *)"b", 1, false);
    struct hy_wsf_parser ps;
    struct got g = {.stop_after = 1};
    hy_wsf_parser_init(&ps, 0, false);
    assert_int_equal(hy_wsf_feed(&ps, buf, n, collect, &g), 1);
    assert_int_equal(g.n, 1);
    got_free(&g);
    hy_wsf_parser_fini(&ps);
}

/* One frame (hand-made bytes) and the close code the parser must refuse it with. */
static void refused(const uint8_t *f, size_t n, bool masked, size_t max, int code)
{
    struct hy_wsf_parser ps;
    struct got g = {0};
    hy_wsf_parser_init(&ps, max, masked);
    assert_int_equal(hy_wsf_feed(&ps, f, n, collect, &g), -1);
    assert_int_equal(ps.err_code, code);
    assert_non_null(ps.err_why);
    assert_int_equal(hy_wsf_feed(&ps, f, n, collect, &g), -1); /* stays failed */
    got_free(&g);
    hy_wsf_parser_fini(&ps);
}

static void test_refused(void **state)
{
    (void)state;
    uint8_t big[16];
    /* over the limit, decided on the header alone (no payload sent) */
    size_t h = hy_wsf_header(big, HY_WSF_BINARY, true, 1001, NULL);
    refused(big, h, false, 1000, 1009);
    h = hy_wsf_header(big, HY_WSF_BINARY, true, (uint64_t)1 << 40, NULL);
    refused(big, h, false, 0, 1009);
    /* fragments adding up past the limit */
    uint8_t fr[2200];
    uint8_t pl[600] = {0};
    size_t n = frame(fr, HY_WSF_BINARY, false, pl, 600, false);
    n += frame(fr + n, HY_WSF_CONT, false, pl, 600, false);
    refused(fr, n, false, 1000, 1009);
    static const uint8_t text[] = {0x81, 0x01, 'x'};
    refused(text, sizeof(text), false, 0, 1003);
    static const uint8_t rsv[] = {0xc2, 0x00};
    refused(rsv, sizeof(rsv), false, 0, 1002);
    static const uint8_t opc[] = {0x83, 0x00};
    refused(opc, sizeof(opc), false, 0, 1002);
    static const uint8_t masked_from_server[] = {0x82, 0x80, 1, 2, 3, 4};
    refused(masked_from_server, sizeof(masked_from_server), false, 0, 1002);
    static const uint8_t unmasked_from_client[] = {0x82, 0x00};
    refused(unmasked_from_client, sizeof(unmasked_from_client), true, 0, 1002);
    static const uint8_t cont_first[] = {0x80, 0x00};
    refused(cont_first, sizeof(cont_first), false, 0, 1002);
    static const uint8_t frag_ping[] = {0x09, 0x00};
    refused(frag_ping, sizeof(frag_ping), false, 0, 1002);
    static const uint8_t long_ping[] = {0x89, 126, 0, 126};
    refused(long_ping, sizeof(long_ping), false, 0, 1002);
    static const uint8_t close1[] = {0x88, 0x01, 0x03};
    refused(close1, sizeof(close1), false, 0, 1002);
    static const uint8_t close_bad_code[] = {0x88, 0x02, 0x03, 0xed}; /* 1005: never sent */
    refused(close_bad_code, sizeof(close_bad_code), false, 0, 1002);
    static const uint8_t short16[] = {0x82, 126, 0, 125};
    refused(short16, sizeof(short16), false, 0, 1002);
    static const uint8_t short64[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    refused(short64, sizeof(short64), false, 0, 1002);
    static const uint8_t top64[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    refused(top64, sizeof(top64), false, 0, 1002);
    uint8_t two[16];
    n = frame(two, HY_WSF_BINARY, false, (const uint8_t *)"a", 1, false);
    n += frame(two + n, HY_WSF_BINARY, true, (const uint8_t *)"b", 1, false);
    refused(two, n, false, 0, 1002);
}

/* RFC 6455 1.3's example key and accept value. */
static void test_accept(void **state)
{
    (void)state;
    char acc[29];
    assert_int_equal(hy_wsf_accept("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    uint8_t rnd[16] = {0};
    char key[25];
    hy_wsf_key(rnd, key);
    assert_string_equal(key, "AAAAAAAAAAAAAAAAAAAAAA==");
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define OK_HEAD                                                                                    \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, "           \
    "Upgrade\r\n"                                                                                  \
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "               \
    "hypha.dp.v1\r\n\r\n"

static long response(const char *s, char *why)
{
    return hy_wsf_response(s, strlen(s), KEY, "hypha.dp.v1", why, 160);
}

static void test_response(void **state)
{
    (void)state;
    char why[160], buf[512];
    assert_int_equal(response(OK_HEAD, why), (long)strlen(OK_HEAD));
    /* frames right behind the head: only the head is counted */
    snprintf(buf, sizeof(buf), "%s\x82\x01x", OK_HEAD);
    assert_int_equal(response(buf, why), (long)strlen(OK_HEAD));
    /* incomplete: wait */
    assert_int_equal(hy_wsf_response(OK_HEAD, 40, KEY, "hypha.dp.v1", why, sizeof(why)), 0);
    assert_int_equal(response("HTTP/1.1 403 Forbidden\r\n\r\n", why), -1);
    assert_string_equal(why, "HTTP status 403 Forbidden");
    const char *bad_accept =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nSec-WebSocket-Protocol: "
        "hypha.dp.v1\r\n\r\n";
    assert_int_equal(response(bad_accept, why), -1);
    assert_string_equal(why, "wrong Sec-WebSocket-Accept");
    const char *no_accept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Protocol: hypha.dp.v1\r\n\r\n";
    assert_int_equal(response(no_accept, why), -1);
    const char *other_proto =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: x\r\n\r\n";
    assert_int_equal(response(other_proto, why), -1);
    const char *no_proto =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_int_equal(response(no_proto, why), -1);
    const char *ext =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "hypha.dp.v1\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    assert_int_equal(response(ext, why), -1);
    const char *no_upgrade =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "hypha.dp.v1\r\n\r\n";
    assert_int_equal(response(no_upgrade, why), -1);
    assert_int_equal(response("HTTP/1.0 101 x\r\n\r\n", why), -1);
    assert_int_equal(response("HTTP/1.1 101 x\r\nbad line\r\n\r\n", why), -1);
    /* a head that never ends */
    char *huge = malloc(HY_WSF_RESPONSE_MAX + 1);
    memset(huge, 'a', HY_WSF_RESPONSE_MAX);
    assert_int_equal(hy_wsf_response(huge, HY_WSF_RESPONSE_MAX, KEY, "p", why, sizeof(why)), -1);
    free(huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_roundtrip),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_fragments_and_control),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
