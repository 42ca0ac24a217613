/* libFuzzer target for what a sidecar or an ingress sends the zone's DP
 * server, structure-aware: the input drives the building of a DpMessage (a
 * Hello with an inline Dataplane or ZoneIngress, a CSR renewal, an Ack, a
 * Nack) whose every field is chosen from interesting values (NULL, empty,
 * duplicate and over-long keys, bad addresses, unknown fields...) or taken
 * from the input; the message is packed and unpacked as the server does,
 * then run through the same checks (hy_zone_dp_check_message, hy_zone_dp_check_hello)
 * and, when they pass, what reads the checked resource: the token match and
 * the config the zone computes for it (an empty store). The first byte
 * 0xff instead feeds the rest as raw wire bytes. Nothing may crash or leak,
 * and a resource the checks accept must have no NULL tag key or value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp_server.h"
#include "resource.h"
#include "store.h"
#include "token.h"
#include "fuzz_store.h"
#include "poison.h"

static struct hy_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    store = fuzz_store_open("dp", 64u << 20);
    return 0;
}

/* ----- the input as a source of choices ----- */

struct src {
    const uint8_t *p;
    size_t n;
};

static uint8_t byte(struct src *s)
{
    if (!s->n)
        return 0;
    s->n--;
    return *s->p++;
}

/* Strings live until the end of one input: a small arena. */
struct arena {
    char *v[4096];
    size_t n;
};

static char *keep(struct arena *a, char *s)
{
    if (!s || a->n == sizeof(a->v) / sizeof(a->v[0])) {
        free(s);
        return NULL;
    }
    return a->v[a->n++] = s;
}

static char *repeat(struct arena *a, char c, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memset(s, c, n);
        s[n] = '\0';
    }
    return keep(a, s);
}

/* Up to max bytes of the input as a string (NUL stops it early). */
static char *bytes(struct src *s, struct arena *a, size_t max)
{
    size_t n = byte(s) % (max + 1);
    if (n > s->n)
        n = s->n;
    char *v = malloc(n + 1);
    if (!v)
        return NULL;
    memcpy(v, s->p, n);
    v[n] = '\0';
    s->p += n;
    s->n -= n;
    return keep(a, v);
}

/* A string the checks care about, or NULL, or bytes of the input. */
static char *pick(struct src *s, struct arena *a, const char *const *dict, size_t ndict)
{
    uint8_t b = byte(s);
    if (b < 16)
        return NULL;
    if (b < 40)
        return bytes(s, a, 64);
    if (b < 48)
        return repeat(a, 'a', 200 + byte(s) * 4); /* over 253 and 63 at times */
    return (char *)dict[b % ndict];
}

static const char *const keys[] = {"hypha.io/service",
                                   "kuma.io/service",
                                   "version",
                                   "",
                                   "a/b/c",
                                   "-x",
                                   "team",
                                   "hypha.io/zone",
                                   "x.y/z"};
static const char *const values[] = {"web", "backend", "admin", "", "v1", "a b", "é", "x:y/z"};
static const char *const names[] = {"web-1", "probe-1", "", "A", "a..b", "-a", "ingress-1"};
static const char *const meshes[] = {"default", "other", "", "Default"};
static const char *const addrs[] = {"127.0.0.1",    "::1",  "10.0.0.1",   "localhost",
                                    "0.0.0.0",      "a..b", "evil\nline", "1.2.3.4.5",
                                    "fe80::1%eth0", ""};
static const char *const types[] = {"Dataplane", "Dataplane", "ZoneIngress", "Mesh", "Nope", ""};
static const char *const versions[] = {"0123456789abcdef", "", "v\n2", "1.0"};
#define N(a) (sizeof(a) / sizeof(a[0]))

typedef Hypha__V1__Dataplane__Networking__Inbound__TagsEntry tag_entry;

/* A map of up to 8 entries; every entry type has this layout. */
static tag_entry **map(struct src *s, struct arena *a, size_t *n)
{
    *n = byte(s) % 9;
    if (!*n)
        return NULL;
    tag_entry **v = calloc(*n, sizeof(*v));
    for (size_t i = 0; v && i < *n; i++) {
        v[i] = malloc(sizeof(*v[i]));
        if (!v[i]) {
            *n = i;
            break;
        }
        hypha__v1__dataplane__networking__inbound__tags_entry__init(v[i]);
        v[i]->key = pick(s, a, keys, N(keys));
        v[i]->value = pick(s, a, values, N(values));
    }
    return v;
}

