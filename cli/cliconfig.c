/* hy_cliconfig: loading, checking, changing and saving the CLI's file of
 * control planes. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cliconfig.h"
#include "codec.h"
#include "error.h"
#include "http_client.h"
#include "poison.h"

char *hy_cliconfig_default_path(void)
{
    const char *home = getenv("HOME");
    if (!home || !home[0]) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !home[0])
        return NULL;
    char *path;
    if (asprintf(&path, "%s%s.hypha/config.yaml", home, home[strlen(home) - 1] == '/' ? "" : "/") <
        0)
        return NULL;
    return path;
}

static hy_cp *cp_new(void)
{
    hy_cp *cp = malloc(sizeof(*cp));
    if (cp)
        hypha__v1__cli_config__control_plane__init(cp);
    return cp;
}

static void cp_free(hy_cp *cp)
{
    if (cp)
        protobuf_c_message_free_unpacked(&cp->base, NULL);
}

/* Replaces *dst with a copy of src (NULL or "" clears it). */
static int set_str(char **dst, const char *src)
{
    char *c = NULL;
    if (src && src[0] && !(c = strdup(src)))
        return HY_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

static int builtin(struct hy_cliconfig *cfg)
{
    cfg->msg = malloc(sizeof(*cfg->msg));
    if (!cfg->msg)
        return HY_ENOMEM;
    hypha__v1__cli_config__init(cfg->msg);
    return hy_cliconfig_add(cfg, HY_CLICONFIG_DEFAULT_NAME, HY_CLICONFIG_DEFAULT_ADDRESS, NULL,
                            NULL, false);
}

static void check(const struct hy_cliconfig *cfg, struct hy_diag *diag)
{
    const Hypha__V1__CliConfig *m = cfg->msg;
    for (size_t i = 0; i < m->n_control_planes; i++) {
        const hy_cp *cp = m->control_planes[i];
        char field[64], why[256];
        if (!cp->name || !cp->name[0]) {
            snprintf(field, sizeof(field), "controlPlanes[%zu].name", i);
            hy_diag_add(diag, 0, 0, field, "required");
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (m->control_planes[j]->name && strcmp(m->control_planes[j]->name, cp->name) == 0) {
                snprintf(field, sizeof(field), "controlPlanes[%zu].name", i);
                hy_diag_add(diag, 0, 0, field, "\"%s\" is used twice", cp->name);
            }
        struct hy_httpc_url u;
        snprintf(field, sizeof(field), "controlPlanes[%zu].address", i);
        if (!cp->address || !cp->address[0])
            hy_diag_add(diag, 0, 0, field, "required");
        else if (hy_httpc_url_parse(cp->address, &u, why, sizeof(why)) < 0)
            hy_diag_add(diag, 0, 0, field, "%s", why);
        else
            hy_httpc_url_fini(&u);
    }
    if (m->current_control_plane && m->current_control_plane[0] &&
        !hy_cliconfig_find(cfg, m->current_control_plane))
        hy_diag_add(diag, 0, 0, "currentControlPlane", "no control plane is called \"%s\"",
                    m->current_control_plane);
}

static int read_all(const char *path, char **text, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct hy_buf b = {0};
    char chunk[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > HY_CODEC_MAX_BYTES) {
            rc = HY_ETOOBIG;
            break;
        }
        if ((rc = hy_buf_append(&b, chunk, (size_t)n)) < 0)
            break;
    }
    close(fd);
    if (rc < 0) {
        hy_buf_fini(&b);
        return rc;
    }
    *text = b.data;
    *len = b.len;
    return 0;
}

int hy_cliconfig_load(const char *path, struct hy_cliconfig *cfg, struct hy_diag *diag)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!(cfg->path = strdup(path)))
        return HY_ENOMEM;
    char *text = NULL;
    size_t len = 0;
    int rc = read_all(path, &text, &len);
    if (rc == -ENOENT)
        return builtin(cfg);
    if (rc < 0)
        return rc;
    cfg->exists = true;
    ProtobufCMessage *m = NULL;
    rc = hy_codec_decode_message(cfg->path, text ? text : "", len, NULL,
                                 &hypha__v1__cli_config__descriptor, &m, diag);
    free(text);
    if (rc < 0)
        return rc;
    cfg->msg = (Hypha__V1__CliConfig *)m;
    size_t before = diag->n;
    check(cfg, diag);
    return diag->n > before ? HY_EINVAL : 0;
}

