/* Policy benchmark: what computing the sidecars' configs costs. A zone of
 * N Dataplanes (S services, tags, labels, K outbounds each, two remote
 * zones' ingresses) and P policies (MeshTrafficPermission with `from` and
 * `rules` entries on Mesh, MeshService, MeshSubset, MeshServiceSubset and
 * Dataplane targetRefs, MeshTimeout, MeshRetry, MeshCircuitBreaker,
 * MeshLoadBalancingStrategy, MeshHealthCheck) lives in a real LMDB store;
 * the rows time the config of every Dataplane through the zone's generator
 * (hy_zone_dp_config_build, what the DP server runs for each sidecar on
 * every change), the same with no policies in the store (the floor: the
 * endpoints), and the policy engine alone (cp/policy.h): loading the
 * policies, hy_policy_select_all, and everything the generator asks of it.
 * Memory: heap allocations and the peak heap of one pass over every
 * Dataplane (malloc is wrapped), and the peak RSS during it.
 *
 * The same file builds against the generator before the engine (commit
 * 1bb3583) with -DHY_BENCH_PRE_ENGINE=1 (bench/policy.sh does it): there
 * the engine rows are absent and MeshTrafficPermission `rules`, which that
 * schema lacks, are written as the `from` entries naming the same services. */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "buf.h"
#include "codec.h"
#include "dp_server.h"
#include "error.h"
#include "store.h"
#ifndef HY_BENCH_PRE_ENGINE
#define HY_BENCH_PRE_ENGINE 0
#endif
#if !HY_BENCH_PRE_ENGINE
#include "policy.h"
#endif
#include "poison.h"

/* ---- heap accounting: malloc wrapped around glibc's own ---------------- */

/* Not under a sanitizer, whose runtime brings its own malloc: there the
 * heap columns stay empty (the tests build every target that way). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HEAP_COUNTED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define HEAP_COUNTED 0
#endif
#endif
#ifndef HEAP_COUNTED
#define HEAP_COUNTED 1
#endif

/* Counted only while on (the benchmark is single-threaded): calls that
 * allocate, bytes they asked for, and the heap in use (usable sizes) as a
 * difference from when counting started, with its peak. */
static struct {
    bool on;
    unsigned long long calls, bytes;
    long long live, peak;
} heap;

#if HEAP_COUNTED
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);
void __libc_free(void *p);

static void heap_add(void *p, size_t asked)
{
    heap.calls++;
    heap.bytes += asked;
    heap.live += (long long)malloc_usable_size(p);
    if (heap.live > heap.peak)
        heap.peak = heap.live;
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    if (p && heap.on)
        heap_add(p, n);
    return p;
}

void *calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    if (p && heap.on)
        heap_add(p, n * size);
    return p;
}

void *realloc(void *p, size_t n)
{
    size_t old = p && heap.on ? malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, n);
    if (heap.on) {
        if (q) {
            heap.live -= (long long)old;
            heap_add(q, n);
        } else if (n == 0) {
            heap.live -= (long long)old; /* realloc(p, 0) freed p */
        }
    }
    return q;
}

void free(void *p)
{
    if (p && heap.on)
        heap.live -= (long long)malloc_usable_size(p);
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    if (p && heap.on)
        heap_add(p, n);
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
#endif

static void heap_start(void)
{
    heap.calls = heap.bytes = 0;
    heap.live = heap.peak = 0;
    heap.on = true;
}

static void heap_stop(void)
{
    heap.on = false;
}

/* ---- /proc/self/status ------------------------------------------------- */

/* A "VmXXX:  123 kB" line of /proc/self/status, in KiB; 0 when absent. */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t klen = strlen(key);
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets VmHWM (the peak RSS) to the current RSS: Linux's clear_refs "5".
 * false where the kernel does not allow it. */
static bool hwm_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ---- the world ----------------------------------------------------------- */

struct params {
    size_t dataplanes, policies, services, outbounds;
    int reps, floor, memory;
    const char *dir, *format;
};

/* Documents decoded and written in batches, each with its origin. */
struct batch {
    struct hy_store *s;
    struct hy_buf text;
    const char *origin[256];
    size_t n;
};

static void batch_flush(struct batch *b)
{
    if (b->n == 0)
        return;
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "bench"};
    char line[1024];
    int rc = hy_codec_decode_resources("bench", b->text.data, b->text.len, NULL, &docs, &d);
    if (rc == 0 && !hy_docs_validate(&docs, &d))
        rc = HY_EINVAL;
    if (rc < 0 || docs.n != b->n) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
        fprintf(stderr, "%s\n", b->text.data);
        bench_die("decoding the world", "%s (%zu documents of %zu)", hy_strerror(rc), docs.n, b->n);
    }
    hy_diag_fini(&d);
    struct hy_store_write w[256];
    for (size_t i = 0; i < docs.n; i++) {
        struct hy_resource *r = docs.v[i].res;
        free(r->origin);
        r->origin = b->origin[i] ? strdup(b->origin[i]) : NULL;
        if (b->origin[i] && !r->origin)
            bench_die("strdup", "out of memory");
        w[i] =
            (struct hy_store_write){.op = HY_STORE_PUT, .r = r, .expect_version = HY_VERSION_ANY};
    }
    size_t failed = 0;
    if ((rc = hy_store_apply(b->s, w, docs.n, &failed)) < 0)
        bench_die("hy_store_apply", "%s (write %zu)", hy_strerror(rc), failed);
    hy_docs_fini(&docs);
    hy_buf_fini(&b->text);
    b->n = 0;
}

