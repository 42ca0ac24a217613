/* MeshRetry's decision for one request (l7_retry.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "l7.h"
#include "l7_retry.h"
#include "proxy_int.h"
#include "poison.h"

enum {
    ON_5XX = 1 << 0,
    ON_GATEWAY = 1 << 1,
    ON_RESET = 1 << 2,
    ON_CONNECT = 1 << 3,
    ON_4XX = 1 << 4,
    ON_REFUSED = 1 << 5,
    ON_RATELIMITED = 1 << 6,
    ON_CANCELED = 1 << 7,
    ON_DEADLINE = 1 << 8,
    ON_EXHAUSTED = 1 << 9,
    ON_INTERNAL = 1 << 10,
    ON_UNAVAILABLE = 1 << 11,
};

static const struct {
    const char *name;
    unsigned flag;
} conditions[] = {
    {"5XX", ON_5XX},
    {"GatewayError", ON_GATEWAY},
    {"Reset", ON_RESET},
    {"ConnectFailure", ON_CONNECT},
    {"Retriable4xx", ON_4XX},
    {"RefusedStream", ON_REFUSED},
    {"EnvoyRatelimited", ON_RATELIMITED},
    {"Canceled", ON_CANCELED},
    {"Cancelled", ON_CANCELED},
    {"DeadlineExceeded", ON_DEADLINE},
    {"ResourceExhausted", ON_EXHAUSTED},
    {"Internal", ON_INTERNAL},
    {"Unavailable", ON_UNAVAILABLE},
};

#define METHOD_PREFIX "HttpMethod"

/* The status code s names ("503"), or 0. */
static unsigned status_code(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s >= '1' && *s <= '9' && !*end && v >= 100 && v <= 599 ? (unsigned)v : 0;
}

static unsigned flags_of(const Hypha__V1__DpHttpRetry *r, bool grpc)
{
    unsigned f = 0;
    for (size_t i = 0; i < r->n_retry_on; i++)
        for (size_t k = 0; k < sizeof(conditions) / sizeof(conditions[0]); k++)
            if (r->retry_on[i] && !strcasecmp(r->retry_on[i], conditions[k].name))
                f |= conditions[k].flag;
    bool other = false; /* HttpMethodX, or a status code left in retryOn */
    for (size_t i = 0; i < r->n_retry_on; i++)
        other |= r->retry_on[i] &&
                 (!strncasecmp(r->retry_on[i], METHOD_PREFIX, 10) || status_code(r->retry_on[i]));
    if (f || other || r->n_retriable_status_codes || r->n_retriable_response_headers)
        return f;
    /* retryOn unset: Kuma's HttpRetryOnDefault / GrpcRetryOnDefault */
    return grpc ? ON_CANCELED | ON_CONNECT | ON_GATEWAY | ON_REFUSED | ON_RESET | ON_EXHAUSTED |
                      ON_UNAVAILABLE
                : ON_GATEWAY | ON_CONNECT | ON_REFUSED;
}

/* Does one DpHeaderMatch hold for head h? Compiled here: retries are
 * decided only after a failed try. */
static bool header_holds(const Hypha__V1__DpHeaderMatch *m, const struct hy_http_head *h)
{
    struct hy_l7_hmatch hm;
    char why[160];
    if (hy_l7_hmatch_init(&hm, m, why, sizeof(why)))
        return false;
    bool ok = hy_l7_hmatch_head(&hm, h);
    hy_l7_hmatch_fini(&hm);
    return ok;
}

/* The gate: HttpMethodX entries and retriable_request_headers; the
 * request must match one of them, when there are any (Kuma turns the
 * methods into request header matches on :method, beside the others). */
static bool request_retriable(const Hypha__V1__DpHttpRetry *r, const struct hy_http_head *req)
{
    bool gated = r->n_retriable_request_headers > 0;
    for (size_t i = 0; i < r->n_retry_on; i++) {
        const char *s = r->retry_on[i];
        if (!s || strncasecmp(s, METHOD_PREFIX, 10))
            continue;
        gated = true;
        if (req && req->method && !strcasecmp(s + 10, req->method))
            return true;
    }
    for (size_t i = 0; i < r->n_retriable_request_headers; i++)
        if (req && header_holds(r->retriable_request_headers[i], req))
            return true;
    return !gated;
}