static void free_map(tag_entry **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static uint8_t *dataplane_spec(struct src *s, struct arena *a, size_t *len)
{
    Hypha__V1__Dataplane dp = HYPHA__V1__DATAPLANE__INIT;
    Hypha__V1__Dataplane__Networking net = HYPHA__V1__DATAPLANE__NETWORKING__INIT;
    Hypha__V1__Dataplane__Networking__Inbound in[20], *inp[20];
    Hypha__V1__Dataplane__Networking__Outbound out[4], *outp[4];
    if (byte(s) >= 8)
        dp.networking = &net;
    net.address = pick(s, a, addrs, N(addrs));
    if (byte(s) < 64)
        net.advertised_address = pick(s, a, addrs, N(addrs));
    net.n_inbound = byte(s) % 21;
    for (size_t i = 0; i < net.n_inbound; i++) {
        hypha__v1__dataplane__networking__inbound__init(&in[i]);
        inp[i] = &in[i];
        in[i].has_port = byte(s) >= 16;
        in[i].port = (uint32_t)byte(s) * 300u;
        if (byte(s) < 32)
            in[i].address = pick(s, a, addrs, N(addrs));
        in[i].tags = map(s, a, &in[i].n_tags);
    }
    net.inbound = inp;
    net.n_outbound = byte(s) % 5;
    for (size_t i = 0; i < net.n_outbound; i++) {
        hypha__v1__dataplane__networking__outbound__init(&out[i]);
        outp[i] = &out[i];
        out[i].has_port = 1;
        out[i].port = 10000u + byte(s);
        out[i].tags = (void *)map(s, a, &out[i].n_tags);
    }
    net.outbound = outp;
    *len = hypha__v1__dataplane__get_packed_size(&dp);
    uint8_t *p = malloc(*len + 8);
    if (p)
        hypha__v1__dataplane__pack(&dp, p);
    for (size_t i = 0; i < net.n_inbound; i++)
        free_map(in[i].tags, in[i].n_tags);
    for (size_t i = 0; i < net.n_outbound; i++)
        free_map((void *)out[i].tags, out[i].n_tags);
    return p;
}

static uint8_t *ingress_spec(struct src *s, struct arena *a, size_t *len)
{
    Hypha__V1__ZoneIngress zi = HYPHA__V1__ZONE_INGRESS__INIT;
    Hypha__V1__ZoneIngress__Networking net = HYPHA__V1__ZONE_INGRESS__NETWORKING__INIT;
    Hypha__V1__ZoneIngress__AvailableService as = HYPHA__V1__ZONE_INGRESS__AVAILABLE_SERVICE__INIT,
                                             *asp[1] = {&as};
    if (byte(s) >= 8)
        zi.networking = &net;
    zi.zone = pick(s, a, names, N(names));
    net.address = pick(s, a, addrs, N(addrs));
    if (byte(s) < 64)
        net.advertised_address = pick(s, a, addrs, N(addrs));
    net.has_port = byte(s) >= 16;
    net.port = (uint32_t)byte(s) * 300u;
    if (byte(s) < 64) {
        zi.available_services = asp;
        zi.n_available_services = 1;
        as.mesh = pick(s, a, meshes, N(meshes));
        as.tags = (void *)map(s, a, &as.n_tags);
    }
    *len = hypha__v1__zone_ingress__get_packed_size(&zi);
    uint8_t *p = malloc(*len + 8);
    if (p)
        hypha__v1__zone_ingress__pack(&zi, p);
    free_map((void *)as.tags, as.n_tags);
    return p;
}

/* Packs the DpMessage the input describes; *len its size. NULL: none. */
static uint8_t *build(struct src *s, struct arena *a, size_t *len)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpHello h = HYPHA__V1__DP_HELLO__INIT;
    Hypha__V1__DpCsr csr = HYPHA__V1__DP_CSR__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    Hypha__V1__DpReject rej = HYPHA__V1__DP_REJECT__INIT;
    Hypha__V1__Envelope env = HYPHA__V1__ENVELOPE__INIT;
    Hypha__V1__Meta meta = HYPHA__V1__META__INIT;
    uint8_t *spec = NULL;
    tag_entry **labels = NULL;
    switch (byte(s) % 6) {
    case 0:
    case 1: {
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
        m.hello = &h;
        if (byte(s) >= 8)
            h.dataplane = &env;
        meta.type = (char *)types[byte(s) % N(types)];
        meta.mesh = pick(s, a, meshes, N(meshes));
        meta.name = pick(s, a, names, N(names));
        labels = map(s, a, &meta.n_labels);
        meta.labels = (void *)labels;
        if (byte(s) >= 8)
            env.meta = &meta;
        size_t sl = 0;
        spec =
            !strcmp(meta.type, "ZoneIngress") ? ingress_spec(s, a, &sl) : dataplane_spec(s, a, &sl);
        if (spec && byte(s) < 24) { /* an unknown field 99 */
            const uint8_t u[] = {0x9a, 0x06, 2, 'h', 'i'};
            memcpy(spec + sl, u, sizeof(u));
            sl += sizeof(u);
        }
        env.has_spec = spec != NULL;
        env.spec.data = spec;
        env.spec.len = sl;
        env.origin = byte(s) < 32 ? pick(s, a, names, N(names)) : NULL;
        h.token = byte(s) < 200 ? bytes(s, a, 200) : NULL;
        h.csr = byte(s) < 200 ? "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n" : NULL;
        h.version = pick(s, a, versions, N(versions));
        break;
    }
    case 2:
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CSR;
        m.csr = &csr;
        csr.csr = byte(s) < 32 ? NULL : byte(s) < 64 ? repeat(a, 'C', 9000) : bytes(s, a, 200);
        break;
    case 3:
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
        m.ack = &ack;
        ack.version = pick(s, a, versions, N(versions));
        break;
    case 4:
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
        nack.version = pick(s, a, versions, N(versions));
        nack.error = byte(s) < 32 ? repeat(a, 'e', 5000) : bytes(s, a, 200);
        break;
    default: /* what only the zone sends */
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_REJECT;
        m.reject = &rej;
        rej.reason = bytes(s, a, 20);
    }
    *len = hypha__v1__dp_message__get_packed_size(&m);
    uint8_t *p = malloc(*len ? *len : 1);
    if (p)
        hypha__v1__dp_message__pack(&m, p);
    free(spec);
    free_map(labels, meta.n_labels);
    return p;
}

