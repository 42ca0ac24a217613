#!/usr/bin/env python3
"""tcp_nodelay.py PID: each connected TCP socket of process PID (a copy of
it taken with pidfd_getfd(2), which needs ptrace rights over PID) as one
line "FD LOCAL PEER nodelay|NAGLE". Exits 77 when the copies cannot be
taken (no pidfd_getfd, or no rights), 1 when a socket has TCP_NODELAY off."""
import ctypes
import os
import socket
import sys

SYS_PIDFD_GETFD = 438  # the same number on every architecture (Linux 5.6)


def main():
    pid = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        pfd = os.pidfd_open(pid)
    except (AttributeError, OSError) as e:
        print(f"no pidfd_open: {e}")
        return 77
    nagle = 0
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                continue
        except OSError:
            continue  # closed meanwhile
        fd = libc.syscall(SYS_PIDFD_GETFD, pfd, int(name), 0)
        if fd < 0:
            err = ctypes.get_errno()
            if err == 9:  # EBADF: closed meanwhile
                continue
            print(f"pidfd_getfd: {os.strerror(err)}")
            return 77
        s = socket.socket(fileno=fd)
        try:
            if s.type != socket.SOCK_STREAM or s.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                peer = s.getpeername()
            except OSError:
                continue  # a listener, or not connected (yet, or any more)
            on = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            print(name, s.getsockname(), peer, "nodelay" if on else "NAGLE")
            nagle += not on
        finally:
            s.close()
    return 1 if nagle else 0


if __name__ == "__main__":
    sys.exit(main())
