/* Resource types (one registry table) and resources in memory.
 * A new type is a proto message, one row in registry.c and one validator. */
#ifndef HY_RESOURCE_H
#define HY_RESOURCE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "meta.pb-c.h"

enum hy_scope {
    HY_SCOPE_GLOBAL, /* no mesh: Mesh, Zone, ZoneInsight, ZoneIngress */
    HY_SCOPE_MESH,   /* lives inside a mesh; deleted with it */
};

enum hy_origin {
    HY_ORIGIN_GLOBAL, /* written on the global CP, replicated to zones */
    HY_ORIGIN_ZONE,   /* written in a zone, replicated to global */
};

struct hy_resource;

struct hy_rtype {
    const char *name;       /* "MeshTrafficPermission" */
    const char *plural;     /* API path segment: "meshtrafficpermissions" */
    const char *short_name; /* CLI alias: "mtp"; may be NULL */
    enum hy_scope scope;
    enum hy_origin origin;
    bool spec_inline; /* Kuma's older shape: spec fields at the top level, no `spec:` */
    bool system;      /* written by control planes only (insights) */
    const ProtobufCMessageDescriptor *desc;
    /* Adds a cause to diag for every problem in r's spec (meta is checked by
     * hy_resource_validate). May be NULL. */
    void (*validate)(const struct hy_resource *r, struct hy_diag *diag);
    bool secret; /* never served by the API nor sent to another control plane */
};

/* All registered types, in a stable order; *n receives the count. */
const struct hy_rtype *hy_rtype_all(size_t *n);
/* Looks a type up by name, plural or short name (case-sensitive for names,
 * insensitive for plural/short). NULL if unknown. */
const struct hy_rtype *hy_rtype_find(const char *s);
const struct hy_rtype *hy_rtype_by_name(const char *name);
const struct hy_rtype *hy_rtype_by_plural(const char *plural);

/* A resource in memory. meta and spec are owned protobuf-c messages
 * (malloc-allocated, freed with protobuf_c_message_free_unpacked). */
struct hy_resource {
    const struct hy_rtype *type;
    Hypha__V1__Meta *meta;
    ProtobufCMessage *spec;
    uint64_t version; /* store bookkeeping; 0 when never stored */
    char *origin;     /* owned; NULL, "global" or a zone name */
};

/* Makes an empty resource of type t with an initialised meta (type name
 * set) and an empty spec. NULL on allocation failure. */
struct hy_resource *hy_resource_new(const struct hy_rtype *t);
/* Frees r and everything it owns; NULL is fine. */
void hy_resource_free(struct hy_resource *r);
/* Sets name/mesh (copies). 0 or HY_ENOMEM. */
int hy_resource_set_name(struct hy_resource *r, const char *mesh, const char *name);

/* Serializes r to an Envelope. Returns a malloc'd buffer (caller frees) and
 * its length in *len, or NULL on allocation failure. */
uint8_t *hy_resource_pack(const struct hy_resource *r, size_t *len);
/* Parses an Envelope. On success *out is a new resource (caller frees) and
 * 0 is returned; HY_EINVAL if the bytes are not an envelope of a known type. */
int hy_resource_unpack(const uint8_t *data, size_t len, struct hy_resource **out);

/* Deep copy; NULL on allocation failure. */
struct hy_resource *hy_resource_dup(const struct hy_resource *r);
/* True when the specs and labels are equal (times, version, origin ignored). */
bool hy_resource_same_content(const struct hy_resource *a, const struct hy_resource *b);

/* Checks meta (name and mesh rules, label keys/values) and then the type's
 * validator. Returns true when no cause was added. */
bool hy_resource_validate(const struct hy_resource *r, struct hy_diag *diag);

/* Validation helpers for validators. */
bool hy_valid_name(const char *s); /* lowercase DNS-style, <= 253 */
/* A zone name: one DNS label (lowercase letters, digits, '-'; at most 63;
 * no dots, so "<zone>.<name>" keys on the global CP cannot collide). */
bool hy_valid_zone_name(const char *s);
#define HY_ZONE_NAME_RULE                                                                          \
    "a zone name is one DNS label: lowercase letters, digits and '-', at most 63 characters, no "  \
    "dots"
bool hy_valid_tag_key(const char *s); /* [prefix/]name, like label keys */
bool hy_valid_tag_value(const char *s);

/* Current time as a Timestamp message (caller frees with
 * protobuf_c_message_free_unpacked). NULL on allocation failure. */
Hypha__V1__Timestamp *hy_timestamp_now(void);

#endif
