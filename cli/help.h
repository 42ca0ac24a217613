/* --help text, generated from the command table. */
#ifndef HY_CLI_HELP_H
#define HY_CLI_HELP_H

#include <stdio.h>

#include "cli.h"

/* Prints the commands whose path starts with prefix ("" for all of them,
 * "config" for a group), then the global flags. */
void hy_help_group(FILE *f, const char *prefix);
/* Prints a command's usage line, its help text and its flags. */
void hy_help_command(FILE *f, const struct hy_cmd *cmd);

#endif
