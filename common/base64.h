/* Base64, standard (RFC 4648 §4, padded) and URL-safe (§5, unpadded, as JWTs
 * use it). */
#ifndef HY_BASE64_H
#define HY_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode n bytes, including the NUL. */
size_t hy_base64_encoded_size(size_t n);
/* Writes the encoding of in[0..n) and a NUL to out (hy_base64_encoded_size
 * bytes); returns the length written without the NUL. Cannot fail. */
size_t hy_base64_encode(const uint8_t *in, size_t n, char *out, bool url);
/* Decodes s[0..len) into out (at least len * 3 / 4 + 3 bytes). Accepts
 * padding or none; whitespace is not allowed. Returns false on bad input. */
bool hy_base64_decode(const char *s, size_t len, uint8_t *out, size_t *out_len, bool url);

#endif
