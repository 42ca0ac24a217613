/* Server names for cross-zone traffic. A sidecar's outbound connection
 * carries, in its TLS ClientHello, an SNI that names the service and mesh
 * it wants; a zone ingress reads it without terminating TLS and routes on
 * it. Both ends compute the name with hy_sni_for; the ingress reads it
 * with hy_sni_parse. */
#ifndef HY_SNI_H
#define HY_SNI_H

#include <stddef.h>
#include <stdint.h>

#define HY_SNI_MAX 254               /* bytes of a server name and its NUL */
#define HY_SNI_HELLO_MAX (16u << 10) /* a ClientHello bigger than this is refused */

/* The server name for service in mesh: "<service>.<mesh>.mesh", DNS-valid.
 * A name that is not a DNS label as it is (lowercase letters, digits, '-';
 * 1..63 bytes; no '-' at either end; not "xx--..." which IDN reserves) is
 * replaced by "hy--" and 16 hex digits of its 64-bit FNV-1a hash, so two
 * different names never share a label that looks like a plain one.
 * Writes at most size bytes (always NUL-terminated); size HY_SNI_MAX is
 * always enough. */
void hy_sni_for(const char *service, const char *mesh, char *buf, size_t size);

/* The server name for the instances of service in mesh whose tags are
 * exactly keys[i]=values[i] (i < n; the service tag left out; any order):
 * "<service>.hy--<16 hex digits>.<mesh>.mesh", the digits a 64-bit FNV-1a
 * hash of the tags sorted by key. Four labels, so never a service's own
 * name. A zone's ingress routes it to those instances; a caller in
 * another zone sends it for a MeshServiceSubset. */
void hy_sni_for_subset(const char *service, const char *mesh, const char *const *keys,
                       const char *const *values, size_t n, char *buf, size_t size);

enum {
    HY_SNI_MORE = 0,       /* a ClientHello so far: more bytes are needed */
    HY_SNI_FOUND = 1,      /* a complete ClientHello with a server name */
    HY_SNI_NOT_TLS = -1,   /* the first bytes are not a TLS handshake record */
    HY_SNI_MALFORMED = -2, /* a handshake record, but not a well-formed ClientHello */
    HY_SNI_NONE = -3,      /* a well-formed ClientHello without a host_name */
    HY_SNI_TOO_BIG = -4,   /* more than HY_SNI_HELLO_MAX bytes and not complete */
};

/* Reads the first bytes a client sent, data[0..len): TLS records of type
 * handshake (the ClientHello may span several) and, in the ClientHello, the
 * server_name extension's host_name. On HY_SNI_FOUND, name (size at least
 * HY_SNI_MAX) holds it in lowercase; it is a valid DNS name (letters,
 * digits, '-', '.'; 1..253 bytes). Any other result leaves name "" and
 * why (if not NULL) pointing at a static sentence. Never reads past len. */
int hy_sni_parse(const uint8_t *data, size_t len, char *name, const char **why);

#endif
