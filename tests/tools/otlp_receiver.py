#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for tests/integration/access_log.sh.

Usage: otlp_receiver.py PORT OUT. Prints "listening" once it accepts.
Answers POST /v1/logs (Content-Type application/x-protobuf) with 200, and
appends one JSON line per LogRecord to OUT: its time, body and attributes,
decoded from the protobuf wire format by hand after the OTLP schema
(ExportLogsServiceRequest.resource_logs(1) > ResourceLogs.scope_logs(2) >
ScopeLogs.scope(1), log_records(2) > LogRecord.time_unix_nano(1, fixed64),
body(5), attributes(6), observed_time_unix_nano(11); AnyValue, KeyValue).
Anything else is answered 400 and logged.
"""
import base64
import json
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT = int(sys.argv[1]), sys.argv[2]


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


def fields(b):
    i = 0
    while i < len(b):
        k, i = varint(b, i)
        f, t = k >> 3, k & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % t)
        yield f, t, v


def any_value(b):
    for f, t, v in fields(b):
        if f == 1:
            return v.decode()
        if f == 2:
            return bool(v)
        if f == 3:
            return v - (1 << 64) if v >= 1 << 63 else v
        if f == 4:
            return struct.unpack("<d", v)[0]
        if f == 5:
            return [any_value(x) for ff, _, x in fields(v) if ff == 1]
        if f == 6:
            return dict(key_value(x) for ff, _, x in fields(v) if ff == 1)
        if f == 7:
            return base64.b64encode(v).decode()
    return None


def key_value(b):
    key = val = None
    for f, _, v in fields(b):
        if f == 1:
            key = v.decode()
        elif f == 2:
            val = any_value(v)
    return key, val


def records(body):
    for f, _, rl in fields(body):
        if f != 1:
            continue
        for f2, _, sl in fields(rl):
            if f2 != 2:
                continue
            scope = None
            for f3, _, x in fields(sl):
                if f3 == 1:
                    scope = dict((ff, v.decode()) for ff, _, v in fields(x) if ff == 1).get(1)
                elif f3 == 2:
                    rec = {"scope": scope, "attributes": {}}
                    for f4, _, v in fields(x):
                        if f4 == 1:
                            rec["time"] = struct.unpack("<Q", v)[0]
                        elif f4 == 11:
                            rec["observed"] = struct.unpack("<Q", v)[0]
                        elif f4 == 5:
                            rec["body"] = any_value(v)
                        elif f4 == 6:
                            k, val = key_value(v)
                            rec["attributes"][k] = val
                    yield rec


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = self.path == "/v1/logs" and self.headers.get("Content-Type") == "application/x-protobuf"
        try:
            recs = list(records(body)) if ok else []
        except (ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
            print("bad request:", e, flush=True)
            ok = False
        if ok:
            with open(OUT, "a") as f:
                for r in recs:
                    f.write(json.dumps(r) + "\n")
        else:
            print("refused", self.path, self.headers.get("Content-Type"), flush=True)
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
