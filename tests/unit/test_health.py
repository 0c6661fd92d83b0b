"""wait_healthy: True once /health answers 200; False on timeout or when the process dies first."""

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flowops.health import wait_healthy


class Health(BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):
        self.send_response(Health.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_waits_until_the_service_is_healthy():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        Health.status = 503
        assert wait_healthy(url, 1.0) is False  # answering, but not healthy
        threading.Timer(0.5, lambda: setattr(Health, "status", 200)).start()
        start = time.monotonic()
        assert wait_healthy(url + "/", 10.0) is True
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()


def test_a_process_that_exits_ends_the_wait_early():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    start = time.monotonic()
    assert wait_healthy("http://127.0.0.1:9", 30.0, proc) is False
    assert time.monotonic() - start < 2
