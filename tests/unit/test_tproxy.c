/* The transparent-proxy rule set (tproxy/tproxy_rules.c) as exact text,
 * default and with every exclusion, IPv4 and IPv6; the setting parsers; and
 * hypha-cni's config reader and the commands that need no namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cni.h"
#include "error.h"
#include "tproxy.h"
#include "poison.h"

static char *rules(const struct hy_tproxy_cfg *cfg, int family)
{
    struct hy_buf b = {0};
    assert_int_equal(hy_tproxy_rules(cfg, family, &b), 0);
    return b.data;
}

static const char default_v4[] =
    "*nat\n"
    ":HYPHA_MESH_INBOUND - [0:0]\n"
    ":HYPHA_MESH_INBOUND_REDIRECT - [0:0]\n"
    ":HYPHA_MESH_OUTBOUND - [0:0]\n"
    ":HYPHA_MESH_OUTBOUND_REDIRECT - [0:0]\n"
    ":HYPHA_MESH_DNS - [0:0]\n"
    "-A PREROUTING -p tcp -j HYPHA_MESH_INBOUND\n"
    "-A OUTPUT -p udp -m udp --dport 53 -j HYPHA_MESH_DNS\n"
    "-A OUTPUT -p tcp -j HYPHA_MESH_OUTBOUND\n"
    "-A HYPHA_MESH_INBOUND -p tcp -j HYPHA_MESH_INBOUND_REDIRECT\n"
    "-A HYPHA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
    "-A HYPHA_MESH_OUTBOUND -s 127.0.0.6/32 -o lo -j RETURN\n"
    "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -m owner --uid-owner 5678 -j RETURN\n"
    "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 15053\n"
    "-A HYPHA_MESH_OUTBOUND ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 5678 -j "
    "HYPHA_MESH_INBOUND_REDIRECT\n"
    "-A HYPHA_MESH_OUTBOUND -o lo -m owner ! --uid-owner 5678 -j RETURN\n"
    "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 5678 -j RETURN\n"
    "-A HYPHA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN\n"
    "-A HYPHA_MESH_OUTBOUND -j HYPHA_MESH_OUTBOUND_REDIRECT\n"
    "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
    "-A HYPHA_MESH_DNS -m owner --uid-owner 5678 -j RETURN\n"
    "-A HYPHA_MESH_DNS -p udp -j REDIRECT --to-ports 15053\n"
    "COMMIT\n";

static void test_default_v4(void **state)
{
    (void)state;
    struct hy_tproxy_cfg cfg;
    hy_tproxy_cfg_default(&cfg);
    char *r = rules(&cfg, 4);
    assert_string_equal(r, default_v4);
    free(r);
}

static void test_default_v6(void **state)
{
    (void)state;
    struct hy_tproxy_cfg cfg;
    hy_tproxy_cfg_default(&cfg);
    char *r = rules(&cfg, 6);
    assert_string_equal(
        r, "*nat\n"
           ":HYPHA_MESH_INBOUND - [0:0]\n"
           ":HYPHA_MESH_INBOUND_REDIRECT - [0:0]\n"
           ":HYPHA_MESH_OUTBOUND - [0:0]\n"
           ":HYPHA_MESH_OUTBOUND_REDIRECT - [0:0]\n"
           ":HYPHA_MESH_DNS - [0:0]\n"
           "-A PREROUTING -p tcp -j HYPHA_MESH_INBOUND\n"
           "-A OUTPUT -p udp -m udp --dport 53 -j HYPHA_MESH_DNS\n"
           "-A OUTPUT -p tcp -j HYPHA_MESH_OUTBOUND\n"
           "-A HYPHA_MESH_INBOUND -p tcp -j HYPHA_MESH_INBOUND_REDIRECT\n"
           "-A HYPHA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
           "-A HYPHA_MESH_OUTBOUND -s ::6/128 -o lo -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -m owner --uid-owner 5678 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 15053\n"
           "-A HYPHA_MESH_OUTBOUND ! -d ::1/128 -o lo -m owner --uid-owner 5678 -j "
           "HYPHA_MESH_INBOUND_REDIRECT\n"
           "-A HYPHA_MESH_OUTBOUND -o lo -m owner ! --uid-owner 5678 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 5678 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d ::1/128 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -j HYPHA_MESH_OUTBOUND_REDIRECT\n"
           "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
           "-A HYPHA_MESH_DNS -m owner --uid-owner 5678 -j RETURN\n"
           "-A HYPHA_MESH_DNS -p udp -j REDIRECT --to-ports 15053\n"
           "COMMIT\n");
    free(r);
}

static void excluding(struct hy_tproxy_cfg *cfg)
{
    char err[128];
    hy_tproxy_cfg_default(cfg);
    cfg->port_outbound = 16001;
    cfg->port_inbound = 16006;
    cfg->port_dns = 16053;
    cfg->dp_uid = 1234;
    assert_int_equal(
        hy_tproxy_add_port(cfg->excl_in_ports, &cfg->n_excl_in_ports, "22", err, sizeof(err)), 0);
    assert_int_equal(
        hy_tproxy_add_port(cfg->excl_in_ports, &cfg->n_excl_in_ports, "22", err, sizeof(err)), 0);
    assert_int_equal(
        hy_tproxy_add_port(cfg->excl_out_ports, &cfg->n_excl_out_ports, "5432", err, sizeof(err)),
        0);
    assert_int_equal(hy_tproxy_add_cidr(cfg, "10.1.2.3", err, sizeof(err)), 0);
    assert_int_equal(hy_tproxy_add_cidr(cfg, "192.168.7.9/16", err, sizeof(err)), 0);
    assert_int_equal(hy_tproxy_add_cidr(cfg, "FD00:0::1/8", err, sizeof(err)), 0);
    assert_int_equal(hy_tproxy_add_uid(cfg, "0", err, sizeof(err)), 0);
}

static void test_exclusions_v4(void **state)
{
    (void)state;
    struct hy_tproxy_cfg cfg;
    excluding(&cfg);
    cfg.redirect_dns = false;
    char *r = rules(&cfg, 4);
    assert_string_equal(
        r, "*nat\n"
           ":HYPHA_MESH_INBOUND - [0:0]\n"
           ":HYPHA_MESH_INBOUND_REDIRECT - [0:0]\n"
           ":HYPHA_MESH_OUTBOUND - [0:0]\n"
           ":HYPHA_MESH_OUTBOUND_REDIRECT - [0:0]\n"
           "-A PREROUTING -p tcp -j HYPHA_MESH_INBOUND\n"
           "-A OUTPUT -p tcp -j HYPHA_MESH_OUTBOUND\n"
           "-A HYPHA_MESH_INBOUND -p tcp -m tcp --dport 22 -j RETURN\n"
           "-A HYPHA_MESH_INBOUND -p tcp -j HYPHA_MESH_INBOUND_REDIRECT\n"
           "-A HYPHA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n"
           "-A HYPHA_MESH_OUTBOUND -s 127.0.0.6/32 -o lo -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1234 -j "
           "HYPHA_MESH_INBOUND_REDIRECT\n"
           "-A HYPHA_MESH_OUTBOUND -o lo -m owner ! --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 5432 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d 10.1.2.3/32 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d 192.168.0.0/16 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -j HYPHA_MESH_OUTBOUND_REDIRECT\n"
           "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n"
           "COMMIT\n");
    free(r);
}

static void test_exclusions_v6(void **state)
{
    (void)state;
    struct hy_tproxy_cfg cfg;
    excluding(&cfg);
    cfg.redirect_inbound = false;
    char *r = rules(&cfg, 6);
    assert_string_equal(
        r, "*nat\n"
           ":HYPHA_MESH_OUTBOUND - [0:0]\n"
           ":HYPHA_MESH_OUTBOUND_REDIRECT - [0:0]\n"
           ":HYPHA_MESH_DNS - [0:0]\n"
           "-A OUTPUT -p udp -m udp --dport 53 -j HYPHA_MESH_DNS\n"
           "-A OUTPUT -p tcp -j HYPHA_MESH_OUTBOUND\n"
           "-A HYPHA_MESH_OUTBOUND -s ::6/128 -o lo -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -m owner --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 16053\n"
           "-A HYPHA_MESH_OUTBOUND -o lo -m owner ! --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -m owner --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -p tcp -m tcp --dport 5432 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d fd00::/8 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -d ::1/128 -j RETURN\n"
           "-A HYPHA_MESH_OUTBOUND -j HYPHA_MESH_OUTBOUND_REDIRECT\n"
           "-A HYPHA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n"
           "-A HYPHA_MESH_DNS -m owner --uid-owner 0 -j RETURN\n"
           "-A HYPHA_MESH_DNS -m owner --uid-owner 1234 -j RETURN\n"
           "-A HYPHA_MESH_DNS -p udp -j REDIRECT --to-ports 16053\n"
           "COMMIT\n");
    free(r);
}

static void test_bad_settings(void **state)
{
    (void)state;
    struct hy_tproxy_cfg cfg;
    char err[128];
    hy_tproxy_cfg_default(&cfg);
    assert_int_equal(
        hy_tproxy_add_port(cfg.excl_in_ports, &cfg.n_excl_in_ports, "0", err, sizeof(err)),
        HY_EINVAL);
    assert_string_equal(err, "\"0\" is not a port (1-65535)");
    assert_int_equal(
        hy_tproxy_add_port(cfg.excl_in_ports, &cfg.n_excl_in_ports, "65536", err, sizeof(err)),
        HY_EINVAL);
    assert_int_equal(
        hy_tproxy_add_port(cfg.excl_in_ports, &cfg.n_excl_in_ports, "8o", err, sizeof(err)),
        HY_EINVAL);
    assert_int_equal(hy_tproxy_add_cidr(&cfg, "10.0.0.0/33", err, sizeof(err)), HY_EINVAL);
    assert_int_equal(hy_tproxy_add_cidr(&cfg, "fd00::/129", err, sizeof(err)), HY_EINVAL);
    assert_int_equal(hy_tproxy_add_cidr(&cfg, "example.com", err, sizeof(err)), HY_EINVAL);
    assert_non_null(strstr(err, "\"example.com\" is not an IPv4 or IPv6 address or CIDR"));
    assert_int_equal(hy_tproxy_add_cidr(&cfg, "/8", err, sizeof(err)), HY_EINVAL);
    assert_int_equal(hy_tproxy_add_uid(&cfg, "-1", err, sizeof(err)), HY_EINVAL);
    assert_int_equal(cfg.n_excl_in_ports + cfg.n_excl_out_cidrs + cfg.n_excl_out_uids, 0);
    enum hy_tproxy_family_mode m;
    assert_int_equal(hy_tproxy_parse_family("ipv6", &m), 0);
    assert_int_equal(m, HY_TPROXY_IPV6);
    assert_int_equal(hy_tproxy_parse_family("both", &m), HY_EINVAL);
    for (int i = 0; i < HY_TPROXY_MAX_LIST; i++) {
        char p[8];
        snprintf(p, sizeof(p), "%d", 1000 + i);
        assert_int_equal(
            hy_tproxy_add_port(cfg.excl_out_ports, &cfg.n_excl_out_ports, p, err, sizeof(err)), 0);
    }
    assert_int_equal(
        hy_tproxy_add_port(cfg.excl_out_ports, &cfg.n_excl_out_ports, "9", err, sizeof(err)),
        HY_ETOOBIG);
}

/* ----- hypha-cni ----- */

