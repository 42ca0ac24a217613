/* hypha-bench-dns: a closed-loop DNS load over UDP for bench/tp.sh.
 * Usage: hypha-bench-dns HOST PORT NAME SECONDS OUTSTANDING
 * Keeps OUTSTANDING A queries for NAME (built by ldns, each with its own
 * id) in flight against HOST:PORT for SECONDS; a query not answered in
 * one second is counted lost and sent again. Prints one line:
 *   answers N per_s R p50_ms A p99_ms B lost L
 * (latency of each answered query, send to answer). Exits 1 on bad
 * arguments or when nothing was answered. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "poison.h"

#define MAX_OUT 4096
#define LOST_NS 1000000000ull

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: hypha-bench-dns HOST PORT NAME SECONDS OUTSTANDING\n");
        return 1;
    }
    int port = atoi(argv[2]), seconds = atoi(argv[4]), outstanding = atoi(argv[5]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || port <= 0 || port > 65535 ||
        seconds <= 0 || outstanding <= 0 || outstanding > MAX_OUT) {
        fprintf(stderr, "hypha-bench-dns: bad arguments (HOST an IPv4 address, OUTSTANDING "
                        "1-4096)\n");
        return 1;
    }
    ldns_pkt *q = NULL;
    uint8_t *wire = NULL;
    size_t qlen = 0;
    if (ldns_pkt_query_new_frm_str(&q, argv[3], LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD) !=
            LDNS_STATUS_OK ||
        ldns_pkt2wire(&wire, q, &qlen) != LDNS_STATUS_OK) {
        fprintf(stderr, "hypha-bench-dns: cannot build a query for %s\n", argv[3]);
        return 1;
    }
    ldns_pkt_free(q);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "hypha-bench-dns: %s\n", strerror(errno));
        return 1;
    }
    /* slot i: id i, sent at sent[i] (0: free) */
    static uint64_t sent[MAX_OUT];
    size_t cap = 1 << 20, n = 0;
    uint64_t *lat = malloc(cap * sizeof(*lat));
    uint64_t lost = 0, start = now_ns(), end = start + (uint64_t)seconds * 1000000000ull;
    uint16_t gen = 0; /* the id's high bits: an answer to a resent query is told apart */
    uint16_t ids[MAX_OUT];
    for (int i = 0; i < outstanding; i++) {
        ids[i] = (uint16_t)((gen++ & 0xf) << 12 | (unsigned)i);
        ldns_write_uint16(wire, ids[i]);
        sent[i] = now_ns();
        if (send(fd, wire, qlen, 0) < 0)
            sent[i] = 0;
    }
    uint8_t buf[4096];
    while (lat && now_ns() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            for (;;) {
                ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (r < 12)
                    break;
                uint16_t id = ldns_read_uint16(buf);
                unsigned i = id & 0xfff;
                if ((int)i >= outstanding || ids[i] != id || !sent[i])
                    continue;
                uint64_t t = now_ns();
                if (n == cap) {
                    uint64_t *m = realloc(lat, 2 * cap * sizeof(*lat));
                    if (!m)
                        break;
                    lat = m;
                    cap *= 2;
                }
                lat[n++] = t - sent[i];
                ids[i] = (uint16_t)((gen++ & 0xf) << 12 | i);
                ldns_write_uint16(wire, ids[i]);
                sent[i] = t;
                if (send(fd, wire, qlen, 0) < 0)
                    sent[i] = 0;
            }
        }
        uint64_t t = now_ns();
        for (int i = 0; i < outstanding; i++)
            if (!sent[i] || t - sent[i] > LOST_NS) {
                lost += sent[i] != 0;
                ids[i] = (uint16_t)((gen++ & 0xf) << 12 | (unsigned)i);
                ldns_write_uint16(wire, ids[i]);
                sent[i] = t;
                if (send(fd, wire, qlen, 0) < 0)
                    sent[i] = 0;
            }
    }
    double secs = (double)(now_ns() - start) / 1e9;
    free(wire);
    close(fd);
    if (!lat || !n) {
        fprintf(stderr, "hypha-bench-dns: no answer from %s:%d\n", argv[1], port);
        free(lat);
        return 1;
    }
    qsort(lat, n, sizeof(*lat), cmp_u64);
    printf("answers %zu per_s %.0f p50_ms %.3f p99_ms %.3f lost %llu\n", n, (double)n / secs,
           (double)lat[n / 2] / 1e6, (double)lat[(size_t)((double)n * 0.99)] / 1e6,
           (unsigned long long)lost);
    free(lat);
    return 0;
}
