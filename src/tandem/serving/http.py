"""The JSON HTTP service around a `Recommender`: FastAPI on uvicorn.

    GET  /health     -> {"status": "ok", "items": N, "users": U, "task": ..., "index": {...}, "limits": {...}}
    POST /recommend  {"user": "u1", "k": 10}
                         -> {"recommendations": [{"item": ..., "score": ..., "retriever_score": ...}, ...]}
                     {"history": ["i1", "i2"], "k": 10}      -> same (sequential task)
                     {"users": ["u1", "u2"], "k": 10}        -> {"recommendations": [[...], [...]]}
                     {"histories": [[...], [...]]}           -> one list per history
                     optional "exclude_known": true (default)
    GET  /docs, /openapi.json: the OpenAPI schema

Errors are JSON `{"error": message}`: 400 for bad JSON, a bad field, an unknown user or item, `k` above `max_k` or
more than `max_users` contexts; 413 for a body over `max_body_bytes`; 404 / 405 for a wrong path or method; 504
when an answer takes longer than `timeout_s`; 503 while shutting down; 500 (message only, details in the server
log) for a bug.

Concurrency: the event loop parses and answers HTTP; model calls run in a thread pool of `workers` threads (torch
and FAISS release the GIL in their kernels), with no lock: inference is read-only (`torch.inference_mode`, eval
mode). Requests that arrive while every worker is busy are merged into one model call when they are compatible
(same kind of context and candidate count), up to `max_batch_rows` rows: under load, batching raises throughput at
the same latency; alone, a request is answered at once. A request over `max_batch_rows` rows runs on its own.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from tandem.errors import TandemError

log = logging.getLogger("tandem.serving")

Token = Union[StrictStr, StrictInt]


@dataclass
class ServeSettings:
    """Limits and concurrency of the service (all have `tandem serve` options)."""

    max_k: int = 500  # items per context
    max_users: int = 100  # contexts (users or histories) per request
    max_history: int = 1000  # items per given history
    max_body_bytes: int = 1 << 20
    timeout_s: float = 10.0  # answer within this or 504
    workers: int = 2  # inference threads
    threads: int | None = 1  # torch / FAISS threads per call (None: leave as they are)
    max_batch_rows: int = 16  # rows merged into one model call
    max_connections: int = 1024  # open connections + requests in flight; beyond, 503
    keep_alive_s: float = 5.0
    graceful_s: float = 10.0  # on shutdown, time given to requests in flight

    def check(self) -> None:
        for name in ("max_k", "max_users", "max_history", "max_body_bytes", "workers", "max_batch_rows",
                     "max_connections"):
            if getattr(self, name) < 1:
                raise TandemError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise TandemError(f"serve: threads must be >= 1, got {self.threads}")
        for name in ("timeout_s", "keep_alive_s", "graceful_s"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise TandemError(f"serve: {name} must be a positive number of seconds, got {value}")


# ------------------------------------------------------------------------------------------------ the API schema


class RecommendRequest(BaseModel):
    """One context (`user` and/or `history`) or several (`users` and/or `histories`, one answer list each)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user": "196", "k": 10}]})

    user: Token | None = Field(None, description="a known user's raw token")
    users: list[Token] | None = Field(None, description="several users: the answer is one list per user")
    history: list[Token] | None = Field(None, description="raw item tokens, oldest first (sequential task)")
    histories: list[list[Token]] | None = Field(None, description="several histories, one per context")
    k: StrictInt = Field(10, ge=1, description="items per context (at most the service's max_k)")
    exclude_known: StrictBool = Field(True, description="leave out items the user or history already has")


class Recommendation(BaseModel):
    item: str
    score: float = Field(description="the re-ranking score (the retriever's for a retriever-only run)")
    retriever_score: float


class RecommendResponse(BaseModel):
    recommendations: list[Recommendation] | list[list[Recommendation]]


class ErrorResponse(BaseModel):
    error: str


_ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 500, 503, 504)}


def to_query_arguments(body: RecommendRequest, settings: ServeSettings) -> tuple[dict[str, Any], bool]:
    """Recommender.parse keyword arguments from a validated body, and whether the answer is one list."""
    if body.user is not None and body.users is not None:
        raise TandemError("give either 'user' or 'users', not both")
    if body.history is not None and body.histories is not None:
        raise TandemError("give either 'history' or 'histories', not both")
    single = body.users is None and body.histories is None
    users = [str(body.user)] if body.user is not None else (
        [str(user) for user in body.users] if body.users is not None else None)
    histories = [body.history] if body.history is not None else body.histories
    if users is None and histories is None:
        raise TandemError("give 'user', 'users', 'history' or 'histories'")
    rows = len(users) if users is not None else len(histories)
    if rows > settings.max_users:
        raise TandemError(f"{rows} contexts in one request; at most {settings.max_users} (split the request)")
    if histories is not None:
        histories = [[str(item) for item in history] for history in histories]
        longest = max((len(history) for history in histories), default=0)
        if longest > settings.max_history:
            raise TandemError(f"a history of {longest} items; at most {settings.max_history}")
    if body.k > settings.max_k:
        raise TandemError(f"'k' is at most {settings.max_k}, got {body.k}")
    return {"users": users, "histories": histories, "k": body.k, "exclude_known": body.exclude_known}, single


