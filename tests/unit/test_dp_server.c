/* Unit tests of the DP server's checks of what a peer sends
 * (zone/dp_server.c: hy_zone_dp_check_message, hy_zone_dp_check_hello,
 * hy_zone_dp_token_matches): a Hello whose Dataplane has a NULL, empty or
 * duplicate tag key, over-long names, bad addresses, unknown fields, too
 * many inbounds, a missing CSR or token; Acks, Nacks, CSRs and DpStats out
 * of bounds; and the token match never picking one of two duplicate keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dp_server.h"
#include "resource.h"
#include "token.h"
#include "poison.h"

typedef Hypha__V1__Dataplane__Networking__Inbound__TagsEntry tag_entry;

/* One Hello, built field by field, then packed and unpacked as the server
 * receives it. */
struct hello {
    Hypha__V1__DpMessage m;
    Hypha__V1__DpHello h;
    Hypha__V1__Envelope env;
    Hypha__V1__Meta meta;
    Hypha__V1__Dataplane dp;
    Hypha__V1__Dataplane__Networking net;
    Hypha__V1__Dataplane__Networking__Inbound in[70], *inp[70];
    tag_entry tags[80], *tagp[80];
    size_t ntags;
    Hypha__V1__ZoneIngress zi;
    Hypha__V1__ZoneIngress__Networking zinet;
    uint8_t spec[8192];
    bool unknown_field;
};

static void hello_init(struct hello *x, size_t ninbounds)
{
    memset(x, 0, sizeof(*x));
    hypha__v1__dp_message__init(&x->m);
    hypha__v1__dp_hello__init(&x->h);
    hypha__v1__envelope__init(&x->env);
    hypha__v1__meta__init(&x->meta);
    hypha__v1__dataplane__init(&x->dp);
    hypha__v1__dataplane__networking__init(&x->net);
    x->meta.type = "Dataplane";
    x->meta.mesh = "default";
    x->meta.name = "web-1";
    x->env.meta = &x->meta;
    x->dp.networking = &x->net;
    x->net.address = "127.0.0.1";
    for (size_t i = 0; i < ninbounds; i++) {
        hypha__v1__dataplane__networking__inbound__init(&x->in[i]);
        x->inp[i] = &x->in[i];
        x->in[i].has_port = 1;
        x->in[i].port = (uint32_t)(20000 + i);
    }
    x->net.inbound = x->inp;
    x->net.n_inbound = ninbounds;
    x->h.dataplane = &x->env;
    x->h.token = "a.b.c";
    x->h.csr = "-----BEGIN CERTIFICATE REQUEST-----\n...";
    x->h.version = "test";
    x->m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    x->m.hello = &x->h;
}

static void add_tag(struct hello *x, size_t inbound, const char *key, const char *value)
{
    Hypha__V1__Dataplane__Networking__Inbound *in = &x->in[inbound];
    tag_entry *t = &x->tags[x->ntags];
    hypha__v1__dataplane__networking__inbound__tags_entry__init(t);
    t->key = (char *)key;
    t->value = (char *)value;
    x->tagp[x->ntags] = t;
    /* every inbound's tags are consecutive: add them inbound by inbound */
    if (!in->n_tags)
        in->tags = &x->tagp[x->ntags];
    in->n_tags++;
    x->ntags++;
}

/* Packs x (a Dataplane unless the ZoneIngress is set up) and unpacks it as
 * the server does. The caller frees the result. */
static Hypha__V1__DpMessage *wire(struct hello *x)
{
    size_t sl;
    if (!strcmp(x->meta.type, "ZoneIngress")) {
        sl = hypha__v1__zone_ingress__pack(&x->zi, x->spec);
    } else {
        sl = hypha__v1__dataplane__pack(&x->dp, x->spec);
    }
    if (x->unknown_field) {
        const uint8_t u[] = {0x9a, 0x06, 2, 'h', 'i'};
        memcpy(x->spec + sl, u, sizeof(u));
        sl += sizeof(u);
    }
    x->env.has_spec = 1;
    x->env.spec.data = x->spec;
    x->env.spec.len = sl;
    size_t len = hypha__v1__dp_message__get_packed_size(&x->m);
    uint8_t *p = malloc(len + 1);
    assert_non_null(p);
    hypha__v1__dp_message__pack(&x->m, p);
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, p);
    free(p);
    assert_non_null(m);
    return m;
}

