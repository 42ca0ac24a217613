/* A minimal DER writer and reader, private to the CA module: ca.c builds the
 * to-be-signed part of certificates itself (wolfSSL 5.5's Cert cannot mark
 * basicConstraints critical) and picks fields out of parsed certificates. */
#ifndef HY_CA_DER_H
#define HY_CA_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HY_CA_DER_DEPTH 8

/* Tags used by certificates. */
enum {
    HY_DER_BOOLEAN = 0x01,
    HY_DER_INTEGER = 0x02,
    HY_DER_BIT_STRING = 0x03,
    HY_DER_OCTET_STRING = 0x04,
    HY_DER_OID = 0x06,
    HY_DER_UTF8_STRING = 0x0c,
    HY_DER_UTC_TIME = 0x17,
    HY_DER_GENERALIZED_TIME = 0x18,
    HY_DER_SEQUENCE = 0x30,
    HY_DER_SET = 0x31,
    HY_DER_CONTEXT = 0x80,     /* | n: [n] IMPLICIT, primitive */
    HY_DER_CONTEXT_CON = 0xa0, /* | n: [n] EXPLICIT or constructed */
};

/* A writer. Errors are sticky: callers write everything, then look at err
 * once. Zero-initialize before use; hy_ca_der_fini frees. */
struct hy_ca_der {
    struct hy_buf out; /* owned: the encoding so far */
    size_t open[HY_CA_DER_DEPTH];
    int depth;
    int err; /* 0, HY_ENOMEM, or HY_EINVAL (nesting too deep, end without begin, too long) */
};

/* Opens a constructed value (SEQUENCE, SET, [n]); close it with _end. */
void hy_ca_der_begin(struct hy_ca_der *d, uint8_t tag);
/* Closes the innermost open value, writing its length. */
void hy_ca_der_end(struct hy_ca_der *d);
/* Appends a whole primitive value: tag, length, p[0..n). */
void hy_ca_der_put(struct hy_ca_der *d, uint8_t tag, const void *p, size_t n);
/* Appends bytes that are already DER (an OID body with its header, a copied
 * Name, a SubjectPublicKeyInfo). */
void hy_ca_der_raw(struct hy_ca_der *d, const void *p, size_t n);
/* Frees the output and zeroes the writer. */
void hy_ca_der_fini(struct hy_ca_der *d);

/* One value read from DER. */
struct hy_ca_der_tlv {
    uint8_t tag;
    const uint8_t *start; /* the whole value: tag, length, contents */
    size_t size;
    const uint8_t *val; /* the contents */
    size_t len;
};

/* Reads the value at *p, which must end by end, and advances *p past it.
 * Only single-byte tags and definite lengths (DER). Returns false on
 * anything malformed or truncated; *p is then unchanged. Cannot allocate. */
bool hy_ca_der_read(const uint8_t **p, const uint8_t *end, struct hy_ca_der_tlv *out);

#endif
