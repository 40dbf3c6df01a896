"""Load test of `tandem serve`: concurrent keep-alive clients against a server on 127.0.0.1, one torch thread.

    python benchmarks/serve_load.py                       # ML-100K CoRR (SASRec -> DIN), 8 and 32 clients
    python benchmarks/serve_load.py --run runs/corr --clients 8 32 --workers 1 2 --seconds 15

Without `--run`, a run directory is made from `--config` (default configs/ml100k-seq-corr.yaml) with the models'
initial weights: the cost of an answer does not depend on the weights, and no training is needed. For each
`--workers` value a server is started as its own process (`tandem serve --host 127.0.0.1 --port 0 --threads 1
--workers W`): torch and FAISS use one thread per call, and with `--workers 1` the model runs on one CPU thread in
all. Every client is an asyncio task holding one keep-alive connection and posting {"user": <random known user>,
"k": 10} as soon as its previous answer arrives (`--client raw`: a minimal HTTP/1.1 client on asyncio streams, so
that the client's own CPU cost disturbs the server little; `--client httpx`: httpx.AsyncClient). Each level runs for
at most `--requests` answers or `--seconds` seconds after a warm-up, whichever comes first; then the server gets
SIGTERM and must exit on its own (exit status 0). Figures: throughput (answers per second), latency p50 / p90 /
p99 / max (ms), errors (non-200 answers, malformed answers, failed connections), and from the server's /health
counters the rows per model call, milliseconds per model call and the share of the time the model was busy.
The reference (`--reference`, on by default) is benchmarks/serve_reference.py, the stdlib server with one global
lock that the service replaced, loaded with the same run and measured at the same levels in the same run: the
goal "at least 3x the throughput at 8 clients" is checked against it, not against a figure from another day.
Everything goes to `--out` (default benchmarks/results/serve_load.json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# the figures issue 12 measured before the service was replaced (another day; the same-run reference is preferred)
BASELINE = {"server": "stdlib ThreadingHTTPServer with a global lock (before issue 12)", "clients": 8,
            "throughput_rps": 171, "p50_ms": 44, "p99_ms": 57, "clients_32_p99_ms": 1080}


def make_run(config_path: Path, out: Path) -> dict[str, Any]:
    """A complete run directory with the configured models at their initial weights (config.yaml, best.pt and a
    report.json saying so, with empty test metrics: a run without report.json is refused as unfinished)."""
    import torch
    import yaml

    from tandem.config import load_config
    from tandem.run import build_scheme, prepare
    from tandem.utils import seed_everything

    config = load_config(config_path)
    seed_everything(config.seed)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.save({"state": scheme.state_dict(), "epoch": 0}, out / "best.pt")
    (out / "report.json").write_text(json.dumps({"epochs_run": 0, "weights": "initial (untrained)", "test": {}}))
    return {"config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
            "weights": "initial (untrained)"}


def start_server(run: Path, workers: int | None, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """`tandem serve` with `workers` inference threads, or the reference server when `workers` is None."""
    if workers is None:
        command = [sys.executable, str(ROOT / "benchmarks" / "serve_reference.py"), str(run), "--threads", "1"]
    else:
        command = [sys.executable, "-m", "tandem.cli", "serve", str(run), "--host", "127.0.0.1", "--port", "0",
                   "--quiet", "--threads", "1", "--workers", str(workers), "--max-batch-rows",
                   str(args.max_batch_rows)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()  # "serving http://127.0.0.1:PORT (...)"
    if not line.startswith("serving "):
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()[-2000:]}")
    return process, line.split()[1]


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams: POST a JSON body, read status and body."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(":") for line in lines[1:] if line)
        headers = {name.lower(): value.strip() for name, _, value in fields}
        content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class HttpxClient:
    """The same through httpx.AsyncClient (one connection per client)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=30.0)

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        response = await self.client.post(path, json=body)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