/* mkdir -p for the directory part of path, new directories 0700. */
static int make_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return HY_ENOMEM;
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; rc == 0; p++) {
            if (*p != '/' && *p != '\0')
                continue;
            char c = *p;
            *p = '\0';
            if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                rc = -errno;
            *p = c;
            if (c == '\0')
                break;
        }
    }
    free(dir);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int hy_cliconfig_save(struct hy_cliconfig *cfg)
{
    struct hy_buf text = {0};
    int rc = hy_buf_puts(&text, "# hyphactl configuration: change it with "
                                "'hyphactl config control-planes add|switch|remove'\n");
    if (rc == 0)
        rc = hy_codec_encode_message(&cfg->msg->base, HY_FORMAT_YAML, &text);
    if (rc < 0)
        goto out_free_text;
    if ((rc = make_parent(cfg->path)) < 0)
        goto out_free_text;
    char *tmp;
    if (asprintf(&tmp, "%s.tmp%ld", cfg->path, (long)getpid()) < 0) {
        rc = HY_ENOMEM;
        goto out_free_text;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out_free_tmp;
    }
    if ((rc = write_all(fd, text.data, text.len)) == 0 && fchmod(fd, 0600) < 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, cfg->path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    else
        cfg->exists = true;
out_free_tmp:
    free(tmp);
out_free_text:
    hy_buf_fini(&text);
    return rc;
}

void hy_cliconfig_fini(struct hy_cliconfig *cfg)
{
    if (cfg->msg)
        protobuf_c_message_free_unpacked(&cfg->msg->base, NULL);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

static ssize_t index_of(const struct hy_cliconfig *cfg, const char *name)
{
    for (size_t i = 0; cfg->msg && i < cfg->msg->n_control_planes; i++) {
        const char *n = cfg->msg->control_planes[i]->name;
        if (n && strcmp(n, name) == 0)
            return (ssize_t)i;
    }
    return -1;
}

const hy_cp *hy_cliconfig_find(const struct hy_cliconfig *cfg, const char *name)
{
    ssize_t i = index_of(cfg, name);
    return i < 0 ? NULL : cfg->msg->control_planes[i];
}

const hy_cp *hy_cliconfig_current(const struct hy_cliconfig *cfg)
{
    const char *cur = cfg->msg ? cfg->msg->current_control_plane : NULL;
    return cur ? hy_cliconfig_find(cfg, cur) : NULL;
}

int hy_cliconfig_add(struct hy_cliconfig *cfg, const char *name, const char *address,
                     const char *ca_file, const char *token, bool overwrite)
{
    if (!name || !name[0] || !address || !address[0])
        return HY_EINVAL;
    ssize_t i = index_of(cfg, name);
    if (i >= 0 && !overwrite)
        return HY_EEXIST;
    hy_cp *cp = cp_new();
    if (!cp || set_str(&cp->name, name) < 0 || set_str(&cp->address, address) < 0 ||
        set_str(&cp->ca_cert_file, ca_file) < 0 || set_str(&cp->auth_token, token) < 0)
        goto out_nomem;
    Hypha__V1__CliConfig *m = cfg->msg;
    if (i >= 0) {
        cp_free(m->control_planes[i]);
        m->control_planes[i] = cp;
    } else {
        hy_cp **v = realloc(m->control_planes, (m->n_control_planes + 1) * sizeof(*v));
        if (!v)
            goto out_nomem;
        m->control_planes = v;
        m->control_planes[m->n_control_planes++] = cp;
    }
    return set_str(&m->current_control_plane, name);
out_nomem:
    cp_free(cp);
    return HY_ENOMEM;
}

int hy_cliconfig_switch(struct hy_cliconfig *cfg, const char *name)
{
    if (index_of(cfg, name) < 0)
        return HY_ENOTFOUND;
    return set_str(&cfg->msg->current_control_plane, name);
}

int hy_cliconfig_remove(struct hy_cliconfig *cfg, const char *name)
{
    ssize_t i = index_of(cfg, name);
    if (i < 0)
        return HY_ENOTFOUND;
    Hypha__V1__CliConfig *m = cfg->msg;
    cp_free(m->control_planes[i]);
    memmove(&m->control_planes[i], &m->control_planes[i + 1],
            (m->n_control_planes - (size_t)i - 1) * sizeof(*m->control_planes));
    m->n_control_planes--;
    const char *cur = m->current_control_plane;
    if (cur && strcmp(cur, name) == 0)
        return set_str(&m->current_control_plane,
                       m->n_control_planes ? m->control_planes[0]->name : NULL);
    return 0;
}
