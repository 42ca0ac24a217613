/* A tolerant JSON reader (the API's replies to the CLI, CNI configs: lists,
 * server info): a small tree, field lookup, and writing a subtree back as
 * JSON so a list item can go through the codec, or as YAML for -o yaml.
 * Unknown fields are ignored, unlike the codec, so a newer server does not
 * break an older CLI. */
#ifndef HY_JSON_H
#define HY_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define HY_JSON_MAX_DEPTH 64

enum hy_json_kind { HY_JSON_SCALAR, HY_JSON_OBJECT, HY_JSON_ARRAY };

struct hy_json {
    enum hy_json_kind kind;
    bool quoted;            /* a string, not a number, true, false or null */
    char *value;            /* scalar text (owned); NULL for objects and arrays */
    struct hy_json **items; /* OBJECT: key, value, key, value...; ARRAY: elements (owned) */
    size_t n;
};

/* Parses text (JSON, read by libyaml). Returns 0 and a tree the caller frees
 * with hy_json_free, or HY_EINVAL / HY_EDEPTH with a reason in err, or
 * HY_ENOMEM. */
int hy_json_parse(const char *text, size_t len, struct hy_json **out, char *err, size_t errsize);
void hy_json_free(struct hy_json *j);

/* The value of key in an object; NULL if j is not an object or lacks it. */
const struct hy_json *hy_json_get(const struct hy_json *j, const char *key);
/* The text of a scalar that is not null; NULL otherwise. */
const char *hy_json_str(const struct hy_json *j);
/* hy_json_str of hy_json_get, or NULL. */
const char *hy_json_get_str(const struct hy_json *j, const char *key);

/* Appends j as compact JSON. 0, HY_EINVAL for an object key that is not a
 * scalar (YAML lets a mapping or list be a key), or HY_ENOMEM. */
int hy_json_write(const struct hy_json *j, struct hy_buf *out);
/* Appends j as one YAML document in block style, as kubectl prints -o
 * yaml: numbers, true, false and null plain; strings plain unless YAML
 * would read them as another type, then double-quoted. 0, HY_EINVAL (a key
 * that is not a scalar) or HY_ENOMEM. */
int hy_json_write_yaml(const struct hy_json *j, struct hy_buf *out);

#endif
