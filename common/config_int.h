/* Between config.c (sources and precedence) and config_value.c (parsing one
 * value into its field); not for use outside the config module. */
#ifndef HY_CONFIG_INT_H
#define HY_CONFIG_INT_H

#include <stddef.h>

#include "config.h"

/* Parses text as o's type into o's field of cfg, replacing (and freeing) what
 * was there. Returns 0; HY_EINVAL with why saying what is wrong with the
 * value ("\"abc\" is not an integer"), the source left for the caller to
 * name; or HY_ENOMEM. The field is unchanged on failure. */
int hy_config_set(const struct hy_option *o, void *cfg, const char *text, char *why, size_t size);
/* The same, except that a list (HY_OPT_STRINGS) keeps what it holds and
 * gets text's items added at its end. */
int hy_config_add(const struct hy_option *o, void *cfg, const char *text, char *why, size_t size);
/* Empties a list field, freeing its strings. */
void hy_strings_fini(struct hy_strings *s);

#endif
