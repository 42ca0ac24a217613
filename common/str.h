/* Small string helpers for hot paths, where snprintf's format machinery
 * costs more than the copy. */
#ifndef HY_STR_H
#define HY_STR_H

#include <stddef.h>
#include <string.h>

/* Copies src (NULL: "") into dst of size bytes, cut to fit and always
 * NUL-terminated, as snprintf(dst, size, "%s", src) does; returns the
 * length copied. */
static inline size_t hy_str_copy(char *dst, size_t size, const char *src)
{
    if (size == 0)
        return 0;
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

#endif
