/* libFuzzer target for the CLI's lenient JSON reader (cli/json.h): any bytes
 * as an API reply, no crash, no leak. What parses is looked up the way the
 * commands do, and written back as JSON, which must parse again and write
 * the same text a second time. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "json.h"
#include "poison.h"

/* Fields the CLI's commands read from replies. */
static const char *const keys[] = {"type",   "mesh",    "name",    "items", "total",      "next",
                                   "title",  "details", "causes",  "field", "message",    "results",
                                   "result", "product", "version", "mode",  "instanceId", "token"};

static void walk(const struct hy_json *j, int depth)
{
    if (depth > HY_JSON_MAX_DEPTH)
        abort();
    if (j->kind == HY_JSON_SCALAR) {
        if (!j->value || j->n || j->items)
            abort();
        (void)hy_json_str(j);
        return;
    }
    if (j->value || (j->kind == HY_JSON_OBJECT && j->n % 2))
        abort();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        (void)hy_json_get_str(j, keys[i]);
    for (size_t i = 0; i < j->n; i++)
        walk(j->items[i], depth + 1);
}

/* True when j holds an object key that, written as JSON, is over 1024
 * characters: libyaml refuses such implicit keys (YAML 1.1 limits them), so
 * what we write then cannot be read back. A known limit, not a finding. */
static bool long_key(const struct hy_json *j)
{
    for (size_t i = 0; i < j->n; i++) {
        const struct hy_json *c = j->items[i];
        if (j->kind == HY_JSON_OBJECT && i % 2 == 0 && c->kind == HY_JSON_SCALAR) {
            struct hy_buf k = {0};
            if (hy_codec_json_string(&k, c->value, strlen(c->value)) < 0)
                abort();
            size_t chars = 0;
            for (size_t b = 0; b < k.len; b++)
                chars += ((unsigned char)k.data[b] & 0xc0) != 0x80;
            hy_buf_fini(&k);
            if (chars > 1000)
                return true;
        }
        if (long_key(c))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hy_json *j;
    char err[256];
    int rc = hy_json_parse((const char *)data, size, &j, err, sizeof(err));
    if (rc < 0) {
        if (j || !memchr(err, '\0', sizeof(err)) || !err[0])
            abort(); /* a failure leaves nothing and says why */
        return 0;
    }
    walk(j, 1);
    struct hy_buf once = {0}, twice = {0};
    rc = hy_json_write(j, &once);
    bool too_long = rc == 0 && long_key(j);
    hy_json_free(j);
    if (rc == HY_EINVAL || too_long)
        goto out; /* a key that is not a scalar (YAML, not JSON), or too long for libyaml */
    if (rc < 0)
        abort();
    if (hy_json_parse(once.data, once.len, &j, err, sizeof(err)) < 0)
        abort(); /* what we write must read back */
    rc = hy_json_write(j, &twice);
    hy_json_free(j);
    if (rc < 0 || once.len != twice.len || memcmp(once.data, twice.data, once.len) != 0)
        abort(); /* writing is not stable */
out:
    hy_buf_fini(&once);
    hy_buf_fini(&twice);
    return 0;
}
