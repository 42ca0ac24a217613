#!/usr/bin/env python3
"""DNS over TCP helpers for the transparent-proxy tests (RFC 1035 4.2.2:
each message after a two-byte length).

  dns_tcp.py bridge ADDR UDP-UPSTREAM   listen on ADDR:53 (TCP) and relay
        each framed query to UDP-UPSTREAM:53, its answer back framed (a TCP
        resolver in front of ldnsd, which has UDP only); prints "listening",
        then one "query N" line per query relayed.
  dns_tcp.py pipelined HOST PORT NAME...   one query (A) per NAME, all in one
        write, then prints each answer's id and first A address, in order.
  dns_tcp.py raw HOST PORT HEX   sends the bytes HEX, prints "closed" if the
        server closes without answering within 10 s, else "answered".
"""
import socket
import struct
import sys
import threading


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            return None
        b += d
    return b


def recv_msg(s):
    h = recv_exact(s, 2)
    if h is None:
        return None
    return recv_exact(s, struct.unpack("!H", h)[0])


def query(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


def skip_name(m, i):
    while True:
        n = m[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def first_a(m):
    qd, an = struct.unpack("!HH", m[4:8])
    i = 12
    for _ in range(qd):
        i = skip_name(m, i) + 4
    for _ in range(an):
        i = skip_name(m, i)
        t, _c, _ttl, rdlen = struct.unpack("!HHIH", m[i:i + 10])
        i += 10
        if t == 1 and rdlen == 4:
            return socket.inet_ntoa(m[i:i + 4])
        i += rdlen
    return "-"


def bridge(addr, upstream):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, 53))
    srv.listen(16)
    count = [0]
    lock = threading.Lock()
    print("listening", flush=True)

    def serve(c):
        with c:
            while True:
                q = recv_msg(c)
                if q is None:
                    return
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.settimeout(5)
                u.sendto(q, (upstream, 53))
                try:
                    a, _ = u.recvfrom(65535)
                except OSError:
                    return
                finally:
                    u.close()
                with lock:
                    count[0] += 1
                    print("query %d" % count[0], flush=True)
                c.sendall(struct.pack("!H", len(a)) + a)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def main():
    cmd = sys.argv[1]
    if cmd == "bridge":
        bridge(sys.argv[2], sys.argv[3])
        return
    host, port = sys.argv[2], int(sys.argv[3])
    s = socket.create_connection((host, port), timeout=10)
    if cmd == "pipelined":
        names = sys.argv[4:]
        data = b""
        for i, n in enumerate(names):
            q = query(100 + i, n)
            data += struct.pack("!H", len(q)) + q
        s.sendall(data)
        for _ in names:
            m = recv_msg(s)
            if m is None:
                print("closed")
                return
            print(struct.unpack("!H", m[:2])[0], first_a(m))
    elif cmd == "raw":
        s.sendall(bytes.fromhex(sys.argv[4]))
        try:
            print("answered" if s.recv(1) else "closed")
        except socket.timeout:
            print("open")
        except ConnectionResetError:
            print("closed")


if __name__ == "__main__":
    main()