/* Runs both checks; returns the reason ("" when accepted) in why. */
static bool check(struct hello *x, char *why, size_t size)
{
    Hypha__V1__DpMessage *m = wire(x);
    struct hy_resource *r = NULL;
    why[0] = '\0';
    bool ok = hy_zone_dp_check_message(m, why, size) &&
              hy_zone_dp_check_hello(m->hello, &r, why, size) == 0;
    if (ok)
        assert_non_null(r);
    else
        assert_null(r);
    hy_resource_free(r);
    hypha__v1__dp_message__free_unpacked(m, NULL);
    return ok;
}

#define REFUSED(x, needle)                                                                         \
    do {                                                                                           \
        char why_[400];                                                                            \
        assert_false(check(x, why_, sizeof(why_)));                                                \
        if (!strstr(why_, needle))                                                                 \
            fail_msg("reason \"%s\" does not name \"%s\"", why_, needle);                          \
    } while (0)

static void test_valid(void **state)
{
    (void)state;
    struct hello x;
    char why[400];
    hello_init(&x, 2);
    add_tag(&x, 0, "hypha.io/service", "web");
    add_tag(&x, 0, "version", "v1");
    add_tag(&x, 1, "hypha.io/service", "web-admin");
    assert_true(check(&x, why, sizeof(why)));
    x.net.address = "web-1.default.svc";
    assert_true(check(&x, why, sizeof(why)));
    x.net.address = "fd00::1";
    assert_true(check(&x, why, sizeof(why)));
}

/* Finding 1 and 10: NULL, empty, duplicate keys; NULL values. */
static void test_tags(void **state)
{
    (void)state;
    struct hello x;
    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    add_tag(&x, 0, NULL, "x");
    REFUSED(&x, "networking.inbound[0].tags: an entry has no key");

    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    add_tag(&x, 0, "hypha.io/service", "admin");
    REFUSED(&x, "duplicate key \"hypha.io/service\"");

    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    add_tag(&x, 0, "version", NULL);
    REFUSED(&x, "networking.inbound[0].tags.version");

    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    add_tag(&x, 0, "", "x");
    REFUSED(&x, "invalid key");

    hello_init(&x, 1);
    add_tag(&x, 0, "version", "v1");
    REFUSED(&x, "tag hypha.io/service is required");

    /* labels too */
    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    Hypha__V1__Meta__LabelsEntry l = HYPHA__V1__META__LABELS_ENTRY__INIT, *lp[1] = {&l};
    l.value = "x";
    x.meta.labels = lp;
    x.meta.n_labels = 1;
    REFUSED(&x, "labels: an entry has no key");
}

static void test_names_and_addresses(void **state)
{
    (void)state;
    struct hello x;
    char longname[301];
    memset(longname, 'a', 300);
    longname[300] = '\0';
    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    x.meta.name = longname;
    REFUSED(&x, "name: invalid name");
    x.meta.name = NULL;
    REFUSED(&x, "name: required");
    x.meta.name = "web-1";
    x.meta.mesh = NULL;
    REFUSED(&x, "mesh: required");
    x.meta.mesh = "default";

    const char *bad[] = {"evil\n.example", "a..b", "-a.example", "1.2.3.4/8", "x y", "a_b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        x.net.address = (char *)bad[i];
        REFUSED(&x, "networking.address must be an IP address or a host name");
    }
    x.net.address = longname;
    REFUSED(&x, "networking.address");
    x.net.address = NULL;
    REFUSED(&x, "networking.address: required");
    x.net.address = "127.0.0.1";
    x.net.advertised_address = "not an address";
    REFUSED(&x, "networking.advertisedAddress");
    x.net.advertised_address = NULL;
    x.in[0].service_address = "\x01";
    REFUSED(&x, "networking.inbound[0].serviceAddress");
    x.in[0].service_address = NULL;
    x.dp.networking = NULL;
    REFUSED(&x, "networking: required");
}