/* ----- what the server does with it ----- */

static void check_accepted(const struct hy_resource *r)
{
    if (strcmp(r->type->name, "Dataplane"))
        return;
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)r->spec;
    if (!d->networking)
        abort(); /* validation requires it */
    for (size_t i = 0; i < d->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        for (size_t k = 0; k < in->n_tags; k++) {
            if (!in->tags[k]->key || !in->tags[k]->value)
                abort(); /* a NULL key or value got through */
            for (size_t j = 0; j < k; j++)
                if (!strcmp(in->tags[j]->key, in->tags[k]->key))
                    abort(); /* a duplicate key got through */
        }
    }
}

static void serve(const uint8_t *data, size_t len, struct src *s)
{
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m)
        return;
    char why[400];
    struct hy_resource *r = NULL;
    if (hy_zone_dp_check_message(m, why, sizeof(why)) &&
        m->msg_case == HYPHA__V1__DP_MESSAGE__MSG_HELLO &&
        hy_zone_dp_check_hello(m->hello, &r, why, sizeof(why)) == 0) {
        check_accepted(r);
        if (!strcmp(r->type->name, "Dataplane")) {
            struct hy_token_tag tags[2] = {{(char *)"hypha.io/service", (char *)"web"},
                                           {(char *)"version", (char *)"v1"}};
            struct hy_token_claims c = {.mesh = (char *)meshes[byte(s) % N(meshes)],
                                        .name = (char *)names[byte(s) % N(names)],
                                        .tags = tags,
                                        .ntags = byte(s) % 3};
            hy_zone_dp_token_matches(&c, r, why, sizeof(why));
            Hypha__V1__DpConfig *cfg = NULL;
            if (hy_zone_dp_config_build(store, r, "cert", "chain", "bundle", &cfg) == 0)
                hypha__v1__dp_config__free_unpacked(cfg, NULL);
        }
    }
    hy_resource_free(r);
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct src s = {data, size};
    if (size && data[0] == 0xff) { /* raw wire bytes */
        s.p++;
        s.n--;
        serve(s.p, s.n, &s);
        return 0;
    }
    struct arena a = {.n = 0};
    size_t len = 0;
    uint8_t *p = build(&s, &a, &len);
    if (p)
        serve(p, len, &s);
    free(p);
    for (size_t i = 0; i < a.n; i++)
        free(a.v[i]);
    return 0;
}
