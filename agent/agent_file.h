/* The file a data-plane process (hypha-dp, hypha-ingress) presents to its
 * zone: one resource in Kuma's universal shape with {{ NAME }} placeholders,
 * and the token file beside it. */
#ifndef HY_AGENT_FILE_H
#define HY_AGENT_FILE_H

#include <stddef.h>

#include "config.h"
#include "diag.h"
#include "meta.pb-c.h"
#include "resource.h"

/* The resource a data-plane process presents in DpHello: a sidecar's
 * Dataplane, an ingress's ZoneIngress. */
struct hy_agent_file {
    struct hy_resource *res;  /* owned: the decoded and validated resource */
    Hypha__V1__Envelope *env; /* owned (hypha__v1__envelope__free_unpacked): res as sent */
};

/* Replaces every placeholder "{{ NAME }}" (spaces or tabs inside the braces
 * optional; NAME of letters, digits, '_', '-' and '.') in text[0..len) by the
 * value of the variable NAME, vars being "NAME=VALUE" strings (the first '='
 * splits; values are single-line). diag->source names the file.
 * On success returns 0 with *out (NUL-terminated, caller frees) and *out_len.
 * On failure returns HY_EINVAL with a cause in diag for every problem, each
 * at its line:column when it has one: a variable that is not NAME=VALUE or
 * is given twice, a value with a line break, a "{{" that does not open a
 * placeholder, an unknown placeholder (named, with the flag to give it);
 * or HY_ENOMEM. *out is NULL on failure. */
int hy_agent_file_expand(const char *text, size_t len, const struct hy_strings *vars, char **out,
                         size_t *out_len, struct hy_diag *diag);

/* Expands text as above, then decodes and validates it: exactly one
 * document, of type Dataplane (hy_agent_file_parse_type: of type type), valid (hy_docs_validate:
 * causes at their line:column). source names the text in causes (diag->source is set to it).
 * Variables the text never uses are logged (WARN), not refused.
 * On success returns 0 and fills *out (free with hy_agent_file_fini). On
 * failure returns HY_EINVAL (or HY_ETOOBIG, HY_EDEPTH, HY_ENOMEM) with
 * causes in diag, and leaves *out zeroed. */
int hy_agent_file_parse(const char *source, const char *text, size_t len,
                        const struct hy_strings *vars, struct hy_agent_file *out,
                        struct hy_diag *diag);
int hy_agent_file_parse_type(const char *source, const char *text, size_t len,
                             const struct hy_strings *vars, const char *type,
                             struct hy_agent_file *out, struct hy_diag *diag);

/* Reads the file at path (at most HY_CODEC_MAX_BYTES) and parses it as
 * hy_agent_file_parse, the path naming it in causes. A file that cannot be
 * read is one cause and its -errno. */
int hy_agent_file_load(const char *path, const struct hy_strings *vars, struct hy_agent_file *out,
                       struct hy_diag *diag);
int hy_agent_file_load_type(const char *path, const struct hy_strings *vars, const char *type,
                            struct hy_agent_file *out, struct hy_diag *diag);

/* Frees what *f owns and zeroes it; safe on a zeroed struct. */
void hy_agent_file_fini(struct hy_agent_file *f);

/* The trimmed contents of a token file (caller frees), or NULL with errno
 * set (ENODATA for an empty file). */
char *hy_agent_read_token(const char *path);

#endif
