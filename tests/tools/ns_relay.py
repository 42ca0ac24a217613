#!/usr/bin/env python3
"""ns_relay.py NETNS PORT [READY]: listen on 127.0.0.1:PORT inside network
namespace NETNS (/run/netns/NETNS) and relay each connection to
127.0.0.1:PORT in this process's own namespace. Lets a "pod" reach a
control plane on the host's loopback with the CP's certificate (SAN
127.0.0.1) still valid. Sockets keep the namespace they were made in."""
import ctypes, os, socket, sys, threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    ns, port = sys.argv[1], int(sys.argv[2])
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    pod = os.open("/run/netns/" + ns, os.O_RDONLY)
    setns(pod)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    setns(home)
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").close()
    while True:
        c, _ = ls.accept()
        try:
            u = socket.create_connection(("127.0.0.1", port))
        except OSError:
            c.close()
            continue
        for a, b in ((c, u), (u, c)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
