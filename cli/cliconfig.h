/* The CLI's configuration file (~/.hypha/config.yaml, proto/cli.proto): the
 * control planes hyphactl knows and the one it talks to. Read and written
 * through the codec, so the file is ordinary Hypha YAML. */
#ifndef HY_CLI_CLICONFIG_H
#define HY_CLI_CLICONFIG_H

#include <stdbool.h>

#include "cli.pb-c.h"
#include "diag.h"

#define HY_CLICONFIG_DEFAULT_NAME "local"
#define HY_CLICONFIG_DEFAULT_ADDRESS "http://127.0.0.1:5681"

typedef Hypha__V1__CliConfig__ControlPlane hy_cp;

struct hy_cliconfig {
    char *path;                /* owned */
    Hypha__V1__CliConfig *msg; /* owned */
    bool exists;               /* the file was there when loaded */
};

/* The default file: $HOME/.hypha/config.yaml (the password database's home
 * when HOME is unset). Returns a malloc'd path, or NULL if no home is known
 * or memory runs out. */
char *hy_cliconfig_default_path(void);

/* Loads path (copied). A missing file gives the built-in configuration: one
 * control plane "local" at http://127.0.0.1:5681, current. Returns 0;
 * HY_EINVAL with causes in diag for a malformed file (unknown fields,
 * duplicate or empty names, bad addresses, an unknown current control
 * plane); -errno if it cannot be read; HY_ENOMEM. cfg is safe to fini in
 * every case. */
int hy_cliconfig_load(const char *path, struct hy_cliconfig *cfg, struct hy_diag *diag);

/* Writes the configuration back, creating its directory (mode 0700) and the
 * file (mode 0600, as it can hold tokens) by writing a temporary file and
 * renaming it over the old one. 0 or -errno / HY_ENOMEM. */
int hy_cliconfig_save(struct hy_cliconfig *cfg);
void hy_cliconfig_fini(struct hy_cliconfig *cfg);

/* The control plane called name, or NULL. Borrowed from cfg. */
const hy_cp *hy_cliconfig_find(const struct hy_cliconfig *cfg, const char *name);
/* The current control plane, or NULL when none is configured. */
const hy_cp *hy_cliconfig_current(const struct hy_cliconfig *cfg);

/* Adds a control plane (strings copied; ca_file and token may be NULL) and
 * makes it current. HY_EEXIST when the name is taken and !overwrite,
 * HY_EINVAL for an empty name, HY_ENOMEM. */
int hy_cliconfig_add(struct hy_cliconfig *cfg, const char *name, const char *address,
                     const char *ca_file, const char *token, bool overwrite);
/* Makes name current. 0, HY_ENOTFOUND or HY_ENOMEM. */
int hy_cliconfig_switch(struct hy_cliconfig *cfg, const char *name);
/* Removes name; if it was current, the first remaining one becomes current.
 * 0, HY_ENOTFOUND or HY_ENOMEM. */
int hy_cliconfig_remove(struct hy_cliconfig *cfg, const char *name);

#endif
