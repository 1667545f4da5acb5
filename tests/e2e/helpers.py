import time

import httpx

TERMINAL = {"succeeded", "failed", "canceled"}


def wait_for(client: httpx.Client, job_id: str, until=lambda job: job["status"] in TERMINAL, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/generations/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck: {job['status']} {job.get('progress')}")
        time.sleep(0.1)


class WebhookReceiver:
    """A real HTTP server on loopback that records webhook POSTs (headers, body)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        received = self.received = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append((dict(self.headers), self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
