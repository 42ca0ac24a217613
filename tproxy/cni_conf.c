/* hypha-cni's network configuration: the CNI fields it needs, its own
 * settings (ports, uid, exclusions), the pod's annotations and prevResult,
 * read with the shared JSON reader (common/json.h). Unknown fields are left
 * alone: a conflist carries other plugins' keys too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "error.h"
#include "poison.h"

#define ANNOTATIONS "io.kubernetes.cri.pod-annotations"

static int fail(char *err, size_t errlen, const char *field, const char *what)
{
    snprintf(err, errlen, "%s: %s", field, what);
    return HY_CNI_EINVALID;
}

/* The text of a number, or NULL with err set. */
static const char *number(const struct hy_json *v, const char *field, char *err, size_t errlen)
{
    if (v->kind != HY_JSON_SCALAR || v->quoted || !v->value[0] || v->value[0] == '-' ||
        strspn(v->value, "0123456789") != strlen(v->value)) {
        fail(err, errlen, field, "expected a non-negative whole number");
        return NULL;
    }
    return v->value;
}

static int get_port(const struct hy_json *root, const char *key, uint16_t *out, char *err,
                    size_t errlen)
{
    const struct hy_json *v = hy_json_get(root, key);
    uint64_t n;
    if (!v)
        return 0;
    const char *s = number(v, key, err, errlen);
    if (!s)
        return HY_CNI_EINVALID;
    if (!hy_tproxy_parse_uint(s, 1, 65535, &n))
        return fail(err, errlen, key, "not a port (1-65535)");
    *out = (uint16_t)n;
    return 0;
}

static int get_bool(const struct hy_json *root, const char *key, bool *out, char *err,
                    size_t errlen)
{
    const struct hy_json *v = hy_json_get(root, key);
    if (!v)
        return 0;
    if (v->kind != HY_JSON_SCALAR || v->quoted ||
        (strcmp(v->value, "true") && strcmp(v->value, "false")))
        return fail(err, errlen, key, "expected true or false");
    *out = v->value[0] == 't';
    return 0;
}

/* An array of numbers (ports, uids) or strings (addresses), each handed to
 * add, which explains its own refusals. */
static int get_list(struct hy_cni_conf *c, const char *key, bool numbers,
                    int (*add)(struct hy_cni_conf *c, const char *s, char *why, size_t n),
                    char *err, size_t errlen)
{
    const struct hy_json *v = hy_json_get(c->root, key);
    char why[160];
    if (!v)
        return 0;
    if (v->kind != HY_JSON_ARRAY)
        return fail(err, errlen, key,
                    numbers ? "expected an array of numbers" : "expected an array of strings");
    for (size_t i = 0; i < v->n; i++) {
        const struct hy_json *e = v->items[i];
        char field[96];
        snprintf(field, sizeof(field), "%s[%zu]", key, i);
        const char *s = numbers ? number(e, field, err, errlen)
                                : (e->kind == HY_JSON_SCALAR && e->quoted ? e->value : NULL);
        if (!s)
            return numbers ? HY_CNI_EINVALID : fail(err, errlen, field, "expected a string");
        if (add(c, s, why, sizeof(why)))
            return fail(err, errlen, field, why);
    }
    return 0;
}

static int add_in_port(struct hy_cni_conf *c, const char *s, char *why, size_t n)
{
    return hy_tproxy_add_port(c->tp.excl_in_ports, &c->tp.n_excl_in_ports, s, why, n);
}

static int add_out_port(struct hy_cni_conf *c, const char *s, char *why, size_t n)
{
    return hy_tproxy_add_port(c->tp.excl_out_ports, &c->tp.n_excl_out_ports, s, why, n);
}

static int add_cidr(struct hy_cni_conf *c, const char *s, char *why, size_t n)
{
    return hy_tproxy_add_cidr(&c->tp, s, why, n);
}

