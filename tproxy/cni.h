/* hypha-cni, a chained CNI plugin (spec 1.0.0, and 0.3.x/0.4.0 configs):
 * after the network plugin has set up a pod, it installs the transparent-
 * proxy rules (tproxy.h) in the pod's network namespace when the pod is
 * annotated for the mesh, passes prevResult through, checks (CHECK) and
 * removes (DEL) them. */
#ifndef HY_CNI_H
#define HY_CNI_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "tproxy.h"

#define HY_CNI_VERSION "1.0.0"
#define HY_CNI_MAX_NAMESPACES 32
#define HY_CNI_CONF_MAX (1u << 20) /* bytes of config on stdin */

/* CNI error codes (spec "Error"). */
enum hy_cni_code {
    HY_CNI_EVERSION = 1, /* incompatible CNI version */
    HY_CNI_EFIELD = 2,   /* unsupported field in network configuration */
    HY_CNI_EUNKNOWN = 3, /* container unknown or does not exist */
    HY_CNI_EENV = 4,     /* invalid necessary environment variables */
    HY_CNI_EIO = 5,      /* I/O failure */
    HY_CNI_EDECODE = 6,  /* failed to decode content */
    HY_CNI_EINVALID = 7, /* invalid network config */
    HY_CNI_ERULES = 100, /* ours: installing, checking or removing rules failed */
};

/* Whether the pod asked for the mesh, from the annotations the runtime
 * passes (runtimeConfig "io.kubernetes.cri.pod-annotations"). */
enum hy_cni_inject { HY_CNI_INJECT_UNSAID, HY_CNI_INJECT_NO, HY_CNI_INJECT_YES };

struct hy_cni_conf {
    char cni_version[16];
    struct hy_tproxy_cfg tp;   /* plugin settings, then the pod's own exclusions */
    bool redirect_all_pods;    /* no annotation needed (a network only for the mesh) */
    enum hy_cni_inject inject; /* from runtimeConfig's pod annotations */
    char exclude_namespaces[HY_CNI_MAX_NAMESPACES][64]; /* pods here never get rules */
    size_t n_exclude_namespaces;
    struct hy_json *root;              /* owned: the whole config */
    const struct hy_json *prev_result; /* borrowed from root; NULL when absent */
};

/* Parses the network configuration a runtime writes to stdin. Returns 0, or
 * a hy_cni_code with err naming the field and what is wrong ("redirectPort
 * Outbound: \"x\" is not a port (1-65535)"); out is then empty. Release
 * with hy_cni_conf_fini either way. */
int hy_cni_conf_parse(const char *text, size_t len, struct hy_cni_conf *out, char *err,
                      size_t errlen);
void hy_cni_conf_fini(struct hy_cni_conf *c);

/* The CNI environment (spec "Parameters"), borrowed. */
struct hy_cni_env {
    const char *command, *containerid, *netns, *ifname, *args, *path;
};

/* Runs one CNI command: config text from stdin, result or error JSON
 * appended to out (stdout). Returns the exit code: 0, or 1 with a spec
 * error object in out. Enters env->netns for ADD, CHECK and DEL. */
int hy_cni_run(const struct hy_cni_env *env, const char *text, size_t len, struct hy_buf *out);

#endif
