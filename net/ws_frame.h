/* RFC 6455 without I/O: the frame parser (a byte-at-a-time state machine
 * that reassembles fragmented messages under a size limit and refuses what
 * the RFC forbids), the frame header encoder and masking, and the opening
 * handshake's key, accept value and response check. Used by the libuv +
 * wolfSSL client (ws_uv.c); no libwebsockets, no sockets, so unit tests and
 * the fuzz targets drive it directly. */
#ifndef HY_WS_FRAME_H
#define HY_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    HY_WSF_CONT = 0x0,
    HY_WSF_TEXT = 0x1,
    HY_WSF_BINARY = 0x2,
    HY_WSF_CLOSE = 0x8,
    HY_WSF_PING = 0x9,
    HY_WSF_PONG = 0xa,
};

#define HY_WSF_HEADER_MAX 14        /* 2 + 8 (length) + 4 (mask) */
#define HY_WSF_CONTROL_MAX 125      /* payload of a control frame */
#define HY_WSF_RX_KEEP (256u << 10) /* a reassembly buffer larger than this is freed */
#define HY_WSF_RESPONSE_MAX 8192    /* bytes of a handshake response's head */

/* What the parser hands its owner: one whole binary message, or one
 * control frame (ping, pong, close: payload at most 125 bytes). data is
 * borrowed for the call. Returns 0 to go on, nonzero to stop parsing (the
 * owner is closing). */
typedef int (*hy_wsf_event_fn)(void *ud, int opcode, const uint8_t *data, size_t len);

struct hy_wsf_parser {
    /* set by the owner; max_message may change between feeds */
    size_t max_message; /* largest message reassembled; bigger: error 1009 */
    bool masked;        /* frames must be masked (a server's parser) or must not (a client's) */
    /* error, once hy_wsf_feed returned -1: a close code and why (static) */
    int err_code;
    const char *err_why;
    /* state */
    unsigned state;
    uint8_t hdr[HY_WSF_HEADER_MAX];
    unsigned hlen, hneed;
    uint8_t opcode, mask[4];
    bool fin;
    uint64_t plen, pgot;
    bool in_msg;  /* a fragmented data message is under way */
    uint8_t *msg; /* its payload so far (and a whole frame's) */
    size_t msg_len, msg_cap;
    uint8_t ctl[HY_WSF_CONTROL_MAX];
};

/* Ready to parse; max_message 0 means 4 MiB. Cannot fail. */
void hy_wsf_parser_init(struct hy_wsf_parser *p, size_t max_message, bool masked);
/* Frees the reassembly buffer; the parser may be initialised again. */
void hy_wsf_parser_fini(struct hy_wsf_parser *p);
/* Feeds len bytes, calling fn for every message and control frame they
 * complete. Returns 0 (all consumed), 1 (fn asked to stop: the rest is
 * ignored), or -1 on a protocol error: err_code (1002 protocol, 1003 a
 * text frame, 1009 too big, 1011 out of memory) and err_why say what; the
 * parser must not be fed again. */
int hy_wsf_feed(struct hy_wsf_parser *p, const uint8_t *in, size_t len, hy_wsf_event_fn fn,
                void *ud);

/* Writes a frame header to out and returns its length (2 to 14). mask:
 * NULL for an unmasked frame, else its 4 bytes (written after the length).
 * Cannot fail. */
size_t hy_wsf_header(uint8_t out[HY_WSF_HEADER_MAX], int opcode, bool fin, uint64_t len,
                     const uint8_t *mask);
/* XORs data with mask, as if data started at byte offset of the payload. */
void hy_wsf_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* The Sec-WebSocket-Key of 16 random bytes (base64, 24 chars and NUL). */
void hy_wsf_key(const uint8_t rnd[16], char out[25]);
/* The Sec-WebSocket-Accept a server must answer key with (base64 of the
 * SHA-1 of key and the RFC's GUID, 28 chars and NUL). Returns 0, or -1 if
 * SHA-1 fails. */
int hy_wsf_accept(const char *key, char out[29]);
/* Checks a server's handshake response head in buf[0..len): status 101,
 * Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Accept matching
 * key, Sec-WebSocket-Protocol equal to subprotocol, no extension. Returns
 * the head's length (through the blank line: frames may follow in the same
 * read), 0 if the head is not complete yet (and shorter than
 * HY_WSF_RESPONSE_MAX), or -1 with why filled (for a log line; e.g.
 * "HTTP status 403 Forbidden", "wrong Sec-WebSocket-Accept"). */
long hy_wsf_response(const char *buf, size_t len, const char *key, const char *subprotocol,
                     char *why, size_t why_size);
/* Whether code may be sent or received in a close frame (RFC 6455 7.4). */
bool hy_wsf_code_valid(int code);

#endif