static int grpc_status(const struct hy_http_head *h)
{
    const char *s = h ? hy_http_head_get(h, "grpc-status") : NULL;
    if (!s || !*s)
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 0 || v > 16 ? -1 : (int)v;
}

static bool response_retriable(const Hypha__V1__DpHttpRetry *r, unsigned f, bool grpc,
                               const struct hy_http_head *resp)
{
    if (!resp)
        return false;
    if (grpc) {
        switch (grpc_status(resp)) {
        case 1:
            return f & ON_CANCELED;
        case 4:
            return f & ON_DEADLINE;
        case 8:
            return f & ON_EXHAUSTED;
        case 13:
            return f & ON_INTERNAL;
        case 14:
            return f & ON_UNAVAILABLE;
        }
        /* a plain HTTP 502/503/504 before any gRPC: the transport's */
        unsigned s = resp->status;
        return (f & ON_GATEWAY) && (s == 502 || s == 503 || s == 504);
    }
    unsigned s = resp->status;
    if ((f & ON_5XX) && s >= 500 && s <= 599)
        return true;
    if ((f & ON_GATEWAY) && (s == 502 || s == 503 || s == 504))
        return true;
    if ((f & ON_4XX) && s == 409)
        return true;
    if ((f & ON_RATELIMITED) && hy_http_head_get(resp, "x-envoy-ratelimited"))
        return true;
    for (size_t i = 0; i < r->n_retriable_status_codes; i++)
        if (r->retriable_status_codes[i] == s)
            return true;
    for (size_t i = 0; i < r->n_retry_on; i++)
        if (r->retry_on[i] && status_code(r->retry_on[i]) == s)
            return true;
    for (size_t i = 0; i < r->n_retriable_response_headers; i++)
        if (header_holds(r->retriable_response_headers[i], resp))
            return true;
    return false;
}

unsigned hy_l7_retry_max(const Hypha__V1__DpHttpRetry *r)
{
    return !r ? 0 : r->has_num_retries ? r->num_retries : 1;
}

uint64_t hy_l7_retry_per_try_ms(const Hypha__V1__DpHttpRetry *r)
{
    return r ? hy_px_ms(r->per_try_timeout, 0) : 0;
}

bool hy_l7_retry_should(const Hypha__V1__DpHttpRetry *r, bool grpc, const struct hy_http_head *req,
                        const struct hy_l7_outcome *o, unsigned tries_done)
{
    if (!r || tries_done > hy_l7_retry_max(r) || !request_retriable(r, req))
        return false;
    unsigned f = flags_of(r, grpc);
    /* Without a response: Envoy's wouldRetryFromReset */
    switch (o->end) {
    case HY_L7_TRY_RESPONSE:
        return response_retriable(r, f, grpc, o->resp);
    case HY_L7_TRY_CONNECT_FAILURE:
        return f & (ON_CONNECT | ON_5XX | ON_GATEWAY | ON_RESET);
    case HY_L7_TRY_REFUSED_STREAM:
        return f & (ON_REFUSED | ON_5XX | ON_GATEWAY | ON_RESET);
    case HY_L7_TRY_RESET:
    case HY_L7_TRY_TIMEOUT:
        return f & (ON_5XX | ON_GATEWAY | ON_RESET);
    }
    return false;
}

uint64_t hy_l7_retry_backoff_ms(const Hypha__V1__DpHttpRetry *r, unsigned retry_n, uint64_t rnd)
{
    uint64_t base = hy_px_ms(r ? r->base_interval : NULL, HY_L7_RETRY_BASE_MS);
    uint64_t max = hy_px_ms(r ? r->max_interval : NULL, 10 * base);
    unsigned n = retry_n < 1 ? 1 : retry_n > 32 ? 32 : retry_n;
    uint64_t span = ((1ULL << n) - 1) * base; /* n <= 32, base < 2^31 s: no overflow */
    if (span > max || span / base != ((1ULL << n) - 1))
        span = max + 1;
    uint64_t v = span ? rnd % span : 0;
    return v < max ? v : max;
}
