/* The sidecar's DNS (sidecar/dns.c) for transparent mode: the table of
 * mesh names from a config's outbounds, answers to queries built with
 * ldns (A, AAAA, other types, NXDOMAIN in the mesh's zones, forwarding
 * of the rest), FORMERR or silence for what is not a query, SERVFAIL,
 * resolv.conf; and the original destination's outbound
 * (hy_px_transparent_match: by VIP, by an endpoint's address). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "dns.h"
#include "dns_ldns.h"
#include "vip.h"
#include "proxy_int.h"
#include "poison.h"

struct out {
    Hypha__V1__DpOutbound o;
    char *names[2];
    Hypha__V1__DpEndpoint ep, *eps[1];
};

static void outbound(struct out *x, const char *svc, uint32_t port, const char *vip,
                     const char *vip6, const char *ep_addr, uint32_t ep_port)
{
    hypha__v1__dp_outbound__init(&x->o);
    x->o.service = (char *)svc;
    x->o.has_port = 1;
    x->o.port = port;
    x->o.vip = (char *)vip;
    x->o.vip6 = (char *)vip6;
    x->names[0] = calloc(1, HY_VIP_NAME_MAX);
    x->names[1] = calloc(1, HY_VIP_NAME_MAX);
    assert_true(hy_vip_hostname(svc, 0, x->names[0], HY_VIP_NAME_MAX));
    assert_true(hy_vip_hostname(svc, 1, x->names[1], HY_VIP_NAME_MAX));
    x->o.hostnames = x->names;
    x->o.n_hostnames = 2;
    hypha__v1__dp_endpoint__init(&x->ep);
    x->ep.address = (char *)ep_addr;
    x->ep.has_port = 1;
    x->ep.port = ep_port;
    x->eps[0] = &x->ep;
    x->o.endpoints = x->eps;
    x->o.n_endpoints = ep_addr ? 1 : 0;
}

static void out_fini(struct out *x)
{
    free(x->names[0]);
    free(x->names[1]);
}

struct world {
    struct out backend, redis, novip;
    Hypha__V1__DpOutbound *outs[3];
    Hypha__V1__DpConfig cf;
    struct hy_dns_table *t;
};

/* The code under test calls ldns through the lazy loader (dns_ldns.h),
 * as the sidecar does; this test links ldns only to build and read
 * messages itself. */
static void need_ldns(void)
{
    char why[512] = "";
    if (hy_dns_ldns_load(why, sizeof(why)) < 0)
        fail_msg("%s", why);
}

