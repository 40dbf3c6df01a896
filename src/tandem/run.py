"""From a config to a finished run: load data, split, build models/sampler/loss/scheme, train, report."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from tandem.config import Config, DataConfig
from tandem.data.dataset import InteractionData, preprocess
from tandem.data.splits import Split, split_general, split_sequential
from tandem.errors import TandemError
from tandem.utils import atomic_write_bytes, atomic_write_json, load_checkpoint, seed_everything


def load_data(cfg: DataConfig, task: str = "sequential") -> InteractionData:
    """Read the configured source and preprocess it (rating threshold, duplicates, k-core, dense ids).

    Duplicates: a row repeated exactly (same user, item and timestamp) is dropped; for the general task only the
    earliest interaction of each user-item pair is kept. `data stats` and report.json say how many were dropped."""
    from tandem.data.readers import read_dataset

    spec = {"format": cfg.format, "path": cfg.path, "name": cfg.name, "columns": cfg.columns, "sep": cfg.sep}
    raw = read_dataset(spec)
    return preprocess(raw, cfg.rating_threshold, cfg.min_user_interactions, cfg.min_item_interactions,
                      duplicates="pairs" if task == "general" else "rows")


def make_split(config: Config, data: InteractionData) -> Split:
    if config.task == "general":
        shuffle_seed = config.seed if config.data.split_order == "random" else None
        return split_general(data, tuple(config.data.split), shuffle_seed)
    return split_sequential(data, config.data.max_seq_len)


@dataclass
class Prepared:
    data: InteractionData
    split: Split


def prepare(config: Config) -> Prepared:
    data = load_data(config.data, config.task)
    return Prepared(data, make_split(config, data))


# models that read batch["history"], which only the sequential task has
SEQUENTIAL_ONLY = {"retriever": ("sasrec",), "ranker": ("din",)}


def check_against_data(config: Config, prepared: Prepared) -> None:
    """What the config asks that this data cannot give: one TandemError naming the key."""
    data, split = prepared.data, prepared.split
    if config.task == "general":
        for section, names in SEQUENTIAL_ONLY.items():
            name = (getattr(config, section) or {}).get("name")
            if name in names and (section == "retriever" or config.scheme.get("name") != "retriever"):
                raise TandemError(f"config key '{section}.name': {name!r} reads the user's item sequence and "
                                  f"needs task: sequential (this config has task: general)")
    for which, rows in (("validation", len(split.valid)), ("test", len(split.test))):
        if rows == 0:
            raise TandemError(f"dataset {data.name!r} has no {which} rows after filtering and splitting "
                              f"({data.num_users} users, {data.num_interactions} interactions; a user needs 3 or more "
                              f"interactions to be evaluated); lower data.min_* or give more data")
    if config.train.num_negatives >= data.num_items:
        raise TandemError(f"config key 'train.num_negatives': {config.train.num_negatives} negatives per example "
                          f"but the catalogue has {data.num_items} items; use fewer than {data.num_items}")
    if config.ranker is not None and config.scheme.get("name") != "retriever":
        cutoffs = {"eval.retrieval_cutoff": [config.eval.retrieval_cutoff],
                   "eval.cutoff_sweep": list(config.eval.cutoff_sweep)}
        for key, values in cutoffs.items():
            if values and max(values) > data.num_items:
                raise TandemError(f"config key {key!r}: {max(values)} candidates but the catalogue has "
                                  f"{data.num_items} items; use at most {data.num_items}")


def build_scheme(config: Config, prepared: Prepared):
    """Build the configured scheme with its models, sampler and losses; config mistakes become TandemError."""
    from tandem.training.registry import build_scheme_from_config

    try:
        return build_scheme_from_config(config, prepared.data, prepared.split)
    except (ValueError, TypeError, KeyError) as error:
        raise TandemError(f"invalid configuration: {error}") from None


def dataset_summary(prepared: Prepared) -> dict[str, Any]:
    stats = prepared.data.stats()
    return {"name": prepared.data.name, "users": stats["users"], "items": stats["items"],
            "interactions": stats["interactions"], "duplicates_dropped": stats["duplicates_dropped"],
            **prepared.split.stats()}


def train_run(config: Config, out_dir: str | Path | None) -> dict[str, Any]:
    """Train as configured. Everything that can fail on bad input happens before `out_dir` is created."""
    from tandem.training.trainer import Trainer

    from tandem.training.distributed import init_from_environment

    topology = init_from_environment(config.train.device)
    seed_everything(config.seed)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    check_against_data(config, prepared)
    out = Path(out_dir) if out_dir is not None and topology.is_main else None
    created = False
    if out is not None:
        if out.exists() and not out.is_dir():
            raise TandemError(f"--out {out} is a file; give a directory path")
        if out.exists() and any(out.iterdir()):
            raise TandemError(f"output directory {out} already exists and is not empty; choose another --out")
    try:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            created = True
            atomic_write_bytes(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
        result = Trainer(config, scheme, prepared.split, out).fit()
        report = {
            "valid": result.valid,
            "test": result.test,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": result.seconds_per_epoch,
            "dataset": dataset_summary(prepared),
        }
        if out is not None:
            atomic_write_json(out / "report.json", report)
    except OSError as error:  # read-only, full, gone: the run directory would be half-written
        if out is None:
            raise
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise TandemError(f"cannot write the run directory {out}: {_os_message(error)}") from None
    except BaseException:
        if created and not (out / "best.pt").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-written run directory
        raise
    return report


def _os_message(error: OSError) -> str:
    """'No space left on device: /path' from an OSError."""
    text = error.strerror or str(error) or type(error).__name__
    return f"{text}: {error.filename}" if error.filename else text


def load_run(run_dir: str | Path) -> tuple[Config, Prepared, Any]:
    """Rebuild a saved run's config, data and scheme, with the best checkpoint loaded."""
    from tandem.config import config_from_dict, read_yaml_file

    run = Path(run_dir)
    if not run.is_dir():
        raise TandemError(f"{run} is not a tandem run directory: {'not found' if not run.exists() else 'a file'}")
    for name in ("config.yaml", "best.pt"):
        if not (run / name).is_file():
            raise TandemError(f"{run} is not a tandem run directory: {name} is missing")
    raw = read_yaml_file(run / "config.yaml", what="run config")
    if not isinstance(raw, dict):
        raise TandemError(f"{run / 'config.yaml'} is not a tandem run config: expected a mapping of config keys")
    try:
        config = config_from_dict(raw)
    except TandemError as error:
        raise TandemError(f"{run / 'config.yaml'}: {error}") from None
    seed_everything(config.seed)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    checkpoint = load_checkpoint(run / "best.pt")
    if not isinstance(checkpoint.get("state"), dict):
        raise TandemError(f"{run / 'best.pt'} is not a tandem checkpoint: it has no model state")
    try:
        scheme.load_state_dict(checkpoint["state"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise TandemError(f"{run / 'best.pt'} does not match {run / 'config.yaml'}: "
                          f"{_state_mismatch(error)}") from None
    scheme.eval()
    return config, prepared, scheme


def _state_mismatch(error: Exception) -> str:
    """The informative part of torch's load_state_dict error, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith("Error(s) in loading")]
    text = " ".join(details or lines) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
