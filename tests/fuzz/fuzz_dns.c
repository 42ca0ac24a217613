/* hy_dns_handle on arbitrary bytes: what any process in the workload's
 * namespace can send the sidecar's DNS port. An answer must be a DNS
 * message ldns parses, with the query's id; what it forwards must have
 * parsed as a query; SERVFAIL for any input must not crash either. The
 * same bytes as a TCP stream (hy_dns_tcp_frame, RFC 1035 4.2.2): every
 * whole message it cuts lies inside the input and is handled as above. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "dns.h"
#include "dns_ldns.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct hy_dns_table *table(void)
{
    static struct hy_dns_table *t;
    if (t)
        return t;
    static char *names[] = {"backend.mesh", "backend.svc.mesh.local"};
    static Hypha__V1__DpOutbound o;
    static Hypha__V1__DpOutbound *outs[1];
    static Hypha__V1__DpConfig cf;
    hypha__v1__dp_outbound__init(&o);
    o.service = "backend";
    o.vip = "240.1.2.3";
    o.vip6 = "fd00:fd00::f001:203";
    o.hostnames = names;
    o.n_hostnames = 2;
    outs[0] = &o;
    hypha__v1__dp_config__init(&cf);
    cf.outbounds = outs;
    cf.n_outbounds = 1;
    char why[512];
    if (hy_dns_ldns_load(why, sizeof(why)) < 0 || hy_dns_table_new(&cf, &t) < 0)
        abort();
    return t;
}

static void one(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    size_t at = 0, n = 0;
    for (;;) {
        enum hy_dns_frame f = hy_dns_tcp_frame(data + at, size - at, HY_DNS_TCP_MAX_QUERY, &n);
        if (f != HY_DNS_FRAME_OK)
            break;
        if (n < LDNS_HEADER_SIZE || n > HY_DNS_TCP_MAX_QUERY || at + 2 + n > size)
            abort();
        one(data + at + 2, n);
        at += 2 + n;
    }
    return 0;
}

static void one(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    enum hy_dns_action a = hy_dns_handle(table(), data, size, &out, &outlen);
    if (out) {
        ldns_pkt *p = NULL;
        if (ldns_wire2pkt(&p, out, outlen) != LDNS_STATUS_OK || !ldns_pkt_qr(p) ||
            size < LDNS_HEADER_SIZE || ldns_pkt_id(p) != LDNS_ID_WIRE(data))
            abort();
        ldns_pkt_free(p);
        free(out);
    }
    if (a == HY_DNS_FORWARD) {
        ldns_pkt *p = NULL;
        if (ldns_wire2pkt(&p, data, size) != LDNS_STATUS_OK || ldns_pkt_qr(p))
            abort();
        ldns_pkt_free(p);
    }
    if (a == HY_DNS_ANSWERED && !out)
        abort();
    free(hy_dns_servfail(data, size, &outlen));
}
