/* Service virtual IPs (vip.h): a hash of the service's name into
 * 240.0.0.0/4, with linear probing on collisions, so that a zone restart
 * or a second zone computes the same addresses from the same services
 * without storing them. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "vip.h"
#include "poison.h"

uint32_t hy_vip_preferred(const char *service)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)service; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    uint32_t off = (uint32_t)(h ^ (h >> 28) ^ (h >> 56)) & HY_VIP_MASK;
    if (off == 0 || off == HY_VIP_MASK) /* 240.0.0.0, 255.255.255.255 (broadcast) */
        off = 1;
    return HY_VIP_BASE | off;
}

static uint32_t next_vip(uint32_t v)
{
    uint32_t off = ((v & HY_VIP_MASK) + 1) & HY_VIP_MASK;
    if (off == 0 || off == HY_VIP_MASK)
        off = 1;
    return HY_VIP_BASE | off;
}

int hy_vip_assign(const char *const *services, size_t n, uint32_t *vips)
{
    /* an open-addressed set of the addresses given so far, at most half full */
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *set = calloc(cap, sizeof(*set)); /* 0: empty (never a VIP) */
    if (!set)
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = hy_vip_preferred(services[i]);
        for (;;) {
            size_t k = (v * 2654435761u) & (cap - 1);
            while (set[k] && set[k] != v)
                k = (k + 1) & (cap - 1);
            if (!set[k]) {
                set[k] = v;
                break;
            }
            v = next_vip(v); /* taken by a name given earlier */
        }
        vips[i] = v;
    }
    free(set);
    return 0;
}

void hy_vip_format4(uint32_t vip, char *buf, size_t size)
{
    snprintf(buf, size, "%u.%u.%u.%u", vip >> 24, (vip >> 16) & 255, (vip >> 8) & 255, vip & 255);
}

void hy_vip_format6(uint32_t vip, char *buf, size_t size)
{
    snprintf(buf, size, "fd00:fd00::%x:%x", vip >> 16, vip & 0xffff);
}

bool hy_vip_hostname(const char *service, unsigned i, char *buf, size_t size)
{
    static const char *const suffix[HY_VIP_NAMES] = {".mesh", ".svc.mesh.local"};
    size_t n = service ? strlen(service) : 0;
    if (i >= HY_VIP_NAMES || n == 0 || n > 253 - strlen(suffix[i]) ||
        n + strlen(suffix[i]) + 1 > size || service[0] == '.')
        return false;
    for (size_t k = 0, label = 0; k < n; k++) {
        unsigned char ch = (unsigned char)service[k];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '.')
            return false;
        if (ch == '.' && service[k + 1] == '.')
            return false;
        label = ch == '.' ? 0 : label + 1;
        if (label > 63) /* a DNS label's limit */
            return false;
        buf[k] = (char)tolower(ch);
    }
    if (service[n - 1] == '.')
        return false;
    memcpy(buf + n, suffix[i], strlen(suffix[i]) + 1);
    return true;
}
