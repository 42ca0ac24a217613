#!/usr/bin/env python3
"""An app that never accepts: listens on 127.0.0.1:PORT with a backlog of
0 and fills its accept queue itself, so the kernel drops every further SYN
(a connect there hangs, as to a blackholed address, instead of the RST a
closed port gives). For MeshTimeout's inbound connectionTimeout tests.

Usage: full_backlog.py PORT. Prints "full after N" once a connect of its
own no longer completes, then holds everything until killed."""
import socket
import sys
import time


def main():
    port = int(sys.argv[1])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(0)
    held = []
    while True:
        c = socket.socket()
        c.settimeout(1.0)
        try:
            c.connect(("127.0.0.1", port))
        except (socket.timeout, OSError):
            c.close()
            break
        held.append(c)
        if len(held) > 16:
            print("cannot fill the accept queue", flush=True)
            return 1
    print("full after %d" % len(held), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
