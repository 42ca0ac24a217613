#!/usr/bin/env python3
"""An app of a traced call chain for tests/integration/trace.sh.

Usage: trace_app.py PORT NAME [NEXT]. Prints "listening" once it accepts.
GET /chain...: with NEXT (http://HOST:PORT, its sidecar's outbound) it
calls NEXT with the same path, passing on the trace headers it received
(traceparent, tracestate, b3, x-b3-*), as an instrumented app does, and
answers JSON {"name", "headers": the trace headers it got, "next": the
callee's answer}; without NEXT (or any other path) the same without "next".
"""
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, NAME = int(sys.argv[1]), sys.argv[2]
NEXT = sys.argv[3] if len(sys.argv) > 3 else None
TRACE = ("traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
         "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        got = {k: self.headers[k] for k in TRACE if self.headers.get(k) is not None}
        out = {"name": NAME, "headers": got}
        if NEXT and self.path.startswith("/chain"):
            req = urllib.request.Request(NEXT + self.path, headers=got)
            with urllib.request.urlopen(req, timeout=30) as r:
                out["next"] = json.loads(r.read())
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
