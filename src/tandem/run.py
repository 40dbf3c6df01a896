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


def load_data(cfg: DataConfig) -> InteractionData:
    """Read the configured source and preprocess it (rating threshold, k-core, dense ids)."""
    from tandem.data.readers import read_dataset

    spec = {"format": cfg.format, "path": cfg.path, "name": cfg.name, "columns": cfg.columns, "sep": cfg.sep}
    raw = read_dataset(spec)
    return preprocess(raw, cfg.rating_threshold, cfg.min_user_interactions, cfg.min_item_interactions)


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
    data = load_data(config.data)
    return Prepared(data, make_split(config, data))


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
            "interactions": stats["interactions"], **prepared.split.stats()}


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
    out = Path(out_dir) if out_dir is not None and topology.is_main else None
    created = False
    if out is not None:
        if out.exists() and any(out.iterdir()):
            raise TandemError(f"output directory {out} already exists and is not empty; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        created = True
        atomic_write_bytes(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    try:
        result = Trainer(config, scheme, prepared.split, out).fit()
    except BaseException:
        if created and not (out / "best.pt").exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping: no half-written run directory
        raise
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
    return report


def load_run(run_dir: str | Path) -> tuple[Config, Prepared, Any]:
    """Rebuild a saved run's config, data and scheme, with the best checkpoint loaded."""
    from tandem.config import config_from_dict

    run = Path(run_dir)
    for name in ("config.yaml", "best.pt"):
        if not (run / name).is_file():
            raise TandemError(f"{run} is not a tandem run directory: {name} is missing")
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    seed_everything(config.seed)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    checkpoint = load_checkpoint(run / "best.pt")
    if not isinstance(checkpoint.get("state"), dict):
        raise TandemError(f"{run / 'best.pt'} is not a tandem checkpoint: it has no model state")
    try:
        scheme.load_state_dict(checkpoint["state"])
    except RuntimeError as error:
        raise TandemError(f"{run / 'best.pt'} does not match {run / 'config.yaml'}: "
                          f"{str(error).splitlines()[0]}") from None
    scheme.eval()
    return config, prepared, scheme
