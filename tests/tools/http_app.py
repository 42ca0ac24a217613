#!/usr/bin/env python3
"""A small HTTP/1.1 app for the sidecar's L7 tests (tests/integration/l7.sh).

Usage: http_app.py PORT NAME [--health-file=PATH]. Prints "listening" once
it accepts. Every response carries "X-Instance: NAME". Paths:
  /status/N         answers status N
  /slow/MS          waits MS milliseconds, then 200
  /drip/N/MS        200, a chunked body of N lines, one each MS milliseconds
  /flaky/KEY/N      the first N requests for KEY answer 503, then 200
  /echo...          JSON: instance, method, path, headers, body length
  /stats            JSON: requests and connections this instance saw
  /health           with --health-file: 503 while PATH exists, else 200
                    (/stats says its count and the last X-Check header it had)
  anything else     200 "hello from NAME"
A request with "Upgrade: X" and "Connection: Upgrade" gets a 101 and then
every byte it sends comes back, upper-cased, until it closes.
"""
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[2] if len(sys.argv) > 2 else "app"
HEALTH_FILE = next((a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--health-file=")), None)
LOCK = threading.Lock()
STATS = {"requests": 0, "connections": 0}
FLAKY = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per response (flushed after each request)
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with LOCK:
            STATS["connections"] += 1

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status, body, ctype="text/plain"):
        data = body.encode() if status not in (204, 304) else b""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Instance", NAME)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def tunnel(self):
        self.send_response(101)
        self.send_header("Upgrade", self.headers.get("Upgrade"))
        self.send_header("Connection", "Upgrade")
        self.send_header("X-Instance", NAME)
        self.end_headers()
        self.wfile.flush()
        while True:
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(data.upper())
        self.close_connection = True

    def handle_any(self):
        with LOCK:
            STATS["requests"] += 1
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self.read_chunked()
        if self.headers.get("Upgrade") and "upgrade" in (self.headers.get("Connection") or "").lower():
            return self.tunnel()
        parts = self.path.split("?")[0].split("/")
        if len(parts) >= 3 and parts[1] == "status":
            return self.send(int(parts[2]), "status %s from %s\n" % (parts[2], NAME))
        if len(parts) >= 3 and parts[1] == "slow":
            time.sleep(int(parts[2]) / 1000.0)
            return self.send(200, "slow from %s\n" % NAME)
        if len(parts) >= 4 and parts[1] == "drip":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Instance", NAME)
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(int(parts[2])):
                    time.sleep(int(parts[3]) / 1000.0)
                    line = b"drip %d\n" % i
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            return
        if len(parts) >= 4 and parts[1] == "flaky":
            with LOCK:
                seen = FLAKY.get(parts[2], 0)
                FLAKY[parts[2]] = seen + 1
            if seen < int(parts[3]):
                return self.send(503, "flaky %d from %s\n" % (seen, NAME))
            return self.send(200, "recovered after %d from %s\n" % (seen, NAME))
        if HEALTH_FILE and len(parts) == 2 and parts[1] == "health":
            with LOCK:
                STATS["health"] = STATS.get("health", 0) + 1
                STATS["health_x_check"] = self.headers.get("X-Check")
            if os.path.exists(HEALTH_FILE):
                return self.send(503, "unhealthy %s\n" % NAME)
            return self.send(200, "healthy %s\n" % NAME)
        if len(parts) >= 2 and parts[1] == "stats":
            with LOCK:
                return self.send(200, json.dumps(STATS), "application/json")
        if len(parts) >= 2 and parts[1].startswith("echo"):
            out = {
                "instance": NAME,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": len(body),
            }
            return self.send(200, json.dumps(out), "application/json")
        return self.send(200, "hello from %s\n" % NAME)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
