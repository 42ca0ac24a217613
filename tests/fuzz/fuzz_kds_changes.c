/* Structure-aware libFuzzer target for KDS Changes: the input is a list of
 * edits applied to valid resources (Dataplane, ZoneIngress, insights, and
 * types a zone may not send), so the envelopes reach the sync engine and
 * the validators well formed and bent one field at a time: names and
 * meshes of any bytes, labels without keys or twice, specs cut or
 * flipped, unknown types, deletes of any key, snapshots. The message is
 * packed and unpacked as it would travel, then applied as the global CP
 * applies a zone's (renamed "<zone>.<name>", an admit hook that keeps what
 * is another zone's) and as a zone applies the global CP's. Nothing may
 * crash or leak, and everything the global side stored must pass
 * hy_resource_validate and belong to the zone that sent it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "kds.h"
#include "fuzz_east.h"
#include "fuzz_store.h"
#include "poison.h"

static struct hy_store *store;
static struct hy_resource *templates[5];

static const char *const yaml[] = {
    "type: Dataplane\nmesh: default\nname: web-1\nlabels: {team: a}\nnetworking:\n"
    "  address: 10.0.0.1\n  inbound: [{port: 8080, tags: {hypha.io/service: web}}]\n"
    "  outbound: [{port: 9000, tags: {hypha.io/service: db}}]\n",
    "type: ZoneIngress\nname: ing\nzone: west\nnetworking: {address: 10.0.0.2, port: 10001}\n"
    "availableServices: [{mesh: default, tags: {hypha.io/service: web}, instances: 1}]\n",
    "type: DataplaneInsight\nmesh: default\nname: web-1\n",
    "type: Mesh\nname: default\n",
    "type: MeshTrafficPermission\nmesh: default\nname: p\nspec:\n  targetRef: {kind: Mesh}\n"
    "  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    store = fuzz_store_open("kdsc", 256u << 20);
    for (size_t i = 0; i < sizeof(yaml) / sizeof(yaml[0]); i++) {
        struct hy_docs docs = {0};
        struct hy_diag d = {0};
        if (hy_codec_decode_resources("t", yaml[i], strlen(yaml[i]), NULL, &docs, &d) < 0 ||
            docs.n != 1)
            abort();
        templates[i] = docs.v[0].res; /* reachable until exit */
        docs.v[0].res = NULL;
        hy_docs_fini(&docs);
        hy_diag_fini(&d);
    }
    return 0;
}

/* ----- reading the input ----- */

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned byte(struct in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* A string of the input's bytes (length first), or NULL for length 255. */
static char *string(struct in *in)
{
    unsigned len = byte(in);
    if (len == 255)
        return NULL;
    if (len > in->n)
        len = (unsigned)in->n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, in->p, len);
    s[len] = '\0';
    in->p += len;
    in->n -= len;
    return s;
}

/* ----- edits ----- */

static void set(char **dst, char *v)
{
    free(*dst);
    *dst = v;
}

static void add_label(Hypha__V1__Meta *m, char *key, char *value)
{
    Hypha__V1__Meta__LabelsEntry **v = realloc(m->labels, (m->n_labels + 1) * sizeof(*v));
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
    if (!v || !e)
        abort();
    hypha__v1__meta__labels_entry__init(e);
    e->key = key;
    e->value = value;
    m->labels = v;
    v[m->n_labels++] = e;
}

static Hypha__V1__Envelope *envelope(const struct hy_resource *r)
{
    size_t len;
    uint8_t *p = hy_resource_pack(r, &len);
    Hypha__V1__Envelope *e = p ? hypha__v1__envelope__unpack(NULL, len, p) : NULL;
    free(p);
    if (!e)
        abort();
    return e;
}

static void edit_spec(Hypha__V1__Envelope *e, unsigned op, struct in *in)
{
    ProtobufCBinaryData *s = &e->spec;
    if (op == 0 && s->len) { /* cut */
        s->len = byte(in) % s->len;
    } else if (op == 1 && s->len) { /* flip a byte */
        s->data[byte(in) % s->len] ^= (uint8_t)(1u << (byte(in) % 8));
    } else { /* replace with input bytes */
        unsigned len = byte(in) % 64;
        if (len > in->n)
            len = (unsigned)in->n;
        uint8_t *d = malloc(len + 1);
        if (!d)
            abort();
        memcpy(d, in->p, len);
        in->p += len;
        in->n -= len;
        free(s->data);
        s->data = d;
        s->len = len;
    }
}

static void add_delete(Hypha__V1__Changes *c, struct in *in)
{
    Hypha__V1__ResourceKey **v = realloc(c->deletes, (c->n_deletes + 1) * sizeof(*v));
    Hypha__V1__ResourceKey *k = malloc(sizeof(*k));
    if (!v || !k)
        abort();
    hypha__v1__resource_key__init(k);
    static const char *const types[] = {"Dataplane", "ZoneIngress", "Mesh", "DataplaneInsight"};
    k->type = byte(in) % 5 == 4 ? string(in) : strdup(types[byte(in) % 4]);
    k->mesh = byte(in) & 1 ? string(in) : strdup("default");
    k->name = string(in);
    c->deletes = v;
    v[c->n_deletes++] = k;
}

