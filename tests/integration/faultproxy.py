"""A small HTTP proxy in front of a real tracking server that fails chosen calls on purpose.

Part of the test harness, not a mock: every request it does not fail is forwarded to the real
`mlflow server` and its real answer returned. A fault is (substring of "METHOD path", kind): `500`
answers HTTP 500, `403` answers PERMISSION_DENIED as MLflow's auth would, `500-after` forwards the
request (the server applies it) and then answers HTTP 500, as a timeout after a write does, `slow`
forwards it after `slow_s` seconds (a live server under load), `hang`
holds the request until the client gives up (at most `hang_s`) and never forwards it;
`hang_write = n` hangs the n-th write (a process killed there has made exactly n - 1 writes).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class FaultProxy:
    def __init__(self, target: str, hang_s: float = 30.0):
        parsed = urlparse(target)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.faults: dict[str, str] = {}  # substring of "METHOD path" -> 500 | 403 | 500-after | slow | hang | drop
        self.slow_s = 4.0
        self.hang_write: int | None = None  # hang the n-th write (POST, PATCH, DELETE), counting from 1
        self.writes = 0
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self.hang_s = hang_s
        self._stop = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest's output clean
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                call = f"{self.command} {self.path}"
                fault = next((kind for part, kind in proxy.faults.items() if part in call), None)
                if self.command != "GET":
                    proxy.writes += 1
                    if proxy.writes == proxy.hang_write:
                        fault = "hang"
                proxy.seen.append((self.command, self.path, fault or "forwarded"))
                if fault == "hang":
                    proxy._stop.wait(proxy.hang_s)
                    self.close_connection = True
                    return
                if fault == "drop":  # a server that is down, for connections already open too
                    self.close_connection = True
                    return
                if fault in ("500", "403"):
                    code = "INTERNAL_ERROR" if fault == "500" else "PERMISSION_DENIED"
                    data = json.dumps({"error_code": code, "message": f"injected {fault}"}).encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if fault == "slow":
                    proxy._stop.wait(proxy.slow_s)
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                if fault == "500-after":  # applied by the server; the client hears an error
                    data = json.dumps({"error_code": "INTERNAL_ERROR", "message": "injected 500-after"}).encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    conn.close()
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        time.sleep(0.05)
