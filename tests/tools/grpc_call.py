#!/usr/bin/python3
"""A gRPC unary client over h2c (prior knowledge) for the sidecar's gRPC
tests. Needs Debian's python3-h2.

Usage: grpc_call.py PORT [--path=/test.Echo/Unary] [--count=N] [--new-conn]
  [--msg=TEXT | --size=N (N x's)] [-H name:value]...
One line per call: "http=STATUS grpc-status=N grpc-message=M trailers=T msg=TEXT"
(trailers=1 when grpc-status came in trailers, 0 when in the head: a
trailers-only answer); "error=WHY" when the call got no answer in 10 s.
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events

port = int(sys.argv[1])
path, count, new_conn, msg, extra = "/test.Echo/Unary", 1, False, "hi", []
args = sys.argv[2:]
i = 0
while i < len(args):
    a = args[i]
    if a.startswith("--path="):
        path = a.split("=", 1)[1]
    elif a.startswith("--count="):
        count = int(a.split("=", 1)[1])
    elif a == "--new-conn":
        new_conn = True
    elif a.startswith("--msg="):
        msg = a.split("=", 1)[1]
    elif a.startswith("--size="):
        msg = "x" * int(a.split("=", 1)[1])
    elif a == "-H":
        i += 1
        k, v = args[i].split(":", 1)
        extra.append((k.strip().lower(), v.strip()))
    i += 1


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def call(s, c):
    sid = c.get_next_available_stream_id()
    body = msg.encode()
    c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                         (":authority", "backend"), ("content-type", "application/grpc"),
                         ("te", "trailers")] + extra)
    out = [b"\x00" + len(body).to_bytes(4, "big") + body]

    def pump():  # what the flow-control window lets go
        while out[0]:
            n = min(len(out[0]), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if n <= 0:
                return
            c.send_data(sid, out[0][:n], end_stream=n == len(out[0]))
            out[0] = out[0][n:]

    pump()
    s.sendall(c.data_to_send())
    head, trailers, data = {}, None, b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return "error=timeout"
        if not d:
            return "error=closed"
        for ev in c.receive_data(d):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                head = dict(ev.headers)
            elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                data += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.WindowUpdated):
                pump()
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                return "error=reset"
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                s.sendall(c.data_to_send())
                t = trailers if trailers is not None else head
                text = data[5:].decode("latin1") if len(data) >= 5 else ""
                return "http=%s grpc-status=%s grpc-message=%s trailers=%d msg=%s" % (
                    head.get(":status"), t.get("grpc-status"), t.get("grpc-message", "").replace(" ", "_"),
                    1 if trailers is not None else 0, text)
        s.sendall(c.data_to_send())


s, c = connect()
for n in range(count):
    if new_conn and n:
        s.close()
        s, c = connect()
    print(call(s, c), flush=True)
s.close()