/* Appends one document (printf-style) with its origin; flushes every 256. */
static void doc(struct batch *b, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void doc(struct batch *b, const char *origin, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        bench_die("doc", "document too long");
    if ((b->n && hy_buf_puts(&b->text, "---\n") < 0) || hy_buf_puts(&b->text, text) < 0)
        bench_die("doc", "out of memory");
    b->origin[b->n++] = origin;
    if (b->n == sizeof(b->origin) / sizeof(b->origin[0]))
        batch_flush(b);
}

static const char *const zone = "east"; /* the zone the Dataplanes run in */

/* The Mesh, the Dataplanes and two other zones' ingresses. Dataplane i
 * serves svc-(i mod S) (tags version v1..v3 and team; every tenth has an
 * admin inbound too), carries labels app and env, and calls the K services
 * after its own. */
static void put_dataplanes(struct hy_store *s, const struct params *p)
{
    struct batch b = {.s = s};
    doc(&b, "global", "type: Mesh\nname: default\n");
    for (size_t i = 0; i < p->dataplanes; i++) {
        size_t svc = i % p->services;
        char out[2048] = "";
        size_t o = 0;
        for (size_t k = 0; k < p->outbounds; k++)
            o += (size_t)snprintf(out + o, sizeof(out) - o,
                                  "    - {port: %zu, tags: {hypha.io/service: svc-%02zu}}\n",
                                  10001 + k, (svc + 1 + k) % p->services);
        char admin[160] = "";
        if (i % 10 == 9)
            snprintf(admin, sizeof(admin),
                     "    - {port: 20002, servicePort: 9090, tags: {hypha.io/service: "
                     "svc-%02zu-admin}}\n",
                     svc);
        doc(&b, zone,
            "type: Dataplane\n"
            "mesh: default\n"
            "name: svc-%02zu-%05zu\n"
            "labels: {app: svc-%02zu, env: %s}\n"
            "networking:\n"
            "  address: 10.%zu.%zu.%zu\n"
            "  inbound:\n"
            "    - {port: 20001, servicePort: 8080, tags: {hypha.io/service: svc-%02zu, "
            "version: v%zu, team: team-%zu}}\n"
            "%s"
            "  outbound:\n"
            "%s",
            svc, i, svc, i % 4 == 3 ? "staging" : "prod", (i >> 16) & 255, (i >> 8) & 255, i & 255,
            svc, i % 3 + 1, svc % 4, admin, out);
    }
    /* other zones' ingresses, each carrying every other service */
    static const char *const zones[] = {"west", "north"};
    for (size_t z = 0; z < 2; z++) {
        char avail[4096] = "";
        size_t o = 0;
        for (size_t svc = z; svc < p->services && o + 100 < sizeof(avail); svc += 2)
            o += (size_t)snprintf(avail + o, sizeof(avail) - o,
                                  "  - {tags: {hypha.io/service: svc-%02zu}, mesh: default, "
                                  "instances: 2}\n",
                                  svc);
        doc(&b, zones[z],
            "type: ZoneIngress\n"
            "name: %s-ingress\n"
            "networking: {address: 0.0.0.0, advertisedAddress: 203.0.113.%zu, port: 10001, "
            "advertisedPort: 30001}\n"
            "availableServices:\n"
            "%s",
            zones[z], z + 1, avail);
    }
    batch_flush(&b);
}

/* The j-th policy's top-level targetRef: a cycle of 8 (one in 8 mesh-wide,
 * 3 a service, a subset, a service subset, Dataplanes by labels, by name). */
static void top_ref(char *buf, size_t size, size_t j, const struct params *p)
{
    size_t svc = (j * 7 + 3) % p->services;
    switch (j % 8) {
    case 0:
        snprintf(buf, size, "{kind: Mesh}");
        break;
    case 1:
    case 2:
    case 3:
        snprintf(buf, size, "{kind: MeshService, name: svc-%02zu}", svc);
        break;
    case 4:
        snprintf(buf, size, "{kind: MeshSubset, tags: {version: v2}}");
        break;
    case 5:
        snprintf(buf, size, "{kind: MeshServiceSubset, name: svc-%02zu, tags: {version: v1}}", svc);
        break;
    case 6:
        snprintf(buf, size, "{kind: Dataplane, labels: {app: svc-%02zu, env: staging}}", svc);
        break;
    default: {
        size_t d = (j * 13 + 7) % p->dataplanes;
        snprintf(buf, size, "{kind: Dataplane, name: svc-%02zu-%05zu}", d % p->services, d);
        break;
    }
    }
}

enum kind { MTP, TIMEOUT, RETRY, BREAKER, LB, HEALTH, NKINDS };
static const char *const kind_names[NKINDS] = {
    "MeshTrafficPermission",     "MeshTimeout",    "MeshRetry", "MeshCircuitBreaker",
    "MeshLoadBalancingStrategy", "MeshHealthCheck"};
/* The mix, by policy index mod 20: 40 % MeshTrafficPermission, 20 %
 * MeshTimeout, 15 % MeshRetry, 10 % MeshCircuitBreaker, 10 %
 * MeshLoadBalancingStrategy, 5 % MeshHealthCheck. */
static const enum kind mix[20] = {MTP,     TIMEOUT, MTP,   RETRY, MTP,     BREAKER, MTP,
                                  TIMEOUT, LB,      MTP,   RETRY, HEALTH,  MTP,     TIMEOUT,
                                  MTP,     BREAKER, RETRY, MTP,   TIMEOUT, LB};

/* The `spec` of policy i of its kind k, the j-th of that kind (after its
 * top-level targetRef). */
static void policy_spec(char *spec, size_t size, enum kind k, size_t i, size_t j,
                        const struct params *p)
{
    size_t a = (i * 3 + 1) % p->services, c = (i * 5 + 2) % p->services;
    switch (k) {
    case MTP:
        if (j % 4 == 3) { /* callers by SPIFFE ID */
#if HY_BENCH_PRE_ENGINE
            snprintf(spec, size,
                     "  from:\n"
                     "    - {targetRef: {kind: MeshService, name: svc-%02zu}, "
                     "default: {action: Allow}}\n"
                     "    - {targetRef: {kind: MeshService, name: svc-%02zu}, "
                     "default: {action: Deny}}\n",
                     a, c);
#else
            snprintf(spec, size,
                     "  rules:\n"
                     "    - default:\n"
                     "        allow:\n"
                     "          - spiffeID: {type: Exact, value: spiffe://default/svc-%02zu}\n"
                     "          - spiffeID: {type: Prefix, value: spiffe://default/svc-1}\n"
                     "        deny:\n"
                     "          - spiffeID: {type: Exact, value: spiffe://default/svc-%02zu}\n",
                     a, c);
#endif
            return;
        }
        {
            size_t o = (size_t)snprintf(spec, size, "  from:\n");
            for (size_t e = 0; e <= j % 3; e++) {
                if (e == 0)
                    o += (size_t)snprintf(spec + o, size - o,
                                          "    - {targetRef: {kind: MeshService, name: "
                                          "svc-%02zu}, default: {action: Allow}}\n",
                                          a);
                else if (e == 1)
                    o += (size_t)snprintf(spec + o, size - o,
                                          "    - {targetRef: {kind: MeshSubset, tags: "
                                          "{hypha.io/service: svc-%02zu, version: v3}}, "
                                          "default: {action: Deny}}\n",
                                          c);
                else
                    o += (size_t)snprintf(spec + o, size - o,
                                          "    - {targetRef: {kind: MeshSubset, tags: "
                                          "{hypha.io/zone: west}}, default: {action: "
                                          "Allow}}\n");
            }
        }
        return;
    case TIMEOUT:
        snprintf(spec, size,
                 "  to:\n"
                 "    - {targetRef: {kind: Mesh}, default: {connectionTimeout: %zus, "
                 "idleTimeout: 1h}}\n"
                 "%s",
                 5 + j % 5,
                 j % 2 ? "    - {targetRef: {kind: MeshService, name: svc-05}, default: "
                         "{connectionTimeout: 2s, idleTimeout: 30s}}\n"
                       : "");
        return;
    case RETRY:
        snprintf(spec, size,
                 "  to:\n"
                 "    - targetRef: {kind: MeshService, name: svc-%02zu}\n"
                 "      default: {tcp: {maxConnectAttempt: %zu}}\n",
                 a, 2 + j % 4);
        return;
    case BREAKER: {
        char to[64] = "{kind: Mesh}";
        if (j % 2)
            snprintf(to, sizeof(to), "{kind: MeshService, name: svc-%02zu}", a);
        snprintf(spec, size,
                 "  to:\n"
                 "    - targetRef: %s\n"
                 "      default: {connectionLimits: {maxConnections: %zu, "
                 "maxPendingRequests: 128}}\n",
                 to, 512 + 256 * (j % 4));
        return;
    }
    case LB:
        snprintf(spec, size,
                 "  to:\n"
                 "    - targetRef: {kind: MeshService, name: svc-%02zu}\n"
                 "      default:\n"
                 "        loadBalancer: {type: %s}\n"
                 "        localityAwareness: {crossZone: {failover: [{to: {type: Any}}]}}\n",
                 a, j % 2 ? "LeastRequest" : "RoundRobin");
        return;
    case HEALTH:
        snprintf(spec, size,
                 "  to:\n"
                 "    - targetRef: {kind: MeshService, name: svc-%02zu}\n"
                 "      default: {interval: 10s, timeout: 2s, unhealthyThreshold: 3, "
                 "healthyThreshold: 1}\n",
                 a);
        return;
    default:
        bench_die("policy_spec", "no kind %d", (int)k);
    }
}

/* The P policies; a quarter from the global CP, the rest the zone's own.
 * counts[kind] gets how many of each. */
static void put_policies(struct hy_store *s, const struct params *p, size_t counts[NKINDS])
{
    struct batch b = {.s = s};
    size_t nth[NKINDS] = {0};
    for (size_t i = 0; i < p->policies; i++) {
        enum kind k = mix[i % 20];
        size_t j = nth[k]++;
        char ref[160], spec[2048];
        top_ref(ref, sizeof(ref), i + j, p); /* i + j: kinds and targetRefs mix */
        policy_spec(spec, sizeof(spec), k, i, j, p);
        doc(&b, i % 4 == 0 ? "global" : zone,
            "type: %s\nmesh: default\nname: p-%05zu\nspec:\n  targetRef: %s\n%s", kind_names[k], i,
            ref, spec);
    }
    batch_flush(&b);
    memcpy(counts, nth, sizeof(nth));
}

/* Every Dataplane, in memory as the DP server holds its sidecars'. */
static void list_dataplanes(struct hy_store *s, struct hy_store_page *pg, size_t want)
{
    int rc = hy_store_list(s, "Dataplane", "default", NULL, 0, pg);
    if (rc < 0)
        bench_die("hy_store_list", "%s", hy_strerror(rc));
    if (pg->n != want)
        bench_die("hy_store_list", "%zu Dataplanes, expected %zu", pg->n, want);
}

/* ---- what is measured -------------------------------------------------- */

/* A pass's time: the thread's CPU time, which is what the rows show (the
 * machine may be shared; waiting for a CPU is not the generator's cost),
 * and the wall-clock time beside it. */
struct span {
    double cpu, wall;
};

static struct span span_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (struct span){(double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, bench_now()};
}

static struct span span_since(struct span t0)
{
    struct span t = span_now();
    return (struct span){t.cpu - t0.cpu, t.wall - t0.wall};
}

/* What the configs of one pass say, to check that both generators did the
 * work (and to show where they differ). */
struct totals {
    size_t inbounds, outbounds, endpoints, inbound_entries;
    size_t timeouts, retries, breakers, lbs, health;
};

static size_t inbound_entries(const Hypha__V1__DpInbound *in)
{
#if HY_BENCH_PRE_ENGINE
    return in->n_allowed + in->n_denied;
#else
    return in->n_permissions + in->n_allow + in->n_deny + in->n_allow_with_shadow_deny;
#endif
}

static void count(struct totals *t, const Hypha__V1__DpConfig *c)
{
    t->inbounds += c->n_inbounds;
    t->outbounds += c->n_outbounds;
    for (size_t i = 0; i < c->n_inbounds; i++)
        t->inbound_entries += inbound_entries(c->inbounds[i]);
    for (size_t i = 0; i < c->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = c->outbounds[i];
        t->endpoints += o->n_endpoints;
        t->timeouts += o->connect_timeout != NULL;
        t->retries += o->has_max_connect_attempts;
        t->breakers += o->has_max_connections;
        t->lbs += o->lb != NULL;
        t->health += o->health_interval != NULL;
    }
}

/* One pass of the generator over every Dataplane. */
static struct span pass_generator(struct hy_store *s, const struct hy_store_page *dps,
                                  struct totals *t)
{
    struct span t0 = span_now();
    for (size_t i = 0; i < dps->n; i++) {
        Hypha__V1__DpConfig *c = NULL;
        int rc = hy_zone_dp_config_build(s, dps->items[i], "CERT", "CHAIN", "BUNDLE", &c);
        if (rc < 0)
            bench_die("hy_zone_dp_config_build", "%s: %s", dps->items[i]->meta->name,
                      hy_strerror(rc));
        if (t)
            count(t, c);
        hypha__v1__dp_config__free_unpacked(c, NULL);
    }
    return span_since(t0);
}

/* Rows 1 and 2 side by side, into out[0] and out[1]: for every Dataplane,
 * its config from the store with the policies and from the one without,
 * in turns, each call timed on its own, so what else the machine does
 * falls on both alike and their difference (the policies' part) keeps
 * little of it. */
static void pass_paired(struct hy_store *const st[2], const struct hy_store_page *const dps[2],
                        struct span out[2])
{
    out[0] = out[1] = (struct span){0, 0};
    for (size_t i = 0; i < dps[0]->n; i++)
        for (int k = 0; k < 2; k++) {
            int which = (int)((i + (size_t)k) % 2);
            const struct hy_resource *dp = dps[which]->items[i];
            Hypha__V1__DpConfig *c = NULL;
            struct span t0 = span_now();
            int rc = hy_zone_dp_config_build(st[which], dp, "CERT", "CHAIN", "BUNDLE", &c);
            if (rc < 0)
                bench_die("hy_zone_dp_config_build", "%s: %s", dp->meta->name, hy_strerror(rc));
            hypha__v1__dp_config__free_unpacked(c, NULL);
            struct span t = span_since(t0);
            out[which].cpu += t.cpu;
            out[which].wall += t.wall;
        }
}

#if !HY_BENCH_PRE_ENGINE
static struct span pass_world_load(struct hy_store *s, size_t want)
{
    struct hy_policy_world w;
    struct span t0 = span_now();
    int rc = hy_policy_world_load(s, &w);
    struct span t = span_since(t0);
    if (rc < 0)
        bench_die("hy_policy_world_load", "%s", hy_strerror(rc));
    size_t n = 0;
    for (int k = 0; k < HY_POLICY_NTYPES; k++)
        n += w.n[k];
    if (n != want)
        bench_die("hy_policy_world_load", "%zu policies, expected %zu", n, want);
    hy_policy_world_fini(&w);
    return t;
}

/* hy_policy_select_all for every Dataplane; *selected: the (policy,
 * Dataplane) pairs selected. */
static struct span pass_select(const struct hy_policy_world *w, const struct hy_store_page *dps,
                               size_t *selected)
{
    size_t n = 0;
    struct span t0 = span_now();
    for (size_t i = 0; i < dps->n; i++) {
        struct hy_policy_proxy proxy = {dps->items[i], dps->items[i]->origin};
        struct hy_policy_set sel[HY_POLICY_NTYPES];
        int rc = hy_policy_select_all(w, &proxy, sel);
        if (rc < 0)
            bench_die("hy_policy_select_all", "%s", hy_strerror(rc));
        for (int k = 0; k < HY_POLICY_NTYPES; k++)
            n += sel[k].n;
        hy_policy_sets_fini(sel);
    }
    struct span t = span_since(t0);
    if (selected)
        *selected = n;
    return t;
}

static const char *outbound_service(const Hypha__V1__Dataplane__Networking__Outbound *ob)
{
    for (size_t k = 0; k < ob->n_tags; k++)
        if (ob->tags[k]->key && !strcmp(ob->tags[k]->key, HY_TAG_SERVICE))
            return ob->tags[k]->value;
    return "";
}

/* Everything the generator asks of the engine for every Dataplane, with
 * the policies already in memory: select_all, the permissions of each
 * inbound, and each `to` type merged for each outbound's service. */
static struct span pass_engine(const struct hy_policy_world *w, const struct hy_store_page *dps)
{
    struct span t0 = span_now();
    for (size_t i = 0; i < dps->n; i++) {
        const struct hy_resource *dp = dps->items[i];
        const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
        struct hy_policy_proxy proxy = {dp, dp->origin};
        struct hy_policy_set sel[HY_POLICY_NTYPES];
        int rc = hy_policy_select_all(w, &proxy, sel);
        for (size_t k = 0; rc == 0 && k < d->networking->n_inbound; k++) {
            Hypha__V1__DpInbound *in = malloc(sizeof(*in));
            if (!in)
                bench_die("malloc", "out of memory");
            hypha__v1__dp_inbound__init(in);
            rc = hy_policy_inbound_permissions(&sel[HY_POLICY_MTP], k, in);
            protobuf_c_message_free_unpacked(&in->base, NULL);
        }
        for (size_t k = 0; rc == 0 && k < d->networking->n_outbound; k++) {
            struct hy_policy_tag dest[] = {
                {HY_TAG_SERVICE, outbound_service(d->networking->outbound[k])}};
            struct hy_policy_tags tags = {dest, 1};
            for (int t = HY_POLICY_TIMEOUT; rc == 0 && t < HY_POLICY_NTYPES; t++) {
                struct hy_policy_conf c;
                rc = hy_policy_merge(&sel[t], "to", SIZE_MAX, &tags, &c);
                hy_policy_conf_fini(&c);
            }
        }
        hy_policy_sets_fini(sel);
        if (rc < 0)
            bench_die("the engine", "%s: %s", dp->meta->name, hy_strerror(rc));
    }
    return span_since(t0);
}
#endif

/* ---- results ----------------------------------------------------------- */

enum row { R_GEN, R_NOPOL, R_LOAD, R_SELECT, R_ENGINE, NROWS };
static const char *const row_keys[NROWS] = {"gen", "nopol", "load", "select", "engine"};
static const char *const row_names[NROWS] = {
    "1. Config of every Dataplane (hy_zone_dp_config_build)",
    "2. The same with no policies in the store",
    "3. Engine: load the policies (hy_policy_world_load)",
    "4. Engine: hy_policy_select_all for every Dataplane",
    "5. Engine: all the generator asks of it, every Dataplane",
};

struct result {
    bool have, mem; /* timed; memory measured */
    double cpu[BENCH_MAX_REPS], wall[BENCH_MAX_REPS];
    int n;
    /* the pass with the heap counted */
    unsigned long long calls, bytes;
    long long peak_heap;
    long hwm_kib, rss_kib; /* VmHWM during that pass, VmRSS before it */
};

static void add(struct result *r, struct span t)
{
    r->have = true;
    r->cpu[r->n] = t.cpu;
    r->wall[r->n++] = t.wall;
}

/* One repetition of a row: the pass again and again until min_time
 * seconds of CPU time are spent (once for a long pass), recording the mean
 * pass. */
static double min_time = 0.5;
#define TIMED(res, expr)                                                                           \
    do {                                                                                           \
        struct span acc_ = {0, 0};                                                                 \
        int it_ = 0;                                                                               \
        do {                                                                                       \
            struct span t_ = (expr);                                                               \
            acc_.cpu += t_.cpu;                                                                    \
            acc_.wall += t_.wall;                                                                  \
            it_++;                                                                                 \
        } while (acc_.cpu < min_time);                                                             \
        add(res, (struct span){acc_.cpu / it_, acc_.wall / it_});                                  \
    } while (0)

/* One pass of a row with the heap counted and the peak RSS reset before:
 * also the warm-up of the timed passes. */
#define MEASURE_MEMORY(res, expr)                                                                  \
    do {                                                                                           \
        (res)->rss_kib = status_kib("VmRSS");                                                      \
        bool reset_ = hwm_reset();                                                                 \
        heap_start();                                                                              \
        (void)(expr);                                                                              \
        heap_stop();                                                                               \
        (res)->calls = heap.calls;                                                                 \
        (res)->bytes = heap.bytes;                                                                 \
        (res)->peak_heap = heap.peak;                                                              \
        (res)->hwm_kib = reset_ ? status_kib("VmHWM") : 0;                                         \
        (res)->mem = HEAP_COUNTED;                                                                 \
    } while (0)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[BENCH_MAX_REPS];
    if (n == 0)
        return 0;
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void fmt_time(char *buf, size_t size, double seconds)
{
    if (seconds >= 1)
        snprintf(buf, size, "%.2f s", seconds);
    else if (seconds >= 1e-3)
        snprintf(buf, size, "%.2f ms", seconds * 1e3);
    else if (seconds >= 1e-6)
        snprintf(buf, size, "%.1f µs", seconds * 1e6);
    else
        snprintf(buf, size, "%.0f ns", seconds * 1e9);
}

static void fmt_bytes(char *buf, size_t size, double b)
{
    if (b >= 1 << 20)
        snprintf(buf, size, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10)
        snprintf(buf, size, "%.1f KiB", b / (1 << 10));
    else
        snprintf(buf, size, "%.0f B", b);
}

static void print_tsv(const struct params *p, const struct result *res, const size_t *counts,
                      const struct totals *tot, size_t selected, double t_setup, double t_timed)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("api\t%s\n", HY_BENCH_PRE_ENGINE ? "pre-engine" : "engine");
    printf("dataplanes\t%zu\npolicies\t%zu\nservices\t%zu\noutbounds\t%zu\nreps\t%d\n",
           p->dataplanes, p->policies, p->services, p->outbounds, p->reps);
    printf("min_time\t%.3f\n", min_time);
    for (int k = 0; k < NKINDS; k++)
        printf("count_%s\t%zu\n", kind_names[k], counts[k]);
    for (int r = 0; r < NROWS; r++) {
        const char *k = row_keys[r];
        if (!res[r].have)
            continue;
        double lo = res[r].cpu[0], hi = res[r].cpu[0];
        for (int i = 1; i < res[r].n; i++) {
            lo = res[r].cpu[i] < lo ? res[r].cpu[i] : lo;
            hi = res[r].cpu[i] > hi ? res[r].cpu[i] : hi;
        }
        printf("%s_cpu\t%.9f\n%s_cpu_min\t%.9f\n%s_cpu_max\t%.9f\n%s_wall\t%.9f\n", k,
               median(res[r].cpu, res[r].n), k, lo, k, hi, k, median(res[r].wall, res[r].n));
        if (!res[r].mem)
            continue;
        printf("%s_allocs\t%llu\n%s_bytes\t%llu\n%s_peak_heap\t%lld\n", k, res[r].calls, k,
               res[r].bytes, k, res[r].peak_heap);
        printf("%s_hwm_kib\t%ld\n%s_rss_kib\t%ld\n", k, res[r].hwm_kib, k, res[r].rss_kib);
    }
    printf("maxrss_kib\t%ld\nsetup_s\t%.3f\ntimed_s\t%.3f\n", ru.ru_maxrss, t_setup, t_timed);
    if (!p->memory)
        return;
    printf("inbounds\t%zu\noutbounds\t%zu\nendpoints\t%zu\ninbound_entries\t%zu\n", tot->inbounds,
           tot->outbounds, tot->endpoints, tot->inbound_entries);
    printf("timeouts\t%zu\nretries\t%zu\nbreakers\t%zu\nlbs\t%zu\nhealth\t%zu\n", tot->timeouts,
           tot->retries, tot->breakers, tot->lbs, tot->health);
    if (!HY_BENCH_PRE_ENGINE)
        printf("selected\t%zu\n", selected);
}

