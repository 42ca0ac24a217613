/* hy_json: API replies read into a tree through libyaml's event parser
 * (JSON is YAML flow syntax), and written back as compact JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "codec.h"
#include "error.h"
#include "json.h"
#include "poison.h"

void hy_json_free(struct hy_json *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++)
        hy_json_free(j->items[i]);
    free(j->items);
    free(j->value);
    free(j);
}

static int push_item(struct hy_json *parent, struct hy_json *child)
{
    struct hy_json **items = realloc(parent->items, (parent->n + 1) * sizeof(*items));
    if (!items)
        return HY_ENOMEM;
    parent->items = items;
    parent->items[parent->n++] = child;
    return 0;
}

static struct hy_json *node_new(enum hy_json_kind kind)
{
    struct hy_json *j = calloc(1, sizeof(*j));
    if (j)
        j->kind = kind;
    return j;
}

struct builder {
    struct hy_json *root;
    struct hy_json *stack[HY_JSON_MAX_DEPTH];
    int depth;
    bool done;
};

/* Attaches a finished node to the open container, or makes it the root. */
static int attach(struct builder *b, struct hy_json *n)
{
    if (b->depth == 0) {
        if (b->root) {
            hy_json_free(n);
            return HY_EINVAL; /* a second document */
        }
        b->root = n;
        return 0;
    }
    int rc = push_item(b->stack[b->depth - 1], n);
    if (rc < 0)
        hy_json_free(n);
    return rc;
}

static int on_event(struct builder *b, const yaml_event_t *ev, char *err, size_t errsize)
{
    struct hy_json *n;
    int rc;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (!(n = node_new(HY_JSON_SCALAR)))
            return HY_ENOMEM;
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (!(n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length))) {
            hy_json_free(n);
            return HY_ENOMEM;
        }
        return attach(b, n);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth == HY_JSON_MAX_DEPTH) {
            snprintf(err, errsize, "nested deeper than %d levels", HY_JSON_MAX_DEPTH);
            return HY_EDEPTH;
        }
        if (!(n = node_new(ev->type == YAML_MAPPING_START_EVENT ? HY_JSON_OBJECT : HY_JSON_ARRAY)))
            return HY_ENOMEM;
        if ((rc = attach(b, n)) < 0)
            return rc;
        b->stack[b->depth++] = n;
        return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--;
        return 0;
    case YAML_ALIAS_EVENT:
        snprintf(err, errsize, "aliases are not JSON");
        return HY_EINVAL;
    case YAML_STREAM_END_EVENT:
        b->done = true;
        return 0;
    default:
        return 0;
    }
}

int hy_json_parse(const char *text, size_t len, struct hy_json **out, char *err, size_t errsize)
{
    yaml_parser_t p;
    *out = NULL;
    /* API replies are objects or arrays; anything else is not worth asking
     * a YAML parser about (it would read most text as a string) */
    size_t lead = 0;
    while (lead < len && strchr(" \t\r\n", text[lead]))
        lead++;
    if (lead == len || (text[lead] != '{' && text[lead] != '[')) {
        snprintf(err, errsize, lead == len ? "empty reply" : "not JSON");
        return HY_EINVAL;
    }
    if (!yaml_parser_initialize(&p))
        return HY_ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    struct builder b = {0};
    int rc = 0;
    while (rc == 0 && !b.done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            snprintf(err, errsize, "%s at line %zu column %zu",
                     p.problem ? p.problem : "not valid JSON", p.problem_mark.line + 1,
                     p.problem_mark.column + 1);
            rc = p.error == YAML_MEMORY_ERROR ? HY_ENOMEM : HY_EINVAL;
            break;
        }
        rc = on_event(&b, &ev, err, errsize);
        if (rc == HY_EINVAL && ev.type != YAML_ALIAS_EVENT)
            snprintf(err, errsize, "text after the JSON value");
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc == 0 && !b.root) {
        snprintf(err, errsize, "empty reply");
        rc = HY_EINVAL;
    }
    if (rc < 0) {
        if (rc == HY_ENOMEM)
            snprintf(err, errsize, "out of memory");
        hy_json_free(b.root);
        return rc;
    }
    *out = b.root;
    return 0;
}

const struct hy_json *hy_json_get(const struct hy_json *j, const char *key)
{
    if (!j || j->kind != HY_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i + 1 < j->n; i += 2)
        if (j->items[i]->kind == HY_JSON_SCALAR && strcmp(j->items[i]->value, key) == 0)
            return j->items[i + 1];
    return NULL;
}

const char *hy_json_str(const struct hy_json *j)
{
    if (!j || j->kind != HY_JSON_SCALAR)
        return NULL;
    if (!j->quoted && (strcmp(j->value, "null") == 0 || j->value[0] == '\0'))
        return NULL;
    return j->value;
}

const char *hy_json_get_str(const struct hy_json *j, const char *key)
{
    return hy_json_str(hy_json_get(j, key));
}