static int setup(void **state)
{
    need_ldns();
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    outbound(&w->backend, "backend", 0, "240.1.2.3", "fd00:fd00::f001:203", "10.0.0.2", 8080);
    outbound(&w->redis, "redis", 6379, "240.9.9.9", NULL, "10.0.0.3", 6379);
    outbound(&w->novip, "legacy", 7000, NULL, NULL, "10.0.0.4", 7000);
    w->outs[0] = &w->backend.o;
    w->outs[1] = &w->redis.o;
    w->outs[2] = &w->novip.o;
    hypha__v1__dp_config__init(&w->cf);
    w->cf.outbounds = w->outs;
    w->cf.n_outbounds = 3;
    assert_int_equal(hy_dns_table_new(&w->cf, &w->t), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    hy_dns_table_free(w->t);
    out_fini(&w->backend);
    out_fini(&w->redis);
    out_fini(&w->novip);
    free(w);
    return 0;
}

static void table(void **state)
{
    struct world *w = *state;
    uint8_t v4[4], v6[16];
    bool has6;
    assert_int_equal(hy_dns_table_count(w->t), 4); /* two names each, legacy has no VIP */
    assert_true(hy_dns_table_lookup(w->t, "BACKEND.mesh.", v4, v6, &has6));
    assert_memory_equal(v4, ((uint8_t[]){240, 1, 2, 3}), 4);
    assert_true(has6);
    assert_true(hy_dns_table_lookup(w->t, "redis.svc.mesh.local", v4, v6, &has6));
    assert_false(has6);
    assert_false(hy_dns_table_lookup(w->t, "legacy.mesh", v4, v6, &has6));
    assert_false(hy_dns_table_lookup(w->t, "backend", v4, v6, &has6));
    struct hy_dns_table *empty;
    assert_int_equal(hy_dns_table_new(NULL, &empty), 0);
    assert_false(hy_dns_table_lookup(empty, "backend.mesh", v4, v6, &has6));
    hy_dns_table_free(empty);
}

/* A query for name/type built by ldns, as wire bytes (caller frees). */
static uint8_t *query(const char *name, ldns_rr_type type, uint16_t id, size_t *len)
{
    ldns_pkt *q = NULL;
    assert_int_equal(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
                     LDNS_STATUS_OK);
    ldns_pkt_set_id(q, id);
    uint8_t *wire = NULL;
    assert_int_equal(ldns_pkt2wire(&wire, q, len), LDNS_STATUS_OK);
    ldns_pkt_free(q);
    return wire;
}

/* Handles a query; the answer parsed (caller frees), or NULL. */
static ldns_pkt *ask(struct world *w, const char *name, ldns_rr_type type, enum hy_dns_action want)
{
    size_t len, outlen;
    uint8_t *q = query(name, type, 0x4242, &len), *out;
    assert_int_equal(hy_dns_handle(w->t, q, len, &out, &outlen), want);
    free(q);
    if (!out)
        return NULL;
    ldns_pkt *a = NULL;
    assert_int_equal(ldns_wire2pkt(&a, out, outlen), LDNS_STATUS_OK);
    free(out);
    assert_int_equal(ldns_pkt_id(a), 0x4242);
    assert_true(ldns_pkt_qr(a));
    return a;
}

static void answers(void **state)
{
    struct world *w = *state;
    ldns_pkt *a = ask(w, "backend.mesh.", LDNS_RR_TYPE_A, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_aa(a));
    assert_int_equal(ldns_pkt_ancount(a), 1);
    assert_int_equal(ldns_pkt_qdcount(a), 1);
    ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(a), 0);
    assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_A);
    assert_int_equal(ldns_rr_ttl(rr), HY_DNS_TTL);
    char *s = ldns_rdf2str(ldns_rr_rdf(rr, 0));
    assert_string_equal(s, "240.1.2.3");
    free(s);
    ldns_pkt_free(a);

    a = ask(w, "Backend.Svc.Mesh.Local.", LDNS_RR_TYPE_AAAA, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_ancount(a), 1);
    s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(a), 0), 0));
    assert_string_equal(s, "fd00:fd00::f001:203");
    free(s);
    ldns_pkt_free(a);

    /* a mesh name without an IPv6 VIP, or another type: NOERROR, no data */
    a = ask(w, "redis.mesh.", LDNS_RR_TYPE_AAAA, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(a), 0);
    ldns_pkt_free(a);
    a = ask(w, "redis.mesh.", LDNS_RR_TYPE_MX, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_ancount(a), 0);
    ldns_pkt_free(a);

    /* unknown in the mesh's zones: NXDOMAIN; elsewhere: forwarded */
    a = ask(w, "nothing.mesh.", LDNS_RR_TYPE_A, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(a);
    a = ask(w, "legacy.svc.mesh.local.", LDNS_RR_TYPE_A, HY_DNS_ANSWERED);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(a);
    assert_null(ask(w, "example.com.", LDNS_RR_TYPE_A, HY_DNS_FORWARD));
    assert_null(ask(w, "mesh.example.com.", LDNS_RR_TYPE_A, HY_DNS_FORWARD));
    assert_null(ask(w, "notmesh.", LDNS_RR_TYPE_A, HY_DNS_FORWARD));
}