def validation_message(error: RequestValidationError) -> str:
    """One line from FastAPI's validation errors: where and what, or the JSON decoder's complaint."""
    problems = error.errors()
    if not problems:
        return "invalid request"
    first = problems[0]
    location = [part for part in first.get("loc", ()) if part != "body"]
    if (len(location) > 1 and isinstance(location[-1], str) and location[-1] not in RecommendRequest.model_fields
            and first.get("type") != "extra_forbidden"):
        location = location[:-1]  # a union member's tag ('str', 'int'), not a place in the body
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON{': ' + str(detail) if detail else ''}"
    if first.get("type") == "missing" and not location:
        return "the request body must be a JSON object"
    if first.get("type") == "extra_forbidden":
        allowed = sorted(RecommendRequest.model_fields)
        return f"unknown field {_place(location)!r}; expected some of {allowed}"
    if first.get("type") == "model_attributes_type" or (not location and first.get("type", "").endswith("type")):
        return "the request body must be a JSON object"
    where = _place(location) if location else "body"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"'{where}': {first.get('msg', 'invalid value')}; got {first.get('input')!r:.80}{more}"


def _place(location: list[Any]) -> str:
    """users[0] for ("users", 0)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ------------------------------------------------------------------------------------------------ batching


class Batcher:
    """Runs parsed queries in a thread pool; queries waiting for a free worker are merged per key.

    Lives on the event loop's thread (no lock needed): `submit` queues, a free worker takes the oldest key's queue
    (up to `max_rows` rows), and each finished call hands out its answers and starts the next one.
    """

    def __init__(self, recommender: Any, executor: ThreadPoolExecutor, workers: int, max_rows: int) -> None:
        self.recommender = recommender
        self.executor = executor
        self.workers = workers
        self.max_rows = max_rows
        self.pending: dict[Any, deque[tuple[Any, asyncio.Future]]] = {}
        self.busy = 0
        self.calls = 0
        self.rows = 0
        self.model_seconds = 0.0  # wall time of finished model calls, summed over workers

    async def submit(self, query: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        key = query.key if query.rows < self.max_rows else ("alone", id(future))
        self.pending.setdefault(key, deque()).append((query, future))
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:  # timed out or client gone: never start it if it has not started
            queue = self.pending.get(key)
            if queue is not None:
                for entry in list(queue):
                    if entry[1] is future:
                        queue.remove(entry)
                if not queue:
                    self.pending.pop(key, None)
            raise

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.busy < self.workers and self.pending:
            key = next(iter(self.pending))
            queue = self.pending.pop(key)
            taken: list[tuple[Any, asyncio.Future]] = []
            rows = 0
            while queue and (not taken or rows + queue[0][0].rows <= self.max_rows):
                query, future = queue.popleft()
                if future.done():
                    continue
                taken.append((query, future))
                rows += query.rows
            if queue:
                self.pending[key] = queue  # the rest waits behind the other keys
            if not taken:
                continue
            self.busy += 1
            self.calls += 1
            self.rows += rows
            call = loop.run_in_executor(self.executor, self._timed_run, [query for query, _ in taken])
            call.add_done_callback(lambda done, taken=taken: self._finished(done, taken))

    def _timed_run(self, queries: list[Any]) -> tuple[Any, float]:
        """The model call on a worker thread, with its wall time (read on the loop's thread: no lock)."""
        started = time.perf_counter()
        return self.recommender.run(queries), time.perf_counter() - started

    def _finished(self, done: asyncio.Future, taken: list[tuple[Any, asyncio.Future]]) -> None:
        self.busy -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        answers = None
        if error is None:
            answers, seconds = done.result()
            self.model_seconds += seconds
        for position, (_, future) in enumerate(taken):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answers[position])
        if self.pending:
            self._dispatch()


# ------------------------------------------------------------------------------------------------ the app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, by its Content-Length before it is read, or
    as it streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over {self.limit} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                size = int(value) if value.isdigit() else -1
                if size < 0 or size > self.limit:
                    status = 413 if size > self.limit else 400
                    await _error(status, message if status == 413 else "a bad Content-Length")(scope, receive, send)
                    return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, message)
            return event

        await self.app(scope, limited, send)