/* Plain scalars that JSON can carry as they are: numbers, true, false, null. */
static bool is_json_literal(const char *v)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0 || strcmp(v, "null") == 0)
        return true;
    const char *p = v;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    p += strspn(p, "0123456789");
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        p += strspn(p, "0123456789");
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        p += strspn(p, "0123456789");
    }
    return *p == '\0';
}

int hy_json_write(const struct hy_json *j, struct hy_buf *out)
{
    int rc = 0;
    switch (j->kind) {
    case HY_JSON_SCALAR:
        if (!j->quoted && is_json_literal(j->value))
            return hy_buf_puts(out, j->value);
        return hy_codec_json_string(out, j->value, strlen(j->value));
    case HY_JSON_OBJECT:
        rc = hy_buf_puts(out, "{");
        for (size_t i = 0; rc == 0 && i + 1 < j->n; i += 2) {
            if (i > 0)
                rc = hy_buf_puts(out, ",");
            const struct hy_json *k = j->items[i];
            if (rc == 0)
                rc = k->kind == HY_JSON_SCALAR
                         ? hy_codec_json_string(out, k->value, strlen(k->value))
                         : HY_EINVAL;
            if (rc == 0)
                rc = hy_buf_puts(out, ":");
            if (rc == 0)
                rc = hy_json_write(j->items[i + 1], out);
        }
        return rc == 0 ? hy_buf_puts(out, "}") : rc;
    case HY_JSON_ARRAY:
        rc = hy_buf_puts(out, "[");
        for (size_t i = 0; rc == 0 && i < j->n; i++) {
            if (i > 0)
                rc = hy_buf_puts(out, ",");
            if (rc == 0)
                rc = hy_json_write(j->items[i], out);
        }
        return rc == 0 ? hy_buf_puts(out, "]") : rc;
    }
    return HY_EINVAL;
}

/* ----- YAML ----- */

struct yout {
    yaml_emitter_t em;
    bool failed;
};

static int yaml_sink(void *ud, unsigned char *p, size_t n)
{
    return hy_buf_append(ud, p, n) == 0;
}

static int yemit(struct yout *y, yaml_event_t *ev)
{
    if (!yaml_emitter_emit(&y->em, ev)) {
        y->failed = true;
        return HY_ENOMEM;
    }
    return 0;
}

/* A string a YAML reader would take for null, a bool or a number if it
 * were written plain: quoted, so it stays a string. */
static bool reads_typed(const char *v)
{
    static const char *const words[] = {"",     "~",    "null",  "Null",  "NULL",  "true",
                                        "True", "TRUE", "false", "False", "FALSE", "yes",
                                        "no",   "on",   "off",   "Yes",   "No",    "y",
                                        "n",    ".inf", "-.inf", ".nan",  "Y",     "N"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(v, words[i]) == 0)
            return true;
    char *end;
    (void)strtod(v, &end);
    return end != v && *end == '\0';
}

static int yaml_node(struct yout *y, const struct hy_json *j)
{
    yaml_event_t ev;
    int rc = 0;
    switch (j->kind) {
    case HY_JSON_SCALAR: {
        bool literal = !j->quoted && is_json_literal(j->value);
        yaml_scalar_style_t style = !literal && reads_typed(j->value)
                                        ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                        : YAML_ANY_SCALAR_STYLE;
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)j->value,
                                     (int)strlen(j->value), 1, 1, style);
        return yemit(y, &ev);
    }
    case HY_JSON_OBJECT:
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        rc = yemit(y, &ev);
        for (size_t i = 0; rc == 0 && i + 1 < j->n; i += 2)
            if ((rc = j->items[i]->kind == HY_JSON_SCALAR ? yaml_node(y, j->items[i])
                                                          : HY_EINVAL) == 0)
                rc = yaml_node(y, j->items[i + 1]);
        yaml_mapping_end_event_initialize(&ev);
        return rc == 0 ? yemit(y, &ev) : rc;
    case HY_JSON_ARRAY:
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        rc = yemit(y, &ev);
        for (size_t i = 0; rc == 0 && i < j->n; i++)
            rc = yaml_node(y, j->items[i]);
        yaml_sequence_end_event_initialize(&ev);
        return rc == 0 ? yemit(y, &ev) : rc;
    }
    return HY_EINVAL;
}

int hy_json_write_yaml(const struct hy_json *j, struct hy_buf *out)
{
    struct yout y = {.failed = false};
    if (!yaml_emitter_initialize(&y.em))
        return HY_ENOMEM;
    yaml_emitter_set_output(&y.em, yaml_sink, out);
    yaml_emitter_set_unicode(&y.em, 1);
    yaml_emitter_set_width(&y.em, -1);
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    int rc = yemit(&y, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (rc == 0)
        rc = yemit(&y, &ev);
    if (rc == 0)
        rc = yaml_node(&y, j);
    yaml_document_end_event_initialize(&ev, 1);
    if (rc == 0)
        rc = yemit(&y, &ev);
    yaml_stream_end_event_initialize(&ev);
    if (rc == 0)
        rc = yemit(&y, &ev);
    yaml_emitter_delete(&y.em);
    return rc;
}
