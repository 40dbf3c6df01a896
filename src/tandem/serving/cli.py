"""`tandem recommend` and `tandem serve`: the serving commands, added to the main parser by `add_serving_commands`."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tandem.errors import TandemError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _load(args: argparse.Namespace):
    from tandem.serving.pipeline import Recommender

    if args.index is not None and (args.approximate or args.nlist is not None):
        raise TandemError("--index FACTORY chooses the whole index: leave out --approximate and --nlist")
    if args.index is None and not args.approximate and (args.nlist is not None or args.nprobe is not None):
        raise TandemError("--nlist and --nprobe apply to the approximate index: add --approximate (or --index)")
    if args.ef_search is not None and args.index is None:
        raise TandemError("--ef-search applies to an HNSW index: add --index HNSW32 (or another HNSW factory)")
    return Recommender.from_run(args.run_dir, retrieval_cutoff=args.retrieval_cutoff, exact=not args.approximate,
                                nlist=args.nlist, nprobe=args.nprobe, index_factory=args.index,
                                ef_search=args.ef_search)


def format_table(contexts: list[str], recommendations: list[list[dict[str, Any]]]) -> str:
    """One block per context: rank, item, score, retriever score."""
    lines = []
    for context, rows in zip(contexts, recommendations):
        lines.append(context)
        width = max([4] + [len(row["item"]) for row in rows])
        lines.append(f"  {'rank':>4}  {'item'.ljust(width)}  {'score':>10}  {'retriever':>10}")
        for rank, row in enumerate(rows, 1):
            lines.append(f"  {rank:>4}  {row['item'].ljust(width)}  {row['score']:>10.4f}  {row['retriever_score']:>10.4f}")
        if not rows:
            lines.append("  (no items left to recommend)")
    return "\n".join(lines)


def cmd_recommend(args: argparse.Namespace) -> int:
    if not args.user and not args.history:
        raise TandemError("recommend needs --user TOKEN ... or --history TOKEN ...")
    recommender = _load(args)
    if args.user:
        users = list(args.user)
        histories = [list(args.history)] * len(users) if args.history else None
    else:
        users, histories = None, [list(args.history)]
    recommendations = recommender.recommend(users=users, histories=histories, k=args.k,
                                            exclude_known=not args.include_known)
    if args.json:
        contexts = users if users is not None else [None]
        key = "user" if users is not None else "history"
        payload = [{key: (user if users is not None else histories[0]), "recommendations": recs}
                   for user, recs in zip(contexts, recommendations)]
        print(json.dumps(payload if len(payload) > 1 else payload[0], indent=2))
    else:
        contexts = ([f"user {user}" for user in users] if users is not None
                    else [f"history {' '.join(args.history)}"])
        print(format_table(contexts, recommendations))
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from tandem.serving.http import ServeSettings, bind, serve

    settings = ServeSettings(max_k=args.max_k, max_users=args.max_users, max_history=args.max_history,
                             timeout_s=args.timeout, workers=args.workers, threads=args.threads,
                             max_batch_rows=args.max_batch_rows, max_connections=args.max_connections)
    settings.check()
    bind(args.host, args.port).close()  # a port in use fails now, before the run is loaded
    serve(_load(args), args.host, args.port, quiet=args.quiet, settings=settings)
    return 0


def _index_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retrieval-cutoff", type=_positive, metavar="K",
                        help="candidates retrieved before re-ranking (default: the run's eval.retrieval_cutoff)")
    parser.add_argument("--approximate", action="store_true", help="IVF index instead of exact inner-product search")
    parser.add_argument("--nlist", type=_positive, help="IVF cells (default ~4 sqrt(items)); with --approximate")
    parser.add_argument("--nprobe", type=_positive,
                        help="IVF cells searched per query (default nlist/8 with --approximate, "
                             "max(8, nlist/512) with an IVF --index)")
    parser.add_argument("--index", metavar="FACTORY",
                        help="any FAISS index by its factory string, inner product: 'Flat', 'HNSW32', "
                             "'IVF4096,Flat' (by catalogue size: Flat below 100k items, IVF ~4 sqrt(N) cells to 10M, "
                             "IVF65536_HNSW32,Flat beyond; see the README)")
    parser.add_argument("--ef-search", type=_positive, metavar="EF",
                        help="HNSW search breadth (default 16); with an HNSW --index")


def add_serving_commands(subparsers: Any) -> None:
    """Add `recommend` and `serve` to the `tandem` command's subparsers."""
    recommend = subparsers.add_parser("recommend", help="top-k recommendations from a saved run")
    recommend.add_argument("run_dir")
    recommend.add_argument("--user", nargs="+", metavar="TOKEN", help="raw user token(s)")
    recommend.add_argument("--history", nargs="+", metavar="TOKEN",
                           help="raw item tokens, oldest first (sequential task); with --user it replaces the "
                                "user's own sequence")
    recommend.add_argument("--k", type=_positive, default=10, help="how many items (default 10)")
    recommend.add_argument("--include-known", action="store_true", help="do not exclude already-seen items")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _index_options(recommend)
    recommend.set_defaults(handler=cmd_recommend)

    serve = subparsers.add_parser(
        "serve", help="JSON HTTP service (FastAPI on uvicorn): GET /health, POST /recommend, GET /docs")
    serve.add_argument("run_dir")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--quiet", action="store_true", help="no request log on stderr")
    limits = serve.add_argument_group("limits and concurrency")
    limits.add_argument("--max-k", type=_positive, default=500, help="largest k a request may ask (default 500)")
    limits.add_argument("--max-users", type=_positive, default=100,
                        help="most users or histories in one request (default 100)")
    limits.add_argument("--max-history", type=_positive, default=1000,
                        help="most items in one given history (default 1000)")
    limits.add_argument("--timeout", type=_seconds, default=10.0,
                        help="seconds before a request gets 504 (default 10)")
    limits.add_argument("--workers", type=_positive, default=2, help="inference threads (default 2)")
    limits.add_argument("--threads", type=_positive, default=1,
                        help="torch / FAISS threads per inference call (default 1)")
    limits.add_argument("--max-batch-rows", type=_positive, default=16,
                        help="rows of waiting requests merged into one model call (default 16; 1: no merging)")
    limits.add_argument("--max-connections", type=_positive, default=1024,
                        help="connections and requests at once; beyond, 503 (default 1024)")
    _index_options(serve)
    serve.set_defaults(handler=cmd_serve)
