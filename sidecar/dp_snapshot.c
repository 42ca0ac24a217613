/* Config snapshots: the checks a config from the zone must pass before the
 * sidecar uses it, the immutable reference-counted form it then takes (an
 * agent snapshot, published by agent_snap.c), and when its certificate is
 * renewed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dp.h"
#include "alog.h"
#include "error.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* Certificate times are before year 10000 (RFC 5280): clamping them far
 * outside that keeps the arithmetic below from overflowing. */
static int64_t clamp_time(int64_t t)
{
    const int64_t lim = INT64_C(1) << 40; /* year ~36800 */
    return t < -lim ? -lim : t > lim ? lim : t;
}

int64_t hy_sidecar_renew_at(int64_t not_before, int64_t not_after, int64_t now)
{
    int64_t nb = clamp_time(not_before), na = clamp_time(not_after);
    /* Ours are backdated: their life starts HY_CA_BACKDATE_SECONDS later.
     * Not before now, though, for one from a CA that does not backdate
     * (or a clock ahead of ours). */
    int64_t issued = nb + HY_CA_BACKDATE_SECONDS, t = clamp_time(now);
    if (issued > t)
        issued = t > nb ? t : nb;
    if (na <= issued)
        return na;
    return issued + (na - issued) * HY_DP_RENEW_PERCENT / 100;
}

uint64_t hy_sidecar_renew_retry_ms(int64_t not_before, int64_t not_after)
{
    int64_t nb = clamp_time(not_before), na = clamp_time(not_after);
    int64_t ms = na > nb ? (na - nb) * 1000 / 20 : 0; /* 5 % */
    return ms < 1000 ? 1000 : ms > 60000 ? 60000 : (uint64_t)ms;
}

/* Listener ports: each in range and none used twice (the proxy binds them).
 * An outbound may have port 0: a backend of routes and splits only, never
 * listened on. */
static int check_ports(const Hypha__V1__DpConfig *c, char *err, size_t errlen)
{
    uint8_t seen[65536 / 8] = {0};
    for (size_t i = 0; i < c->n_inbounds + c->n_outbounds; i++) {
        bool in = i < c->n_inbounds;
        size_t k = in ? i : i - c->n_inbounds;
        uint32_t port = in ? c->inbounds[k]->port : c->outbounds[k]->port;
        const char *what = in ? "inbounds" : "outbounds";
        if (!in && port == 0)
            continue;
        if (port == 0 || port > 65535) {
            snprintf(err, errlen, "%s[%zu]: port %u is not in 1..65535", what, k, (unsigned)port);
            return HY_EINVAL;
        }
        if (seen[port / 8] & (1u << (port % 8))) {
            snprintf(err, errlen, "%s[%zu]: port %u is used twice", what, k, (unsigned)port);
            return HY_EINVAL;
        }
        seen[port / 8] |= (uint8_t)(1u << (port % 8));
    }
    return 0;
}

/* The first URI SAN of info that is a SPIFFE ID of mesh, or NULL. */
static const char *spiffe_of(const struct hy_ca_info *info, const char *mesh)
{
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "URI:spiffe://%s/", mesh);
    for (size_t i = 0; i < info->nsans; i++)
        if (strncmp(info->sans[i], prefix, strlen(prefix)) == 0)
            return info->sans[i] + 4;
    return NULL;
}

static void snapshot_free(struct hy_agent_snap *base)
{
    struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_of(base);
    if (s->config)
        hypha__v1__dp_config__free_unpacked(s->config, NULL);
    if (s->key) {
        explicit_bzero(s->key, strlen(s->key));
        free(s->key);
    }
    free(s->spiffe_id);
    hy_alog_cfg_free(atomic_load(&s->alog));
    free(s);
}

int hy_sidecar_snapshot_new(Hypha__V1__DpConfig *config, const char *mesh, const char *name,
                            const char *const *keys, size_t nkeys, struct hy_sidecar_snapshot **out,
                            size_t *which, char *err, size_t errlen)
{
    struct hy_ca_info info = {0};
    const char *why = NULL;
    int rc;
    *out = NULL;
    err[0] = '\0';
    if (!config->version || !config->version[0]) {
        snprintf(err, errlen, "the config has no version");
        return HY_EINVAL;
    }
    if ((config->mesh && config->mesh[0] && strcmp(config->mesh, S(mesh))) ||
        (config->name && config->name[0] && strcmp(config->name, S(name)))) {
        snprintf(err, errlen, "the config is for %s/%s, this dataplane is %s/%s", S(config->mesh),
                 S(config->name), S(mesh), S(name));
        return HY_EINVAL;
    }
    if ((rc = check_ports(config, err, errlen)) < 0)
        return rc;
    if (!config->cert || !config->cert[0] || !config->trust_bundle || !config->trust_bundle[0]) {
        snprintf(err, errlen, "the config has no %s",
                 !config->cert || !config->cert[0] ? "certificate" : "trust bundle");
        return HY_EINVAL;
    }
    if ((rc = hy_ca_inspect(config->cert, &info)) < 0) {
        snprintf(err, errlen, "the certificate does not parse: %s", hy_strerror(rc));
        return rc == HY_ENOMEM ? rc : HY_EINVAL;
    }
    const char *id = spiffe_of(&info, S(mesh));
    if (info.is_request || info.is_ca) {
        snprintf(err, errlen, "the certificate is %s, not a workload's",
                 info.is_ca ? "a CA" : "a request");
        rc = HY_EVERIFY;
        goto out_free_info;
    }
    if (!id) {
        snprintf(err, errlen, "the certificate has no SPIFFE ID of mesh %s (spiffe://%s/...)",
                 S(mesh), S(mesh));
        rc = HY_EVERIFY;
        goto out_free_info;
    }
    rc = hy_ca_verify_chain(config->cert, config->chain, config->trust_bundle, &why);
    if (rc < 0) {
        snprintf(err, errlen, "the certificate does not chain to the trust bundle: %s",
                 why ? why : hy_strerror(rc));
        rc = rc == HY_ENOMEM ? rc : HY_EVERIFY;
        goto out_free_info;
    }
    rc = HY_EVERIFY;
    size_t k;
    for (k = 0; k < nkeys; k++) {
        int r = keys[k] ? hy_ca_check_key(config->cert, keys[k]) : HY_EVERIFY;
        if (r == 0 || r == HY_ENOMEM) {
            rc = r;
            break;
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s",
                 rc == HY_ENOMEM ? "out of memory"
                                 : "the certificate is not for this dataplane's key (it must "
                                   "be issued for the CSR of its last DpHello or DpCsr)");
        goto out_free_info;
    }
    struct hy_sidecar_snapshot *s = calloc(1, sizeof(*s));
    rc = HY_ENOMEM;
    if (!s || !(s->key = strdup(keys[k])) || !(s->spiffe_id = strdup(id))) {
        snprintf(err, errlen, "out of memory");
        if (s)
            snapshot_free(&s->base); /* without config, which stays the caller's */
        goto out_free_info;
    }
    hy_agent_snap_init(&s->base, snapshot_free, config->version);
    s->config = config;
    s->not_before = info.not_before;
    s->not_after = info.not_after;
    s->renew_at = hy_sidecar_renew_at(info.not_before, info.not_after, (int64_t)time(NULL));
    memcpy(s->fingerprint, info.fingerprint, sizeof(s->fingerprint));
    *out = s;
    *which = k;
    rc = 0;
out_free_info:
    hy_ca_info_fini(&info);
    return rc;
}
