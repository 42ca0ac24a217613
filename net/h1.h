/* A strict HTTP/1.1 codec for the sidecar's L7 path: parses requests (the
 * app's, outbound) and responses (the app's, inbound) into whole heads
 * (http_head.h) and de-chunked body bytes with llhttp, refusing whatever
 * could let two parsers disagree on where a message ends (request
 * smuggling); writes HTTP/1.1 heads and chunks. Never hands out raw bytes
 * for forwarding: between sidecars requests travel as HTTP/2. */
#ifndef HY_H1_H
#define HY_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_head.h"

enum hy_h1_kind { HY_H1_REQUEST, HY_H1_RESPONSE };

struct hy_h1_cb {
    /* A head is complete. h is the parser's; the callee may move it out
     * (copy the struct, then memset h to 0). body: a body follows
     * (Content-Length > 0 or chunked, or a response read to EOF). Return 0,
     * or non-zero to stop parsing (hy_h1_feed returns HY_EINVAL with the
     * reason "stopped", status 500).
     * Interim responses (1xx but 101) come here too, with body false and no
     * end callback: the parser then waits for the final response to the
     * same request (hy_h1_expect stays in force). Upgrades (hy_h1_upgrade)
     * come with body false and no end callback either: what follows the
     * head, a body included, belongs to the tunnel. */
    int (*head)(void *u, struct hy_http_head *h, bool body);
    /* De-chunked body bytes, borrowed for the call. Return as head. */
    int (*body)(void *u, const uint8_t *p, size_t n);
    /* The message ended; trailers (chunked, may be moved out as in head)
     * or NULL. Return as head. */
    int (*end)(void *u, struct hy_http_head *trailers);
};

struct hy_h1;

/* A parser for requests or responses calling cb with u; NULL: no memory.
 * cb is borrowed and must outlive the parser. */
struct hy_h1 *hy_h1_new(enum hy_h1_kind kind, const struct hy_h1_cb *cb, void *u);
/* Frees p and what it holds; NULL does nothing. */
void hy_h1_free(struct hy_h1 *p);
/* Response parsers: the method of the request this response answers
 * (HEAD: no body; CONNECT: a 2xx opens a tunnel), set before each response;
 * it holds until the final (non-1xx) response ends. Default: GET. */
void hy_h1_expect(struct hy_h1 *p, const char *method);
/* Feeds data. Parsing pauses after each complete message (the caller
 * answers one request at a time; pipelined bytes wait): *used says how much
 * was taken; call hy_h1_resume() then feed the rest. While paused, nothing
 * is taken (*used = 0, returns 0). Returns 0, or an error: HY_EINVAL
 * (malformed / smuggling: status 400; 501 for a transfer coding other than
 * chunked; 505 for a version other than 1.0/1.1), HY_ETOOBIG (head too
 * large / too many fields: 431; body chunk size overflow: 400), HY_ENOMEM
 * (500) — hy_h1_error() then says the status to answer and a reason naming
 * what was wrong. A response parser's errors all answer 502 (the peer that
 * sent the response is the culprit, not the client waiting for it). After
 * an error the parser is dead: every later call returns the same error. */
int hy_h1_feed(struct hy_h1 *p, const uint8_t *data, size_t len, size_t *used);
/* Lets hy_h1_feed parse the next message. Does nothing unless paused. */
void hy_h1_resume(struct hy_h1 *p);
/* EOF from the peer: ends a response read to EOF (end callback), or
 * HY_EINVAL if a message was cut ("connection closed mid-message"). 0 when
 * no message was under way. */
int hy_h1_finish(struct hy_h1 *p);
/* The status to answer and (if reason is not NULL) why, after an error;
 * 0 and "" when there was none. The reason lives as long as p. */
unsigned hy_h1_error(const struct hy_h1 *p, const char **reason);
/* After a head: the request asked for an upgrade (Upgrade + Connection:
 * upgrade, or CONNECT), or the response switched protocols (101, or a 2xx
 * to CONNECT) — the caller passes the connection through as TCP from there;
 * hy_h1_feed stops after such a head with *used = bytes up to its end, and
 * takes nothing more. */
bool hy_h1_upgrade(const struct hy_h1 *p);
/* Whether the connection stays open after this message (keep-alive rules
 * of HTTP/1.0 and 1.1, Connection: close; never after a response read to
 * EOF, an upgrade or an error). Valid from the head callback on. */
bool hy_h1_keep_alive(const struct hy_h1 *p);
/* Strips hop-by-hop fields (Connection and every field it names,
 * Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE except
 * "trailers", Host -> moved to h->authority for requests when that is
 * NULL) so a head can go out over HTTP/2. Cannot fail (allocates nothing). */
void hy_h1_strip_hop(struct hy_http_head *h);
/* Appends h as an HTTP/1.1 head to out: request line (h->method, h->target,
 * "Host" from h->authority) or status line (a standard reason phrase),
 * the fields, then framing: content_length >= 0 -> "Content-Length: N";
 * -1 -> "Transfer-Encoding: chunked"; -2 -> neither (no body, e.g.
 * 204/304/HEAD answers). The framing and Host are the writer's alone: h's
 * own Content-Length, Transfer-Encoding and Host fields are not written.
 * h->scheme and h->version are not written (always origin-form, HTTP/1.1).
 * Refuses (HY_EINVAL, out unchanged) CR, LF, NUL or another control
 * character but HT in any value, invalid names, a method llhttp does not
 * know (HTTP_METHOD_MAP: an HTTP/2 caller's custom method), a target with
 * anything but visible ASCII or with '#', an authority that is not host[:port] (the
 * parser's rule), a request without authority, a status
 * out of 100-599; HY_ENOMEM (out unchanged). */
int hy_h1_write_head(struct hy_buf *out, const struct hy_http_head *h, long long content_length);
/* Appends one chunk of n > 0 bytes (n == 0: HY_EINVAL). 0 or HY_ENOMEM. */
int hy_h1_write_chunk(struct hy_buf *out, const uint8_t *p, size_t n);
/* Appends the last chunk and the trailers (may be NULL), checked as in
 * hy_h1_write_head (its Content-Length, Transfer-Encoding and Host fields
 * are not written). 0, HY_EINVAL or HY_ENOMEM (out unchanged). */
int hy_h1_write_last_chunk(struct hy_buf *out, const struct hy_http_head *trailers);

#endif
