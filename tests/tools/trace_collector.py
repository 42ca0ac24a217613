#!/usr/bin/env python3
"""A tracing backend for tests/integration/trace.sh, both wire formats.

Usage: trace_collector.py ADDRESS PORT OUTDIR. Prints "listening" once it
accepts. POST /api/v2/spans (Zipkin v2, application/json): the body must
be a JSON list; each span is appended as one JSON line to OUTDIR/zipkin.jsonl.
POST /v1/traces (OTLP/HTTP, application/x-protobuf): the body is kept as
OUTDIR/otlp-N.bin, for hypha-test-otlp-dump to decode with the schema.
Both are answered 202 / 200; anything else 400 (and logged).
What it kept can be read back as Zipkin's API answers it (the local demo
points users here): GET /api/v2/traces (every trace, a list of span
lists) and GET /api/v2/trace/ID (one trace's spans; 404 when unknown).
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDR, PORT, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()
N = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def json_answer(self, status, value):
        data = json.dumps(value, indent=1).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        traces = {}
        with LOCK:
            try:
                with open(os.path.join(OUT, "zipkin.jsonl")) as f:
                    for line in f:
                        s = json.loads(line)
                        traces.setdefault(s.get("traceId"), []).append(s)
            except FileNotFoundError:
                pass
        if self.path == "/api/v2/traces":
            self.json_answer(200, list(traces.values()))
        elif self.path.startswith("/api/v2/trace/"):
            spans = traces.get(self.path[len("/api/v2/trace/"):])
            self.json_answer(200 if spans else 404, spans or [])
        else:
            self.answer(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ctype = self.headers.get("Content-Type", "")
        if self.path == "/api/v2/spans" and ctype.startswith("application/json"):
            try:
                spans = json.loads(body)
                assert isinstance(spans, list)
            except Exception as e:  # a bad body fails the test through the log
                print("bad zipkin body:", e, body[:200], flush=True)
                self.answer(400)
                return
            with LOCK, open(os.path.join(OUT, "zipkin.jsonl"), "a") as f:
                for s in spans:
                    f.write(json.dumps(s) + "\n")
            self.answer(202)
        elif self.path == "/v1/traces" and ctype == "application/x-protobuf":
            with LOCK:
                N[0] += 1
                path = os.path.join(OUT, "otlp-%06d.bin" % N[0])
                with open(path + ".tmp", "wb") as f:
                    f.write(body)
                os.rename(path + ".tmp", path)
            self.answer(200)
        else:
            print("unexpected", self.path, ctype, flush=True)
            self.answer(400)


server = ThreadingHTTPServer((ADDR, PORT), Handler)
print("listening", flush=True)
server.serve_forever()
