/* Service virtual IPs and names for transparent proxying (Kuma's DNS):
 * one stable IPv4 address per service from 240.0.0.0/4, its IPv6 twin in
 * fd00:fd00::/64, and the names a sidecar's DNS answers with them. The
 * zone allocates them for its sidecars and hyphactl shows them; both call
 * this one function, so they agree. */
#ifndef HY_VIP_H
#define HY_VIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HY_VIP_BASE 0xf0000000u /* 240.0.0.0 */
#define HY_VIP_MASK 0x0fffffffu /* /4: 2^28 addresses */
#define HY_VIP_NAMES 2          /* names per service (hy_vip_hostname) */
#define HY_VIP_NAME_MAX 300     /* bytes of one name, with its NUL */

/* The address service would get with no collision: 240.0.0.0 plus a hash
 * of the name (FNV-1a, 64-bit, folded to 28 bits), never the network's
 * first or last address. Host byte order. Cannot fail. */
uint32_t hy_vip_preferred(const char *service);

/* Allocates a VIP to each of services[0..n) (one mesh's services, sorted
 * and without repeats) into vips[0..n), host byte order: each its
 * preferred address, or on a collision the next free one after it, in
 * the order given (so the name that sorts first keeps its address). The
 * same set always gets the same addresses. 0, or HY_ENOMEM (vips then
 * undefined). */
int hy_vip_assign(const char *const *services, size_t n, uint32_t *vips);

/* vip as dotted IPv4 text, and as its IPv6 twin: fd00:fd00:: followed by
 * the IPv4 address in the last 32 bits (fd00:fd00::f000:1 for 240.0.0.1).
 * Cannot fail (buf of 16 and 40 bytes at least; shorter is truncated). */
void hy_vip_format4(uint32_t vip, char *buf, size_t size);
void hy_vip_format6(uint32_t vip, char *buf, size_t size);

/* Name number i (0 .. HY_VIP_NAMES-1) of service, lower case: 0
 * "<service>.mesh" (Kuma's legacy name), 1 "<service>.svc.mesh.local"
 * (Kuma's default universal HostnameGenerator). False when the service is
 * no DNS name (empty, too long, or a character outside letters, digits,
 * '-', '_' and '.'). */
bool hy_vip_hostname(const char *service, unsigned i, char *buf, size_t size);

#endif
