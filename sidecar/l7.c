/* What the sidecar's L7 decisions share (l7.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "l7.h"
#include "poison.h"

int hy_l7_match_type(const char *s)
{
    static const char *const names[] = {
        [HY_L7_EXACT] = "Exact",     [HY_L7_PREFIX] = "Prefix", [HY_L7_REGEX] = "RegularExpression",
        [HY_L7_PRESENT] = "Present", [HY_L7_ABSENT] = "Absent",
    };
    if (!s || !*s)
        return HY_L7_EXACT;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(s, names[i]))
            return (int)i;
    return -1;
}

size_t hy_l7_regex_prefix(const char *re)
{
    if (strchr(re, '|'))
        return 0;
    size_t n = strcspn(re, ".[]()*+?{}^$\\");
    if (n > 0 && re[n] && strchr("*?{+", re[n]))
        n--; /* "ab*": only "a" is sure */
    return n;
}

int hy_l7_hmatch_init(struct hy_l7_hmatch *hm, const Hypha__V1__DpHeaderMatch *m, char *why,
                      size_t why_size)
{
    int t = hy_l7_match_type(m->type);
    *hm = (struct hy_l7_hmatch){.m = m};
    if (t < 0) {
        snprintf(why, why_size, "unknown match type '%s' for '%s'", m->type,
                 m->name ? m->name : "");
        return HY_EINVAL;
    }
    hm->type = (enum hy_l7_match_type)t;
    if (hm->type != HY_L7_REGEX)
        return 0;
    /* Whole-value match, as Envoy's safe_regex: anchored, one group */
    const char *v = m->value ? m->value : "";
    size_t n = strlen(v) + 5;
    char *pat = malloc(n);
    if (!pat)
        return HY_ENOMEM;
    snprintf(pat, n, "^(%s)$", v);
    int rc = regcomp(&hm->re, pat, REG_EXTENDED | REG_NOSUB);
    free(pat);
    if (rc) {
        char err[128];
        regerror(rc, &hm->re, err, sizeof(err));
        snprintf(why, why_size, "bad regular expression '%s': %s", v, err);
        return HY_EINVAL;
    }
    hm->has_re = true;
    hm->re_prefix = hy_l7_regex_prefix(v);
    return 0;
}

void hy_l7_hmatch_fini(struct hy_l7_hmatch *hm)
{
    if (hm->has_re)
        regfree(&hm->re);
    hm->has_re = false;
}

bool hy_l7_hmatch_value(const struct hy_l7_hmatch *hm, const char *value)
{
    const char *want = hm->m->value ? hm->m->value : "";
    switch (hm->type) {
    case HY_L7_ABSENT:
        return !value;
    case HY_L7_PRESENT:
        return value != NULL;
    case HY_L7_EXACT:
        return value && !strcmp(value, want);
    case HY_L7_PREFIX:
        return value && !strncmp(value, want, strlen(want));
    case HY_L7_REGEX:
        return value && hm->has_re && !strncmp(value, want, hm->re_prefix) &&
               regexec(&hm->re, value, 0, NULL, 0) == 0;
    }
    return false;
}

bool hy_l7_hmatch_head(const struct hy_l7_hmatch *hm, const struct hy_http_head *h)
{
    const char *name = hm->m->name ? hm->m->name : "";
    size_t from = 0;
    const struct hy_http_field *f = hy_http_head_find(h, name, &from);
    if (!f || !hy_http_head_find(h, name, &(size_t){from}))
        return hy_l7_hmatch_value(hm, f ? f->value : NULL);
    /* Several fields of the name: one value joined by ",", as Envoy */
    size_t len = 0, at = 0;
    for (const struct hy_http_field *g; (g = hy_http_head_find(h, name, &at));)
        len += g->value_len + 1;
    char *joined = malloc(len), *o = joined;
    if (!joined)
        return false;
    at = 0;
    for (const struct hy_http_field *g; (g = hy_http_head_find(h, name, &at));) {
        if (o > joined)
            *o++ = ',';
        memcpy(o, g->value, g->value_len);
        o += g->value_len;
    }
    *o = '\0';
    bool ok = hy_l7_hmatch_value(hm, joined);
    free(joined);
    return ok;
}

bool hy_l7_caller_match(const void *const *tags, size_t n, const struct hy_permit_peer *peer)
{
    return hy_permit_peer_carries(peer, tags, n);
}

uint64_t hy_l7_draw(uint64_t seed, unsigned i)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

bool hy_l7_per_million(uint64_t r, uint32_t per_million)
{
    return r % 1000000u < per_million;
}