static Hypha__V1__Changes *build(struct in *in)
{
    Hypha__V1__Changes *c = malloc(sizeof(*c));
    if (!c)
        abort();
    hypha__v1__changes__init(c);
    c->has_to = 1;
    c->to = 1;
    Hypha__V1__Envelope *last = NULL;
    for (int steps = 0; in->n && steps < 64; steps++) {
        unsigned op = byte(in) % 13;
        if (op == 0 || !last) {
            Hypha__V1__Envelope **v = realloc(c->upserts, (c->n_upserts + 1) * sizeof(*v));
            if (!v)
                abort();
            c->upserts = v;
            last = v[c->n_upserts++] =
                envelope(templates[byte(in) % (sizeof(templates) / sizeof(templates[0]))]);
            continue;
        }
        Hypha__V1__Meta *m = last->meta;
        switch (op) {
        case 1:
            set(&m->name, string(in));
            break;
        case 2:
            set(&m->mesh, string(in));
            break;
        case 3:
            add_label(m, NULL, string(in));
            break;
        case 4:
            add_label(m, strdup("team"), strdup("b"));
            add_label(m, strdup("team"), string(in));
            break;
        case 5:
            add_label(m, string(in), string(in));
            break;
        case 6:
        case 7:
        case 8:
            edit_spec(last, op - 6, in);
            break;
        case 9:
            set(&m->type, string(in));
            break;
        case 10:
            add_delete(c, in);
            break;
        case 11:
            c->has_snapshot = 1;
            c->snapshot = !c->snapshot;
            break;
        case 12: /* a snapshot part: which one, and whether more follow */
            c->has_part = c->has_more = 1;
            c->part = byte(in) % 4;
            c->more = byte(in) & 1;
            break;
        }
    }
    return c;
}

/* ----- applying it ----- */

static int rename_key(void *ud, const Hypha__V1__ResourceKey *k, char *buf, size_t size)
{
    (void)ud;
    snprintf(buf, size, "east.%s", k->name);
    return 0;
}

static bool admit(void *ud, enum hy_store_op op, const struct hy_resource *r,
                  const struct hy_resource *existing, char *why, size_t size)
{
    (void)ud;
    (void)op;
    if (existing && (!existing->origin || strcmp(existing->origin, "east"))) {
        snprintf(why, size, "%s is not east's", r->meta->name);
        return false;
    }
    return true;
}

/* Everything east put in the store is valid and east's. */
static int check_one(void *ud, struct hy_resource *r, bool *take)
{
    (void)ud;
    (void)take;
    if (r->type->origin != HY_ORIGIN_ZONE || !r->origin || strcmp(r->origin, "east"))
        return 0;
    struct hy_diag d = {0};
    if (!hy_resource_validate(r, &d)) {
        char buf[300];
        fprintf(stderr, "stored an invalid %s %s: %s\n", r->type->name, r->meta->name,
                hy_diag_format(&d, 0, buf, sizeof(buf)));
        abort();
    }
    hy_diag_fini(&d);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    Hypha__V1__Changes *built = build(&in);
    /* as it travels: packed, then unpacked by the receiver */
    size_t len = hypha__v1__changes__get_packed_size(built);
    uint8_t *wire = malloc(len ? len : 1);
    if (!wire)
        abort();
    hypha__v1__changes__pack(built, wire);
    hypha__v1__changes__free_unpacked(built, NULL);
    Hypha__V1__Changes *c = hypha__v1__changes__unpack(NULL, len, wire);
    free(wire);
    if (!c)
        return 0;
    struct hy_kds_scope up = {from_east, NULL}, owned = {owned_by_east, NULL};
    struct hy_kds_scope down = {to_east, NULL};
    /* a snapshot in parts is gathered from one input to the next, as a
     * connection gathers it from one message to the next */
    static struct hy_kds_snap_rx rx_global, rx_zone;
    struct hy_kds_apply_opts global_side = {.accept = &up,
                                            .replace = &owned,
                                            .transform = rename_east,
                                            .transform_key = rename_key,
                                            .admit = admit,
                                            .parts = &rx_global};
    struct hy_kds_apply_opts zone_side = {.accept = &down, .replace = &down, .parts = &rx_zone};
    struct hy_kds_applied done;
    char err[256];
    if (hy_kds_apply(store, c, &global_side, &done, err, sizeof(err)) == 0)
        hy_kds_applied_fini(&done);
    hy_store_each(store, NULL, check_one, NULL);
    hy_kds_apply(store, c, &zone_side, NULL, err, sizeof(err));
    Hypha__V1__Changes *out = NULL;
    if (hy_kds_collect(store, 0, 0, &down, &out) == 0)
        hypha__v1__changes__free_unpacked(out, NULL);
    /* and as a snapshot in small parts (a peer ahead of the store) */
    struct hy_kds_budget b = {.max_changes = 3, .max_bytes = 512};
    struct hy_kds_snap_tx tx = {0};
    for (int i = 0; i < 16; i++) {
        if (hy_kds_collect_parts(store, UINT64_MAX, &down, &b, &tx, &out) < 0)
            break;
        hypha__v1__changes__free_unpacked(out, NULL);
        if (!tx.active)
            break;
    }
    hy_kds_snap_tx_reset(&tx);
    hypha__v1__changes__free_unpacked(c, NULL);
    return 0;
}
