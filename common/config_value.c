/* Parsing one configuration value of each option type into its field, and
 * the size and host:port parsers that binaries also use on their own. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "config_int.h"
#include "error.h"
#include "log.h"
#include "poison.h"

bool hy_size_parse(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"K", 1000ULL},
        {"M", 1000ULL * 1000},
        {"G", 1000ULL * 1000 * 1000},
        {"T", 1000ULL * 1000 * 1000 * 1000},
        {"Ki", 1ULL << 10},
        {"Mi", 1ULL << 20},
        {"Gi", 1ULL << 30},
        {"Ti", 1ULL << 40},
    };
    if (!s || *s < '0' || *s > '9')
        return false;
    uint64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        if (n > UINT64_MAX / units[i].mult)
            return false;
        *bytes = n * units[i].mult;
        return true;
    }
    return false;
}

static bool valid_hostname(const char *h)
{
    size_t label = 0;
    for (const char *p = h; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (label == 0 || p[-1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (c == '-' && label > 0);
        if (!ok || ++label > 63)
            return false;
    }
    return label == 0 || h[strlen(h) - 1] != '-'; /* a trailing dot is a rooted name */
}

/* Errors quote the whole input, so a value from a long list is easy to find. */
#define ADDR_FAIL(...)                                                                             \
    do {                                                                                           \
        if (err && errlen)                                                                         \
            snprintf(err, errlen, __VA_ARGS__);                                                    \
        return HY_EINVAL;                                                                          \
    } while (0)

int hy_addr_parse(const char *s, struct hy_addr *out, char *err, size_t errlen)
{
    struct hy_addr a = {0};
    const char *host, *port;
    size_t hostlen;
    if (!s || !*s)
        ADDR_FAIL("empty address: write host:port, e.g. 127.0.0.1:5681");
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            ADDR_FAIL("\"%s\": no ']' after the IPv6 address", s);
        host = s + 1;
        hostlen = (size_t)(close - host);
        if (close[1] != ':')
            ADDR_FAIL("\"%s\" has no port: write [host]:port, e.g. [::1]:5681", s);
        port = close + 2;
        a.kind = HY_ADDR_IPV6;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            ADDR_FAIL("\"%s\" has no port: write host:port, e.g. %s:5681", s, s);
        if (memchr(s, ':', (size_t)(colon - s)))
            ADDR_FAIL("\"%s\": put IPv6 addresses in brackets, e.g. [::1]:5681", s);
        host = s;
        hostlen = (size_t)(colon - s);
        port = colon + 1;
        a.kind = hostlen == 0 ? HY_ADDR_ANY : HY_ADDR_NAME;
    }
    if (hostlen >= sizeof(a.host) || (a.kind == HY_ADDR_NAME && hostlen > 253))
        ADDR_FAIL("\"%.64s...\": the host is too long", s);
    memcpy(a.host, host, hostlen);
    a.host[hostlen] = '\0';

    if (!*port)
        ADDR_FAIL("\"%s\" has no port: write host:port, e.g. 127.0.0.1:5681", s);
    unsigned long p = 0;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9' || c - port >= 5)
            ADDR_FAIL("\"%s\": port \"%s\" is not a number from 0 to 65535", s, port);
        p = p * 10 + (unsigned long)(*c - '0');
    }
    if (p > 65535)
        ADDR_FAIL("\"%s\": port \"%s\" is not a number from 0 to 65535", s, port);
    a.port = (uint16_t)p;

    unsigned char bin[16];
    if (a.kind == HY_ADDR_IPV6) {
        char plain[sizeof(a.host)];
        memcpy(plain, a.host, hostlen + 1);
        char *zone = strchr(plain, '%');
        if (zone) {
            if (!zone[1])
                ADDR_FAIL("\"%s\": empty IPv6 zone after '%%'", s);
            *zone = '\0';
        }
        if (inet_pton(AF_INET6, plain, bin) != 1)
            ADDR_FAIL("\"%s\": \"%s\" is not an IPv6 address", s, a.host);
    } else if (a.kind == HY_ADDR_NAME) {
        if (strspn(a.host, "0123456789.") == hostlen) {
            if (inet_pton(AF_INET, a.host, bin) != 1)
                ADDR_FAIL("\"%s\": \"%s\" is not an IPv4 address", s, a.host);
            a.kind = HY_ADDR_IPV4;
        } else if (!valid_hostname(a.host)) {
            ADDR_FAIL("\"%s\": \"%s\" is not a valid host name", s, a.host);
        }
    }
    *out = a;
    return 0;
}

