#!/usr/bin/python3
"""A small h2c (HTTP/2 cleartext, prior knowledge) gRPC app for the
sidecar's gRPC tests (tests/integration/l7_grpc.sh) and bench/dp_http.sh.
Needs Debian's python3-h2.

Usage: grpc_app.py PORT NAME [--health-file=PATH]. Prints "listening" once
it accepts. Unary calls on any path: the answer is one gRPC message,
"NAME|" + the request's message, then trailers grpc-status 0 and
grpc-message "ok". Request metadata changes that:
  x-status: N        a trailers-only answer with grpc-status N
  x-flaky: KEY/N     the first N calls for KEY answer grpc-status 14 (trailers-only)
  x-sleep-ms: MS     answer after MS milliseconds
/grpc.health.v1.Health/Check answers SERVING, or NOT_SERVING while the
health file exists. /stats answers (as a message) "calls=N".
With --record=FILE each request adds a JSON line to FILE: method, path,
content-type, the body's length and the body (latin-1).
"""
import json
import os
import socket
import socketserver
import sys
import threading

import h2.config
import h2.connection
import h2.events

PORT = int(sys.argv[1])
NAME = sys.argv[2] if len(sys.argv) > 2 else "app"
HEALTH_FILE = next((a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--health-file=")), None)
RECORD = next((a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--record=")), None)
LOCK = threading.Lock()
FLAKY = {}
STATS = {"calls": 0}


def frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.wlock = threading.Lock()
        self.streams = {}
        self.out = {}  # stream: what flow control holds back
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self):
        data = self.conn.data_to_send()
        if data:
            try:
                self.request.sendall(data)
            except OSError:
                pass

    def handle(self):
        with self.wlock:
            self.conn.initiate_connection()
            self.send()
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.wlock:
                try:
                    events = self.conn.receive_data(data)
                except Exception:
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        self.streams[ev.stream_id] = [dict(ev.headers), b""]
                        if ev.stream_ended:
                            self.call(ev.stream_id)
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in self.streams:
                            self.streams[ev.stream_id][1] += ev.data
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        if ev.stream_id in self.streams:
                            self.call(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        self.streams.pop(ev.stream_id, None)
                        self.out.pop(ev.stream_id, None)
                    elif isinstance(ev, h2.events.WindowUpdated):
                        for sid in list(self.out):
                            self.pump(sid)
                self.send()

    def call(self, sid):
        headers, body = self.streams[sid]
        with LOCK:
            STATS["calls"] += 1
            if RECORD:
                with open(RECORD, "a") as f:
                    f.write(json.dumps({"method": headers.get(":method"), "path": headers.get(":path"),
                                        "content_type": headers.get("content-type"), "len": len(body),
                                        "body": body.decode("latin-1")}) + "\n")
        delay = int(headers.get("x-sleep-ms", "0"))
        if delay:
            threading.Timer(delay / 1000.0, self.answer_later, (sid, headers, body)).start()
        else:
            self.answer(sid, headers, body)

    def answer_later(self, sid, headers, body):
        with self.wlock:
            if sid in self.streams:
                try:
                    self.answer(sid, headers, body)
                except Exception:
                    pass
                self.send()

    def answer(self, sid, headers, body):
        self.streams.pop(sid, None)
        path = headers.get(":path", "/")
        status = headers.get("x-status")
        flaky = headers.get("x-flaky")
        if flaky:
            key, n = flaky.rsplit("/", 1)
            with LOCK:
                seen = FLAKY.get(key, 0)
                FLAKY[key] = seen + 1
            if seen < int(n):
                status = "14"
        if status is not None and status != "0":
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                         ("x-instance", NAME), ("grpc-status", status),
                                         ("grpc-message", "asked for " + status)], end_stream=True)
            return
        msg = body[5:] if len(body) >= 5 else b""
        if path == "/grpc.health.v1.Health/Check":
            serving = not (HEALTH_FILE and os.path.exists(HEALTH_FILE))
            out = b"\x08" + (b"\x01" if serving else b"\x02")
        elif path == "/stats":
            out = ("calls=%d" % STATS["calls"]).encode()
        else:
            out = NAME.encode() + b"|" + msg
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                     ("x-instance", NAME)])
        self.out[sid] = frame(out)
        self.pump(sid)

    def pump(self, sid):  # what the flow-control window lets go, then the trailers
        data = self.out[sid]
        while data:
            n = min(len(data), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if n <= 0:
                break
            self.conn.send_data(sid, data[:n])
            data = data[n:]
        self.out[sid] = data
        if not data:
            del self.out[sid]
            self.conn.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "ok")], end_stream=True)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
srv.serve_forever()
