/* Talking to the control plane's HTTP API: requests with the configured
 * address and token, the API's error shape printed for the user, lists
 * fetched page by page, and list items decoded into resources. */
#ifndef HY_CLI_API_H
#define HY_CLI_API_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"
#include "json.h"
#include "resource.h"

#define HY_API_MAX_PAGES 10000

/* Sends METHOD base_url+path (path starts with '/') with the auth token and
 * the extra headers. Returns 0 when an HTTP response arrived, whatever its
 * status (*resp then owned by the caller: hy_httpc_response_fini), or a
 * negative code after printing why nothing arrived, with a hint ("is
 * hypha-global running?"). */
int hy_api_send(struct hy_cli *cli, const char *method, const char *path,
                const struct hy_httpc_header *headers, size_t nheaders, const void *body,
                size_t len, struct hy_httpc_response *resp);

/* hy_api_send, then a status check: on 2xx returns 0 with *resp owned by
 * the caller; otherwise prints the error (hy_api_print_error), frees *resp
 * and returns HY_EINVAL. */
int hy_api_call(struct hy_cli *cli, const char *method, const char *path,
                const struct hy_httpc_header *headers, size_t nheaders, const void *body,
                size_t len, struct hy_httpc_response *resp);

/* Prints an error response as "Error: <title>: <details>" and one
 * "  <field>: <message>" line per cause; a reply that is not the API's
 * error shape prints as "Error: HTTP <status> <reason>: <first line>". */
void hy_api_print_error(struct hy_cli *cli, const struct hy_httpc_response *resp);

/* Parses a reply body as JSON; prints a failure. 0 or a negative code. */
int hy_api_parse(struct hy_cli *cli, const struct hy_httpc_response *resp, struct hy_json **out);

struct hy_api_list {
    struct hy_json **pages; /* owned: every page's parsed body */
    size_t npages;
    const struct hy_json **items; /* owned array, items borrowed from pages */
    size_t nitems;
    long long total; /* the first page's "total"; -1 if absent */
    char *next;      /* owned: the last page's "next", or NULL */
    char *raw;       /* owned: the body, when there was one page */
};

/* GETs path (with its query) and, when all, every following page through
 * "next". 0, or a negative code after printing the failure. *out is safe to
 * fini in every case. */
int hy_api_list(struct hy_cli *cli, const char *path, bool all, struct hy_api_list *out);
void hy_api_list_fini(struct hy_api_list *l);

/* Decodes one resource from a JSON item of a reply through the codec.
 * 0 and a resource the caller frees, or a negative code after printing
 * the problem. */
int hy_api_decode(struct hy_cli *cli, const struct hy_json *item, struct hy_resource **out);
/* hy_api_decode of a whole reply body (a single GET). */
int hy_api_decode_body(struct hy_cli *cli, const struct hy_httpc_response *resp,
                       struct hy_resource **out);

/* Appends s percent-encoded: everything but letters, digits and "-._~"
 * escaped, and in a query (in_query) also "/" and ":" kept, so label keys
 * like hypha.io/zone stay readable. 0 or HY_ENOMEM. */
int hy_api_escape(struct hy_buf *out, const char *s, bool in_query);

#endif
