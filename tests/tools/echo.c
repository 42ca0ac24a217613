/* hypha-test-echo: a TCP echo server on 127.0.0.1 for the proxy tests.
 * Usage: hypha-test-echo PORT [PREFIX]. Every byte read is written back
 * (after PREFIX, once per connection, when given, so a test can tell which
 * server answered); EOF from the client ends the echo with a shutdown.
 * Prints "listening on PORT" once ready. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "poison.h"

static const char *prefix;

struct conn {
    uv_tcp_t tcp;
    uv_shutdown_t sd;
    char buf[65536];
    bool greeted;
};

struct wr {
    uv_write_t req;
    char data[];
};

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void echo(struct conn *c, const char *p, size_t n)
{
    struct wr *w = malloc(sizeof(*w) + n);
    if (!w)
        return;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
        free(w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    (void)status;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n > 0) {
        if (prefix && !c->greeted) {
            echo(c, prefix, strlen(prefix));
            c->greeted = true;
        }
        echo(c, buf->base, (size_t)n);
    } else if (n < 0) {
        uv_read_stop(s);
        c->sd.data = c;
        if (n != UV_EOF || uv_shutdown(&c->sd, s, on_shutdown) < 0)
            uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: hypha-test-echo PORT [PREFIX]\n");
        return 2;
    }
    prefix = argc == 3 ? argv[2] : NULL;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &sa);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 128, on_conn);
    if (rc < 0) {
        fprintf(stderr, "hypha-test-echo: port %s: %s\n", argv[1], uv_strerror(rc));
        return 1;
    }
    printf("listening on %s\n", argv[1]);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
