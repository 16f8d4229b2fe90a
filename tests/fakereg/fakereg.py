#!/usr/bin/env python3
"""fakereg: the fake service registry routerd's tests pull from (Python 3, stdlib only).

usage: fakereg [-l ADDR:PORT] [--tls CERT KEY] [--token TOKEN]

Speaks both HTTP registry formats over the same service list:
  GET /api/v2/services/registry/services   mech-compute: {"success": true, "services": [...]}
  GET /services[?healthy=true]              simple: {"services": [...]} (healthy=true drops
                                            records whose "healthy" is false)
The records are served exactly as they were set: the test writes them in
the shape of the format routerd is configured for.

Control (never affected by the mode, never counted in "pulls"):
  POST /__services      body: a JSON list of records, or {"services": [...]}
  POST /__mode?m=MODE   ok | down (close without answering) | 500 | garbage
                        (200, not JSON) | truncated (200, JSON cut in half) |
                        partial (Content-Length promises more than is sent) |
                        slow:MS (answer after MS ms) | oversize:BYTES (a valid
                        answer padded to BYTES) | nosuccess ({"success": false})
  GET  /__stats         {"pulls", "mode", "last_headers", "services"}
Every request with --token set must carry X-Registry-Token: TOKEN (else 401).
Prints "fakereg listening on ADDR:PORT" once ready; SIGTERM exits 0.
"""
import http.server
import json
import signal
import ssl
import sys
import threading
import time
import urllib.parse


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.services = []
        self.mode = "ok"
        self.pulls = 0
        self.last_headers = {}
        self.token = None


STATE = State()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakereg/1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body, ctype="application/json", length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj).encode())

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        body = self._body()
        if u.path == "/__services":
            try:
                data = json.loads(body or b"[]")
            except ValueError as e:
                return self._json(400, {"error": str(e)})
            if isinstance(data, dict):
                data = data.get("services", [])
            with STATE.lock:
                STATE.services = data
            return self._json(200, {"services": len(data)})
        if u.path == "/__mode":
            m = (q.get("m") or q.get("mode") or ["ok"])[0]
            with STATE.lock:
                STATE.mode = m
            return self._json(200, {"mode": m})
        self._json(404, {"error": "not found"})

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/__stats":
            with STATE.lock:
                return self._json(200, {"pulls": STATE.pulls, "mode": STATE.mode,
                                        "last_headers": STATE.last_headers,
                                        "services": len(STATE.services)})
        if u.path not in ("/api/v2/services/registry/services", "/services"):
            return self._json(404, {"error": "not found"})
        with STATE.lock:
            STATE.pulls += 1
            STATE.last_headers = {k.lower(): v for k, v in self.headers.items()}
            mode = STATE.mode
            services = list(STATE.services)
            token = STATE.token
        if token is not None and self.headers.get("X-Registry-Token") != token:
            return self._json(401, {"error": "bad token"})
        if u.path == "/services":
            if q.get("healthy", [""])[0] == "true":
                services = [s for s in services
                            if not (isinstance(s, dict) and s.get("healthy") is False)]
            doc = {"services": services}
        else:
            doc = {"success": True, "services": services}
        self._answer(mode, doc)

    def _answer(self, mode, doc):
        if mode == "down":
            self.close_connection = True
            self.connection.close()
            return
        if mode == "500":
            return self._json(500, {"success": False, "error": "registry broken"})
        if mode == "garbage":
            return self._send(200, b"<html>this is not JSON {{{")
        if mode == "nosuccess":
            return self._json(200, {"success": False, "error": "database unavailable"})
        body = json.dumps(doc).encode()
        if mode == "truncated":
            return self._send(200, body[:len(body) // 2])
        if mode == "partial":
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        if mode.startswith("slow:"):
            time.sleep(int(mode[5:]) / 1000.0)
        elif mode.startswith("oversize:"):
            want = int(mode[9:])
            doc = dict(doc)
            doc["padding"] = "x" * max(0, want - len(body))
            body = json.dumps(doc).encode()
        self._send(200, body)


def main():
    args = sys.argv[1:]
    addr = "127.0.0.1:0"
    tls = None
    i = 0
    while i < len(args):
        if args[i] == "-l":
            addr = args[i + 1]
            i += 2
        elif args[i] == "--tls":
            tls = (args[i + 1], args[i + 2])
            i += 3
        elif args[i] == "--token":
            STATE.token = args[i + 1]
            i += 2
        else:
            sys.stderr.write(__doc__)
            sys.exit(2)
    host, port = addr.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: (srv.server_close(), sys.exit(0)))
    print("fakereg listening on %s:%d" % (host, srv.server_address[1]), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