static void malformed(void **state)
{
    struct world *w = *state;
    uint8_t *out;
    size_t outlen;
    /* too short for a header: dropped */
    const uint8_t tiny[] = {1, 2, 3};
    assert_int_equal(hy_dns_handle(w->t, tiny, sizeof(tiny), &out, &outlen), HY_DNS_MALFORMED);
    assert_null(out);
    /* a header and garbage: FORMERR with its id */
    uint8_t junk[40];
    memset(junk, 0xff, sizeof(junk));
    junk[0] = 0x12;
    junk[1] = 0x34;
    junk[2] = 0x01; /* QR clear */
    assert_int_equal(hy_dns_handle(w->t, junk, sizeof(junk), &out, &outlen), HY_DNS_MALFORMED);
    assert_non_null(out);
    ldns_pkt *a = NULL;
    assert_int_equal(ldns_wire2pkt(&a, out, outlen), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(a), 0x1234);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_FORMERR);
    ldns_pkt_free(a);
    free(out);
    /* an answer sent to us: never answered */
    junk[2] = 0x81;
    assert_int_equal(hy_dns_handle(w->t, junk, sizeof(junk), &out, &outlen), HY_DNS_MALFORMED);
    assert_null(out);
    /* a well-formed answer (QR set): dropped too */
    size_t len;
    uint8_t *q = query("backend.mesh.", LDNS_RR_TYPE_A, 7, &len);
    q[2] |= 0x80;
    assert_int_equal(hy_dns_handle(w->t, q, len, &out, &outlen), HY_DNS_MALFORMED);
    assert_null(out);
    free(q);
    /* two questions: FORMERR */
    ldns_pkt *two = NULL;
    assert_int_equal(
        ldns_pkt_query_new_frm_str(&two, "backend.mesh.", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0),
        LDNS_STATUS_OK);
    ldns_rr *extra = NULL;
    assert_int_equal(ldns_rr_new_question_frm_str(&extra, "redis.mesh. IN A", NULL, NULL),
                     LDNS_STATUS_OK);
    ldns_pkt_push_rr(two, LDNS_SECTION_QUESTION, extra);
    assert_int_equal(ldns_pkt2wire(&q, two, &len), LDNS_STATUS_OK);
    ldns_pkt_free(two);
    assert_int_equal(hy_dns_handle(w->t, q, len, &out, &outlen), HY_DNS_MALFORMED);
    assert_non_null(out);
    free(out);
    free(q);
}

static void servfail(void **state)
{
    (void)state;
    need_ldns();
    size_t len, outlen;
    uint8_t *q = query("example.com.", LDNS_RR_TYPE_A, 99, &len);
    uint8_t *out = hy_dns_servfail(q, len, &outlen);
    assert_non_null(out);
    ldns_pkt *a = NULL;
    assert_int_equal(ldns_wire2pkt(&a, out, outlen), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_id(a), 99);
    assert_int_equal(ldns_pkt_get_rcode(a), LDNS_RCODE_SERVFAIL);
    assert_int_equal(ldns_pkt_qdcount(a), 1);
    ldns_pkt_free(a);
    free(out);
    free(q);
    assert_null(hy_dns_servfail((const uint8_t *)"x", 1, &outlen));
}

static void resolv(void **state)
{
    (void)state;
    struct sockaddr_storage sa[3];
    const char *text = "# comment\nsearch example.com\nnameserver 10.0.0.53\n"
                       "nameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\n"
                       "nameserver bogus\nnameserver 192.0.2.1\n";
    assert_int_equal(hy_dns_parse_resolv(text, false, sa, 3), 3);
    char ip[64];
    uv_ip4_name((struct sockaddr_in *)&sa[0], ip, sizeof(ip));
    assert_string_equal(ip, "10.0.0.53");
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa[0])->sin_port), 53);
    /* our own port is 53: the loopback ones would be us */
    assert_int_equal(hy_dns_parse_resolv(text, true, sa, 3), 3);
    uv_ip6_name((struct sockaddr_in6 *)&sa[1], ip, sizeof(ip));
    assert_string_equal(ip, "fe80::1");
    uv_ip4_name((struct sockaddr_in *)&sa[2], ip, sizeof(ip));
    assert_string_equal(ip, "192.0.2.1");
    assert_int_equal(hy_dns_parse_resolv("", false, sa, 3), 0);
}