static void print_md(const struct params *p, const struct result *res, const size_t *counts,
                     const struct totals *tot, size_t selected, double t_setup, double t_timed)
{
    printf("| Row | CPU time (median) | Per Dataplane | Wall time (median) | Allocations per "
           "Dataplane | Heap allocated per Dataplane | Peak heap | Peak RSS |\n");
    printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int r = 0; r < NROWS; r++) {
        if (!res[r].have)
            continue;
        double m = median(res[r].cpu, res[r].n);
        bool per_dp = r != R_LOAD;
        double div = per_dp ? (double)p->dataplanes : 1;
        char tm[32], per[32], wall[32], calls[32] = "—", bytes[32] = "—", peak[32] = "—",
                                        hwm[32] = "—";
        fmt_time(tm, sizeof(tm), m);
        fmt_time(per, sizeof(per), m / div);
        fmt_time(wall, sizeof(wall), median(res[r].wall, res[r].n));
        if (res[r].mem) {
            snprintf(calls, sizeof(calls), "%.0f", (double)res[r].calls / div);
            fmt_bytes(bytes, sizeof(bytes), (double)res[r].bytes / div);
            fmt_bytes(peak, sizeof(peak), (double)res[r].peak_heap);
            if (res[r].hwm_kib)
                fmt_bytes(hwm, sizeof(hwm), (double)res[r].hwm_kib * 1024);
        }
        printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", row_names[r], tm, per_dp ? per : "—",
               wall, calls, bytes, peak, hwm);
    }
    printf("\n%s generator; %zu Dataplanes (%zu services, %zu outbounds each), %zu policies "
           "(MeshTrafficPermission %zu, MeshTimeout %zu, MeshRetry %zu, MeshCircuitBreaker %zu, "
           "MeshLoadBalancingStrategy %zu, MeshHealthCheck %zu). Median of %d repetition(s) of "
           "the thread's CPU time (each repetition runs a row's pass for at least %.2f s and takes "
           "the mean; rows 1 and 2 are built in turns, Dataplane by Dataplane), %.1f s timed "
           "(wall), %.1f s to build the stores. Allocations and heap come "
           "from one more pass with malloc counted (also the warm-up); peak heap is the most in "
           "use above that pass's start, peak RSS the process's VmHWM reset before it (it holds "
           "both stores' mapped pages).\n",
           HY_BENCH_PRE_ENGINE ? "Pre-engine (1bb3583)" : "Engine", p->dataplanes, p->services,
           p->outbounds, p->policies, counts[MTP], counts[TIMEOUT], counts[RETRY], counts[BREAKER],
           counts[LB], counts[HEALTH], p->reps, min_time, t_timed, t_setup);
    if (!p->memory)
        return;
    printf("\nThe configs: %zu inbounds with %zu permission entries, %zu outbounds with %zu "
           "endpoints; outbounds with a timeout %zu, retries %zu, limits %zu, a balancer %zu, "
           "health checks %zu.",
           tot->inbounds, tot->inbound_entries, tot->outbounds, tot->endpoints, tot->timeouts,
           tot->retries, tot->breakers, tot->lbs, tot->health);
    if (!HY_BENCH_PRE_ENGINE)
        printf(" The engine selected %zu (policy, Dataplane) pairs.", selected);
    printf("\n");
}

