"""A stand-in for the payments service, to try the app against: python payments.py [PORT]

GET /pay and GET /healthz answer 200 while healthy, 500 while failing, and never
while hanging. Switch it with POST /mode/healthy, /mode/failing or /mode/hanging:

    curl -X POST http://127.0.0.1:8081/mode/failing
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("healthy", "failing", "hanging")


class Payments:
    """The service on 127.0.0.1:``port`` (0: a free one), served on a thread of its own."""

    def __init__(self, port=0):
        self.mode = "healthy"
        self.pays = 0  # GET /pay requests received, in any mode
        self._lock = threading.Lock()
        self._released = threading.Event()  # set by close(): hanging requests end
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self):
        with self._lock:
            return self.pays

    def close(self):
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _handler(self):
        payments = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mode = payments.mode
                if self.path == "/pay":
                    with payments._lock:
                        payments.pays += 1
                if mode == "hanging":
                    payments._released.wait(60)
                    return
                self._answer(200 if mode == "healthy" else 500,
                             {"status": "paid", "served_by": "upstream"})

            def do_POST(self):
                mode = self.path.removeprefix("/mode/")
                if mode not in MODES:
                    self._answer(404, {"error": f"POST /mode/ one of {', '.join(MODES)}"})
                    return
                payments.mode = mode
                self._answer(200, {"mode": mode})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


if __name__ == "__main__":
    service = Payments(int(sys.argv[1]) if len(sys.argv) > 1 else 8081)
    print(f"payments stand-in on {service.url} (POST /mode/failing, /mode/hanging, "
          f"/mode/healthy); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        service.close()
