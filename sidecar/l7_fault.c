/* MeshFaultInjection's decision for one request (l7_fault.h). */
#include "l7.h"
#include "l7_fault.h"
#include "proxy_int.h"
#include "poison.h"

const Hypha__V1__DpCallerFaults *hy_l7_fault_pick(const Hypha__V1__DpInbound *in,
                                                  const struct hy_permit_peer *peer)
{
    for (size_t k = in->n_faults; k-- > 0;)
        if (hy_l7_caller_match((const void *const *)in->faults[k]->tags, in->faults[k]->n_tags,
                               peer))
            return in->faults[k];
    return NULL;
}

void hy_l7_fault_decide(const Hypha__V1__DpCallerFaults *f, uint64_t rnd, struct hy_l7_fault *out)
{
    *out = (struct hy_l7_fault){0};
    for (size_t j = 0; f && j < f->n_http; j++) {
        const Hypha__V1__DpHttpFault *x = f->http[j];
        unsigned d = (unsigned)j * 3;
        /* Envoy's filter: the delay first, then the abort */
        uint64_t delay = hy_px_ms(x->delay, 0);
        if (delay && hy_l7_per_million(hy_l7_draw(rnd, d), x->delay_per_million)) {
            out->delay_ms += delay;
            out->origin = f->origin;
        }
        if (x->abort_status && hy_l7_per_million(hy_l7_draw(rnd, d + 1), x->abort_per_million)) {
            out->abort_status = x->abort_status;
            out->origin = f->origin;
            return;
        }
        uint32_t bw = x->bandwidth_bytes_per_s;
        if (bw && hy_l7_per_million(hy_l7_draw(rnd, d + 2), x->bandwidth_per_million) &&
            (!out->bandwidth_bytes_per_s || bw < out->bandwidth_bytes_per_s)) {
            out->bandwidth_bytes_per_s = bw;
            out->origin = f->origin;
        }
    }
}
