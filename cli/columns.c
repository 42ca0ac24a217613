/* hy_columns: turning resources into table rows, per type. Policies are
 * recognised by shape (a top-level targetRef) rather than by name, so a new
 * policy type gets sensible columns without code here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "columns.h"
#include "common.pb-c.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "mesh.pb-c.h"
#include "output.h"
#include "poison.h"

enum col {
    C_MESH,
    C_NAME,
    C_ZONE,
    C_MTLS,
    C_ENABLED,
    C_STATUS,
    C_SUBSCRIPTIONS,
    C_ADDRESS,
    C_ADVERTISED,
    C_SERVICES,
    C_AVAILABLE,
    C_TARGETREF,
    C_TO,
    C_FROM,
    C_AGE,
    C_END,
};

static const char *const headers[] = {
    [C_MESH] = "MESH",
    [C_NAME] = "NAME",
    [C_ZONE] = "ZONE",
    [C_MTLS] = "MTLS",
    [C_ENABLED] = "ENABLED",
    [C_STATUS] = "STATUS",
    [C_SUBSCRIPTIONS] = "SUBSCRIPTIONS",
    [C_ADDRESS] = "ADDRESS",
    [C_ADVERTISED] = "ADVERTISED-ADDRESS",
    [C_SERVICES] = "SERVICES",
    [C_AVAILABLE] = "AVAILABLE-SERVICES",
    [C_TARGETREF] = "TARGETREF",
    [C_TO] = "TO",
    [C_FROM] = "FROM",
    [C_AGE] = "AGE",
};

/* ----- reflection over policy specs ----- */

static const ProtobufCFieldDescriptor *field(const ProtobufCMessageDescriptor *d, const char *name,
                                             bool repeated)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        (f->label == PROTOBUF_C_LABEL_REPEATED) != repeated)
        return NULL;
    return f;
}

static const Hypha__V1__TargetRef *target_ref(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f = field(m->descriptor, "target_ref", false);
    if (!f || f->descriptor != &hypha__v1__target_ref__descriptor)
        return NULL;
    return *(Hypha__V1__TargetRef *const *)((const char *)m + f->offset);
}

static bool is_policy(const struct hy_rtype *t)
{
    const ProtobufCFieldDescriptor *f = field(t->desc, "target_ref", false);
    return f && f->descriptor == &hypha__v1__target_ref__descriptor;
}

static bool has_entries(const struct hy_rtype *t, const char *name)
{
    return field(t->desc, name, true) != NULL;
}

/* "Mesh", "MeshService:backend", "MeshSubset[hypha.io/zone=west]". */
static int format_ref(const Hypha__V1__TargetRef *r, struct hy_buf *b)
{
    const ProtobufCEnumValue *k = protobuf_c_enum_descriptor_get_value(
        &hypha__v1__target_ref__kind__descriptor, r->has_kind ? (int)r->kind : 0);
    int rc = hy_buf_puts(b, k ? k->name : "?");
    if (rc == 0 && r->name && r->name[0])
        rc = hy_buf_printf(b, ":%s", r->name);
    for (size_t i = 0; rc == 0 && i < r->n_tags; i++)
        rc = hy_buf_printf(b, "%s%s=%s%s", i ? "," : "[", r->tags[i]->key, r->tags[i]->value,
                           i + 1 == r->n_tags ? "]" : "");
    return rc;
}

/* The targetRefs of a policy's to/from entries, comma-separated. */
static int format_entries(const ProtobufCMessage *spec, const char *name, struct hy_buf *b)
{
    const ProtobufCFieldDescriptor *f = field(spec->descriptor, name, true);
    if (!f)
        return 0;
    size_t n = *(const size_t *)((const char *)spec + f->quantifier_offset);
    ProtobufCMessage *const *v =
        *(ProtobufCMessage *const *const *)((const char *)spec + f->offset);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const Hypha__V1__TargetRef *r = target_ref(v[i]);
        if (i > 0)
            rc = hy_buf_puts(b, ",");
        if (rc == 0)
            rc = r ? format_ref(r, b) : hy_buf_puts(b, "?");
    }
    return rc;
}

