/* A small YAML node tree built from libyaml events, with positions, a depth
 * limit and no aliases: what the codec's decoder walks. Private to the codec. */
#ifndef HY_CODEC_TREE_H
#define HY_CODEC_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"

enum hy_node_kind { HY_NODE_SCALAR, HY_NODE_MAP, HY_NODE_SEQ };

struct hy_node {
    enum hy_node_kind kind;
    int line, col; /* 1-based */
    bool quoted;   /* scalar written quoted or as a block: never null, bool or number */
    char *value;   /* scalar text, NUL-terminated (owned) */
    size_t len;
    struct hy_node **items; /* MAP: key, value, key, value...; SEQ: elements (owned) */
    size_t n;               /* number of entries in items */
};

/* Parses every document of text. On success returns 0 and *docs (an owned
 * array of *ndocs roots; a NULL root is an empty document). On failure adds
 * one cause to diag and returns HY_EINVAL, HY_EDEPTH or HY_ETOOBIG. */
int hy_tree_parse(const char *text, size_t len, size_t max_bytes, int max_depth,
                  struct hy_node ***docs, size_t *ndocs, struct hy_diag *diag);
void hy_tree_free(struct hy_node *n);
void hy_tree_free_docs(struct hy_node **docs, size_t n);

/* True for a plain scalar YAML reads as null: "", "~", "null", "Null", "NULL". */
bool hy_node_is_null(const struct hy_node *n);

#endif