static int add_uid(struct hy_cni_conf *c, const char *s, char *why, size_t n)
{
    return hy_tproxy_add_uid(&c->tp, s, why, n);
}

static int add_namespace(struct hy_cni_conf *c, const char *s, char *why, size_t n)
{
    if (c->n_exclude_namespaces >= HY_CNI_MAX_NAMESPACES || !*s ||
        strlen(s) >= sizeof(c->exclude_namespaces[0])) {
        snprintf(why, n, "\"%.64s\": at most %d namespace names of 1-63 characters", s,
                 HY_CNI_MAX_NAMESPACES);
        return HY_EINVAL;
    }
    snprintf(c->exclude_namespaces[c->n_exclude_namespaces++], sizeof(c->exclude_namespaces[0]),
             "%s", s);
    return 0;
}

/* A comma-separated annotation ("8080,9090") through add. */
static int annotation_list(struct hy_cni_conf *c, const char *key, const char *value,
                           int (*add)(struct hy_cni_conf *c, const char *s, char *why, size_t n),
                           char *err, size_t errlen)
{
    char *copy = strdup(value), *save = NULL, why[160], field[160];
    int rc = 0;
    if (!copy)
        return fail(err, errlen, key, "out of memory");
    for (char *tok = strtok_r(copy, ", ", &save); tok && !rc; tok = strtok_r(NULL, ", ", &save))
        if (add(c, tok, why, sizeof(why))) {
            snprintf(field, sizeof(field), "runtimeConfig.%s[\"%s\"]", ANNOTATIONS, key);
            rc = fail(err, errlen, field, why);
        }
    free(copy);
    return rc;
}

/* The annotation under hypha.io/ or, as Kuma names it, kuma.io/. */
static const char *annotation(const struct hy_json *ann, const char *prefix, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "%shypha.io/%s", prefix, name);
    const char *v = hy_json_get_str(ann, key);
    if (v)
        return v;
    snprintf(key, sizeof(key), "%skuma.io/%s", prefix, name);
    return hy_json_get_str(ann, key);
}

static int read_annotations(struct hy_cni_conf *c, char *err, size_t errlen)
{
    const struct hy_json *rc = hy_json_get(c->root, "runtimeConfig");
    if (!rc)
        return 0;
    if (rc->kind != HY_JSON_OBJECT)
        return fail(err, errlen, "runtimeConfig", "expected an object");
    const struct hy_json *ann = hy_json_get(rc, ANNOTATIONS);
    if (!ann)
        return 0;
    if (ann->kind != HY_JSON_OBJECT)
        return fail(err, errlen, "runtimeConfig." ANNOTATIONS, "expected an object");
    const char *inj = annotation(ann, "", "sidecar-injection");
    if (inj)
        c->inject =
            !strcmp(inj, "enabled") || !strcmp(inj, "true") ? HY_CNI_INJECT_YES : HY_CNI_INJECT_NO;
    static const struct {
        const char *name;
        int (*add)(struct hy_cni_conf *, const char *, char *, size_t);
    } lists[] = {
        {"exclude-inbound-ports", add_in_port},
        {"exclude-outbound-ports", add_out_port},
        {"exclude-outbound-ips", add_cidr},
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        const char *v = annotation(ann, "traffic.", lists[i].name);
        int r = v ? annotation_list(c, lists[i].name, v, lists[i].add, err, errlen) : 0;
        if (r)
            return r;
    }
    return 0;
}

