"""Load test of `tandem serve`: concurrent keep-alive clients against a server on 127.0.0.1, one torch thread.

    python benchmarks/serve_load.py                       # ML-100K CoRR (SASRec -> DIN), 8 and 32 clients
    python benchmarks/serve_load.py --run runs/corr --clients 8 32 --requests 4000 --seconds 20

Without `--run`, a run directory is made from `--config` (default configs/ml100k-seq-corr.yaml) with the models'
initial weights: the cost of an answer does not depend on the weights, and no training is needed. The server is
started as a separate process (`tandem serve --host 127.0.0.1 --port 0 --threads 1`), every client is an asyncio
task holding one keep-alive connection (httpx.AsyncClient) and posting {"user": <random known user>, "k": 10} as
soon as its previous answer arrives. Each level runs for at most `--requests` answers or `--seconds` seconds after a
short warm-up, whichever comes first; then the server gets SIGTERM and must exit on its own. Figures: throughput
(answers per second), latency p50 / p90 / p99 / max (ms), errors (non-200 answers or failed connections).
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
BASELINE = {"server": "stdlib ThreadingHTTPServer with a global lock (before issue 12)", "clients": 8,
            "throughput_rps": 171, "p50_ms": 44, "p99_ms": 57, "clients_32_p99_ms": 1080}


def make_run(config_path: Path, out: Path) -> dict[str, Any]:
    """A run directory with the configured models at their initial weights (config.yaml + best.pt)."""
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
    return {"config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
            "weights": "initial (untrained)"}


def start_server(run: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tandem.cli", "serve", str(run), "--host", "127.0.0.1", "--port", "0",
               "--quiet", "--threads", "1", "--workers", str(args.workers), "--max-batch-rows",
               str(args.max_batch_rows)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()  # "serving http://127.0.0.1:PORT (...)"
    if not line.startswith("serving "):
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()[-2000:]}")
    return process, line.split()[1]


async def one_level(url: str, users: list[str], clients: int, requests: int, seconds: float, warmup: float,
                    k: int, seed: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    state = {"measuring": False, "stop": False, "started": 0.0}
    rng = random.Random(seed)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        async def worker() -> None:
            while not state["stop"]:
                body = {"user": rng.choice(users), "k": k}
                began = time.perf_counter()
                try:
                    response = await client.post("/recommend", json=body)
                    kind = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    kind = type(error).__name__
                elapsed = time.perf_counter() - began
                if not state["measuring"]:
                    continue
                if kind is None:
                    latencies.append(elapsed)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
                if len(latencies) + sum(errors.values()) >= requests:
                    state["stop"] = True

        tasks = [asyncio.create_task(worker()) for _ in range(clients)]
        await asyncio.sleep(warmup)
        state["measuring"], state["started"] = True, time.perf_counter()
        deadline = state["started"] + seconds
        while not state["stop"] and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        state["stop"] = True
        ended = time.perf_counter()
        state["measuring"] = False  # answers still in flight are not counted
        await asyncio.gather(*tasks)
    duration = ended - state["started"]
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
    parser.add_argument("--requests", type=int, default=6000, help="answers per level at most (default 6000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level at most (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="the server's inference threads (default 2)")
    parser.add_argument("--max-batch-rows", type=int, default=32, help="the server's --max-batch-rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        if args.run is None:
            run = Path(scratch) / "run"
            model = make_run(args.config.resolve(), run)
        else:
            run, model = args.run, {"run": str(args.run), "weights": "trained"}
        process, url = start_server(run, args)
        try:
            import httpx

            health = httpx.get(url + "/health", timeout=30).json()
            model.update({key: health.get(key) for key in ("task", "scheme", "retriever", "ranker", "users", "items",
                                                            "retrieval_cutoff")})
            users = [str(user) for user in _known_users(run)]
            levels = []
            for clients in args.clients:
                level = asyncio.run(one_level(url, users, clients, args.requests, args.seconds, args.warmup,
                                              args.k, args.seed))
                print(json.dumps(level), flush=True)
                levels.append(level)
            health = httpx.get(url + "/health", timeout=30).json()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                exit_code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                exit_code = "killed after 30 s"
    result = {
        "command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "server": {"stack": "FastAPI + uvicorn (h11)", "torch_threads": 1, "workers": args.workers,
                   "max_batch_rows": args.max_batch_rows, "model_calls": health.get("model_calls"),
                   "rows_answered": health.get("rows"), "exit_code_after_sigterm": exit_code},
        "model": model,
        "request": {"k": args.k, "body": '{"user": <random known user>, "k": %d}' % args.k},
        "levels": levels,
        "baseline": BASELINE,
        "goal": {"clients_32_errors": 0, "clients_32_p99_ms_at_most": 100,
                 "clients_8_throughput_rps_at_least": 3 * BASELINE["throughput_rps"]},
    }
    by_clients = {level["clients"]: level for level in levels}
    if 8 in by_clients and 32 in by_clients:
        result["goal_met"] = {
            "clients_32_errors": by_clients[32]["errors"] == 0,
            "clients_32_p99": by_clients[32]["p99_ms"] <= 100,
            "clients_8_throughput": by_clients[8]["throughput_rps"] >= 3 * BASELINE["throughput_rps"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


def _known_users(run: Path) -> list[str]:
    """The run's user tokens, read the way the server reads them."""
    from tandem.config import config_from_dict
    from tandem.run import load_data

    import yaml

    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    return [str(token) for token in load_data(config.data).user_tokens]


if __name__ == "__main__":
    sys.exit(main())