char *hy_addr_format(const struct hy_addr *a, char *buf, size_t size)
{
    if (a->kind == HY_ADDR_IPV6)
        snprintf(buf, size, "[%s]:%u", a->host, (unsigned)a->port);
    else
        snprintf(buf, size, "%s:%u", a->host, (unsigned)a->port);
    return buf;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Decimal, no sign for unsigned, no spaces; errno-style range check. */
static int parse_int(const char *s, bool is_signed, int64_t *i, uint64_t *u, char *why, size_t size)
{
    char *end;
    bool digits = s[0] >= '0' && s[0] <= '9';
    bool neg = s[0] == '-' && s[1] >= '0' && s[1] <= '9';
    if (!digits && !(is_signed && neg)) {
        snprintf(why, size, "\"%.100s\" is not %s", s,
                 is_signed ? "an integer"
                 : neg     ? "a non-negative integer"
                           : "an integer");
        return HY_EINVAL;
    }
    errno = 0;
    if (is_signed)
        *i = strtoll(s, &end, 10);
    else
        *u = strtoull(s, &end, 10);
    if (*end) {
        snprintf(why, size, "\"%.100s\" is not an integer", s);
        return HY_EINVAL;
    }
    if (errno == ERANGE) {
        snprintf(why, size, "\"%.100s\" is out of range", s);
        return HY_EINVAL;
    }
    return 0;
}

void hy_strings_fini(struct hy_strings *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* Splits text at commas into s, replacing its items or adding to them. ""
 * is no item at all; an empty item between commas is a mistake. s is
 * unchanged on failure. */
static int strings_set(struct hy_strings *s, const char *text, bool add, char *why, size_t size)
{
    size_t n = *text ? 1 : 0, keep = add ? s->n : 0;
    for (const char *c = text; *c; c++)
        n += *c == ',';
    char **v = calloc(keep + n + 1, sizeof(*v));
    if (!v) {
        snprintf(why, size, "out of memory");
        return HY_ENOMEM;
    }
    const char *p = text;
    int rc;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        if (len == 0) {
            snprintf(why, size, "\"%.100s\" has an empty item (items are separated by commas)",
                     text);
            rc = HY_EINVAL;
            goto out_fail;
        }
        if (!(v[keep + i] = strndup(p, len))) {
            snprintf(why, size, "out of memory");
            rc = HY_ENOMEM;
            goto out_fail;
        }
        p += len + (p[len] == ',');
    }
    for (size_t i = 0; i < keep; i++)
        v[i] = s->v[i];
    if (!add)
        hy_strings_fini(s);
    free(s->v); /* when adding, its items moved to v */
    s->v = keep + n ? v : NULL;
    s->n = keep + n;
    if (!s->v)
        free(v);
    return 0;

out_fail:
    for (size_t i = 0; i < n; i++)
        free(v[keep + i]);
    free(v);
    return rc;
}

int hy_config_add(const struct hy_option *o, void *cfg, const char *text, char *why, size_t size)
{
    if (o->type == HY_OPT_STRINGS)
        return strings_set((struct hy_strings *)((char *)cfg + o->offset), text, true, why, size);
    return hy_config_set(o, cfg, text, why, size);
}

int hy_config_set(const struct hy_option *o, void *cfg, const char *text, char *why, size_t size)
{
    void *field = (char *)cfg + o->offset;
    int64_t i = 0;
    uint64_t u = 0;
    int rc;
    switch (o->type) {
    case HY_OPT_STRING: {
        char *copy = strdup(text);
        if (!copy) {
            snprintf(why, size, "out of memory");
            return HY_ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case HY_OPT_INT:
        if ((rc = parse_int(text, true, &i, &u, why, size)) < 0)
            return rc;
        *(int64_t *)field = i;
        return 0;
    case HY_OPT_UINT:
        if ((rc = parse_int(text, false, &i, &u, why, size)) < 0)
            return rc;
        *(uint64_t *)field = u;
        return 0;
    case HY_OPT_BOOL: {
        bool b;
        if (!parse_bool(text, &b)) {
            snprintf(why, size, "\"%.100s\" is not a boolean (true or false)", text);
            return HY_EINVAL;
        }
        *(bool *)field = b;
        return 0;
    }
    case HY_OPT_DURATION: {
        int64_t secs;
        int32_t nanos;
        if (!hy_duration_parse(text, &secs, &nanos)) {
            snprintf(why, size, "\"%.100s\" is not a duration (e.g. 500ms, 30s, 5m, 1h30m, 1d)",
                     text);
            return HY_EINVAL;
        }
        if (nanos % 1000000) {
            snprintf(why, size, "\"%.100s\" is not a whole number of milliseconds", text);
            return HY_EINVAL;
        }
        *(int64_t *)field = secs * 1000 + nanos / 1000000;
        return 0;
    }
    case HY_OPT_SIZE:
        if (!hy_size_parse(text, &u)) {
            snprintf(why, size,
                     "\"%.100s\" is not a size (bytes, or with a suffix K, M, G, T, Ki, Mi, Gi "
                     "or Ti, e.g. 64Mi)",
                     text);
            return HY_EINVAL;
        }
        *(uint64_t *)field = u;
        return 0;
    case HY_OPT_LOG_LEVEL: {
        enum hy_log_level l;
        if (!hy_log_parse_level(text, &l)) {
            snprintf(why, size, "\"%.100s\" is not a log level (debug, info, warn or error)", text);
            return HY_EINVAL;
        }
        *(enum hy_log_level *)field = l;
        return 0;
    }
    case HY_OPT_ADDRESS:
        return hy_addr_parse(text, (struct hy_addr *)field, why, size);
    case HY_OPT_STRINGS:
        return strings_set(field, text, false, why, size);
    }
    snprintf(why, size, "option has an unknown type %d", (int)o->type);
    return HY_EINVAL;
}