int hy_cni_conf_parse(const char *text, size_t len, struct hy_cni_conf *out, char *err,
                      size_t errlen)
{
    char why[256];
    int rc;
    memset(out, 0, sizeof(*out));
    hy_tproxy_cfg_default(&out->tp);
    if (len > HY_CNI_CONF_MAX) {
        snprintf(err, errlen, "network configuration: over %u bytes", HY_CNI_CONF_MAX);
        return HY_CNI_EDECODE;
    }
    if (hy_json_parse(text, len, &out->root, why, sizeof(why))) {
        snprintf(err, errlen, "network configuration is not valid JSON: %s", why);
        return HY_CNI_EDECODE;
    }
    if (out->root->kind != HY_JSON_OBJECT) {
        rc = fail(err, errlen, "network configuration", "expected a JSON object");
        goto out_fail;
    }
    const char *ver = hy_json_get_str(out->root, "cniVersion");
    if (!ver) {
        rc = fail(err, errlen, "cniVersion", "missing (e.g. \"1.0.0\")");
        goto out_fail;
    }
    if (strcmp(ver, "0.3.0") && strcmp(ver, "0.3.1") && strcmp(ver, "0.4.0") &&
        strcmp(ver, "1.0.0")) {
        snprintf(err, errlen, "cniVersion \"%.32s\" is not supported (0.3.0, 0.3.1, 0.4.0, 1.0.0)",
                 ver);
        rc = HY_CNI_EVERSION;
        goto out_fail;
    }
    snprintf(out->cni_version, sizeof(out->cni_version), "%s", ver);
    if (!hy_json_get_str(out->root, "name")) {
        rc = fail(err, errlen, "name", "missing: the network's name");
        goto out_fail;
    }
    if (!hy_json_get_str(out->root, "type")) {
        rc = fail(err, errlen, "type", "missing: the plugin's name (hypha-cni)");
        goto out_fail;
    }
    const char *fam = hy_json_get_str(out->root, "ipFamilyMode");
    if (fam && hy_tproxy_parse_family(fam, &out->tp.family_mode)) {
        rc = fail(err, errlen, "ipFamilyMode", "expected dualstack, ipv4 or ipv6");
        goto out_fail;
    }
    const struct hy_json *uidv = hy_json_get(out->root, "dpUid");
    uint64_t uid;
    if (uidv) {
        const char *s = number(uidv, "dpUid", err, errlen);
        if (!s || !hy_tproxy_parse_uint(s, 0, UINT32_MAX - 1, &uid)) {
            rc = s ? fail(err, errlen, "dpUid", "not a uid") : HY_CNI_EINVALID;
            goto out_fail;
        }
        out->tp.dp_uid = (uint32_t)uid;
    }
    if ((rc = get_port(out->root, "redirectPortOutbound", &out->tp.port_outbound, err, errlen)) ||
        (rc = get_port(out->root, "redirectPortInbound", &out->tp.port_inbound, err, errlen)) ||
        (rc = get_port(out->root, "redirectPortDNS", &out->tp.port_dns, err, errlen)) ||
        (rc = get_bool(out->root, "redirectInbound", &out->tp.redirect_inbound, err, errlen)) ||
        (rc = get_bool(out->root, "redirectDNS", &out->tp.redirect_dns, err, errlen)) ||
        (rc = get_bool(out->root, "redirectAllPods", &out->redirect_all_pods, err, errlen)) ||
        (rc = get_list(out, "excludeInboundPorts", true, add_in_port, err, errlen)) ||
        (rc = get_list(out, "excludeOutboundPorts", true, add_out_port, err, errlen)) ||
        (rc = get_list(out, "excludeOutboundIPs", false, add_cidr, err, errlen)) ||
        (rc = get_list(out, "excludeOutboundUids", true, add_uid, err, errlen)) ||
        (rc = get_list(out, "excludeNamespaces", false, add_namespace, err, errlen)) ||
        (rc = read_annotations(out, err, errlen)))
        goto out_fail;
    out->prev_result = hy_json_get(out->root, "prevResult");
    if (out->prev_result && out->prev_result->kind != HY_JSON_OBJECT) {
        rc = fail(err, errlen, "prevResult", "expected an object (the previous plugin's result)");
        goto out_fail;
    }
    return 0;
out_fail:
    hy_cni_conf_fini(out);
    return rc;
}

void hy_cni_conf_fini(struct hy_cni_conf *c)
{
    hy_json_free(c->root);
    c->root = NULL;
    c->prev_result = NULL;
}