static void original_destination(void **state)
{
    struct world *w = *state;
    /* by VIP, any port */
    assert_ptr_equal(hy_px_transparent_match(&w->cf, "240.1.2.3", 80), &w->backend.o);
    assert_ptr_equal(hy_px_transparent_match(&w->cf, "240.1.2.3", 8080), &w->backend.o);
    assert_ptr_equal(hy_px_transparent_match(&w->cf, "fd00:fd00::f001:203", 80), &w->backend.o);
    /* by an instance's address and port */
    assert_ptr_equal(hy_px_transparent_match(&w->cf, "10.0.0.3", 6379), &w->redis.o);
    assert_ptr_equal(hy_px_transparent_match(&w->cf, "10.0.0.4", 7000), &w->novip.o);
    assert_null(hy_px_transparent_match(&w->cf, "10.0.0.3", 6380)); /* another port */
    assert_null(hy_px_transparent_match(&w->cf, "192.0.2.1", 80));  /* outside */
    /* another zone's ingress serves many services: never matched by address */
    w->redis.ep.has_priority = 1;
    w->redis.ep.priority = 1;
    assert_null(hy_px_transparent_match(&w->cf, "10.0.0.3", 6379));
    w->redis.ep.has_priority = 0;
    assert_null(hy_px_transparent_match(NULL, "240.1.2.3", 80));
}

/* RFC 1035 4.2.2 framing: a two-byte length, then the message; bounds. */
static void tcp_frame(void **state)
{
    (void)state;
    uint8_t buf[2 + 40] = {0};
    size_t n = 99;
    assert_int_equal(hy_dns_tcp_frame(buf, 0, 4096, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(n, 0);
    buf[1] = 30; /* 30 bytes */
    assert_int_equal(hy_dns_tcp_frame(buf, 1, 4096, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(hy_dns_tcp_frame(buf, 2, 4096, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(n, 30);
    assert_int_equal(hy_dns_tcp_frame(buf, 31, 4096, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(hy_dns_tcp_frame(buf, 32, 4096, &n), HY_DNS_FRAME_OK);
    assert_int_equal(n, 30);
    assert_int_equal(hy_dns_tcp_frame(buf, sizeof(buf), 4096, &n),
                     HY_DNS_FRAME_OK); /* more after */
    assert_int_equal(hy_dns_tcp_frame(buf, 32, 29, &n), HY_DNS_FRAME_LONG);
    assert_int_equal(hy_dns_tcp_frame(buf, 2, 29, &n), HY_DNS_FRAME_LONG); /* before the rest */
    buf[1] = 0;                                                            /* empty: no header */
    assert_int_equal(hy_dns_tcp_frame(buf, 2, 4096, &n), HY_DNS_FRAME_SHORT);
    assert_int_equal(n, 0);
    buf[1] = LDNS_HEADER_SIZE - 1;
    assert_int_equal(hy_dns_tcp_frame(buf, sizeof(buf), 4096, &n), HY_DNS_FRAME_SHORT);
    buf[1] = LDNS_HEADER_SIZE;
    assert_int_equal(hy_dns_tcp_frame(buf, 2 + LDNS_HEADER_SIZE, 4096, &n), HY_DNS_FRAME_OK);
    buf[0] = 0xff;
    buf[1] = 0xff; /* 65535 */
    assert_int_equal(hy_dns_tcp_frame(buf, sizeof(buf), 65535, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(n, 65535);
    assert_int_equal(hy_dns_tcp_frame(buf, sizeof(buf), HY_DNS_TCP_MAX_QUERY, &n),
                     HY_DNS_FRAME_LONG);
    /* a query built by ldns, framed, comes out whole */
    size_t qlen = 0;
    uint8_t *q = query("backend.mesh.", LDNS_RR_TYPE_A, 7, &qlen);
    uint8_t *framed = malloc(qlen + 2);
    ldns_write_uint16(framed, (uint16_t)qlen);
    memcpy(framed + 2, q, qlen);
    for (size_t k = 0; k < qlen + 2; k++)
        assert_int_equal(hy_dns_tcp_frame(framed, k, HY_DNS_TCP_MAX_QUERY, &n), HY_DNS_FRAME_MORE);
    assert_int_equal(hy_dns_tcp_frame(framed, qlen + 2, HY_DNS_TCP_MAX_QUERY, &n), HY_DNS_FRAME_OK);
    assert_int_equal(n, qlen);
    assert_memory_equal(framed + 2, q, qlen);
    free(framed);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(table, setup, teardown),
        cmocka_unit_test_setup_teardown(answers, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed, setup, teardown),
        cmocka_unit_test(servfail),
        cmocka_unit_test(resolv),
        cmocka_unit_test(tcp_frame),
        cmocka_unit_test_setup_teardown(original_destination, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
