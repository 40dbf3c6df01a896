"""A small JSON HTTP service around a `Recommender`, on the standard library only.

    GET  /health     -> {"status": "ok", "items": N, "users": U, "task": ..., "scheme": ..., "index": {...}}
    POST /recommend  {"user": "u1", "k": 10}                -> {"recommendations": [{"item", "score", "retriever_score"}, ...]}
                     {"history": ["i1", "i2"], "k": 10}      -> same (sequential task)
                     {"users": ["u1", "u2"], "k": 10}        -> {"recommendations": [[...], [...]]}
                     {"histories": [[...], [...]]}           -> one list per history
                     optional "exclude_known": true (default)

Bad JSON, a bad field or an unknown user/item gets 400 with {"error": message}; an unknown path 404. Model calls
run under `torch.no_grad()` and one lock (the models are not re-entrant; FAISS and torch use their own threads).
"""
from __future__ import annotations

import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from tandem.errors import TandemError

MAX_BODY_BYTES = 1 << 20
MAX_ROWS = 10_000


class RecommendServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the recommender and the lock its calls run under."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], recommender: Any, quiet: bool = False) -> None:
        super().__init__(address, RecommendHandler)
        self.recommender = recommender
        self.lock = threading.Lock()
        self.quiet = quiet

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def _field_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body[key]
    if not isinstance(value, list):
        raise TandemError(f"'{key}' must be a JSON list, got {type(value).__name__}")
    if len(value) > MAX_ROWS:
        raise TandemError(f"'{key}' has {len(value)} entries; at most {MAX_ROWS} per request")
    return value


def parse_request(body: Any) -> tuple[dict[str, Any], bool]:
    """Recommender keyword arguments from a request body, and whether the answer is one list (single context)."""
    if not isinstance(body, dict):
        raise TandemError("the request body must be a JSON object")
    allowed = {"user", "users", "history", "histories", "k", "exclude_known"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise TandemError(f"unknown field(s) {unknown}; expected some of {sorted(allowed)}")
    if ("user" in body and "users" in body) or ("history" in body and "histories" in body):
        raise TandemError("give either 'user' or 'users', and either 'history' or 'histories'")
    single = "users" not in body and "histories" not in body
    users = histories = None
    if "user" in body:
        if not isinstance(body["user"], (str, int)) or isinstance(body["user"], bool):
            raise TandemError("'user' must be a string")
        users = [str(body["user"])]
    if "users" in body:
        users = [str(user) for user in _field_list(body, "users")]
    if "history" in body:
        history = _field_list(body, "history")
        histories = [[str(item) for item in history]]
    if "histories" in body:
        histories = []
        for row, history in enumerate(_field_list(body, "histories")):
            if not isinstance(history, list):
                raise TandemError(f"'histories'[{row}] must be a JSON list of item tokens")
            histories.append([str(item) for item in history])
    if users is None and histories is None:
        raise TandemError("give 'user', 'users', 'history' or 'histories'")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TandemError(f"'k' must be a positive integer, got {k!r}")
    exclude_known = body.get("exclude_known", True)
    if not isinstance(exclude_known, bool):
        raise TandemError("'exclude_known' must be true or false")
    return {"users": users, "histories": histories, "k": k, "exclude_known": exclude_known}, single


class RecommendHandler(BaseHTTPRequestHandler):
    server: RecommendServer
    protocol_version = "HTTP/1.1"
    server_version = "tandem"

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok", **self.server.recommender.info()})
        elif path == "/recommend":
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST /recommend with a JSON body"})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}; try GET /health or POST /recommend"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"Content-Length must be 0..{MAX_BODY_BYTES} bytes"})
            return
        raw = self.rfile.read(length)
        if path != "/recommend":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}; try POST /recommend"})
            return
        try:
            try:
                body = json.loads(raw.decode("utf-8") if raw else "")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise TandemError(f"the request body is not valid JSON: {error}") from None
            kwargs, single = parse_request(body)
            with self.server.lock, torch.no_grad():
                recommendations = self.server.recommender.recommend(**kwargs)
        except TandemError as error:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        except Exception as error:  # never leak a traceback to the client; log it on the server
            self.log_error("internal error: %r", error)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            return
        self._send(HTTPStatus.OK, {"recommendations": recommendations[0] if single else recommendations})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def make_server(recommender: Any, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> RecommendServer:
    """Bind the service (port 0 picks a free port: see `server.server_address`); not yet serving."""
    try:
        return RecommendServer((host, port), recommender, quiet=quiet)
    except OSError as error:
        raise TandemError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def start_server(recommender: Any, host: str = "127.0.0.1", port: int = 0,
                 quiet: bool = True) -> tuple[RecommendServer, threading.Thread]:
    """Serve in a background thread; stop with `server.shutdown(); server.server_close()`."""
    server = make_server(recommender, host, port, quiet=quiet)
    thread = threading.Thread(target=server.serve_forever, name="tandem-http", daemon=True)
    thread.start()
    return server, thread


def serve(recommender: Any, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(recommender, host, port, quiet=quiet)
    print(f"serving {server.url} ({recommender.num_items} items); GET /health, POST /recommend", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