def create_app(recommender: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving `recommender` (anything with `parse`, `run`, `info`)."""
    settings = settings or ServeSettings()
    settings.check()
    if settings.threads is not None:
        set_threads(settings.threads)
    from tandem.utils import flush_denormals

    # each inference thread flushes denormals itself (the mode is per thread; see tandem.utils.flush_denormals)
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="tandem-infer",
                                  initializer=flush_denormals)
    batcher = Batcher(recommender, executor, settings.workers, settings.max_batch_rows)
    state = {"stopping": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gc.collect()
        gc.freeze()  # the model and index are long-lived: keep them out of every later collection
        yield
        state["stopping"] = True
        await asyncio.get_running_loop().run_in_executor(None, lambda: executor.shutdown(wait=True))

    app = FastAPI(
        title="tandem",
        summary="Retrieve-then-rank recommendations from a trained tandem run.",
        version=_version(),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.batcher = batcher
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type.lower():
            return _error(400, f"send the body as JSON with 'Content-Type: application/json' "
                               f"(got {content_type or 'no Content-Type'})")
        return _error(400, validation_message(error))

    @app.exception_handler(TandemError)
    async def bad_input(_: Request, error: TandemError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return _error(404, f"no such endpoint {request.url.path}; try GET /health or POST /recommend")
        if error.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; "
                               "use GET /health or POST /recommend")
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %r", error, exc_info=error)
        return _error(500, "internal error")

    @app.get("/health", summary="liveness and what is served")
    async def health() -> dict[str, Any]:
        return {"status": "stopping" if state["stopping"] else "ok", **recommender.info(),
                "limits": {key: value for key, value in asdict(settings).items()
                           if key in ("max_k", "max_users", "max_history", "max_body_bytes", "timeout_s")},
                "workers": settings.workers, "threads": settings.threads,
                "model_calls": batcher.calls, "rows": batcher.rows,
                "model_seconds": round(batcher.model_seconds, 6)}

    @app.post("/recommend", summary="top-k items per context", response_model=RecommendResponse,
              responses=_ERRORS)
    async def recommend(body: RecommendRequest) -> JSONResponse:
        if state["stopping"]:
            return _error(503, "the service is shutting down")
        arguments, single = to_query_arguments(body, settings)
        query = recommender.parse(**arguments)
        try:
            answers = await asyncio.wait_for(batcher.submit(query), settings.timeout_s)
        except asyncio.TimeoutError:
            return _error(504, f"no answer within {settings.timeout_s:g} s; try fewer contexts or a smaller k")
        return JSONResponse({"recommendations": answers[0] if single else answers})

    return app


def set_threads(threads: int) -> None:
    """Threads per torch / FAISS call (process-wide)."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except (ImportError, AttributeError):
        pass


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tandem")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


# ------------------------------------------------------------------------------------------------ running it


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a TandemError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise TandemError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise TandemError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Any, settings: ServeSettings, quiet: bool = False) -> Any:
    """A uvicorn server for `app` (not started)."""
    import uvicorn

    config = uvicorn.Config(
        app, lifespan="on", access_log=not quiet, log_level="warning" if quiet else "info",
        timeout_keep_alive=settings.keep_alive_s, timeout_graceful_shutdown=settings.graceful_s,
        limit_concurrency=settings.max_connections, backlog=2048, server_header=False,
    )
    return uvicorn.Server(config)


class ServerHandle:
    """A server running in a background thread (tests, benchmarks): `url`, `stop()`."""

    def __init__(self, server: Any, sock: socket.socket, thread: threading.Thread) -> None:
        self.server, self.sock, self.thread = server, sock, thread
        self.url = _url(sock)

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful: stop accepting, let requests in flight finish, then return."""
        self.server.should_exit = True
        self.thread.join(timeout)


def start_server(recommender: Any, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                 settings: ServeSettings | None = None) -> ServerHandle:
    """Serve in a background thread; returns once it accepts connections."""
    settings = settings or ServeSettings(threads=None)
    sock = bind(host, port)
    server = make_server(create_app(recommender, settings), settings, quiet=quiet)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tandem-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise TandemError("the HTTP server did not start")
        time.sleep(0.01)
    return ServerHandle(server, sock, thread)


def serve(recommender: Any, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
          settings: ServeSettings | None = None) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down gracefully: stop accepting, let the requests in flight
    finish (up to `graceful_s`), stop the workers, return."""
    import signal

    settings = settings or ServeSettings()
    app = create_app(recommender, settings)
    sock = bind(host, port)
    server = make_server(app, settings, quiet=quiet)
    print(f"serving {_url(sock)} ({recommender.num_items} items; {settings.workers} worker(s) x "
          f"{settings.threads or 'default'} thread(s)); GET /health, POST /recommend, GET /docs", flush=True)
    received: list[int] = []
    # uvicorn handles the signals while it serves, then re-raises the one it got: record it instead of dying by it
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda number, _frame: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    reason = f" on {signal.Signals(received[0]).name}" if received else ""
    print(f"stopped{reason}", file=sys.stderr, flush=True)