static void test_shape(void **state)
{
    (void)state;
    struct hello x;
    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    x.unknown_field = true;
    REFUSED(&x, "unknown field (number 99)");
    x.unknown_field = false;
    x.h.csr = NULL;
    REFUSED(&x, "hello.csr is required");
    x.h.csr = "csr";
    x.h.token = NULL;
    REFUSED(&x, "hello.token is required");
    x.h.token = "t";
    x.h.version = "1.0\n[ERROR] forged";
    REFUSED(&x, "hello.version must be printable");
    x.h.version = NULL;
    /* where its admin server listens: printable, bounded (Prometheus discovery names it) */
    x.h.admin_address = "127.0.0.1:9901\n[ERROR] forged";
    REFUSED(&x, "hello.admin_address must be printable");
    char long_addr[HY_DP_MAX_ADMIN_ADDRESS + 2];
    memset(long_addr, 'a', sizeof(long_addr) - 1);
    long_addr[sizeof(long_addr) - 1] = '\0';
    x.h.admin_address = long_addr;
    REFUSED(&x, "hello.admin_address");
    x.h.admin_address = NULL;
    x.meta.type = "Mesh";
    REFUSED(&x, "is a Mesh, not a Dataplane");
    x.meta.type = "NoSuchType";
    REFUSED(&x, "hello.dataplane cannot be read");
    x.meta.type = "Dataplane";
    x.h.dataplane = NULL;
    REFUSED(&x, "hello.dataplane is required");

    /* too many inbounds, too many services */
    hello_init(&x, 65);
    for (size_t i = 0; i < 65; i++)
        add_tag(&x, i, "hypha.io/service", "web");
    REFUSED(&x, "65 inbounds");
    static char svc[17][8];
    hello_init(&x, 17);
    for (size_t i = 0; i < 17; i++) {
        snprintf(svc[i], sizeof(svc[i]), "s%zu", i);
        add_tag(&x, i, "hypha.io/service", svc[i]);
    }
    REFUSED(&x, "more than 16 services");
}

static void test_zone_ingress(void **state)
{
    (void)state;
    struct hello x;
    char why[400];
    hello_init(&x, 0);
    x.meta.type = "ZoneIngress";
    x.meta.mesh = NULL;
    x.meta.name = "ingress-1";
    hypha__v1__zone_ingress__init(&x.zi);
    hypha__v1__zone_ingress__networking__init(&x.zinet);
    x.zi.networking = &x.zinet;
    x.zinet.address = "10.0.0.1";
    x.zinet.has_port = 1;
    x.zinet.port = 10001;
    x.h.csr = NULL; /* an ingress needs none */
    assert_true(check(&x, why, sizeof(why)));
    x.zinet.address = "bad address";
    REFUSED(&x, "the ZoneIngress is not valid: networking.address");
    x.zinet.address = "10.0.0.1";
    x.meta.mesh = "default";
    REFUSED(&x, "not mesh-scoped");
}

static Hypha__V1__DpMessage *pack_unpack(const Hypha__V1__DpMessage *in)
{
    size_t len = hypha__v1__dp_message__get_packed_size(in);
    uint8_t *p = malloc(len + 1);
    assert_non_null(p);
    hypha__v1__dp_message__pack(in, p);
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, p);
    free(p);
    assert_non_null(m);
    return m;
}

static bool message_ok(const Hypha__V1__DpMessage *in, const char *needle)
{
    char why[400] = "";
    Hypha__V1__DpMessage *m = pack_unpack(in);
    bool ok = hy_zone_dp_check_message(m, why, sizeof(why));
    hypha__v1__dp_message__free_unpacked(m, NULL);
    if (!ok && needle && !strstr(why, needle))
        fail_msg("reason \"%s\" does not name \"%s\"", why, needle);
    return ok;
}

