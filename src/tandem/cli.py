"""The `tandem` command: train, evaluate, experiment, data stats, recommend, serve (benchmarks live in benchmarks/)."""
from __future__ import annotations

import argparse
import errno
import json
import sys
import time
import typing
from pathlib import Path

from tandem.errors import TandemError, first_line


def _default_out(config_path: str | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from tandem.config import load_config
    from tandem.reporting import metric_table, report_rows
    from tandem.run import resume_config, train_run

    if args.out is not None and not args.out.strip():
        raise TandemError("--out is empty; give a directory path (or leave --out out for runs/<config>-<time>)")
    if args.resume:
        if not args.out:
            raise TandemError("--resume needs --out DIR, the run directory to continue")
        out = Path(args.out)
        config = resume_config(out, args.config, args.set)
    else:
        if args.config is None:
            raise TandemError("tandem train needs a CONFIG file (or --out DIR --resume to continue a run)")
        config = load_config(args.config, args.set)
        out = Path(args.out) if args.out else _default_out(args.config)
    report = train_run(config, out, resume=args.resume, overwrite=args.overwrite)
    print(metric_table(report_rows(report["test"], "test")))
    print(f"run written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tandem.reporting import metric_table, report_rows
    from tandem.run import load_run

    config, prepared, scheme = load_run(args.run_dir)
    result = {}
    for which, eval_set in (("valid", prepared.split.valid), ("test", prepared.split.test)):
        result[which] = scheme.evaluate(
            eval_set, tuple(config.eval.cutoffs), config.train.eval_batch_size,
            retrieval_cutoff=config.eval.retrieval_cutoff,
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(metric_table({**report_rows(result["valid"], "valid"), **report_rows(result["test"], "test")}))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from tandem.config import load_config
    from tandem.run import dataset_summary, prepare

    config = load_config(args.config, args.set)
    prepared = prepare(config)
    summary = dataset_summary(prepared)
    summary["task"] = config.task
    summary["user_features"] = sorted(prepared.data.user_features)
    summary["item_features"] = sorted(prepared.data.item_features)
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from tandem.experiments.runner import run_experiment
    from tandem.experiments.spec import load_spec

    spec = load_spec(args.spec)
    spec.overrides = [*spec.overrides, *args.set]
    if args.out is not None and not args.out.strip():
        raise TandemError("--out is empty; give a directory path (or leave --out out for benchmarks/results/NAME)")
    out = Path(args.out) if args.out else Path("benchmarks/results") / spec.name
    if out.exists() and not out.is_dir():
        raise TandemError(f"--out {out} is a file; give a directory path")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise TandemError("--methods is empty; name one or more of the spec's methods, comma-separated")
    try:
        run_experiment(spec, out, seeds=args.seeds, methods=methods)
    except ValueError as error:
        raise TandemError(str(error)) from None
    print((out / "table.md").read_text())
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`tandem train: error: ...; see --help`), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """The installed tandem version."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("tandem")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tandem", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tandem {version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a run from a YAML config", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a run from a YAML config into a self-contained run directory.",
        epilog="""run directory: config.yaml, data/ (vocabulary, interactions, feature tables, fingerprint),
checkpoint.pt (every epoch; every train.checkpoint_every steps if set), best.pt, metrics.jsonl, and report.json,
written last: a directory without it is unfinished. One tandem train at a time writes into a directory.

  tandem train CONFIG --out DIR               start a run (DIR absent or empty)
  tandem train --out DIR --resume             continue DIR from its last checkpoint, killed at any point
                                              (kill -9 included); on CPU the result is bit for bit the
                                              uninterrupted run's. CONFIG, if given, must match DIR's config;
                                              with no run in DIR yet, CONFIG starts one (so the same command
                                              starts and restarts a preemptible job)
  tandem train CONFIG --out DIR --overwrite   replace the tandem run in DIR""")
    train.add_argument("config", nargs="?", help="YAML config file (optional with --resume)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    train.add_argument("--out", help="run directory to write (default runs/<config>-<time>)")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint (a finished run is left as is)")
    again.add_argument("--overwrite", action="store_true", help="replace the tandem run already in --out")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="re-evaluate a saved run directory")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON only (no table)")
    evaluate.set_defaults(handler=cmd_evaluate)

    experiment = commands.add_parser(
        "experiment", help="run every method of a table over seeds to early stopping (resumable), with significance")
    experiment.add_argument("spec", help="experiment spec YAML (see experiments/)")
    experiment.add_argument("--seeds", type=int, help="number of seeds (default: the spec's list)")
    experiment.add_argument("--out", help="output directory (default benchmarks/results/<spec name>)")
    experiment.add_argument("--methods", help="comma-separated subset of the spec's methods")
    experiment.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config key in every run (e.g. train.threads=1)")
    experiment.set_defaults(handler=cmd_experiment)

    data = commands.add_parser("data", help="dataset utilities")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="print the dataset after filtering and splitting")
    stats.add_argument("config")
    stats.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    stats.set_defaults(handler=cmd_data_stats)

    from tandem.serving.cli import add_serving_commands

    add_serving_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from tandem.utils import flush_denormals

    flush_denormals()  # before any torch thread pool starts: its threads inherit the mode, earlier ones do not
    try:
        return int(args.handler(args) or 0)
    except TandemError as error:
        print(f"tandem: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or disk problem met outside the checked paths: still one line
        if error.errno == errno.EPIPE:  # `tandem ... | head`: the reader left
            return 0
        text = error.strerror or str(error) or type(error).__name__
        print(f"tandem: error: {text}{f': {error.filename}' if error.filename else ''}", file=sys.stderr)
        return 2
    except MemoryError as error:  # a setting too large for this machine (numpy names the size it wanted)
        print(f"tandem: error: out of memory ({first_line(error, 160)}); a setting is too large for this machine "
              "(embedding_dim, data.max_seq_len, batch sizes, the catalogue)", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # training diverged (non-finite loss)
        print(f"tandem: error: {str(error).splitlines()[0]}; lower train.lr", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tandem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