async def one_level(url: str, users: list[str], clients: int, requests: int, seconds: float, warmup: float,
                    k: int, seed: int, kind: str) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    state = {"measuring": False, "stop": False}
    rng = random.Random(seed)
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)

    async def worker() -> None:
        connection = RawClient(host, int(port)) if kind == "raw" else HttpxClient(url)
        try:
            while not state["stop"]:
                began = time.perf_counter()
                try:
                    status, content = await asyncio.wait_for(
                        connection.post("/recommend", {"user": rng.choice(users), "k": k}), 30)
                    answer = json.loads(content) if status == 200 else None
                    kind_of_error = (f"HTTP {status}" if status != 200 else
                                     None if len(answer.get("recommendations", ())) == k else "short answer")
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
                    kind_of_error = type(error).__name__
                    await connection.close()
                    connection = RawClient(host, int(port)) if kind == "raw" else HttpxClient(url)
                elapsed = time.perf_counter() - began
                if not state["measuring"]:
                    continue
                if kind_of_error is None:
                    latencies.append(elapsed)
                else:
                    errors[kind_of_error] = errors.get(kind_of_error, 0) + 1
                if len(latencies) + sum(errors.values()) >= requests:
                    state["stop"] = True
        finally:
            await connection.close()

    tasks = [asyncio.create_task(worker()) for _ in range(clients)]
    await asyncio.sleep(warmup)
    state["measuring"], started = True, time.perf_counter()
    while not state["stop"] and time.perf_counter() < started + seconds:
        await asyncio.sleep(0.02)
    state["stop"], state["measuring"] = True, False  # answers still in flight are not counted
    ended = time.perf_counter()
    await asyncio.gather(*tasks)
    duration = ended - started
    milliseconds = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "answers": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(duration, 2),
        "throughput_rps": round(len(latencies) / duration, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
        "p90_ms": round(float(np.percentile(milliseconds, 90)), 1),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 1),
        "max_ms": round(float(milliseconds.max()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run directory (default: make one from --config)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ml100k-seq-corr.yaml")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32], help="concurrency levels (default 8 32)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="the server's inference threads, one server each (default 1 2)")
    parser.add_argument("--requests", type=int, default=8000, help="answers per level at most (default 8000)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per level at most (default 12)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-batch-rows", type=int, default=16, help="the server's --max-batch-rows")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the stdlib reference server in this run (default on)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    servers = []
    reference: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        if args.run is None:
            run = Path(scratch) / "run"
            model = make_run(args.config.resolve(), run)
        else:
            run, model = args.run, {"run": str(args.run), "weights": "trained"}
        users = _known_users(run)
        for workers in ([None] if args.reference else []) + list(args.workers):
            process, url = start_server(run, workers, args)
            levels: list[dict[str, Any]] = []
            health: dict[str, Any] = {}
            try:
                health = _get_json(url + "/health")
                model.update({key: health.get(key) for key in ("task", "scheme", "retriever", "ranker", "users",
                                                                "items", "retrieval_cutoff")})
                for clients in args.clients:
                    before = _get_json(url + "/health")
                    level = asyncio.run(one_level(url, users, clients, args.requests, args.seconds, args.warmup,
                                                  args.k, args.seed, args.client))
                    level["workers"] = workers
                    if workers is not None:
                        level.update(_model_share(before, _get_json(url + "/health"), level, args.warmup))
                    print(json.dumps(level), flush=True)
                    levels.append(level)
                health = _get_json(url + "/health")
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    exit_code: int | str = process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    exit_code = "killed after 30 s"
            if workers is None:
                reference = {"server": "benchmarks/serve_reference.py (stdlib, one global lock), this run",
                             "torch_threads": 1, "levels": levels}
                continue
            servers.append({"workers": workers, "torch_threads": 1, "max_batch_rows": args.max_batch_rows,
                            "model_calls": health.get("model_calls"), "rows_answered": health.get("rows"),
                            "exit_code_after_sigterm": exit_code, "levels": levels})
    reference_levels = {level["clients"]: level for level in (reference or {}).get("levels", [])}
    # the same-run reference when measured, else the figure the issue measured before the service was replaced
    reference_rps = reference_levels[8]["throughput_rps"] if 8 in reference_levels else BASELINE["throughput_rps"]
    result = {
        "command": " ".join(["python benchmarks/serve_load.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
        "stack": "FastAPI + uvicorn" + (" (httptools, uvloop)" if _has("httptools") and _has("uvloop") else ""),
        "client": args.client,
        "model": model,
        "request": {"k": args.k, "body": '{"user": <random known user>, "k": %d}' % args.k},
        "servers": servers,
        "reference": reference,
        "baseline": BASELINE,
        "goal": {"clients_32_errors": 0, "clients_32_p99_ms_at_most": 100,
                 "clients_8_throughput_rps_at_least": round(3 * reference_rps, 1)},
        "goal_met": {},
    }
    for server in servers:
        by_clients = {level["clients"]: level for level in server["levels"]}
        if 8 in by_clients and 32 in by_clients:
            result["goal_met"][f"workers_{server['workers']}"] = {
                "clients_32_errors": by_clients[32]["errors"] == 0,
                "clients_32_p99": by_clients[32]["p99_ms"] <= 100,
                "clients_8_throughput": by_clients[8]["throughput_rps"] >= 3 * reference_rps,
                "clients_8_speedup_over_reference": round(by_clients[8]["throughput_rps"] / reference_rps, 2),
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


def _model_share(before: dict[str, Any], after: dict[str, Any], level: dict[str, Any],
                 warmup: float) -> dict[str, Any]:
    """Rows per model call and the share of the level's time (warm-up included) the model threads were busy, from
    the server's /health counters: a busy share near the number of workers means the model, not HTTP, is the
    bound."""
    calls = after["model_calls"] - before["model_calls"]
    busy = after["model_seconds"] - before["model_seconds"]
    return {"rows_per_model_call": round((after["rows"] - before["rows"]) / max(calls, 1), 2),
            "model_ms_per_call": round(1e3 * busy / max(calls, 1), 2),
            "model_busy_share": round(busy / (level["seconds"] + warmup), 3)}


def _get_json(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _known_users(run: Path) -> list[str]:
    """The run's user tokens, read the way the server reads them."""
    from tandem.config import config_from_dict
    from tandem.run import load_data

    import yaml

    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    return [str(token) for token in load_data(config.data).user_tokens]


if __name__ == "__main__":
    sys.exit(main())