static void test_messages(void **state)
{
    (void)state;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    Hypha__V1__DpCsr csr = HYPHA__V1__DP_CSR__INIT;
    Hypha__V1__DpConfig cfg = HYPHA__V1__DP_CONFIG__INIT;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
    m.ack = &ack;
    assert_false(message_ok(&m, "ack.version is required"));
    ack.version = "0123456789abcdef";
    assert_true(message_ok(&m, NULL));
    ack.version = "0123456789abcdef0123456789abcdef"; /* 32 */
    assert_false(message_ok(&m, "ack.version must be printable ASCII, at most 31"));
    ack.version = "v\n1";
    assert_false(message_ok(&m, "ack.version"));

    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
    m.nack = &nack;
    nack.error = "config refused: bad\nthing"; /* any bytes: the log line cleans them */
    assert_true(message_ok(&m, NULL));
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'e', 4999);
    big[4999] = '\0';
    nack.error = big;
    assert_false(message_ok(&m, "nack.error must be at most 4096"));

    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CSR;
    m.csr = &csr;
    assert_false(message_ok(&m, "csr.csr is required"));
    csr.csr = big; /* 4999 bytes: under the CSR limit */
    assert_true(message_ok(&m, NULL));
    char *huge = malloc(9000);
    assert_non_null(huge);
    memset(huge, 'c', 8999);
    huge[8999] = '\0';
    csr.csr = huge;
    assert_false(message_ok(&m, "csr.csr must be at most 8192"));
    free(huge);
    free(big);

    /* a sidecar's metrics: an id, at most HY_DP_MAX_STATS bytes of text,
     * a printable bounded error */
    Hypha__V1__DpStats st = HYPHA__V1__DP_STATS__INIT;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_STATS;
    m.stats = &st;
    assert_false(message_ok(&m, "stats.id is required"));
    st.has_id = 1;
    st.id = 7;
    assert_true(message_ok(&m, NULL));
    char *text = malloc(HY_DP_MAX_STATS + 2);
    assert_non_null(text);
    memset(text, 'm', HY_DP_MAX_STATS);
    text[HY_DP_MAX_STATS] = '\0';
    st.text = text; /* exactly the limit */
    assert_true(message_ok(&m, NULL));
    text[HY_DP_MAX_STATS] = 'm';
    text[HY_DP_MAX_STATS + 1] = '\0';
    assert_false(message_ok(&m, "stats.text must be at most 1048576"));
    free(text);
    st.text = "a 1\n";
    st.error = "cut\nshort"; /* shown to users: printable only */
    assert_false(message_ok(&m, "stats.error must be printable ASCII"));
    st.error = "metrics truncated";
    assert_true(message_ok(&m, NULL));
    Hypha__V1__DpStatsRequest q = HYPHA__V1__DP_STATS_REQUEST__INIT;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_STATS_REQUEST; /* only the zone asks */
    m.stats_request = &q;
    assert_false(message_ok(&m, "unexpected message"));

    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CONFIG; /* only the zone sends these */
    m.config = &cfg;
    assert_false(message_ok(&m, "unexpected message"));
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG__NOT_SET;
    assert_false(message_ok(&m, "unexpected message"));
}

/* The token check reads the tags the validation let through, and refuses
 * two values for one key rather than trusting the first. */
static void test_token_matches(void **state)
{
    (void)state;
    struct hello x;
    hello_init(&x, 1);
    add_tag(&x, 0, "hypha.io/service", "web");
    Hypha__V1__DpMessage *m = wire(&x);
    struct hy_resource *r = NULL;
    char why[400];
    assert_int_equal(hy_zone_dp_check_hello(m->hello, &r, why, sizeof(why)), 0);
    struct hy_token_tag tag = {"hypha.io/service", "web"};
    struct hy_token_claims c = {.mesh = "default", .name = "web-1", .tags = &tag, .ntags = 1};
    assert_true(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    tag.value = "backend";
    assert_false(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    assert_non_null(strstr(why, "allows hypha.io/service=backend, but inbound 0 has web"));
    tag.value = "web";
    c.name = "other";
    assert_false(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    c.name = NULL;
    assert_false(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    c.name = "web-1";
    c.mesh = "other";
    assert_false(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    c.mesh = "default";

    /* what validation refuses, handed over anyway: no crash, no pick */
    Hypha__V1__Dataplane *d = (Hypha__V1__Dataplane *)r->spec;
    Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[0];
    tag_entry extra[2], *ev[3] = {in->tags[0], &extra[0], &extra[1]};
    hypha__v1__dataplane__networking__inbound__tags_entry__init(&extra[0]);
    hypha__v1__dataplane__networking__inbound__tags_entry__init(&extra[1]);
    extra[0].value = "x"; /* NULL key */
    extra[1].key = "hypha.io/service";
    extra[1].value = "admin";
    tag_entry **saved = in->tags;
    size_t nsaved = in->n_tags;
    in->tags = ev;
    in->n_tags = 3;
    assert_false(hy_zone_dp_token_matches(&c, r, why, sizeof(why)));
    assert_non_null(strstr(why, "2 times"));
    in->tags = saved;
    in->n_tags = nsaved;
    hy_resource_free(r);
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_names_and_addresses),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_zone_ingress),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_token_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
