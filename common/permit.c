/* The MeshTrafficPermission decision at one inbound (permit.h). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "permit.h"
#include "poison.h"

bool hy_permit_tag_uri(const char *key, const char *value, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s/", HY_PERMIT_TAG_SCHEME, key);
    if (n < 0 || (size_t)n >= size)
        return false;
    size_t off = (size_t)n;
    for (const char *p = value; *p; p++) {
        const char *put = *p == '/' ? "%2F" : NULL;
        size_t len = put ? 3 : 1;
        if (off + len >= size)
            return false;
        memcpy(buf + off, put ? put : p, len);
        off += len;
    }
    buf[off] = '\0';
    return true;
}

static void add(struct hy_permit_peer *p, const char *key, size_t klen, const char *value,
                bool decode)
{
    if (p->n == HY_PERMIT_MAX_TAGS || klen + strlen(value) + 2 > sizeof(p->buf) - p->used)
        return;
    char *k = p->buf + p->used, *v = k + klen + 1, *o = v;
    memcpy(k, key, klen);
    k[klen] = '\0';
    for (const char *s = value; *s; s++) {
        if (decode && s[0] == '%' && s[1] == '2' && (s[2] == 'F' || s[2] == 'f')) {
            *o++ = '/';
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o++ = '\0';
    p->used = (size_t)(o - p->buf);
    p->key[p->n] = k;
    p->value[p->n++] = v;
}

void hy_permit_peer_add_uri(struct hy_permit_peer *p, const char *uri)
{
    size_t sl = strlen(HY_PERMIT_TAG_SCHEME);
    if (strncmp(uri, HY_PERMIT_TAG_SCHEME, sl) != 0)
        return;
    const char *body = uri + sl, *slash = strrchr(body, '/');
    if (slash && slash > body)
        add(p, body, (size_t)(slash - body), slash + 1, true);
}

void hy_permit_peer_add(struct hy_permit_peer *p, const char *key, const char *value)
{
    add(p, key, strlen(key), value, false);
}

bool hy_permit_peer_has(const struct hy_permit_peer *p, const char *key, const char *value)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->key[i], key) && !strcmp(p->value[i], value))
            return true;
    return false;
}

/* Every map<string, string> entry protobuf-c makes for the DP messages
 * has this layout; hy_permit_peer_carries reads any of them through it. */
typedef Hypha__V1__DpPermission__TagsEntry tag_entry;
#define SAME_LAYOUT(T)                                                                             \
    _Static_assert(offsetof(T, key) == offsetof(tag_entry, key) &&                                 \
                       offsetof(T, value) == offsetof(tag_entry, value),                           \
                   #T " is not laid out as a tag entry")
SAME_LAYOUT(Hypha__V1__DpCallerFaults__TagsEntry);
SAME_LAYOUT(Hypha__V1__DpCallerRateLimit__TagsEntry);

bool hy_permit_peer_carries(const struct hy_permit_peer *p, const void *const *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *key, *value;
        /* memcpy: the entry's own type differs by field; its bytes do not */
        memcpy(&key, (const char *)tags[i] + offsetof(tag_entry, key), sizeof(key));
        memcpy(&value, (const char *)tags[i] + offsetof(tag_entry, value), sizeof(value));
        if (!key || !value || !hy_permit_peer_has(p, key, value))
            return false;
    }
    return true;
}

/* Does the caller carry every tag of an entry (none: any caller)? */
static bool carries(const Hypha__V1__DpPermission *e, const struct hy_permit_peer *peer)
{
    return hy_permit_peer_carries(peer, (const void *const *)e->tags, e->n_tags);
}

static const Hypha__V1__DpSpiffeMatch *id_match(Hypha__V1__DpSpiffeMatch *const *v, size_t n,
                                                const char *id)
{
    for (size_t i = 0; i < n; i++) {
        const char *want = v[i]->value ? v[i]->value : "";
        if (v[i]->prefix ? !strncmp(id, want, strlen(want)) : !strcmp(id, want))
            return v[i];
    }
    return NULL;
}

void hy_permit_decide(const Hypha__V1__DpInbound *in, const char *id,
                      const struct hy_permit_peer *peer, struct hy_permit_decision *out)
{
    const Hypha__V1__DpSpiffeMatch *m = id_match(in->deny, in->n_deny, id);
    if (m) {
        *out = (struct hy_permit_decision){HY_PERMIT_DENY, m->origin, "a rules deny matcher"};
        return;
    }
    const Hypha__V1__DpPermission *last = NULL;
    for (size_t i = in->n_permissions; i-- > 0 && !last;)
        if (carries(in->permissions[i], peer))
            last = in->permissions[i];
    if (last && last->action == HYPHA__V1__DP_PERMISSION__ACTION__Deny) {
        *out = (struct hy_permit_decision){HY_PERMIT_DENY, last->origin,
                                           "the last from entry the caller matches"};
        return;
    }
    if (last && last->action == HYPHA__V1__DP_PERMISSION__ACTION__Allow) {
        *out = (struct hy_permit_decision){HY_PERMIT_ALLOW, last->origin,
                                           "the last from entry the caller matches"};
        return;
    }
    if ((m = id_match(in->allow, in->n_allow, id))) {
        *out = (struct hy_permit_decision){HY_PERMIT_ALLOW, m->origin, "a rules allow matcher"};
        return;
    }
    if (last) {
        *out = (struct hy_permit_decision){HY_PERMIT_SHADOW, last->origin,
                                           "the last from entry the caller matches"};
        return;
    }
    if ((m = id_match(in->allow_with_shadow_deny, in->n_allow_with_shadow_deny, id))) {
        *out = (struct hy_permit_decision){HY_PERMIT_SHADOW, m->origin,
                                           "a rules allowWithShadowDeny matcher"};
        return;
    }
    *out = (struct hy_permit_decision){HY_PERMIT_DENY, NULL,
                                       "no MeshTrafficPermission entry or rule matches the caller"};
}
