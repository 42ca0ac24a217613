/* Building the DP config messages and HTTP heads the L7 decision tests
 * feed in (test_l7_*.c). Every string and array is malloc'd, so one
 * protobuf-c free_unpacked frees a whole message. */
#ifndef HY_TEST_L7_BUILD_H
#define HY_TEST_L7_BUILD_H

#include <stdlib.h>
#include <string.h>

#include "dp.pb-c.h"
#include "http_head.h"

#define L7_PUSH(arr, n, x)                                                                         \
    do {                                                                                           \
        (arr) = realloc((arr), ((n) + 1) * sizeof(*(arr)));                                        \
        (arr)[(n)++] = (x);                                                                        \
    } while (0)

static inline char *l7_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static inline Hypha__V1__DpHeaderMatch *l7_hmatch(const char *type, const char *name,
                                                  const char *value)
{
    Hypha__V1__DpHeaderMatch *m = malloc(sizeof(*m));
    hypha__v1__dp_header_match__init(m);
    m->type = l7_str(type);
    m->name = l7_str(name);
    m->value = l7_str(value);
    return m;
}

static inline Hypha__V1__DpHeader *l7_header(const char *name, const char *value)
{
    Hypha__V1__DpHeader *h = malloc(sizeof(*h));
    hypha__v1__dp_header__init(h);
    h->name = l7_str(name);
    h->value = l7_str(value);
    return h;
}

static inline Hypha__V1__Duration *l7_ms(int64_t ms)
{
    Hypha__V1__Duration *d = malloc(sizeof(*d));
    hypha__v1__duration__init(d);
    d->has_seconds = d->has_nanos = 1;
    d->seconds = ms / 1000;
    d->nanos = (int32_t)(ms % 1000) * 1000000;
    return d;
}

static inline Hypha__V1__DpBackendRef *l7_backend(const char *service, int weight)
{
    Hypha__V1__DpBackendRef *b = malloc(sizeof(*b));
    hypha__v1__dp_backend_ref__init(b);
    b->service = l7_str(service);
    if (weight >= 0) {
        b->has_weight = 1;
        b->weight = (uint32_t)weight;
    }
    return b;
}

/* A request head: method, target, authority, then name/value pairs until NULL. */
static inline void l7_request(struct hy_http_head *h, const char *method, const char *target,
                              const char *authority, const char *const *fields)
{
    memset(h, 0, sizeof(*h));
    h->request = true;
    h->version = 11;
    if (method)
        hy_http_head_set_str(&h->method, method, strlen(method));
    if (target)
        hy_http_head_set_str(&h->target, target, strlen(target));
    if (authority)
        hy_http_head_set_str(&h->authority, authority, strlen(authority));
    for (size_t i = 0; fields && fields[i]; i += 2)
        hy_http_head_add(h, fields[i], strlen(fields[i]), fields[i + 1], strlen(fields[i + 1]));
}

static inline void l7_response(struct hy_http_head *h, unsigned status, const char *const *fields)
{
    memset(h, 0, sizeof(*h));
    h->status = status;
    h->version = 11;
    for (size_t i = 0; fields && fields[i]; i += 2)
        hy_http_head_add(h, fields[i], strlen(fields[i]), fields[i + 1], strlen(fields[i + 1]));
}

#endif
