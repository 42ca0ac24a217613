/* hypha-cni's commands (CNI spec 1.0.0 "Execution Protocol"): ADD installs
 * the rules in the pod's namespace when the pod wants the mesh and returns
 * prevResult; CHECK verifies them; DEL removes whatever of ours is there;
 * VERSION lists what we speak. Errors are spec error objects. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cni.h"
#include "codec.h"
#include "error.h"
#include "log.h"
#include "poison.h"

#define SUPPORTED "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]"

static int error_result(struct hy_buf *out, const char *version, int code, const char *msg,
                        const char *details)
{
    hy_buf_printf(out, "{\"cniVersion\":");
    hy_codec_json_string(out, version, strlen(version));
    hy_buf_printf(out, ",\"code\":%d,\"msg\":", code);
    hy_codec_json_string(out, msg, strlen(msg));
    if (details) {
        hy_buf_puts(out, ",\"details\":");
        hy_codec_json_string(out, details, strlen(details));
    }
    hy_buf_puts(out, "}\n");
    hy_log(HY_LOG_ERROR, "cni", "%s%s%s", msg, details ? ": " : "", details ? details : "");
    return 1;
}

/* The value of key in CNI_ARGS ("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"),
 * copied into buf; NULL when absent. */
static const char *cni_arg(const char *args, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = args; p && *p;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
            snprintf(buf, size, "%.*s", (int)(n - klen - 1), p + klen + 1);
            return buf;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Whether this pod gets rules, and why not (for the log). */
static bool wanted(const struct hy_cni_conf *c, const char *args, const char **why)
{
    char ns[64], inj[32];
    if (cni_arg(args, "K8S_POD_NAMESPACE", ns, sizeof(ns)))
        for (size_t i = 0; i < c->n_exclude_namespaces; i++)
            if (!strcmp(ns, c->exclude_namespaces[i])) {
                *why = "its namespace is in excludeNamespaces";
                return false;
            }
    enum hy_cni_inject inject = c->inject;
    if (cni_arg(args, "HYPHA_SIDECAR_INJECTION", inj, sizeof(inj)))
        inject =
            !strcmp(inj, "enabled") || !strcmp(inj, "true") ? HY_CNI_INJECT_YES : HY_CNI_INJECT_NO;
    if (inject == HY_CNI_INJECT_NO) {
        *why = "its hypha.io/sidecar-injection annotation is not \"enabled\"";
        return false;
    }
    if (inject == HY_CNI_INJECT_UNSAID && !c->redirect_all_pods) {
        *why = "it is not annotated hypha.io/sidecar-injection: enabled";
        return false;
    }
    return true;
}

static int enter_netns(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "CNI_NETNS %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = setns(fd, CLONE_NEWNET) ? -errno : 0;
    if (rc)
        snprintf(err, errlen, "cannot enter network namespace %s: %s", path, strerror(-rc));
    close(fd);
    return rc;
}

int hy_cni_run(const struct hy_cni_env *env, const char *text, size_t len, struct hy_buf *out)
{
    const char *cmd = env->command;
    char err[768];
    if (!cmd || !*cmd)
        return error_result(out, HY_CNI_VERSION, HY_CNI_EENV, "CNI_COMMAND is not set",
                            "expected ADD, DEL, CHECK or VERSION");
    if (!strcmp(cmd, "VERSION")) {
        hy_buf_puts(out, "{\"cniVersion\":\"" HY_CNI_VERSION "\",\"supportedVersions\":" SUPPORTED
                         "}\n");
        return 0;
    }
    bool add = !strcmp(cmd, "ADD"), del = !strcmp(cmd, "DEL"), check = !strcmp(cmd, "CHECK");
    if (!add && !del && !check) {
        snprintf(err, sizeof(err), "CNI_COMMAND \"%.32s\" is not ADD, DEL, CHECK or VERSION", cmd);
        return error_result(out, HY_CNI_VERSION, HY_CNI_EENV, "unknown CNI command", err);
    }
    struct hy_cni_conf c;
    int code = hy_cni_conf_parse(text, len, &c, err, sizeof(err));
    if (code)
        return error_result(out, HY_CNI_VERSION, code, "invalid network configuration", err);
    int rc = 0;
    const char *why = NULL;
    if (check && (!strcmp(c.cni_version, "0.3.0") || !strcmp(c.cni_version, "0.3.1"))) {
        rc = error_result(out, c.cni_version, HY_CNI_EVERSION,
                          "CHECK needs cniVersion 0.4.0 or later", c.cni_version);
        goto out;
    }
    if ((add || check) && !c.prev_result) {
        rc = error_result(out, c.cni_version, HY_CNI_EINVALID, "invalid network configuration",
                          "prevResult: missing; hypha-cni runs chained after the network plugin "
                          "(bridge, ptp, ...) in a conflist");
        goto out;
    }
    if (!env->netns || !*env->netns) {
        if (del) /* DEL of a namespace already gone: nothing of ours is left */
            goto out;
        rc = error_result(out, c.cni_version, HY_CNI_EENV, "CNI_NETNS is not set",
                          "the runtime must name the pod's network namespace");
        goto out;
    }
    bool want = wanted(&c, env->args, &why);
    if (!del && !want) {
        hy_log(HY_LOG_INFO, "cni", "container %s: no rules, %s",
               env->containerid ? env->containerid : "?", why);
        goto pass;
    }
    if (enter_netns(env->netns, err, sizeof(err))) {
        if (del) /* the namespace is gone, and our rules with it */
            goto out;
        rc = error_result(out, c.cni_version, HY_CNI_EUNKNOWN, "cannot enter the pod's network",
                          err);
        goto out;
    }
    if (add)
        code = hy_tproxy_install(&c.tp, err, sizeof(err));
    else if (check)
        code = hy_tproxy_check(&c.tp, err, sizeof(err));
    else
        code = hy_tproxy_uninstall(&c.tp, err, sizeof(err));
    if (code) {
        rc = error_result(out, c.cni_version, HY_CNI_ERULES,
                          add     ? "installing the transparent-proxy rules failed"
                          : check ? "the transparent-proxy rules are not as installed"
                                  : "removing the transparent-proxy rules failed",
                          err);
        goto out;
    }
    hy_log(HY_LOG_INFO, "cni", "container %s: rules %s in %s",
           env->containerid ? env->containerid : "?",
           add     ? "installed"
           : check ? "checked"
                   : "removed",
           env->netns);
pass:
    /* ADD's result is the previous plugin's, unchanged; CHECK and DEL print
     * nothing on success. */
    if (add && (hy_json_write(c.prev_result, out) || hy_buf_puts(out, "\n"))) {
        out->len = 0;
        rc = error_result(out, c.cni_version, HY_CNI_EIO, "cannot write the result",
                          "out of memory");
    }
out:
    hy_cni_conf_fini(&c);
    return rc;
}
