/* `install transparent-proxy` / `uninstall transparent-proxy`: the VM
 * entry point of the redirection rules, with kumactl's flags where they make
 * sense. hypha-dp dispatches its `install` and `uninstall` commands here. */
#ifndef HY_TPROXY_CMD_H
#define HY_TPROXY_CMD_H

/* argv[0] is "install" or "uninstall", then "transparent-proxy" and the
 * flags (program names the binary in messages: "hypha-dp"). Prints the rules
 * with --dry-run, errors to stderr. Returns the process exit code: 0, 1 when
 * the rules could not be changed, 2 for bad usage. */
int hy_tproxy_cmd_main(const char *program, int argc, char **argv);

#endif
