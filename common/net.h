/* Socket helpers the data-plane processes share (libuv). */
#ifndef HY_NET_H
#define HY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* Binds tcp (initialised on its loop, not yet bound) to host:port with
 * SO_REUSEADDR and SO_REUSEPORT, so that one listening socket per worker
 * can share the port (the kernel spreads connections over them), and
 * listens with cb. host must be an IP literal. Returns 0 or a libuv error
 * code; on error tcp is left for the caller to uv_close. */
int hy_net_listen_reuseport(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb);

/* "ip:port" ("[ip]:port" for IPv6) of tcp's peer into buf; "-" when it
 * has none. */
void hy_net_peer_name(uv_tcp_t *tcp, char *buf, size_t size);

/* Takes the connection waiting on server and closes it at once, with no
 * handle and no allocation: for when a connection cannot be served (out
 * of memory, shutting down) and must not stay queued, or the loop spins.
 * True when there was one. */
bool hy_net_refuse(uv_stream_t *server);

#endif
