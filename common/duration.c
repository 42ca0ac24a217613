/* Durations as Kuma writes them ("1m30s", "500ms", "1d") and RFC 3339
 * timestamps: the two scalar forms the codec gives our time messages. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "poison.h"

#define NS_PER_S 1000000000LL

bool hy_duration_parse(const char *s, int64_t *seconds, int32_t *nanos)
{
    static const struct {
        const char *unit;
        long long ns_num, s_num; /* unit = s_num seconds + ns_num nanoseconds */
    } units[] = {
        {"ns", 1, 0}, {"us", 1000, 0}, {"µs", 1000, 0}, {"ms", 1000000, 0},    {"s", 0, 1},
        {"m", 0, 60}, {"h", 0, 3600},  {"d", 0, 86400}, {"y", 0, 365 * 86400},
    };
    if (!s || !*s)
        return false;
    if (strcmp(s, "0") == 0) {
        *seconds = 0;
        *nanos = 0;
        return true;
    }
    long long secs = 0, ns = 0;
    const char *p = s;
    while (*p) {
        if (*p < '0' || *p > '9')
            return false;
        long long whole = 0, frac = 0, frac_scale = 1;
        while (*p >= '0' && *p <= '9') {
            if (whole > 1000000000000LL)
                return false;
            whole = whole * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            if (*p < '0' || *p > '9')
                return false;
            while (*p >= '0' && *p <= '9') {
                if (frac_scale < NS_PER_S) {
                    frac = frac * 10 + (*p - '0');
                    frac_scale *= 10;
                }
                p++;
            }
        }
        size_t best = 0, ui = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t l = strlen(units[i].unit);
            if (l > best && strncmp(p, units[i].unit, l) == 0) {
                best = l;
                ui = i;
            }
        }
        if (!best)
            return false;
        p += best;
        if (units[ui].s_num) {
            long long tot_ns = frac * (NS_PER_S / frac_scale) * units[ui].s_num;
            secs += whole * units[ui].s_num + tot_ns / NS_PER_S;
            ns += tot_ns % NS_PER_S;
        } else {
            long long tot = whole * units[ui].ns_num + frac * units[ui].ns_num / frac_scale;
            secs += tot / NS_PER_S;
            ns += tot % NS_PER_S;
        }
        secs += ns / NS_PER_S;
        ns %= NS_PER_S;
        if (secs > 315576000000LL) /* 10000 years, protobuf's Duration bound */
            return false;
    }
    *seconds = secs;
    *nanos = (int32_t)ns;
    return true;
}

void hy_duration_format(int64_t seconds, int32_t nanos, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
#define PUT(...) off += (size_t)snprintf(buf + off, off < size ? size - off : 0, __VA_ARGS__)
    if (seconds == 0 && nanos == 0) {
        PUT("0s");
        return;
    }
    if (seconds < 0 || nanos < 0) {
        /* not produced by our parser; keep it readable and reversible-ish */
        PUT("%llds", (long long)seconds);
        return;
    }
    if (seconds == 0) {
        if (nanos % 1000000 == 0)
            PUT("%dms", nanos / 1000000);
        else if (nanos % 1000 == 0)
            PUT("%dus", nanos / 1000);
        else
            PUT("%dns", nanos);
        return;
    }
    long long d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
              s = seconds % 60;
    /* Kuma writes whole days as "1d" but longer spans in hours: keep days */
    if (d)
        PUT("%lldd", d);
    if (h)
        PUT("%lldh", h);
    if (m)
        PUT("%lldm", m);
    if (s || nanos) {
        if (nanos == 0)
            PUT("%llds", s);
        else {
            char frac[16];
            snprintf(frac, sizeof(frac), "%09d", nanos);
            for (int i = 8; i > 0 && frac[i] == '0'; i--)
                frac[i] = '\0';
            PUT("%lld.%ss", s, frac);
        }
    }
#undef PUT
}

/* n decimal digits at p, strictly (no sign, no space); -1 if any is not a digit */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

bool hy_timestamp_parse(const char *s, int64_t *seconds, int32_t *nanos)
{
    /* YYYY-MM-DDTHH:MM:SS, then optional fraction, then Z or +HH:MM */
    if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return false;
    struct tm tm = {0};
    tm.tm_year = digits(s, 4);
    tm.tm_mon = digits(s + 5, 2);
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
        tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + 19;
    long ns = 0;
    if (*p == '.') {
        long scale = 100000000;
        p++;
        if (*p < '0' || *p > '9')
            return false;
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
            if (scale)
                ns += (*p - '0') * scale;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return false;
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    *seconds = (int64_t)timegm(&tm) - off;
    *nanos = (int32_t)ns;
    return true;
}

void hy_timestamp_format(int64_t seconds, int32_t nanos, char *buf, size_t size)
{
    time_t t = (time_t)seconds;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) { /* the year does not fit an int: seconds, as date(1) takes them */
        snprintf(buf, size, "@%" PRId64, seconds);
        return;
    }
    int n = snprintf(buf, size, "%04lld-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900LL,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n < 0 || (size_t)n >= size)
        return;
    if (nanos > 0) {
        char frac[16];
        snprintf(frac, sizeof(frac), "%09d", nanos);
        for (int i = 8; i > 0 && frac[i] == '0'; i--)
            frac[i] = '\0';
        snprintf(buf + n, size - (size_t)n, ".%sZ", frac);
    } else {
        snprintf(buf + n, size - (size_t)n, "Z");
    }
}
