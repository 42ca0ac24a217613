/* hypha-cni: reads the CNI environment and the network configuration from
 * stdin, runs the command (cni.h), writes the result to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cni.h"
#include "log.h"
#include "poison.h"

int main(void)
{
    struct hy_buf in = {0}, out = {0};
    struct hy_cni_env env = {
        .command = getenv("CNI_COMMAND"),
        .containerid = getenv("CNI_CONTAINERID"),
        .netns = getenv("CNI_NETNS"),
        .ifname = getenv("CNI_IFNAME"),
        .args = getenv("CNI_ARGS"),
        .path = getenv("CNI_PATH"),
    };
    const char *lvl = getenv("HYPHA_CNI_LOG_LEVEL");
    if (lvl)
        hy_log_parse_level(lvl, &hy_log_threshold);
    char buf[8192];
    ssize_t r;
    /* VERSION may come with no stdin worth reading; the others need it. */
    while (in.len <= HY_CNI_CONF_MAX && (r = read(0, buf, sizeof(buf))) > 0)
        if (hy_buf_append(&in, buf, (size_t)r))
            break;
    int rc = hy_cni_run(&env, in.data ? in.data : "", in.len, &out);
    if (out.data)
        fputs(out.data, stdout);
    hy_buf_fini(&in);
    hy_buf_fini(&out);
    return rc;
}
