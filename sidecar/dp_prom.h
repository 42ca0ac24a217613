/* The sidecar's Prometheus endpoint (MeshMetric): a listener of its own,
 * beside the admin server, on the Prometheus backend's port and path at
 * the Dataplane's address, serving the sidecar's metrics followed by those
 * of the apps MeshMetric lists, each scraped (plain HTTP GET) when the
 * endpoint is. An app that does not answer in HY_DP_PROM_APP_TIMEOUT_MS
 * (or 75 % of the scrape timeout Prometheus sends, when shorter) costs
 * only its own part of the page (counted in
 * hypha_dp_app_scrapes_total). Main loop only. */
#ifndef HY_DP_PROM_H
#define HY_DP_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "dp.pb-c.h"

#define HY_DP_PROM_APP_TIMEOUT_MS 3000 /* to scrape every app of one request */
#define HY_DP_PROM_APP_MAX (4u << 20)  /* bytes of one app's answer, headers included */
#define HY_DP_PROM_MAX_SCRAPES 16      /* requests waiting for apps at once; more get 503 */

struct hy_metrics;
struct hy_dp_prom;

/* A new endpoint, listening nowhere until a config gives it a port.
 * Registers its metrics in m. *out is the caller's (hy_dp_prom_free).
 * 0 or HY_ENOMEM. */
int hy_dp_prom_new(uv_loop_t *loop, struct hy_metrics *m, struct hy_dp_prom **out);
/* Follows a config's MeshMetric (NULL: none): listens on
 * address:port (moving when they change; logged), serves path, scrapes
 * its apps. A port it cannot bind is logged and left unserved. Cannot fail
 * otherwise (out of memory: logged, the last config stays). */
void hy_dp_prom_apply(struct hy_dp_prom *p, const Hypha__V1__DpMetrics *m);
/* The port it listens on now; 0 when none. */
int hy_dp_prom_port(const struct hy_dp_prom *p);
/* Stops listening and answers every request still waiting for its apps
 * (their handles close as the loop runs). NULL is fine. */
void hy_dp_prom_stop(struct hy_dp_prom *p);
/* After hy_dp_prom_stop and a loop run: frees it. NULL is fine. */
void hy_dp_prom_free(struct hy_dp_prom *p);

/* The metric family names a page declares (# TYPE and # HELP lines and
 * untyped samples), for keeping an app's page from declaring one twice. */
struct hy_dp_prom_names {
    char **v;
    size_t n;
};
/* Adds the names text declares to names. 0 or HY_ENOMEM. */
int hy_dp_prom_names_add(struct hy_dp_prom_names *names, const char *text, size_t len);
void hy_dp_prom_names_fini(struct hy_dp_prom_names *names);
/* Appends an app's page (Prometheus text) to out, leaving out every
 * family whose name is in seen (the sidecar's own, an earlier app's:
 * Prometheus refuses a page that declares a family twice) and adding the
 * ones it keeps to seen; *dropped counts the families left out. A last
 * line without its newline gets one; a "# EOF" line is left out. 0 or
 * HY_ENOMEM. */
int hy_dp_prom_merge_app(struct hy_dp_prom_names *seen, const char *text, size_t len,
                         struct hy_buf *out, size_t *dropped);

/* An app's answer resp[0..len) (HTTP/1.x, headers and body, as read
 * until it closed): 0 with body and blen set to its page for a 200 that
 * is not chunked; HY_EINVAL with why (one phrase) otherwise. Pure. */
int hy_dp_prom_app_page(const char *resp, size_t len, const char **body, size_t *blen, char *why,
                        size_t size);

#endif
