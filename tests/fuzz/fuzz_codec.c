/* libFuzzer target for the codec: any bytes in, no crash, no leak, and
 * whatever decodes must survive YAML and JSON round trips unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "poison.h"

static void check_roundtrip(const struct hy_resource *r, enum hy_format f)
{
    struct hy_buf out = {0};
    if (hy_codec_encode_resource(r, f, &out) < 0)
        abort();
    struct hy_docs again;
    struct hy_diag d = {0};
    if (hy_codec_decode_resources("again", out.data, out.len, NULL, &again, &d) < 0 || again.n != 1)
        abort();
    size_t la, lb;
    uint8_t *pa = hy_resource_pack(r, &la), *pb = hy_resource_pack(again.v[0].res, &lb);
    if (!pa || !pb || la != lb || memcmp(pa, pb, la) != 0)
        abort();
    free(pa);
    free(pb);
    hy_docs_fini(&again);
    hy_diag_fini(&d);
    hy_buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hy_docs docs;
    struct hy_diag d = {0};
    if (hy_codec_decode_resources("fuzz", (const char *)data, size, NULL, &docs, &d) == 0) {
        hy_docs_validate(&docs, &d);
        for (size_t i = 0; i < docs.n; i++) {
            check_roundtrip(docs.v[i].res, HY_FORMAT_YAML);
            check_roundtrip(docs.v[i].res, HY_FORMAT_JSON);
        }
        hy_docs_fini(&docs);
    }
    char line[1024];
    for (size_t i = 0; i < d.n; i++)
        hy_diag_format(&d, i, line, sizeof(line));
    hy_diag_fini(&d);
    return 0;
}
