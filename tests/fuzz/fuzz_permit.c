/* The caller's tags as its certificate's URI SANs (hy_permit_peer_add_uri)
 * and the MeshTrafficPermission decision on them: input lines are URIs;
 * every tag read must round-trip through hy_permit_tag_uri, the buffer
 * must never overflow, and a decision must always be made. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "permit.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hy_permit_peer *p = calloc(1, sizeof(*p));
    char *text = malloc(size + 1);
    if (!p || !text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        hy_permit_peer_add_uri(p, line);
    }
    if (p->n > HY_PERMIT_MAX_TAGS || p->used > sizeof(p->buf))
        abort();
    for (size_t i = 0; i < p->n; i++) {
        char uri[sizeof(p->buf) + 16];
        struct hy_permit_peer again = {0};
        if (!hy_permit_tag_uri(p->key[i], p->value[i], uri, sizeof(uri)))
            continue;
        hy_permit_peer_add_uri(&again, uri);
        /* a value with "%2F" written literally decodes to '/', and so the
         * round trip is only checked for values without '%' */
        if (!strchr(p->value[i], '%') && !strrchr(p->key[i], '%') &&
            (again.n != 1 || strcmp(again.key[0], p->key[i]) ||
             strcmp(again.value[0], p->value[i])))
            abort();
    }
    Hypha__V1__DpPermission__TagsEntry tag = HYPHA__V1__DP_PERMISSION__TAGS_ENTRY__INIT,
                                       *tags[] = {&tag};
    Hypha__V1__DpPermission perm = HYPHA__V1__DP_PERMISSION__INIT, *perms[] = {&perm};
    tag.key = p->n ? (char *)p->key[0] : "k";
    tag.value = p->n ? (char *)p->value[0] : "v";
    perm.tags = tags;
    perm.n_tags = 1;
    perm.has_action = 1;
    perm.action = HYPHA__V1__DP_PERMISSION__ACTION__Allow;
    Hypha__V1__DpInbound in = HYPHA__V1__DP_INBOUND__INIT;
    in.permissions = perms;
    in.n_permissions = 1;
    struct hy_permit_decision d;
    hy_permit_decide(&in, text, p, &d);
    if (p->n && d.result != HY_PERMIT_ALLOW)
        abort(); /* the caller carries the first tag it showed */
    free(text);
    free(p);
    return 0;
}