#define PREV "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\"}],\"ips\":[]}"

static void test_cni_conf(void **state)
{
    (void)state;
    const char *text = "{\"cniVersion\":\"1.0.0\",\"name\":\"pods\",\"type\":\"hypha-cni\","
                       "\"redirectPortOutbound\":16001,\"dpUid\":1234,\"redirectDNS\":false,"
                       "\"excludeOutboundIPs\":[\"10.0.0.0/8\"],\"excludeInboundPorts\":[22],"
                       "\"excludeNamespaces\":[\"kube-system\"],\"someOtherPluginKey\":{\"x\":1},"
                       "\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":{"
                       "\"kuma.io/sidecar-injection\":\"enabled\","
                       "\"traffic.hypha.io/exclude-outbound-ports\":\"5432, 6379\"}},"
                       "\"prevResult\":" PREV "}";
    struct hy_cni_conf c;
    char err[256];
    assert_int_equal(hy_cni_conf_parse(text, strlen(text), &c, err, sizeof(err)), 0);
    assert_string_equal(c.cni_version, "1.0.0");
    assert_int_equal(c.tp.port_outbound, 16001);
    assert_int_equal(c.tp.port_inbound, 15006);
    assert_int_equal(c.tp.dp_uid, 1234);
    assert_false(c.tp.redirect_dns);
    assert_int_equal(c.tp.n_excl_out_cidrs, 1);
    assert_string_equal(c.tp.excl_out_cidrs[0].text, "10.0.0.0/8");
    assert_int_equal(c.tp.n_excl_in_ports, 1);
    assert_int_equal(c.tp.n_excl_out_ports, 2);
    assert_int_equal(c.tp.excl_out_ports[1], 6379);
    assert_int_equal(c.inject, HY_CNI_INJECT_YES);
    assert_int_equal(c.n_exclude_namespaces, 1);
    struct hy_buf b = {0};
    assert_int_equal(hy_json_write(c.prev_result, &b), 0);
    assert_string_equal(b.data, PREV);
    hy_buf_fini(&b);
    hy_cni_conf_fini(&c);
}

static void bad_conf(const char *text, int code, const char *msg)
{
    struct hy_cni_conf c;
    char err[256] = "";
    assert_int_equal(hy_cni_conf_parse(text, strlen(text), &c, err, sizeof(err)), code);
    if (!strstr(err, msg))
        fail_msg("for %s: expected \"%s\" in \"%s\"", text, msg, err);
    assert_null(c.root);
    hy_cni_conf_fini(&c);
}

static void test_cni_conf_bad(void **state)
{
    (void)state;
    bad_conf("{\"cniVersion\":", HY_CNI_EDECODE, "not valid JSON");
    bad_conf("", HY_CNI_EDECODE, "not valid JSON");
    bad_conf("[1]", HY_CNI_EINVALID, "expected a JSON object");
    bad_conf("{\"name\":\"a\",\"type\":\"b\"}", HY_CNI_EINVALID, "cniVersion: missing");
    bad_conf("{\"cniVersion\":\"9.9.9\",\"name\":\"a\",\"type\":\"b\"}", HY_CNI_EVERSION,
             "cniVersion \"9.9.9\" is not supported");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"type\":\"b\"}", HY_CNI_EINVALID, "name: missing");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\"}", HY_CNI_EINVALID, "type: missing");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"redirectPortInbound\":"
             "\"15006\"}",
             HY_CNI_EINVALID, "redirectPortInbound: expected a non-negative whole number");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"redirectPortInbound\":0}",
             HY_CNI_EINVALID, "redirectPortInbound: not a port");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"excludeOutboundIPs\":"
             "[\"10.0.0.0/8\",\"nope\"]}",
             HY_CNI_EINVALID, "excludeOutboundIPs[1]: \"nope\" is not an IPv4 or IPv6");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"redirectDNS\":\"yes\"}",
             HY_CNI_EINVALID, "redirectDNS: expected true or false");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"prevResult\":[]}",
             HY_CNI_EINVALID, "prevResult: expected an object");
    bad_conf("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"b\",\"runtimeConfig\":{"
             "\"io.kubernetes.cri.pod-annotations\":{"
             "\"traffic.kuma.io/exclude-inbound-ports\":\"80,x\"}}}",
             HY_CNI_EINVALID, "exclude-inbound-ports\"]: \"x\" is not a port");
}

