/* Server certificates of a control plane's own TLS listeners (KDS, the DP
 * server): the operator's, or one made at first start in the data dir with
 * its own CA, which the other side is told to trust. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "cp.h"
#include "error.h"
#include "log.h"
#include "poison.h"

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    chmod(path, mode);
    int rc = fputs(text, f) < 0 ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int hy_cp_server_cert(struct hy_cp *cp, const char *subdir, const char *what, const char *hint,
                      const char *given_cert, const char *given_key, const struct hy_addr *addr,
                      char *cert, char *key, size_t size)
{
    if (given_cert && given_key) {
        snprintf(cert, size, "%s", given_cert);
        snprintf(key, size, "%s", given_key);
        return 0;
    }
    char dir[4096], ca_path[4200], cn[64];
    hy_cp_path(cp, subdir, dir, sizeof(dir));
    snprintf(cert, size, "%s/server.pem", dir);
    snprintf(key, size, "%s/server-key.pem", dir);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
        return 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    const char *dns[] = {"localhost", host};
    char bind_ip[300] = "";
    const char *ips[3] = {"127.0.0.1", "::1", NULL};
    size_t nips = 2;
    if (addr->kind == HY_ADDR_IPV4 || addr->kind == HY_ADDR_IPV6) {
        snprintf(bind_ip, sizeof(bind_ip), "%s", addr->host);
        if (strcmp(bind_ip, "127.0.0.1") && strcmp(bind_ip, "::1") && strcmp(bind_ip, "0.0.0.0") &&
            strcmp(bind_ip, "::"))
            ips[nips++] = bind_ip;
    }
    struct hy_ca_server_req req = {.dns = dns,
                                   .ndns = strcmp(host, "localhost") ? 2 : 1,
                                   .ips = ips,
                                   .nips = nips,
                                   .now = time(NULL),
                                   .validity_seconds = 10LL * 365 * 86400};
    struct hy_ca_pem ca = {0}, leaf = {0};
    snprintf(cn, sizeof(cn), "Hypha %s CA", what);
    int rc = hy_ca_make_self_signed_server(cn, &req, &ca, &leaf);
    if (rc == 0 && !(rc = write_file(ca_path, ca.cert, 0644)) &&
        !(rc = write_file(key, leaf.key, 0600)))
        rc = write_file(cert, leaf.cert, 0644);
    hy_ca_pem_fini(&ca);
    hy_ca_pem_fini(&leaf);
    if (rc == 0)
        hy_log(HY_LOG_INFO, cp->component, "generated the %s certificate %s; %s %s", what, cert,
               hint, ca_path);
    else
        hy_log(HY_LOG_ERROR, cp->component, "cannot make the %s certificate in %s: %s", what, dir,
               hy_strerror(rc));
    return rc;
}
