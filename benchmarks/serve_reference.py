"""The reference of benchmarks/serve_load.py: the service as it was before issue 12, rebuilt on the standard
library so that the load test can measure it in the same run as `tandem serve` (a speed-up is a ratio measured on
one machine at one time, never against a figure from another day).

    python benchmarks/serve_reference.py RUN_DIR [--port 0]     # prints "serving http://127.0.0.1:PORT"

What it keeps from that server: `http.server.ThreadingHTTPServer` (one thread per connection, HTTP/1.1
keep-alive, the default listen backlog of 5), the JSON body parsed by hand, and every model call under one global
lock. It answers POST /recommend {"user": ..., "k": ...} (and the other context fields, through the same
`Recommender.parse`) and GET /health; it is a measuring stick, not a service (no limits, no timeouts).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ReferenceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:  # quiet, as `tandem serve --quiet`
        pass

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: ReferenceServer = self.server  # type: ignore[assignment]
        if self.path == "/health":
            self._send(200, {"status": "ok", **server.recommender.info()})
        else:
            self._send(404, {"error": "no such endpoint"})

    def do_POST(self) -> None:  # noqa: N802
        from tandem.errors import TandemError

        server: ReferenceServer = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            request = json.loads(body)
            single = "users" not in request and "histories" not in request
            users = [str(request["user"])] if "user" in request else request.get("users")
            histories = [request["history"]] if "history" in request else request.get("histories")
            query = server.recommender.parse(users=users, histories=histories, k=int(request.get("k", 10)),
                                             exclude_known=bool(request.get("exclude_known", True)))
            with server.lock:
                answers = server.recommender.run([query])[0]
        except (ValueError, KeyError, TypeError, TandemError) as error:
            self._send(400, {"error": str(error)})
            return
        self._send(200, {"recommendations": answers[0] if single else answers})


class ReferenceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recommender: object) -> None:
        super().__init__(address, ReferenceHandler)
        self.recommender = recommender
        self.lock = threading.Lock()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch / FAISS threads (default 1)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from tandem.serving.http import set_threads
    from tandem.serving.pipeline import Recommender

    set_threads(args.threads)
    server = ReferenceServer((args.host, args.port), Recommender.from_run(args.run_dir))
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port} (reference: stdlib server, one global lock)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