int main(int argc, char **argv)
{
    struct params p = {
        .dataplanes = 1000,
        .policies = 100,
        .services = 20,
        .outbounds = 3,
        .reps = 3,
        .floor = 1,
        .memory = 1,
        .format = "md",
    };
    const struct bench_opt opts[] = {
        {"--dataplanes", "HYPHA_BENCH_POLICY_DATAPLANES", BENCH_OPT_SIZE, &p.dataplanes,
         "Dataplanes in the zone (default 1000)"},
        {"--policies", "HYPHA_BENCH_POLICY_POLICIES", BENCH_OPT_SIZE, &p.policies,
         "policies (default 100)"},
        {"--services", NULL, BENCH_OPT_SIZE, &p.services, "services, 2..100 (default 20)"},
        {"--outbounds", NULL, BENCH_OPT_SIZE, &p.outbounds,
         "outbounds per Dataplane, below --services (default 3)"},
        {"--reps", "HYPHA_BENCH_REPS", BENCH_OPT_INT, &p.reps,
         "repetitions; medians are shown (default 3, at most 15)"},
        {"--min-time", NULL, BENCH_OPT_DOUBLE, &min_time,
         "seconds of CPU time a repetition runs its pass for, at least once (default 0.5)"},
        {"--memory", NULL, BENCH_OPT_INT, &p.memory,
         "1: first one more pass of each row with the heap counted, which also checks the "
         "configs and warms up (default 1)"},
        {"--floor", NULL, BENCH_OPT_INT, &p.floor,
         "1: also row 2, the generator with no policies (default 1)"},
        {"--dir", "HYPHA_BENCH_DIR", BENCH_OPT_STR, &p.dir,
         "where the scratch stores go (default $TMPDIR, else /tmp)"},
        {"--format", NULL, BENCH_OPT_STR, &p.format,
         "md: a markdown table; tsv: key<TAB>value lines (for bench/policy.sh)"},
    };
    bench_opts_parse(argc, argv,
                     "Times the zone's config generator and the policy engine on a world of "
                     "Dataplanes and policies in an LMDB store; prints a markdown table.",
                     opts, sizeof(opts) / sizeof(opts[0]));
    if (p.reps < 1 || p.reps > BENCH_MAX_REPS)
        bench_die("--reps", "must be 1..%d", BENCH_MAX_REPS);
    if (p.dataplanes < 1 || p.dataplanes > 100000)
        bench_die("--dataplanes", "must be 1..100000");
    if (p.services < 2 || p.services > 100)
        bench_die("--services", "must be 2..100");
    if (p.outbounds >= p.services || p.outbounds > 20)
        bench_die("--outbounds", "must be below --services and at most 20");
    bool tsv = !strcmp(p.format, "tsv");
    if (!tsv && strcmp(p.format, "md"))
        bench_die("--format", "md or tsv");

    /* Two stores with the same Dataplanes, one with the policies and one
     * without: rows 1 and 2 are timed side by side (pass_paired). */
    int nstores = p.floor ? 2 : 1;
    char dir[2][512];
    struct hy_store *st[2] = {0};
    for (int k = 0; k < nstores; k++) {
        bench_mkdtemp(p.dir, "policy", dir[k], sizeof(dir[k]));
        struct hy_store_config cfg = {.path = dir[k]};
        int rc = hy_store_open(&cfg, &st[k]);
        if (rc < 0)
            bench_die(dir[k], "hy_store_open: %s", hy_strerror(rc));
    }
    fprintf(stderr, "bench: policy: %zu Dataplanes, %zu policies, %s generator...\n", p.dataplanes,
            p.policies, HY_BENCH_PRE_ENGINE ? "pre-engine" : "engine");
    double t_setup = bench_now();
    size_t counts[NKINDS];
    struct hy_store_page dps = {0}, dps0 = {0};
    put_dataplanes(st[0], &p);
    put_policies(st[0], &p, counts);
    list_dataplanes(st[0], &dps, p.dataplanes);
    if (p.floor) {
        put_dataplanes(st[1], &p);
        list_dataplanes(st[1], &dps0, p.dataplanes);
    }
    t_setup = bench_now() - t_setup;

    struct result res[NROWS] = {0};
    struct totals tot = {0}, tot0 = {0};
    size_t selected = 0;
#if !HY_BENCH_PRE_ENGINE
    struct hy_policy_world world;
    int wrc = hy_policy_world_load(st[0], &world);
    if (wrc < 0)
        bench_die("hy_policy_world_load", "%s", hy_strerror(wrc));
#endif
    if (p.memory) {
        MEASURE_MEMORY(&res[R_GEN], pass_generator(st[0], &dps, &tot));
        if (p.floor)
            MEASURE_MEMORY(&res[R_NOPOL], pass_generator(st[1], &dps0, &tot0));
#if !HY_BENCH_PRE_ENGINE
        MEASURE_MEMORY(&res[R_LOAD], pass_world_load(st[0], p.policies));
        MEASURE_MEMORY(&res[R_SELECT], pass_select(&world, &dps, &selected));
        MEASURE_MEMORY(&res[R_ENGINE], pass_engine(&world, &dps));
#endif
        if (tot.outbounds != p.dataplanes * p.outbounds || tot.endpoints == 0 ||
            (p.floor && (tot0.inbounds != tot.inbounds || tot0.outbounds != tot.outbounds)))
            bench_die("the configs",
                      "%zu inbounds, %zu outbounds, %zu endpoints (with no policies: "
                      "%zu inbounds, %zu outbounds)",
                      tot.inbounds, tot.outbounds, tot.endpoints, tot0.inbounds, tot0.outbounds);
    }

    double t0 = bench_now();
    double part[BENCH_MAX_REPS]; /* row 1 - row 2 of each repetition */
    for (int rep = 0; rep < p.reps; rep++) {
        fprintf(stderr, "bench: policy repetition %d...\n", rep + 1);
        if (p.floor) {
            const struct hy_store_page *lists[2] = {&dps, &dps0};
            struct span acc[2] = {{0, 0}, {0, 0}}, t[2];
            int it = 0;
            do {
                pass_paired(st, lists, t);
                for (int k = 0; k < 2; k++) {
                    acc[k].cpu += t[k].cpu;
                    acc[k].wall += t[k].wall;
                }
                it++;
            } while (acc[0].cpu + acc[1].cpu < min_time);
            add(&res[R_GEN], (struct span){acc[0].cpu / it, acc[0].wall / it});
            add(&res[R_NOPOL], (struct span){acc[1].cpu / it, acc[1].wall / it});
            part[rep] = (acc[0].cpu - acc[1].cpu) / it;
        } else {
            TIMED(&res[R_GEN], pass_generator(st[0], &dps, NULL));
        }
#if !HY_BENCH_PRE_ENGINE
        TIMED(&res[R_LOAD], pass_world_load(st[0], p.policies));
        TIMED(&res[R_SELECT], pass_select(&world, &dps, NULL));
        TIMED(&res[R_ENGINE], pass_engine(&world, &dps));
#endif
    }
    double t_timed = bench_now() - t0;

    if (tsv && p.floor) {
        double lo = part[0], hi = part[0];
        for (int i = 1; i < p.reps; i++) {
            lo = part[i] < lo ? part[i] : lo;
            hi = part[i] > hi ? part[i] : hi;
        }
        printf("part_cpu\t%.9f\npart_cpu_min\t%.9f\npart_cpu_max\t%.9f\n", median(part, p.reps), lo,
               hi);
    }
    if (tsv)
        print_tsv(&p, res, counts, &tot, selected, t_setup, t_timed);
    else
        print_md(&p, res, counts, &tot, selected, t_setup, t_timed);

#if !HY_BENCH_PRE_ENGINE
    hy_policy_world_fini(&world);
#endif
    hy_store_page_fini(&dps);
    hy_store_page_fini(&dps0);
    for (int k = 0; k < nstores; k++) {
        hy_store_close(st[k]);
        bench_rmtree(dir[k]);
    }
    return 0;
}