static void test_cni_run_no_netns(void **state)
{
    (void)state;
    struct hy_buf out = {0};
    struct hy_cni_env env = {.command = "VERSION"};
    assert_int_equal(hy_cni_run(&env, "", 0, &out), 0);
    assert_string_equal(out.data, "{\"cniVersion\":\"1.0.0\",\"supportedVersions\":"
                                  "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}\n");
    hy_buf_fini(&out);

    env.command = "ADD";
    const char *bad = "{\"cniVersion\":\"1.0.0\",\"name\":\"a\"}";
    assert_int_equal(hy_cni_run(&env, bad, strlen(bad), &out), 1);
    assert_string_equal(out.data, "{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"invalid network "
                                  "configuration\",\"details\":\"type: missing: the plugin's "
                                  "name (hypha-cni)\"}\n");
    hy_buf_fini(&out);

    /* Not annotated: no namespace is entered, prevResult comes back. */
    const char *plain = "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"hypha-cni\","
                        "\"prevResult\":" PREV "}";
    env.netns = "/nonexistent/netns";
    assert_int_equal(hy_cni_run(&env, plain, strlen(plain), &out), 0);
    assert_string_equal(out.data, PREV "\n");
    hy_buf_fini(&out);

    /* Annotated through CNI_ARGS but in an excluded namespace, or opted
     * out by annotation: still no namespace entered. */
    env.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;HYPHA_SIDECAR_INJECTION=enabled";
    const char *excl = "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"hypha-cni\","
                       "\"excludeNamespaces\":[\"kube-system\"],\"prevResult\":" PREV "}";
    assert_int_equal(hy_cni_run(&env, excl, strlen(excl), &out), 0);
    assert_string_equal(out.data, PREV "\n");
    hy_buf_fini(&out);
    env.args = NULL;
    const char *optout = "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"hypha-cni\","
                         "\"redirectAllPods\":true,\"runtimeConfig\":{"
                         "\"io.kubernetes.cri.pod-annotations\":{"
                         "\"hypha.io/sidecar-injection\":\"disabled\"}},\"prevResult\":" PREV "}";
    assert_int_equal(hy_cni_run(&env, optout, strlen(optout), &out), 0);
    assert_string_equal(out.data, PREV "\n");
    hy_buf_fini(&out);

    /* Annotated and wanted: entering a namespace that does not exist is
     * error 3, not a silent pass. */
    env.args = "HYPHA_SIDECAR_INJECTION=enabled";
    assert_int_equal(hy_cni_run(&env, plain, strlen(plain), &out), 1);
    assert_non_null(strstr(out.data, "\"code\":3"));
    assert_non_null(strstr(out.data, "/nonexistent/netns"));
    hy_buf_fini(&out);

    /* Annotated, chained without prevResult: refused. */
    env.args = "K8S_POD_NAME=a;HYPHA_SIDECAR_INJECTION=enabled";
    const char *noprev = "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"type\":\"hypha-cni\"}";
    assert_int_equal(hy_cni_run(&env, noprev, strlen(noprev), &out), 1);
    assert_non_null(strstr(out.data, "prevResult: missing"));
    hy_buf_fini(&out);

    /* DEL of a namespace that is gone succeeds. */
    env.command = "DEL";
    assert_int_equal(hy_cni_run(&env, noprev, strlen(noprev), &out), 0);
    assert_null(out.data);

    env.command = "BOGUS";
    assert_int_equal(hy_cni_run(&env, noprev, strlen(noprev), &out), 1);
    assert_non_null(strstr(out.data, "\"code\":4"));
    hy_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_v4),    cmocka_unit_test(test_default_v6),
        cmocka_unit_test(test_exclusions_v4), cmocka_unit_test(test_exclusions_v6),
        cmocka_unit_test(test_bad_settings),  cmocka_unit_test(test_cni_conf),
        cmocka_unit_test(test_cni_conf_bad),  cmocka_unit_test(test_cni_run_no_netns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
