/* MeshTrafficPermission as the data plane enforces it: the policy
 * engine's `from` entries and `rules` matchers of one inbound, turned into
 * what DpInbound carries (permit.h decides on it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static int add_permission(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                          const struct hy_policy_origin *o)
{
    Hypha__V1__DpInbound *in = ud;
    const Hypha__V1__MeshTrafficPermission__Conf *c = (const void *)conf;
    if (!c) /* validation refuses an entry without default */
        return 0;
    Hypha__V1__DpPermission **v = realloc(in->permissions, (in->n_permissions + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    in->permissions = v;
    Hypha__V1__DpPermission *p = malloc(sizeof(*p));
    if (!p)
        return HY_ENOMEM;
    hypha__v1__dp_permission__init(p);
    v[in->n_permissions++] = p;
    p->has_action = 1;
    /* the enums share their numbers: Allow 0, Deny 1, AllowWithShadowDeny 2 */
    p->action = (Hypha__V1__DpPermission__Action)c->action;
    p->origin = hy_policy_origin_str(o, NULL);
    return p->origin ? hy_policy_caller_tags(&p->base, ref) : HY_ENOMEM;
}

static int add_matches(Hypha__V1__DpSpiffeMatch ***v, size_t *n,
                       Hypha__V1__MeshTrafficPermission__Match *const *m, size_t nm,
                       const struct hy_policy_origin *o, const char *list)
{
    for (size_t k = 0; k < nm; k++) {
        const Hypha__V1__MeshTrafficPermission__SpiffeIdMatch *id = m[k]->spiffeid;
        if (!id || !id->value)
            continue; /* validation refuses it */
        Hypha__V1__DpSpiffeMatch **nv = realloc(*v, (*n + 1) * sizeof(*nv));
        if (!nv)
            return HY_ENOMEM;
        *v = nv;
        Hypha__V1__DpSpiffeMatch *x = malloc(sizeof(*x));
        if (!x)
            return HY_ENOMEM;
        hypha__v1__dp_spiffe_match__init(x);
        nv[(*n)++] = x;
        x->has_prefix = 1;
        x->prefix = id->has_type &&
                    id->type == HYPHA__V1__MESH_TRAFFIC_PERMISSION__SPIFFE_ID_MATCH__TYPE__Prefix;
        x->value = strdup(id->value);
        char more[64];
        snprintf(more, sizeof(more), ".%s[%zu]", list, k);
        x->origin = hy_policy_origin_str(o, more);
        if (!x->value || !x->origin)
            return HY_ENOMEM;
    }
    return 0;
}

static int add_rule(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                    const struct hy_policy_origin *o)
{
    Hypha__V1__DpInbound *in = ud;
    const Hypha__V1__MeshTrafficPermission__RuleConf *c = (const void *)conf;
    (void)ref;
    if (!c)
        return 0;
    int rc = add_matches(&in->deny, &in->n_deny, c->deny, c->n_deny, o, "deny");
    if (rc == 0)
        rc = add_matches(&in->allow, &in->n_allow, c->allow, c->n_allow, o, "allow");
    if (rc == 0)
        rc = add_matches(&in->allow_with_shadow_deny, &in->n_allow_with_shadow_deny,
                         c->allow_with_shadow_deny, c->n_allow_with_shadow_deny, o,
                         "allowWithShadowDeny");
    return rc;
}

/* MeshTrafficPermission at inbound i: every `from` entry of the policies
 * selecting it, in merge order, and every `rules` matcher. */
int hy_policy_inbound_permissions(const struct hy_policy_set *mtp, size_t i,
                                  Hypha__V1__DpInbound *in)
{
    int rc = hy_policy_each_entry(mtp, "from", i, add_permission, in);
    return rc ? rc : hy_policy_each_entry(mtp, "rules", i, add_rule, in);
}
