#!/usr/bin/python3
"""Stand-in listeners and clients for the transparent-proxy tests: a
listener answers every TCP connection or UDP datagram with its tag, so a
client can tell where the kernel really delivered it.

  tp_echo.py serve READYFILE PROTO:PORT:TAG[:HOST]...
                    listen on HOST:PORT (default [::]:PORT, IPv4 too)
  tp_echo.py ask PROTO HOST PORT                 print the tag that answers
"""
import os
import selectors
import socket
import sys


def serve(ready, specs):
    sel = selectors.DefaultSelector()
    for spec in specs:
        proto, port, tag, *host = spec.split(":", 3)
        host = host[0] if host else "::"
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, kind)
        if host == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        if proto == "tcp":
            s.listen(64)
        sel.register(s, selectors.EVENT_READ, (proto, tag.encode()))
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    while True:
        for key, _ in sel.select():
            proto, tag = key.data
            if proto == "tcp":
                c, _ = key.fileobj.accept()
                try:
                    c.sendall(tag + b"\n")
                finally:
                    c.close()
            else:
                _, peer = key.fileobj.recvfrom(512)
                key.fileobj.sendto(tag + b"\n", peer)


def ask(proto, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        if proto == "udp":
            s.send(b"query")
        print(s.recv(512).decode().strip())
    except OSError as e:
        print("error: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(ask(*sys.argv[2:5]))
