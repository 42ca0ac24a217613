/* Unit tests of the sidecar (sidecar/): the Dataplane file and its
 * {{ NAME }} variables, the checks a config from the zone must pass (made
 * with real certificates: a mesh root, a zone intermediate, leaves),
 * renewal times, and the whole control stream and admin server against a
 * small fake DP server on one loop. (Publishing snapshots across threads:
 * test_agent.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ca.h"
#include "codec.h"
#include "dataplane.pb-c.h"
#include "dp.h"
#include "dp_parts.h"
#include "error.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "ws.h"
#include "poison.h"

#define DATA HY_TEST_DATA "/resources/dataplane.yaml"

/* ----- helpers ----- */

static char dir[64];

static char *path_in(const char *name)
{
    static char bufs[8][160];
    static int next;
    char *p = bufs[next++ % 8];
    snprintf(p, 160, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static struct hy_strings vars_of(char **v, size_t n)
{
    return (struct hy_strings){.v = v, .n = n};
}

/* Expands text; returns the result (caller frees) or NULL, with diag. */
static char *expand(const char *text, struct hy_strings vars, struct hy_diag *diag)
{
    char *out = (char *)"unset";
    size_t len = 0;
    diag->source = "dp.yaml";
    int rc = hy_agent_file_expand(text, strlen(text), &vars, &out, &len, diag);
    if (rc < 0) {
        assert_null(out);
        return NULL;
    }
    assert_int_equal(len, strlen(out));
    return out;
}

/* Asserts that diag holds exactly the causes given, formatted. */
static void expect_causes(const struct hy_diag *d, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    char line[600];
    for (size_t i = 0; i < d->n; i++)
        if (i >= n || strcmp(hy_diag_format(d, i, line, sizeof(line)), va_arg(ap, const char *)))
            fail_msg("cause %zu: %s", i, hy_diag_format(d, i, line, sizeof(line)));
    va_end(ap);
    assert_int_equal(d->n, n);
}

/* ----- the Dataplane file ----- */

static void test_vars(void **state)
{
    (void)state;
    struct hy_diag d = {0};
    char *v[] = {"name=web-1", "addr=10.0.0.7", "svc.port=8080", "empty="};
    char *out = expand("name: {{ name }}\n"
                       "a: {{name}}-{{   name\t}}\n"
                       "b: \"{{ addr }}:{{ svc.port }}\"{{empty}}\n"
                       "c: { x: 1 }\n",
                       vars_of(v, 4), &d);
    assert_non_null(out);
    assert_string_equal(out, "name: web-1\n"
                             "a: web-1-web-1\n"
                             "b: \"10.0.0.7:8080\"\n"
                             "c: { x: 1 }\n");
    free(out);
    /* the first '=' splits; no placeholder at all; empty text */
    char *eq[] = {"q=a=b"};
    assert_non_null(out = expand("x: {{ q }}", vars_of(eq, 1), &d));
    assert_string_equal(out, "x: a=b");
    free(out);
    assert_non_null(out = expand("x: 1\n", vars_of(NULL, 0), &d));
    assert_string_equal(out, "x: 1\n");
    free(out);
    assert_non_null(out = expand("", vars_of(NULL, 0), &d));
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(d.n, 0);

    /* every unknown placeholder, where it is, with the flag that fills it */
    assert_null(expand("type: Dataplane\n"
                       "name: {{ name }}\n"
                       "mesh: {{mesh}} {{ name }}\n",
                       vars_of(v + 1, 1), &d));
    expect_causes(&d, 3,
                  "dp.yaml:2:7: unknown placeholder {{ name }}: give its value with "
                  "--dataplane-var name=VALUE",
                  "dp.yaml:3:7: unknown placeholder {{ mesh }}: give its value with "
                  "--dataplane-var mesh=VALUE",
                  "dp.yaml:3:16: unknown placeholder {{ name }}: give its value with "
                  "--dataplane-var name=VALUE");
    hy_diag_fini(&d);

    /* "{{" that opens no placeholder */
    assert_null(expand("a: 1\nb: {{ two words }}\nc: {{}}\nd: {{ x", vars_of(NULL, 0), &d));
    expect_causes(&d, 3,
                  "dp.yaml:2:4: \"{{ two words }}\" is not a placeholder: write {{ NAME }}, NAME "
                  "of letters, digits, '_', '-' and '.'",
                  "dp.yaml:3:4: \"{{}}\" is not a placeholder: write {{ NAME }}, NAME of letters, "
                  "digits, '_', '-' and '.'",
                  "dp.yaml:4:4: \"{{ x\" is not a placeholder: write {{ NAME }}, NAME of letters, "
                  "digits, '_', '-' and '.'");
    hy_diag_fini(&d);

    /* variables that are not NAME=VALUE, given twice, or multi-line */
    char *bad[] = {"novalue", "=x", "a b=1", "n=1", "n=2", "m=a\nb"};
    assert_null(expand("x: {{ n }}", vars_of(bad, 6), &d));
    expect_causes(
        &d, 5,
        "dp.yaml: --dataplane-var \"novalue\": expected NAME=VALUE, NAME of letters, digits, '_', "
        "'-' and '.'",
        "dp.yaml: --dataplane-var \"=x\": expected NAME=VALUE, NAME of letters, digits, '_', '-' "
        "and '.'",
        "dp.yaml: --dataplane-var \"a b=1\": expected NAME=VALUE, NAME of letters, digits, '_', "
        "'-' and '.'",
        "dp.yaml: --dataplane-var n is given twice",
        "dp.yaml: --dataplane-var m: the value must be a single line");
    hy_diag_fini(&d);
}

static const char *const dp_template = "type: Dataplane\n"
                                       "mesh: {{ mesh }}\n"
                                       "name: {{name}}\n"
                                       "networking:\n"
                                       "  address: {{ address }}\n"
                                       "  inbound:\n"
                                       "    - port: 11011\n"
                                       "      servicePort: 8080\n"
                                       "      tags:\n"
                                       "        kuma.io/service: web\n";

static void test_file(void **state)
{
    (void)state;
    struct hy_diag d = {0};
    struct hy_agent_file f;

    /* the shared test resource as it is */
    assert_int_equal(hy_agent_file_load(DATA, NULL, &f, &d), 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(f.res->meta->mesh, "default");
    assert_string_equal(f.res->meta->name, "web-1");
    /* the envelope DpHello carries holds the same resource */
    assert_non_null(f.env);
    assert_string_equal(f.env->meta->type, "Dataplane");
    assert_string_equal(f.env->meta->name, "web-1");
    Hypha__V1__Dataplane *spec =
        hypha__v1__dataplane__unpack(NULL, f.env->spec.len, f.env->spec.data);
    assert_non_null(spec);
    assert_string_equal(spec->networking->address, "127.0.0.1");
    assert_int_equal(spec->networking->n_inbound, 1);
    assert_int_equal(spec->networking->inbound[0]->port, 11011);
    hypha__v1__dataplane__free_unpacked(spec, NULL);
    hy_agent_file_fini(&f);
    assert_null(f.res);

    /* variables filled in, then decoded */
    char *v[] = {"mesh=default", "name=web-2", "address=10.1.2.3", "unused=1"};
    struct hy_strings vars = vars_of(v, 4);
    assert_int_equal(
        hy_agent_file_parse("dp.yaml", dp_template, strlen(dp_template), &vars, &f, &d), 0);
    assert_string_equal(f.res->meta->name, "web-2");
    assert_string_equal(((Hypha__V1__Dataplane *)f.res->spec)->networking->address, "10.1.2.3");
    hy_agent_file_fini(&f);

    /* a placeholder left unfilled */
    vars.n = 2;
    assert_int_equal(
        hy_agent_file_parse("dp.yaml", dp_template, strlen(dp_template), &vars, &f, &d), HY_EINVAL);
    expect_causes(&d, 1,
                  "dp.yaml:5:12: unknown placeholder {{ address }}: give its value with "
                  "--dataplane-var address=VALUE");
    assert_null(f.res);
    hy_diag_fini(&d);

    /* validation problems, each at its line:column */
    static const char *const invalid = "type: Dataplane\n"
                                       "mesh: default\n"
                                       "name: web-1\n"
                                       "networking:\n"
                                       "  address: 10.0.0.1\n"
                                       "  inbound:\n"
                                       "    - port: 0\n"
                                       "      tags:\n"
                                       "        version: v1\n";
    assert_int_equal(hy_agent_file_parse("dp.yaml", invalid, strlen(invalid), NULL, &f, &d),
                     HY_EINVAL);
    expect_causes(&d, 2,
                  "dp.yaml:7:13: networking.inbound[0].port: 0 is not a port (expected 1-65535)",
                  "dp.yaml:9:9: networking.inbound[0].tags: tag hypha.io/service is required");
    hy_diag_fini(&d);
    char line[600];

    /* an unknown field, and a variable that moved nothing before it */
    char *mv[] = {"n=web-1"};
    vars = vars_of(mv, 1);
    static const char *const unknown = "type: Dataplane\n"
                                       "mesh: default\n"
                                       "name: {{ n }}\n"
                                       "networking:\n"
                                       "  adress: 10.0.0.1\n";
    assert_int_equal(hy_agent_file_parse("dp.yaml", unknown, strlen(unknown), &vars, &f, &d),
                     HY_EINVAL);
    assert_true(d.n >= 1);
    assert_non_null(strstr(hy_diag_format(&d, 0, line, sizeof(line)), "dp.yaml:5:3: "));
    assert_non_null(strstr(line, "adress"));
    hy_diag_fini(&d);

    /* another type; two documents; nothing */
    static const char *const mesh = "type: Mesh\nname: default\n";
    assert_int_equal(hy_agent_file_parse("dp.yaml", mesh, strlen(mesh), NULL, &f, &d), HY_EINVAL);
    expect_causes(&d, 1, "dp.yaml:1:1: type: expected Dataplane, found Mesh");
    hy_diag_fini(&d);
    static const char *const two = "type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n";
    assert_int_equal(hy_agent_file_parse("dp.yaml", two, strlen(two), NULL, &f, &d), HY_EINVAL);
    expect_causes(&d, 1, "dp.yaml:4:1: expected one Dataplane, found 2 documents");
    hy_diag_fini(&d);
    assert_int_equal(hy_agent_file_parse("dp.yaml", "", 0, NULL, &f, &d), HY_EINVAL);
    expect_causes(&d, 1, "dp.yaml: expected one Dataplane, found 0 documents");
    hy_diag_fini(&d);

    /* a file that is not there */
    assert_int_equal(hy_agent_file_load("/nonexistent/dp.yaml", NULL, &f, &d), -ENOENT);
    expect_causes(&d, 1,
                  "/nonexistent/dp.yaml: cannot read the Dataplane file: No such file or "
                  "directory");
    hy_diag_fini(&d);
}

static void test_token(void **state)
{
    (void)state;
    char *p = path_in("token");
    write_file(p, "\n  eyJ.abc.def \t\r\n\n");
    char *t = hy_agent_read_token(p);
    assert_non_null(t);
    assert_string_equal(t, "eyJ.abc.def");
    free(t);
    write_file(p, " \n\t");
    errno = 0;
    assert_null(hy_agent_read_token(p));
    assert_int_equal(errno, ENODATA);
    unlink(p);
    assert_null(hy_agent_read_token(p));
    assert_int_equal(errno, ENOENT);
}

/* ----- configs: a mesh root, a zone intermediate, sidecar leaves ----- */

struct pki {
    struct hy_ca_pem root, other_root, inter; /* inter: the zone's intermediate and its key */
    struct hy_ca_pem old_root, old_inter;     /* valid from two hours ago */
};

static struct pki pki;

static void make_inter(const struct hy_ca_pem *root, int64_t now, struct hy_ca_pem *out)
{
    struct hy_ca_pem csr = {0};
    assert_int_equal(hy_ca_make_csr("zone-1", &csr), 0);
    assert_int_equal(hy_ca_sign_intermediate(root, csr.cert, now, 86400, NULL, &out->cert), 0);
    out->key = csr.key;
    csr.key = NULL;
    hy_ca_pem_fini(&csr);
}

static void make_pki(void)
{
    int64_t now = time(NULL);
    assert_int_equal(hy_ca_make_root("default", now, 86400, &pki.root), 0);
    assert_int_equal(hy_ca_make_root("other", now, 86400, &pki.other_root), 0);
    assert_int_equal(hy_ca_make_root("default", now - 7200, 86400, &pki.old_root), 0);
    make_inter(&pki.root, now, &pki.inter);
    make_inter(&pki.old_root, now - 7200, &pki.old_inter);
}

static void free_pki(void)
{
    hy_ca_pem_fini(&pki.root);
    hy_ca_pem_fini(&pki.other_root);
    hy_ca_pem_fini(&pki.inter);
    hy_ca_pem_fini(&pki.old_root);
    hy_ca_pem_fini(&pki.old_inter);
}

/* A leaf for csr_pem signed by ca for uri, valid from now - 60 s. */
static char *leaf(const struct hy_ca_pem *ca, const char *csr_pem, const char *uri, int64_t now,
                  int64_t validity)
{
    char *cert = NULL;
    const char *uris[] = {uri};
    assert_int_equal(hy_ca_sign_leaf(ca, csr_pem, now, validity, uris, 1, &cert), 0);
    return cert;
}

static Hypha__V1__DpConfig *config_new(const char *version, const char *cert, const char *chain,
                                       const char *bundle)
{
    Hypha__V1__DpConfig *c = malloc(sizeof(*c));
    assert_non_null(c);
    hypha__v1__dp_config__init(c);
    c->version = version ? strdup(version) : NULL;
    c->mesh = strdup("default");
    c->name = strdup("web-1");
    c->cert = cert ? strdup(cert) : NULL;
    c->chain = chain ? strdup(chain) : NULL;
    c->trust_bundle = bundle ? strdup(bundle) : NULL;
    return c;
}

static void add_port(Hypha__V1__DpConfig *c, bool inbound, uint32_t port)
{
    if (inbound) {
        c->inbounds = realloc(c->inbounds, (c->n_inbounds + 1) * sizeof(*c->inbounds));
        Hypha__V1__DpInbound *in = malloc(sizeof(*in));
        hypha__v1__dp_inbound__init(in);
        in->has_port = 1;
        in->port = port;
        c->inbounds[c->n_inbounds++] = in;
    } else {
        c->outbounds = realloc(c->outbounds, (c->n_outbounds + 1) * sizeof(*c->outbounds));
        Hypha__V1__DpOutbound *out = malloc(sizeof(*out));
        hypha__v1__dp_outbound__init(out);
        out->has_port = 1;
        out->port = port;
        c->outbounds[c->n_outbounds++] = out;
    }
}

/* Runs the checks; on failure returns rc with err, config freed. */
static int check(Hypha__V1__DpConfig *c, const char *const *keys, size_t nkeys, size_t *which,
                 char *err, struct hy_sidecar_snapshot **out)
{
    struct hy_sidecar_snapshot *s = NULL;
    size_t w = 99;
    int rc = hy_sidecar_snapshot_new(c, "default", "web-1", keys, nkeys, &s, &w, err, 512);
    if (rc < 0) {
        assert_null(s);
        assert_true(err[0] != '\0');
        hypha__v1__dp_config__free_unpacked(c, NULL);
    } else {
        assert_non_null(s);
        assert_ptr_equal(s->config, c);
        if (which)
            *which = w;
    }
    if (out)
        *out = s;
    else
        hy_sidecar_snapshot_unref(s);
    return rc;
}

static void test_config_checks(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem me = {0}, other = {0};
    assert_int_equal(hy_ca_make_csr("web-1", &me), 0);
    assert_int_equal(hy_ca_make_csr("web-1", &other), 0);
    char *good = leaf(&pki.inter, me.cert, "spiffe://default/web", now, 3600);
    const char *mine[] = {me.key}, *both[] = {other.key, NULL, me.key}, *theirs[] = {other.key};
    char err[512];
    size_t which;
    struct hy_sidecar_snapshot *s;

    /* good: chains through the intermediate to the root, our key */
    Hypha__V1__DpConfig *c = config_new("v1", good, pki.inter.cert, pki.root.cert);
    add_port(c, true, 11011);
    add_port(c, false, 33033);
    assert_int_equal(check(c, mine, 1, &which, err, &s), 0);
    assert_int_equal(which, 0);
    assert_string_equal(s->key, me.key);
    assert_ptr_not_equal(s->key, me.key); /* a copy */
    assert_string_equal(s->spiffe_id, "spiffe://default/web");
    assert_int_equal(s->not_after - s->not_before, 3660);
    assert_int_equal(s->renew_at, s->not_before + HY_CA_BACKDATE_SECONDS + 2880); /* 80 % of 1 h */
    assert_int_equal(strlen(s->fingerprint), HY_CA_FINGERPRINT_LEN);
    assert_int_equal(atomic_load(&s->base.refs), 1);
    hy_sidecar_snapshot_unref(s);

    /* the key may be any of those given (the current one, or the pending one) */
    c = config_new("v1", good, pki.inter.cert, pki.root.cert);
    assert_int_equal(check(c, both, 3, &which, err, NULL), 0);
    assert_int_equal(which, 2);

    /* a trust bundle in rotation: the old root and the new */
    char bundle[8192];
    snprintf(bundle, sizeof(bundle), "%s%s", pki.other_root.cert, pki.root.cert);
    assert_int_equal(
        check(config_new("v1", good, pki.inter.cert, bundle), mine, 1, NULL, err, NULL), 0);

    /* not our key: nack */
    assert_int_equal(
        check(config_new("v1", good, pki.inter.cert, pki.root.cert), theirs, 1, NULL, err, NULL),
        HY_EVERIFY);
    assert_string_equal(err, "the certificate is not for this dataplane's key (it must be issued "
                             "for the CSR of its last DpHello or DpCsr)");
    assert_int_equal(
        check(config_new("v1", good, pki.inter.cert, pki.root.cert), NULL, 0, NULL, err, NULL),
        HY_EVERIFY);

    /* not chaining to the bundle: another mesh's root, or no intermediate */
    assert_int_equal(check(config_new("v1", good, pki.inter.cert, pki.other_root.cert), mine, 1,
                           NULL, err, NULL),
                     HY_EVERIFY);
    assert_non_null(strstr(err, "the certificate does not chain to the trust bundle: "));
    assert_int_equal(check(config_new("v1", good, NULL, pki.root.cert), mine, 1, NULL, err, NULL),
                     HY_EVERIFY);
    assert_non_null(strstr(err, "the certificate does not chain to the trust bundle: "));

    /* expired */
    char *old = leaf(&pki.old_inter, me.cert, "spiffe://default/web", now - 7200, 600);
    assert_int_equal(check(config_new("v1", old, pki.old_inter.cert, pki.old_root.cert), mine, 1,
                           NULL, err, NULL),
                     HY_EVERIFY);
    assert_non_null(strstr(err, "expired"));
    free(old);

    /* another mesh's identity; a CA as the certificate */
    char *stranger = leaf(&pki.inter, me.cert, "spiffe://other/web", now, 3600);
    assert_int_equal(
        check(config_new("v1", stranger, pki.inter.cert, pki.root.cert), mine, 1, NULL, err, NULL),
        HY_EVERIFY);
    assert_string_equal(err, "the certificate has no SPIFFE ID of mesh default "
                             "(spiffe://default/...)");
    free(stranger);
    assert_int_equal(check(config_new("v1", pki.inter.cert, pki.inter.cert, pki.root.cert), mine, 1,
                           NULL, err, NULL),
                     HY_EVERIFY);
    assert_string_equal(err, "the certificate is a CA, not a workload's");

    /* what is missing or wrong besides the certificate */
    assert_int_equal(
        check(config_new(NULL, good, pki.inter.cert, pki.root.cert), mine, 1, NULL, err, NULL),
        HY_EINVAL);
    assert_string_equal(err, "the config has no version");
    assert_int_equal(check(config_new("v1", NULL, NULL, pki.root.cert), mine, 1, NULL, err, NULL),
                     HY_EINVAL);
    assert_string_equal(err, "the config has no certificate");
    assert_int_equal(check(config_new("v1", good, pki.inter.cert, ""), mine, 1, NULL, err, NULL),
                     HY_EINVAL);
    assert_string_equal(err, "the config has no trust bundle");
    assert_int_equal(
        check(config_new("v1", "garbage", NULL, pki.root.cert), mine, 1, NULL, err, NULL),
        HY_EINVAL);
    assert_non_null(strstr(err, "the certificate does not parse"));
    c = config_new("v1", good, pki.inter.cert, pki.root.cert);
    free(c->name);
    c->name = strdup("web-2");
    assert_int_equal(check(c, mine, 1, NULL, err, NULL), HY_EINVAL);
    assert_string_equal(err, "the config is for default/web-2, this dataplane is default/web-1");
    c = config_new("v1", good, pki.inter.cert, pki.root.cert);
    add_port(c, true, 11011);
    add_port(c, false, 11011);
    assert_int_equal(check(c, mine, 1, NULL, err, NULL), HY_EINVAL);
    assert_string_equal(err, "outbounds[0]: port 11011 is used twice");
    c = config_new("v1", good, pki.inter.cert, pki.root.cert);
    add_port(c, false, 70000);
    assert_int_equal(check(c, mine, 1, NULL, err, NULL), HY_EINVAL);
    assert_string_equal(err, "outbounds[0]: port 70000 is not in 1..65535");

    free(good);
    hy_ca_pem_fini(&me);
    hy_ca_pem_fini(&other);
}

static void test_renew_time(void **state)
{
    (void)state;
    /* ours: backdated by HY_CA_BACKDATE_SECONDS, life counted from signing */
    const int64_t B = HY_CA_BACKDATE_SECONDS;
    assert_int_equal(hy_sidecar_renew_at(1000 - B, 1000 + 86400, 1000), 1000 + 69120); /* 24 h */
    assert_int_equal(hy_sidecar_renew_at(1000 - B, 1010, 1000), 1008);                 /* 10 s */
    assert_int_equal(hy_sidecar_renew_at(1000 - B, 1010, 1009), 1008); /* repeated later: same */
    assert_int_equal(hy_sidecar_renew_at(1000 - B, 1010, 5000), 1008);
    /* not backdated (or a clock ahead of ours): from now, never before not_before */
    assert_int_equal(hy_sidecar_renew_at(1000, 1100, 1000), 1080);
    assert_int_equal(hy_sidecar_renew_at(1000, 1100, 1050), 1090);
    assert_int_equal(hy_sidecar_renew_at(1000, 1100, 10), 1080);
    assert_int_equal(hy_sidecar_renew_at(500, 500, 500), 500); /* no life: its end */
    assert_int_equal(hy_sidecar_renew_at(500, 400, 450), 400);
    assert_int_equal(hy_sidecar_renew_at(1000 - B, 1000, 2000), 1000);
    /* no overflow at the ends of time (certificates end before year 10000) */
    assert_true(hy_sidecar_renew_at(INT64_MIN, INT64_MAX, INT64_MIN) > 0);
    assert_true(hy_sidecar_renew_at(INT64_MIN, INT64_MAX, INT64_MAX) > 0);
    assert_true(hy_sidecar_renew_at(0, INT64_MAX, 0) > 253402300799);
    assert_int_equal(hy_sidecar_renew_retry_ms(INT64_MIN, INT64_MAX), 60000);

    assert_int_equal(hy_sidecar_renew_retry_ms(0, 86460), 60000);
    assert_int_equal(hy_sidecar_renew_retry_ms(0, 100), 5000);
    assert_int_equal(hy_sidecar_renew_retry_ms(0, 10), 1000);
    assert_int_equal(hy_sidecar_renew_retry_ms(0, 0), 1000);
}

/* ----- the control stream against a fake DP server ----- */

static uv_loop_t loop;
static uv_timer_t ticker; /* keeps uv_run(UV_RUN_ONCE) from blocking for long */
static char srv_ca[160], srv_cert[160], srv_key[160], token_path[160];

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static bool run_until(bool (*done)(void *), void *arg, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (!done(arg) && now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    return done(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(int ms)
{
    run_until(never, NULL, ms);
}

enum fake_mode { FAKE_SIGN, FAKE_REJECT };

/* What the fake zone saw and what it does. */
struct fake {
    struct hy_ws_server *srv;
    struct hy_ws_conn *conn;
    enum fake_mode mode;
    int64_t validity; /* of the leaves it signs */
    int opens, hellos, csrs, acks, nacks, closes, versions;
    char token[64], mesh[64], name[64], hello_version[32], ack[32], nack[512], reason[128];
    int code;
    char *csr;                        /* the last CSR (owned) */
    char v[8][HY_DP_VERSION_LEN + 1]; /* v[i]: the whole version of config "vI" */
};

static void fake_send(struct fake *f, const Hypha__V1__DpMessage *m)
{
    size_t len = hypha__v1__dp_message__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    hypha__v1__dp_message__pack(m, buf);
    assert_int_equal(hy_ws_send(f->conn, buf, len), 0);
    free(buf);
}

/* Sends a config whose certificate is for csr_pem. */
static void fake_config(struct fake *f, const char *csr_pem)
{
    char version[16];
    snprintf(version, sizeof(version), "v%d", ++f->versions);
    char *cert = leaf(&pki.inter, csr_pem, "spiffe://default/web", time(NULL), f->validity);
    Hypha__V1__DpConfig *c = config_new(version, cert, pki.inter.cert, pki.root.cert);
    free(cert);
    add_port(c, true, 11011);
    add_port(c, false, 33033);
    c->inbounds[0]->service = strdup("web");
    c->outbounds[0]->service = strdup("backend");
    c->outbounds[0]->connect_timeout = malloc(sizeof(Hypha__V1__Duration));
    hypha__v1__duration__init(c->outbounds[0]->connect_timeout);
    c->outbounds[0]->connect_timeout->has_seconds = 1;
    c->outbounds[0]->connect_timeout->seconds = 5;
    /* sent whole, in parts: the version the sidecar acks is the parts' */
    Hypha__V1__DpConfigUpdate *u = NULL;
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    snprintf(f->v[f->versions], sizeof(f->v[0]), "%s", u->version);
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_UPDATE;
    m.update = u;
    fake_send(f, &m);
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void fake_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct fake *f = ud;
    (void)peer;
    f->conn = c;
    f->opens++;
}

static void fake_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct fake *f = ud;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    assert_non_null(m);
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_HELLO: {
        f->hellos++;
        snprintf(f->token, sizeof(f->token), "%s", m->hello->token);
        snprintf(f->hello_version, sizeof(f->hello_version), "%s", m->hello->version);
        assert_non_null(m->hello->dataplane);
        snprintf(f->mesh, sizeof(f->mesh), "%s", m->hello->dataplane->meta->mesh);
        snprintf(f->name, sizeof(f->name), "%s", m->hello->dataplane->meta->name);
        free(f->csr);
        f->csr = strdup(m->hello->csr);
        if (f->mode == FAKE_REJECT) {
            Hypha__V1__DpReject r = HYPHA__V1__DP_REJECT__INIT;
            Hypha__V1__DpMessage out = HYPHA__V1__DP_MESSAGE__INIT;
            r.reason = (char *)"token revoked";
            out.msg_case = HYPHA__V1__DP_MESSAGE__MSG_REJECT;
            out.reject = &r;
            fake_send(f, &out);
            hy_ws_close(c, HY_WS_CLOSE_POLICY, "rejected");
        } else {
            fake_config(f, f->csr);
        }
        break;
    }
    case HYPHA__V1__DP_MESSAGE__MSG_CSR:
        f->csrs++;
        free(f->csr);
        f->csr = strdup(m->csr->csr);
        f->validity = 3600;
        fake_config(f, f->csr);
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_ACK:
        f->acks++;
        snprintf(f->ack, sizeof(f->ack), "%s", m->ack->version);
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_NACK:
        f->nacks++;
        snprintf(f->nack, sizeof(f->nack), "%s: %s", m->nack->version, m->nack->error);
        break;
    default:
        fail_msg("unexpected message %d", (int)m->msg_case);
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void fake_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct fake *f = ud;
    (void)c;
    f->conn = NULL;
    f->closes++;
    f->code = code;
    snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

static void fake_start(struct fake *f, const char *address)
{
    struct hy_ws_server_config cfg = {
        .loop = &loop,
        .address = address,
        .tls_cert = srv_cert,
        .tls_key = srv_key,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .cb = {fake_open, fake_message, fake_close},
        .ud = f,
    };
    assert_int_equal(hy_ws_server_new(&cfg, &f->srv), 0);
}

static void fake_stop(struct fake *f)
{
    hy_ws_server_stop(f->srv);
    run_for(150);
    hy_ws_server_free(f->srv);
    f->srv = NULL;
}

/* A blocking GET of the admin server, from a thread while the loop runs. */
struct get {
    char url[128];
    struct hy_httpc_response resp;
    int rc;
    atomic_bool done;
};

static void *get_thread(void *arg)
{
    struct get *g = arg;
    struct hy_httpc_request req = {.method = "GET", .url = g->url};
    char err[256];
    g->rc = hy_httpc_request(NULL, &req, &g->resp, err, sizeof(err));
    atomic_store(&g->done, true);
    return NULL;
}

static bool get_done(void *arg)
{
    return atomic_load(&((struct get *)arg)->done);
}

/* GETs path; returns the status, the body in *body (caller frees). */
static int admin_get(struct hy_sidecar *d, const char *path, char **body)
{
    struct get g = {0};
    snprintf(g.url, sizeof(g.url), "http://127.0.0.1:%d%s", hy_agent_admin_port(&d->a), path);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_thread, &g), 0);
    assert_true(run_until(get_done, &g, 5000));
    pthread_join(t, NULL);
    assert_int_equal(g.rc, 0);
    *body = strdup(g.resp.body.data ? g.resp.body.data : "");
    int status = g.resp.status;
    hy_httpc_response_fini(&g.resp);
    return status;
}

static void expect_get(struct hy_sidecar *d, const char *path, int status, const char *has,
                       const char *has_not)
{
    char *body;
    int got = admin_get(d, path, &body);
    if (got != status || (has && !strstr(body, has)) || (has_not && strstr(body, has_not)))
        fail_msg("GET %s: %d\n%s", path, got, body);
    free(body);
}

struct wait {
    int *counter;
    int want;
};

static bool reached(void *arg)
{
    struct wait *w = arg;
    return *w->counter >= w->want;
}

static void wait_for(int *counter, int want)
{
    struct wait w = {counter, want};
    if (!run_until(reached, &w, 10000))
        fail_msg("waited for %d, got %d", want, *counter);
}

static bool dp_closed(void *arg)
{
    return !((struct hy_sidecar *)arg)->a.open;
}

/* Ready, once the proxy's workers (their own threads: nothing on our loop
 * says when) have taken the config. */
static bool dp_ready_soon(struct hy_sidecar *d)
{
    char why[512];
    uint64_t end = now_ms() + 5000;
    while (!hy_sidecar_ready(d, why, sizeof(why)) && now_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return hy_sidecar_ready(d, why, sizeof(why));
}

static const char *wanted_status;

static bool status_has(void *arg)
{
    return strstr(((struct hy_sidecar *)arg)->a.status, wanted_status) != NULL;
}

static void wait_status(struct hy_sidecar *d, const char *want)
{
    wanted_status = want;
    if (!run_until(status_has, d, 10000))
        fail_msg("status: %s\nwanted: %s", d->a.status, want);
}

static struct hy_sidecar_cfg sidecar_cfg(const char *cp_address)
{
    struct hy_sidecar_cfg cfg = {
        .base =
            {
                .cp_addresses = {.v = calloc(1, sizeof(char *)), .n = 1},
                .ca_cert_file = strdup(srv_ca),
                .resource_file = strdup(DATA),
                .token_file = strdup(token_path),
                .log_level = HY_LOG_INFO,
                .workers = 2,
            },
    };
    assert_int_equal(hy_addr_parse("127.0.0.1:0", &cfg.base.admin_address, NULL, 0), 0);
    cfg.base.cp_addresses.v[0] = strdup(cp_address);
    return cfg;
}

static void sidecar_cfg_fini(struct hy_sidecar_cfg *cfg)
{
    free(cfg->base.cp_addresses.v[0]);
    free(cfg->base.cp_addresses.v);
    free(cfg->base.ca_cert_file);
    free(cfg->base.resource_file);
    free(cfg->base.token_file);
}

static void sidecar_close(struct hy_sidecar *d)
{
    hy_sidecar_stop(d);
    run_for(150);
    hy_sidecar_close(d);
}

static double metric(struct hy_series *s)
{
    return hy_series_value(s);
}

static void test_stream(void **state)
{
    (void)state;
    struct fake f = {.validity = 3600};
    fake_start(&f, "127.0.0.1:0");
    char url[64], address[32];
    int port = hy_ws_server_port(f.srv);
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d", port);
    snprintf(address, sizeof(address), "127.0.0.1:%d", port);
    write_file(token_path, "tok-123\n");
    struct hy_sidecar_cfg cfg = sidecar_cfg(url);
    struct hy_sidecar d;
    assert_int_equal(hy_sidecar_open(&d, &cfg, &loop), 0);

    /* Hello with the Dataplane, the token and a CSR; a config; Ack */
    wait_for(&f.acks, 1);
    assert_int_equal(f.hellos, 1);
    assert_string_equal(f.token, "tok-123");
    assert_string_equal(f.mesh, "default");
    assert_string_equal(f.name, "web-1");
    assert_string_equal(f.hello_version, HYPHA_VERSION);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(f.csr, &info), 0);
    assert_true(info.is_request);
    assert_string_equal(info.subject_cn, "web-1");
    hy_ca_info_fini(&info);
    assert_string_equal(f.ack, f.v[1]);
    assert_null(d.pending.key); /* the key of the CSR is now the certificate's */
    struct hy_sidecar_snapshot *v1 = hy_sidecar_snapshot_get(&d.a.current, NULL);
    assert_string_equal(v1->config->version, f.v[1]);
    char why[512];
    assert_true(dp_ready_soon(&d));
    assert_int_equal(metric(d.acks), 1);
    assert_true(metric(d.cert_expiry) == (double)v1->not_after);

    /* the admin server */
    char want[80];
    snprintf(want, sizeof(want), "\"ready\":true,\"version\":\"%s\"", f.v[1]);
    expect_get(&d, "/ready", 200, want, NULL);
    snprintf(want, sizeof(want), "\"version\":\"%s\"", f.v[1]);
    expect_get(&d, "/config", 200, want, "PRIVATE KEY");
    expect_get(&d, "/config", 200, "\"connectTimeout\":\"5s\"", NULL);
    expect_get(&d, "/metrics", 200, "\nhypha_dp_connected 1\n", NULL);
    expect_get(&d, "/metrics", 200, "hypha_dp_configs_total{result=\"ack\"} 1\n", NULL);
    expect_get(&d, "/metrics", 200, "\nprocess_open_fds ", NULL);
    expect_get(&d, "/metrics", 200, "\nhypha_dp_cert_expiry_timestamp_seconds ", NULL);
    expect_get(&d, "/nope", 404, "/ready", NULL);

    /* a certificate for another key: Nack, and v1 stays */
    struct hy_ca_pem stranger = {0};
    assert_int_equal(hy_ca_make_csr("web-1", &stranger), 0);
    fake_config(&f, stranger.cert);
    hy_ca_pem_fini(&stranger);
    wait_for(&f.nacks, 1);
    char nack[600];
    snprintf(nack, sizeof(nack),
             "%s: the certificate is not for this dataplane's key (it must be issued for the CSR "
             "of its last DpHello or DpCsr)",
             f.v[2]);
    assert_string_equal(f.nack, nack);
    struct hy_sidecar_snapshot *cur = hy_sidecar_snapshot_get(&d.a.current, NULL);
    assert_ptr_equal(cur, v1);
    hy_sidecar_snapshot_unref(cur);
    assert_int_equal(metric(d.nacks), 1);

    /* renewal: a certificate already past 80 % of its life (leaves start
     * 60 s in the past) makes the sidecar send a CSR for a new key at once;
     * the next config carries the new certificate */
    f.validity = 5;
    fake_config(&f, f.csr); /* v3: the same key as v1, a short life */
    wait_for(&f.csrs, 1);
    wait_for(&f.acks, 3); /* v3, and v4 with the new certificate */
    assert_string_equal(f.ack, f.v[4]);
    cur = hy_sidecar_snapshot_get(&d.a.current, NULL);
    assert_string_equal(cur->config->version, f.v[4]);
    assert_string_not_equal(cur->key, v1->key);
    assert_string_not_equal(cur->fingerprint, v1->fingerprint);
    assert_true(cur->not_after - cur->not_before == 3660);
    assert_null(d.pending.key);
    assert_int_equal(metric(d.renewals), 2); /* v1 -> v3 -> v4 */
    hy_sidecar_snapshot_unref(cur);
    run_for(200);
    assert_int_equal(f.csrs, 1); /* nothing more to ask for */

    /* the zone goes away: the config stays, ready stays */
    fake_stop(&f);
    assert_true(run_until(dp_closed, &d, 5000));
    assert_true(hy_sidecar_ready(&d, why, sizeof(why)));
    expect_get(&d, "/metrics", 200, "\nhypha_dp_connected 0\n", NULL);
    cur = hy_sidecar_snapshot_get(&d.a.current, NULL);
    assert_string_equal(cur->config->version, f.v[4]);
    hy_sidecar_snapshot_unref(cur);

    /* back, but rejecting: the config stays */
    f.mode = FAKE_REJECT;
    fake_start(&f, address);
    hy_ws_client_reconnect_now(d.a.ws);
    wait_for(&f.hellos, 2);
    wait_status(&d, "rejected by the zone control plane: token revoked");
    wait_for(&f.closes, 2);
    assert_true(hy_sidecar_ready(&d, why, sizeof(why)));

    /* accepting again, with a new token in the file: a new key, v5 */
    f.mode = FAKE_SIGN;
    write_file(token_path, "tok-456");
    hy_ws_client_reconnect_now(d.a.ws);
    wait_for(&f.acks, 4);
    assert_string_equal(f.token, "tok-456");
    assert_string_equal(f.ack, f.v[5]);
    assert_int_equal(metric(d.renewals), 3);

    /* shutdown: a clean 1000 close the zone can deregister on */
    int closes = f.closes;
    hy_agent_shutdown(&d.a);
    wait_for(&f.closes, closes + 1);
    assert_int_equal(f.code, 1000);
    assert_string_equal(f.reason, "dataplane shutting down");
    assert_true(run_until(dp_closed, &d, 5000));
    hy_sidecar_snapshot_unref(v1);
    sidecar_close(&d);
    sidecar_cfg_fini(&cfg);
    fake_stop(&f);
    free(f.csr);
    unlink(token_path);
}

/* Two zone replicas: the sidecar uses the first; when it goes away the
 * sidecar keeps its config, moves to the second, presents its token there
 * and takes its config; the metrics say where it is and that it moved. */
static void test_failover(void **state)
{
    (void)state;
    struct fake f1 = {.validity = 3600}, f2 = {.validity = 3600};
    fake_start(&f1, "127.0.0.1:0");
    fake_start(&f2, "127.0.0.1:0");
    char url1[64], url2[64], want[160];
    snprintf(url1, sizeof(url1), "wss://127.0.0.1:%d", hy_ws_server_port(f1.srv));
    snprintf(url2, sizeof(url2), "wss://127.0.0.1:%d", hy_ws_server_port(f2.srv));
    write_file(token_path, "tok-ha");
    struct hy_sidecar_cfg cfg = sidecar_cfg(url1);
    struct hy_strings *v = &cfg.base.cp_addresses;
    v->v = realloc(v->v, 2 * sizeof(char *));
    assert_non_null(v->v);
    v->v[v->n++] = strdup(url2);
    struct hy_sidecar d;
    assert_int_equal(hy_sidecar_open(&d, &cfg, &loop), 0);
    wait_for(&f1.acks, 1);
    assert_int_equal(f2.hellos, 0);
    assert_true(dp_ready_soon(&d));
    snprintf(want, sizeof(want), "\nhypha_dp_zone_address{address=\"%s\"} 1\n", url1);
    expect_get(&d, "/metrics", 200, want, NULL);
    expect_get(&d, "/metrics", 200, "\nhypha_dp_zone_failovers_total 0\n", NULL);

    fake_stop(&f1);
    wait_for(&f2.acks, 1);
    assert_int_equal(f2.hellos, 1);
    assert_string_equal(f2.token, "tok-ha");
    assert_true(dp_ready_soon(&d));
    snprintf(want, sizeof(want), "\nhypha_dp_zone_address{address=\"%s\"} 1\n", url2);
    expect_get(&d, "/metrics", 200, want, NULL);
    snprintf(want, sizeof(want), "\nhypha_dp_zone_address{address=\"%s\"} 0\n", url1);
    expect_get(&d, "/metrics", 200, want, NULL);
    expect_get(&d, "/metrics", 200, "\nhypha_dp_zone_failovers_total 1\n", NULL);
    assert_string_equal(hy_agent_cp_address(&d.a), url2);

    hy_agent_shutdown(&d.a);
    wait_for(&f2.closes, 1);
    assert_true(run_until(dp_closed, &d, 5000));
    sidecar_close(&d);
    free(v->v[1]);
    v->n = 1;
    sidecar_cfg_fini(&cfg);
    fake_stop(&f2);
    free(f1.csr);
    free(f2.csr);
    unlink(token_path);
}

/* No zone at all: not ready, and /ready says why. */
static void test_not_ready(void **state)
{
    (void)state;
    write_file(token_path, "tok");
    struct hy_sidecar_cfg cfg = sidecar_cfg("wss://127.0.0.1:1");
    struct hy_sidecar d;
    assert_int_equal(hy_sidecar_open(&d, &cfg, &loop), 0);
    wait_status(&d, "cannot reach the zone control plane at wss://127.0.0.1:1");
    char why[512];
    assert_false(hy_sidecar_ready(&d, why, sizeof(why)));
    assert_non_null(strstr(why, "no config from the zone control plane yet (cannot reach the "
                                "zone control plane at wss://127.0.0.1:1"));
    expect_get(&d, "/ready", 503, "{\"ready\":false,\"reason\":\"no config from the zone", NULL);
    expect_get(&d, "/config", 503, "No config yet", NULL);
    expect_get(&d, "/metrics", 200, "\nhypha_dp_connected 0\n", NULL);
    hy_agent_shutdown(&d.a); /* not connected: nothing to wait for */
    sidecar_close(&d);
    sidecar_cfg_fini(&cfg);

    /* what cannot start */
    struct hy_sidecar_cfg bad = sidecar_cfg("ws://127.0.0.1:1");
    assert_int_equal(hy_sidecar_open(&d, &bad, &loop), HY_EINVAL);
    sidecar_close(&d);
    sidecar_cfg_fini(&bad);
    bad = sidecar_cfg("wss://127.0.0.1:1");
    free(bad.base.token_file);
    bad.base.token_file = strdup("/nonexistent/token");
    assert_int_equal(hy_sidecar_open(&d, &bad, &loop), -ENOENT);
    sidecar_close(&d);
    sidecar_cfg_fini(&bad);
    bad = sidecar_cfg("wss://127.0.0.1:1");
    char *v[] = {"x=1"};
    bad.base.vars = vars_of(v, 1);
    free(bad.base.resource_file);
    bad.base.resource_file = strdup(path_in("dp.yaml"));
    write_file(bad.base.resource_file, dp_template);
    assert_int_equal(hy_sidecar_open(&d, &bad, &loop), HY_EINVAL);
    sidecar_close(&d);
    unlink(bad.base.resource_file);
    sidecar_cfg_fini(&bad);
    unlink(token_path);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* ----- setup ----- */

static int setup(void **state)
{
    (void)state;
    hy_log_threshold = getenv("HY_TEST_LOG") ? HY_LOG_DEBUG : HY_LOG_ERROR + 1;
    snprintf(dir, sizeof(dir), "/tmp/hypha-test-dp-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    make_pki();
    snprintf(srv_ca, sizeof(srv_ca), "%s", path_in("srv-ca.pem"));
    snprintf(srv_cert, sizeof(srv_cert), "%s", path_in("srv.pem"));
    snprintf(srv_key, sizeof(srv_key), "%s", path_in("srv-key.pem"));
    snprintf(token_path, sizeof(token_path), "%s", path_in("token"));
    static const char *const ips[] = {"127.0.0.1"};
    struct hy_ca_server_req req = {
        .ips = ips, .nips = 1, .now = time(NULL), .validity_seconds = 3600};
    struct hy_ca_pem ca = {0}, cert = {0};
    if (hy_ca_make_self_signed_server("Hypha test zone", &req, &ca, &cert) < 0)
        return -1;
    write_file(srv_ca, ca.cert);
    write_file(srv_cert, cert.cert);
    write_file(srv_key, cert.key);
    hy_ca_pem_fini(&ca);
    hy_ca_pem_fini(&cert);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &ticker);
    uv_timer_start(&ticker, tick, 10, 10);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free_pki();
    uv_close((uv_handle_t *)&ticker, NULL);
    uint64_t end = now_ms() + 3000;
    while (uv_run(&loop, UV_RUN_NOWAIT) && now_ms() < end)
        ;
    int rc = uv_loop_close(&loop);
    unlink(srv_ca);
    unlink(srv_cert);
    unlink(srv_key);
    rmdir(dir);
    if (rc != 0)
        fprintf(stderr, "uv_loop_close: %s (a handle was left open)\n", uv_strerror(rc));
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vars),       cmocka_unit_test(test_file),
        cmocka_unit_test(test_token),      cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_renew_time), cmocka_unit_test(test_stream),
        cmocka_unit_test(test_not_ready),  cmocka_unit_test(test_failover),
    };
    if (getenv("HY_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
