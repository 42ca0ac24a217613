/* Growable byte buffer, always NUL-terminated so text can be used as a string. */
#ifndef HY_BUF_H
#define HY_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct hy_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
};

/* Appends; returns 0 or HY_ENOMEM (the buffer is unchanged on failure). */
int hy_buf_append(struct hy_buf *b, const void *p, size_t n);
int hy_buf_puts(struct hy_buf *b, const char *s);
int hy_buf_printf(struct hy_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the contents and zeroes the struct; safe on a zeroed buffer. */
void hy_buf_fini(struct hy_buf *b);

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one
 * (an overlong form, a surrogate, past U+10FFFF, a cut sequence). */
size_t hy_utf8_seq(const unsigned char *p);
/* Whether the NUL-terminated s is valid UTF-8. */
bool hy_utf8_valid(const char *s);

#endif
