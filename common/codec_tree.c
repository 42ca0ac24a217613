/* Builds the codec's node tree from libyaml's event stream. Iterative, so a
 * hostile input cannot exhaust the C stack; aliases are refused so a small
 * input cannot expand into a huge one. */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "codec_tree.h"
#include "error.h"
#include "poison.h"

bool hy_node_is_null(const struct hy_node *n)
{
    if (!n)
        return true;
    if (n->kind != HY_NODE_SCALAR || n->quoted)
        return false;
    const char *v = n->value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

void hy_tree_free(struct hy_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        hy_tree_free(n->items[i]);
    free(n->items);
    free(n->value);
    free(n);
}

void hy_tree_free_docs(struct hy_node **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hy_tree_free(docs[i]);
    free(docs);
}

static int push_item(struct hy_node *parent, struct hy_node *child)
{
    if ((parent->n & (parent->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = parent->n ? parent->n * 2 : 4;
        struct hy_node **v = realloc(parent->items, cap * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        parent->items = v;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static struct hy_node *node_new(enum hy_node_kind kind, const yaml_mark_t *m)
{
    struct hy_node *n = calloc(1, sizeof(*n));
    if (n) {
        n->kind = kind;
        n->line = (int)m->line + 1;
        n->col = (int)m->column + 1;
    }
    return n;
}

struct builder {
    struct hy_node **stack; /* open containers; stack[0] is the document root */
    int depth, max_depth;
    struct hy_node *root;
    struct hy_node **docs;
    size_t ndocs;
    struct hy_diag *diag;
};

/* Attaches a finished or newly opened node to the open container, or makes
 * it the document root. Takes ownership of n in every case. */
static int attach(struct builder *b, struct hy_node *n)
{
    if (b->depth == 0) {
        b->root = n;
        return 0;
    }
    if (push_item(b->stack[b->depth - 1], n) < 0) {
        hy_tree_free(n);
        return HY_ENOMEM;
    }
    return 0;
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
    struct hy_node *n;
    const yaml_mark_t *m = &ev->start_mark;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        b->root = NULL;
        return 0;
    case YAML_DOCUMENT_END_EVENT: {
        struct hy_node **v = realloc(b->docs, (b->ndocs + 1) * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        b->docs = v;
        b->docs[b->ndocs++] = b->root;
        b->root = NULL;
        return 0;
    }
    case YAML_ALIAS_EVENT:
        hy_diag_add(b->diag, (int)m->line + 1, (int)m->column + 1, "",
                    "YAML aliases (*%s) are not supported; write the value out",
                    (const char *)ev->data.alias.anchor);
        return HY_EINVAL;
    case YAML_SCALAR_EVENT:
        if (!(n = node_new(HY_NODE_SCALAR, m)))
            return HY_ENOMEM;
        n->len = ev->data.scalar.length;
        n->value = malloc(n->len + 1);
        if (!n->value) {
            free(n);
            return HY_ENOMEM;
        }
        memcpy(n->value, ev->data.scalar.value, n->len);
        n->value[n->len] = '\0';
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return attach(b, n);
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        if (b->depth >= b->max_depth) {
            hy_diag_add(b->diag, (int)m->line + 1, (int)m->column + 1, "",
                        "nested deeper than %d levels", b->max_depth);
            return HY_EDEPTH;
        }
        n = node_new(ev->type == YAML_MAPPING_START_EVENT ? HY_NODE_MAP : HY_NODE_SEQ, m);
        if (!n)
            return HY_ENOMEM;
        int rc = attach(b, n);
        if (rc < 0)
            return rc;
        b->stack[b->depth++] = n;
        return 0;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        b->depth--;
        return 0;
    default:
        return 0;
    }
}

int hy_tree_parse(const char *text, size_t len, size_t max_bytes, int max_depth,
                  struct hy_node ***docs, size_t *ndocs, struct hy_diag *diag)
{
    if (len > max_bytes) {
        hy_diag_add(diag, 0, 0, "", "input is %zu bytes; the limit is %zu bytes", len, max_bytes);
        return HY_ETOOBIG;
    }
    struct builder b = {.max_depth = max_depth, .diag = diag};
    b.stack = calloc((size_t)max_depth + 1, sizeof(*b.stack));
    if (!b.stack)
        return HY_ENOMEM;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(b.stack);
        return HY_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    bool done = false;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *ctx = parser.context ? parser.context : "";
            hy_diag_add(diag, (int)parser.problem_mark.line + 1,
                        (int)parser.problem_mark.column + 1, "", "invalid YAML: %s%s%s",
                        parser.problem ? parser.problem : "syntax error", ctx[0] ? " " : "", ctx);
            rc = HY_EINVAL;
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        rc = on_event(&b, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    /* an unfinished document's root is not in docs yet */
    if (rc < 0 && b.root)
        hy_tree_free(b.root);
    free(b.stack);
    if (rc < 0) {
        hy_tree_free_docs(b.docs, b.ndocs);
        if (rc == HY_ENOMEM)
            hy_diag_add(diag, 0, 0, "", "out of memory");
        return rc;
    }
    *docs = b.docs;
    *ndocs = b.ndocs;
    return 0;
}
