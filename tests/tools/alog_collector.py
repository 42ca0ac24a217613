#!/usr/bin/env python3
"""A TCP access-log collector for tests/integration/access_log.sh.

Usage: alog_collector.py PORT OUT [--stall]. Prints "listening" once it
accepts. Appends every byte a client sends to OUT, flushed as it comes.
With --stall it accepts (with a tiny receive buffer) and never reads, as a
collector that hangs would.
"""
import socket
import sys
import threading

port, out = int(sys.argv[1]), sys.argv[2]
stall = "--stall" in sys.argv[3:]
lock = threading.Lock()

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if stall:  # accepted sockets inherit it: the sender's data piles up at once
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("127.0.0.1", port))
s.listen(16)
print("listening", flush=True)
held = []


def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            with lock, open(out, "ab") as f:
                f.write(d)


while True:
    c, _ = s.accept()
    print("accepted", flush=True)
    if stall:
        held.append(c)
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
