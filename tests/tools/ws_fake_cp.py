#!/usr/bin/env python3
"""A hostile zone control plane for the sidecar's own websocket client
(net/ws_uv.c): wss on 127.0.0.1:PORT with CERT/KEY; each connection
accepted plays the next of MODES and appends what the client did to OUT:

  badaccept  answers the upgrade with a wrong Sec-WebSocket-Accept
  oversize   announces a frame one byte over the 16 MiB message limit
  text       sends a text frame (only binary messages are accepted)
  pingpong   pings ("hi"), expects the pong, then closes with 1000 "bye"

usage: ws_fake_cp.py PORT CERT KEY OUT MODE...
Writes "listening" to OUT.ready once it accepts connections."""
import base64
import hashlib
import socket
import ssl
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise EOFError("closed during the upgrade")
        buf += chunk
    return buf


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return b""


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf


def read_frame(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    if not b1 & 0x80:
        raise ValueError("unmasked frame from the client")
    mask = recv_exact(s, 4)
    data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(s, n)))
    return b0 & 0x0F, data


def next_control(s):
    """The next frame that is not a data frame (the client's Hello is)."""
    while True:
        op, data = read_frame(s)
        if op >= 8:
            return op, data


def close_desc(data):
    if len(data) < 2:
        return "close (no code)"
    return "close %d %s" % (struct.unpack(">H", data[:2])[0], data[2:].decode("ascii", "replace"))


def play(s, mode):
    head = read_head(s)
    key = header(head, b"sec-websocket-key")
    proto = header(head, b"sec-websocket-protocol")
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if mode == "badaccept":
        accept = base64.b64encode(b"\0" * 20)
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
              b"\r\nSec-WebSocket-Protocol: " + proto + b"\r\n\r\n")
    if mode == "badaccept":
        try:
            more = s.recv(1)
        except (OSError, ssl.SSLError):
            more = b""
        return "closed" if not more else "client went on"
    if mode == "oversize":
        s.sendall(bytes([0x82, 127]) + struct.pack(">Q", (16 << 20) + 1))
        op, data = next_control(s)
        return close_desc(data) if op == 8 else "opcode %d" % op
    if mode == "text":
        s.sendall(bytes([0x81, 2]) + b"hi")
        op, data = next_control(s)
        return close_desc(data) if op == 8 else "opcode %d" % op
    if mode == "pingpong":
        s.sendall(bytes([0x89, 2]) + b"hi")
        op, data = next_control(s)
        got = "pong %s" % data.decode("ascii", "replace") if op == 10 else "opcode %d" % op
        s.sendall(bytes([0x88, 5]) + struct.pack(">H", 1000) + b"bye")
        op, data = next_control(s)
        return got + "; " + (close_desc(data) if op == 8 else "opcode %d" % op)
    return "unknown mode"


def main():
    port, cert, key, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    modes = sys.argv[5:]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(8)
    with open(out + ".ready", "w") as f:
        f.write("listening\n")
    for mode in modes:
        conn, _ = ls.accept()
        conn.settimeout(20)
        try:
            s = ctx.wrap_socket(conn, server_side=True)
            result = play(s, mode)
        except Exception as e:  # what the client did is the result
            result = "error: %s" % e
        with open(out, "a") as f:
            f.write("%s: %s\n" % (mode, result))
        conn.close()


if __name__ == "__main__":
    main()
