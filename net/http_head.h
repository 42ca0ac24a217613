/* One HTTP message head (a request's or a response's) as the sidecar's L7
 * path passes it between the HTTP/1 codec (net/h1.c), HTTP/2 (nghttp2)
 * and the route, retry and fault decisions: the start line and the header
 * fields in order, every string owned by the head. Names keep the case
 * they arrived in and are compared without it; HTTP/2 pseudo-headers are
 * not fields but the members method, target, authority, scheme, status. */
#ifndef HY_HTTP_HEAD_H
#define HY_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#define HY_HTTP_MAX_FIELDS 128       /* header fields in one head; more: refused (431) */
#define HY_HTTP_MAX_HEAD (64u << 10) /* bytes of one head, all of it; more: refused (431) */

struct hy_http_field {
    char *name, *value; /* NUL-terminated, owned */
    size_t name_len, value_len;
};

struct hy_http_head {
    bool request;
    char *method;     /* request: "GET"...; owned, NULL on a response */
    char *target;     /* request: path and query ("/a?b=c"), or "*" / authority-form */
    char *authority;  /* request: Host (HTTP/1) or :authority (HTTP/2); NULL if none */
    char *scheme;     /* request: "http" unless said otherwise; NULL if unknown */
    unsigned status;  /* response: 100-599 */
    unsigned version; /* 10, 11 or 20 */
    struct hy_http_field *fields;
    size_t n, cap;
    size_t bytes; /* of names and values, counted against HY_HTTP_MAX_HEAD */
};

/* Frees what h holds and zeroes it; safe on a zeroed head. */
void hy_http_head_fini(struct hy_http_head *h);
/* Sets *dst (method, target, authority or scheme of h) to a copy of s[0..n).
 * 0, or HY_ENOMEM (the old value is kept). */
int hy_http_head_set_str(char **dst, const char *s, size_t n);
/* Appends a field (copies). 0, HY_ENOMEM, or HY_ETOOBIG past
 * HY_HTTP_MAX_FIELDS / HY_HTTP_MAX_HEAD (nothing added). */
int hy_http_head_add(struct hy_http_head *h, const char *name, size_t name_len, const char *value,
                     size_t value_len);
/* Removes every field named name (any case); how many went. */
size_t hy_http_head_remove(struct hy_http_head *h, const char *name);
/* Replaces every field named name by one with value (appended when there
 * was none). 0 or as hy_http_head_add. */
int hy_http_head_set(struct hy_http_head *h, const char *name, const char *value);
/* The first field named name (any case) from index *from on (then *from
 * is past it), or NULL. from may be NULL: from the start. Borrowed. */
const struct hy_http_field *hy_http_head_find(const struct hy_http_head *h, const char *name,
                                              size_t *from);
/* The value of the first field named name, or NULL. Borrowed. */
const char *hy_http_head_get(const struct hy_http_head *h, const char *name);
/* A deep copy of src into *dst (zeroed or finished). 0 or HY_ENOMEM (*dst zeroed). */
int hy_http_head_copy(struct hy_http_head *dst, const struct hy_http_head *src);

#endif
