/* MeshRetry's decision for one request: after each try, whether to try
 * again (retryOn as Kuma maps it onto Envoy's retry_on), and how long to
 * back off first (Envoy's fully jittered exponential backoff). Pure: the
 * caller counts tries, keeps the clock and the per-try timer. Without a
 * MeshRetry (r NULL) nothing is retried. */
#ifndef HY_L7_RETRY_H
#define HY_L7_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "http_head.h"

#define HY_L7_RETRY_BASE_MS 25 /* backOff.baseInterval unset (Envoy, Kuma) */

/* How one try ended. */
enum hy_l7_try_end {
    HY_L7_TRY_RESPONSE,        /* a response head came (resp) */
    HY_L7_TRY_CONNECT_FAILURE, /* no connection to the endpoint (refused, timed out, TLS) */
    HY_L7_TRY_RESET,           /* the stream or connection ended before a response head */
    HY_L7_TRY_REFUSED_STREAM,  /* HTTP/2 RST_STREAM REFUSED_STREAM: never processed */
    HY_L7_TRY_TIMEOUT,         /* perTryTimeout passed before a response head */
};

struct hy_l7_outcome {
    enum hy_l7_try_end end;
    /* HY_L7_TRY_RESPONSE: the response head; for gRPC, with grpc-status in
     * it (a trailers-only response) or the trailers' fields appended. */
    const struct hy_http_head *resp;
};

/* Should the request req be tried again after a try that ended as o, when
 * tries_done tries (the first included) were made? False when r is NULL,
 * when r's numRetries (unset: 1) are used up, when the request fails the
 * gate (HttpMethodX entries of retryOn and retriable_request_headers: it
 * must match one of them, when there are any), or when no condition of
 * retryOn holds:
 *  http (grpc false): 5XX (a 5xx, or any failure without a response),
 *  GatewayError (502, 503, 504, or any failure without a response),
 *  Reset (any failure without a response), ConnectFailure, RefusedStream,
 *  Retriable4xx (409), EnvoyRatelimited (x-envoy-ratelimited in the
 *  response), a status in retriable_status_codes (or named in retryOn,
 *  "503", should the zone leave it there), a response matching one
 *  of retriable_response_headers; retryOn empty: GatewayError,
 *  ConnectFailure, RefusedStream (Kuma's default).
 *  grpc: Canceled (1), DeadlineExceeded (4), ResourceExhausted (8),
 *  Internal (13), Unavailable (14) as the response's grpc-status; retryOn
 *  empty: Canceled, ResourceExhausted, Unavailable and the transport's
 *  ConnectFailure, GatewayError, RefusedStream, Reset (Kuma's default).
 * A perTryTimeout counts as a reset (Envoy: 5XX, GatewayError, Reset).
 * Names compare without case; unknown ones are ignored. Cannot fail (a
 * retriable header regex that does not compile matches nothing). */
bool hy_l7_retry_should(const Hypha__V1__DpHttpRetry *r, bool grpc, const struct hy_http_head *req,
                        const struct hy_l7_outcome *o, unsigned tries_done);
/* The pause before retry number retry_n (1 for the first retry): Envoy's
 * fully jittered exponential backoff, rnd % ((2^retry_n - 1) x base) capped
 * at max (base: backOff.baseInterval, unset 25 ms; max: maxInterval, unset
 * 10 x base), in ms. Cannot fail. */
uint64_t hy_l7_retry_backoff_ms(const Hypha__V1__DpHttpRetry *r, unsigned retry_n, uint64_t rnd);
/* numRetries (unset: 1); 0 for NULL. */
unsigned hy_l7_retry_max(const Hypha__V1__DpHttpRetry *r);
/* perTryTimeout in ms, 0 for none. */
uint64_t hy_l7_retry_per_try_ms(const Hypha__V1__DpHttpRetry *r);

#endif