/* ----- per-type cells ----- */

const char *hy_columns_label(const struct hy_resource *r, const char *key)
{
    for (size_t i = 0; i < r->meta->n_labels; i++)
        if (strcmp(r->meta->labels[i]->key, key) == 0)
            return r->meta->labels[i]->value;
    return NULL;
}

bool hy_columns_zone_online(const Hypha__V1__ZoneInsight *zi)
{
    if (!zi || zi->n_subscriptions == 0)
        return false;
    const Hypha__V1__ZoneInsight__Subscription *s = zi->subscriptions[zi->n_subscriptions - 1];
    return s->connect_time && !s->disconnect_time;
}

static int address_port(struct hy_buf *b, const char *addr, bool has_port, uint32_t port)
{
    if (!addr || !addr[0])
        return 0;
    bool v6 = strchr(addr, ':') != NULL;
    if (!has_port)
        return hy_buf_puts(b, addr);
    return hy_buf_printf(b, "%s%s%s:%u", v6 ? "[" : "", addr, v6 ? "]" : "", port);
}

/* The distinct hypha.io/service tags of a dataplane's inbounds. */
static int services(const Hypha__V1__Dataplane *dp, struct hy_buf *b)
{
    const Hypha__V1__Dataplane__Networking *net = dp->networking;
    int rc = 0;
    size_t written = 0;
    for (size_t i = 0; net && rc == 0 && i < net->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = net->inbound[i];
        for (size_t t = 0; rc == 0 && t < in->n_tags; t++) {
            if (strcmp(in->tags[t]->key, "hypha.io/service") != 0)
                continue;
            const char *svc = in->tags[t]->value;
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                for (size_t u = 0; u < net->inbound[j]->n_tags; u++)
                    if (strcmp(net->inbound[j]->tags[u]->key, "hypha.io/service") == 0 &&
                        strcmp(net->inbound[j]->tags[u]->value, svc) == 0)
                        seen = true;
            if (!seen)
                rc = hy_buf_printf(b, "%s%s", written++ ? "," : "", svc);
        }
    }
    return rc;
}

static int cell(enum col c, const struct hy_resource *r, int64_t now, struct hy_buf *b)
{
    const Hypha__V1__Meta *m = r->meta;
    const ProtobufCMessage *spec = r->spec;
    const char *name = r->type->name;
    char tmp[64];
    switch (c) {
    case C_MESH:
        return hy_buf_puts(b, m->mesh ? m->mesh : "");
    case C_NAME:
        return hy_buf_puts(b, m->name ? m->name : "");
    case C_ZONE: {
        const char *z = hy_columns_label(r, HY_LABEL_ZONE);
        if (!z && strcmp(name, "ZoneIngress") == 0)
            z = ((const Hypha__V1__ZoneIngress *)spec)->zone;
        return hy_buf_puts(b, z ? z : "");
    }
    case C_MTLS: {
        const Hypha__V1__Mesh__Mtls *mt = ((const Hypha__V1__Mesh *)spec)->mtls;
        return hy_buf_puts(
            b, mt && mt->enabled_backend && mt->enabled_backend[0] ? mt->enabled_backend : "off");
    }
    case C_ENABLED: {
        const Hypha__V1__Zone *z = (const Hypha__V1__Zone *)spec;
        return hy_buf_puts(b, z->has_enabled && !z->enabled ? "false" : "true");
    }
    case C_STATUS:
        return hy_buf_puts(
            b, hy_columns_zone_online((const Hypha__V1__ZoneInsight *)spec) ? "Online" : "Offline");
    case C_SUBSCRIPTIONS:
        return hy_buf_printf(b, "%zu", ((const Hypha__V1__ZoneInsight *)spec)->n_subscriptions);
    case C_ADDRESS:
        if (strcmp(name, "Dataplane") == 0) {
            const Hypha__V1__Dataplane *dp = (const Hypha__V1__Dataplane *)spec;
            return address_port(b, dp->networking ? dp->networking->address : NULL, false, 0);
        } else {
            const Hypha__V1__ZoneIngress__Networking *n =
                ((const Hypha__V1__ZoneIngress *)spec)->networking;
            return n ? address_port(b, n->address, n->has_port, n->port) : 0;
        }
    case C_ADVERTISED: {
        const Hypha__V1__ZoneIngress__Networking *n =
            ((const Hypha__V1__ZoneIngress *)spec)->networking;
        return n ? address_port(b, n->advertised_address, n->has_advertised_port,
                                n->advertised_port)
                 : 0;
    }
    case C_SERVICES:
        return services((const Hypha__V1__Dataplane *)spec, b);
    case C_AVAILABLE:
        return hy_buf_printf(b, "%zu",
                             ((const Hypha__V1__ZoneIngress *)spec)->n_available_services);
    case C_TARGETREF: {
        const Hypha__V1__TargetRef *ref = target_ref(spec);
        return ref ? format_ref(ref, b) : hy_buf_puts(b, "Mesh");
    }
    case C_TO:
        return format_entries(spec, "to", b);
    case C_FROM:
        return format_entries(spec, "from", b);
    case C_AGE:
        hy_output_age_since(now, m->creation_time, tmp, sizeof(tmp));
        return hy_buf_puts(b, tmp);
    case C_END:
        break;
    }
    return 0;
}

