/* HTTP message heads: owned start-line strings and ordered header fields
 * (http_head.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "http_head.h"
#include "poison.h"

void hy_http_head_fini(struct hy_http_head *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->fields[i].name);
        free(h->fields[i].value);
    }
    free(h->fields);
    free(h->method);
    free(h->target);
    free(h->authority);
    free(h->scheme);
    memset(h, 0, sizeof(*h));
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

int hy_http_head_set_str(char **dst, const char *s, size_t n)
{
    char *d = dup_n(s, n);
    if (!d)
        return HY_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

int hy_http_head_add(struct hy_http_head *h, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    if (h->n >= HY_HTTP_MAX_FIELDS || h->bytes + name_len + value_len > HY_HTTP_MAX_HEAD)
        return HY_ETOOBIG;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct hy_http_field *f = realloc(h->fields, cap * sizeof(*f));
        if (!f)
            return HY_ENOMEM;
        h->fields = f;
        h->cap = cap;
    }
    struct hy_http_field *f = &h->fields[h->n];
    f->name = dup_n(name, name_len);
    f->value = dup_n(value, value_len);
    if (!f->name || !f->value) {
        free(f->name);
        free(f->value);
        return HY_ENOMEM;
    }
    f->name_len = name_len;
    f->value_len = value_len;
    h->n++;
    h->bytes += name_len + value_len;
    return 0;
}

size_t hy_http_head_remove(struct hy_http_head *h, const char *name)
{
    size_t k = 0, gone = 0;
    for (size_t i = 0; i < h->n; i++) {
        struct hy_http_field *f = &h->fields[i];
        if (!strcasecmp(f->name, name)) {
            h->bytes -= f->name_len + f->value_len;
            free(f->name);
            free(f->value);
            gone++;
        } else {
            h->fields[k++] = *f;
        }
    }
    h->n = k;
    return gone;
}

int hy_http_head_set(struct hy_http_head *h, const char *name, const char *value)
{
    size_t at = 0;
    const struct hy_http_field *f = hy_http_head_find(h, name, &at);
    if (f) {
        /* keep the first one's place, drop the rest */
        size_t i = at - 1;
        char *v = dup_n(value, strlen(value));
        if (!v)
            return HY_ENOMEM;
        struct hy_http_field *m = &h->fields[i];
        h->bytes = h->bytes - m->value_len + strlen(value);
        free(m->value);
        m->value = v;
        m->value_len = strlen(value);
        for (size_t j = i + 1; j < h->n;) {
            if (!strcasecmp(h->fields[j].name, name)) {
                h->bytes -= h->fields[j].name_len + h->fields[j].value_len;
                free(h->fields[j].name);
                free(h->fields[j].value);
                memmove(&h->fields[j], &h->fields[j + 1], (h->n - j - 1) * sizeof(h->fields[0]));
                h->n--;
            } else {
                j++;
            }
        }
        return 0;
    }
    return hy_http_head_add(h, name, strlen(name), value, strlen(value));
}

const struct hy_http_field *hy_http_head_find(const struct hy_http_head *h, const char *name,
                                              size_t *from)
{
    size_t len = strlen(name); /* the lengths first: most fields differ there */
    for (size_t i = from ? *from : 0; i < h->n; i++)
        if (h->fields[i].name_len == len && !strncasecmp(h->fields[i].name, name, len)) {
            if (from)
                *from = i + 1;
            return &h->fields[i];
        }
    if (from)
        *from = h->n;
    return NULL;
}

const char *hy_http_head_get(const struct hy_http_head *h, const char *name)
{
    const struct hy_http_field *f = hy_http_head_find(h, name, NULL);
    return f ? f->value : NULL;
}

static int copy_str(char **dst, const char *src)
{
    return src ? hy_http_head_set_str(dst, src, strlen(src)) : 0;
}

int hy_http_head_copy(struct hy_http_head *dst, const struct hy_http_head *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->request = src->request;
    dst->status = src->status;
    dst->version = src->version;
    if (copy_str(&dst->method, src->method) || copy_str(&dst->target, src->target) ||
        copy_str(&dst->authority, src->authority) || copy_str(&dst->scheme, src->scheme))
        goto out_fini;
    for (size_t i = 0; i < src->n; i++)
        if (hy_http_head_add(dst, src->fields[i].name, src->fields[i].name_len,
                             src->fields[i].value, src->fields[i].value_len))
            goto out_fini;
    return 0;
out_fini:
    hy_http_head_fini(dst);
    return HY_ENOMEM;
}