/* The columns of type t, ending with C_END. */
static void columns_of(const struct hy_rtype *t, enum col *cols)
{
    size_t n = 0;
    const char *name = t->name;
    if (strcmp(name, "ZoneIngress") == 0) {
        cols[n++] = C_ZONE;
        cols[n++] = C_NAME;
        cols[n++] = C_ADDRESS;
        cols[n++] = C_ADVERTISED;
        cols[n++] = C_AVAILABLE;
        cols[n++] = C_AGE;
        cols[n] = C_END;
        return;
    }
    if (t->scope == HY_SCOPE_MESH)
        cols[n++] = C_MESH;
    cols[n++] = C_NAME;
    if (t->origin == HY_ORIGIN_ZONE)
        cols[n++] = C_ZONE;
    if (strcmp(name, "Mesh") == 0) {
        cols[n++] = C_MTLS;
    } else if (strcmp(name, "Zone") == 0) {
        cols[n++] = C_ENABLED;
    } else if (strcmp(name, "ZoneInsight") == 0) {
        cols[n++] = C_STATUS;
        cols[n++] = C_SUBSCRIPTIONS;
    } else if (strcmp(name, "Dataplane") == 0) {
        cols[n++] = C_ADDRESS;
        cols[n++] = C_SERVICES;
    } else if (is_policy(t)) {
        cols[n++] = C_TARGETREF;
        if (has_entries(t, "to"))
            cols[n++] = C_TO;
        if (has_entries(t, "from"))
            cols[n++] = C_FROM;
    }
    cols[n++] = C_AGE;
    cols[n] = C_END;
}

int hy_columns_table(const struct hy_rtype *t, struct hy_resource *const *v, size_t n, int64_t now,
                     struct hy_table *out)
{
    enum col cols[C_END + 1];
    columns_of(t, cols);
    size_t nc = 0;
    const char *head[C_END];
    while (cols[nc] != C_END) {
        head[nc] = headers[cols[nc]];
        nc++;
    }
    int rc = hy_table_init(out, nc, head);
    struct hy_buf cells[C_END] = {{0}};
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *row[C_END];
        for (size_t c = 0; rc == 0 && c < nc; c++) {
            cells[c].len = 0;
            rc = hy_buf_puts(&cells[c], "");
            if (rc == 0)
                rc = cell(cols[c], v[i], now, &cells[c]);
            row[c] = cells[c].data;
        }
        if (rc == 0)
            rc = hy_table_add(out, row);
    }
    for (size_t c = 0; c < nc; c++)
        hy_buf_fini(&cells[c]);
    return rc;
}
