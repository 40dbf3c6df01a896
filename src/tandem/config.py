"""Typed run configuration: YAML in, dataclasses out, `--set key=value` overrides, errors that name the key.

`data`, `train` and `eval` are dataclasses. The component sections (retriever, ranker, sampler, loss, scheme) are
open-ended (`name` plus that component's own options); `validate` checks them once, when the config is loaded and
before any data is read, through the registries (`tandem.registry`): an option the component's constructor does
not take, or a value that is not of its annotated type, is an error naming `section.key`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tandem.errors import TandemError


@dataclass
class DataConfig:
    format: str = "ml-100k"
    path: str | None = None
    name: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    sep: str | None = None
    rating_threshold: float | None = None
    min_user_interactions: int = 10
    min_item_interactions: int = 10
    max_seq_len: int = 20
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_order: str = "time"


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    num_negatives: int = 20
    patience: int = 5
    eval_batch_size: int = 1024
    eval_every: int = 1
    device: str = "cpu"
    threads: int = 0
    progress: bool = True
    checkpoint_every: int = 0  # also checkpoint after every this many optimiser steps (0: at epoch ends only)
    keep_checkpoint: bool = False  # keep checkpoint.pt (the last state, with optimiser and RNGs) once complete
    # sparse gradients + lazy Adam for the retriever's embedding tables: a step costs O(rows touched), not O(N)
    sparse_embeddings: bool = False


@dataclass
class EvalConfig:
    cutoffs: list[int] = field(default_factory=lambda: [10, 20, 50])
    retrieval_cutoff: int = 100
    cutoff_sweep: list[int] = field(default_factory=list)
    monitor: str = "ndcg@10"
    # mask the row's known items when ranking (tandem's protocol); false = RecBole's sequential protocol
    exclude_known: bool = True
    # which checkpoint a cooperative run keeps: 'pipeline' (the paper's: one epoch, the best validation pipeline) or
    # 'stages' (tandem's: the retriever of its own best validation epoch, the ranker of the best pipeline epoch)
    select: str = "pipeline"


@dataclass
class Config:
    task: str = "sequential"
    seed: int = 2023
    data: DataConfig = field(default_factory=DataConfig)
    retriever: dict[str, Any] = field(default_factory=lambda: {"name": "sasrec"})
    ranker: dict[str, Any] | None = None
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "uniform"})
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "softmax"})
    scheme: dict[str, Any] = field(default_factory=lambda: {"name": "retriever"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TASKS = ("general", "sequential")


# ------------------------------------------------------------------------------------------------ YAML

class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads `1e-3` as a number (YAML 1.1 wants `1.0e-3`; every other reader and YAML
    1.2 accept it) and refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


_Loader.yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                   |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
        seen.add(key) if isinstance(key, typing.Hashable) else None
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(text: str, source: str) -> Any:
    """Parse YAML as tandem reads configs (see `_Loader`); a syntax error is one TandemError line naming `source`,
    the line and the column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass: no Python objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "invalid").split())
        raise TandemError(f"{source}{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise TandemError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None


def read_yaml_file(path: Path, what: str = "config file") -> Any:
    """A YAML file's contents, or a one-line TandemError: missing, a directory, unreadable, binary, not UTF-8,
    or not valid YAML."""
    if path.is_dir():
        raise TandemError(f"{what} {path} is a directory, not a YAML file")
    if path.exists() and not path.is_file():
        raise TandemError(f"{what} {path} is a device, pipe or socket, not a YAML file")
    if not path.is_file():
        raise TandemError(f"{what} not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TandemError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if b"\0" in data:
        raise TandemError(f"{path}: a binary file, not a YAML {what}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise TandemError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
                          f"save the {what} as UTF-8") from None
    return yaml_load(text, str(path))


def _check_value(value: Any, annotation: Any, key: str) -> Any:
    """Check (and gently coerce int -> float) `value` against a type annotation, naming `key` on failure."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, key)
            except TandemError as error:
                errors.append(str(error))
        raise TandemError(errors[0] if errors else f"config key {key!r}: unexpected value {value!r}")
    if annotation is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise TandemError(f"config key {key!r}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [_check_value(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise TandemError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TandemError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TandemError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise TandemError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise TandemError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise TandemError(f"config key {prefix or '<root>'!r}: expected a mapping, got {raw!r}")
    odd = [key for key in raw if not isinstance(key, str)]
    if odd:
        where = f" under {prefix!r}" if prefix else ""
        raise TandemError(f"config keys must be names{where}, got {odd[0]!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise TandemError(f"unknown config key {where + unknown[0]!r}; allowed here: {sorted(names)}")
    values = {name: _check_value(value, hints[name], f"{prefix}.{name}" if prefix else name) for name, value in raw.items()}
    return cls(**values)


COMPONENT_SECTIONS = ("retriever", "ranker", "sampler", "loss", "scheme")


def _merge(base: dict[str, Any], update: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Deep merge of `update` over `base`. A component section (retriever, ranker, sampler, loss, scheme) that
    names a different component replaces the base's section: the base's options belong to another component."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        renamed = (
            top and key in COMPONENT_SECTIONS and isinstance(value, dict) and isinstance(old, dict)
            and "name" in value and value["name"] != old.get("name")
        )
        if renamed:
            merged[key] = dict(value)
        elif isinstance(value, dict) and isinstance(old, dict):
            merged[key] = _merge(old, value, top=False)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=value` (value parsed as YAML) -> {"a": {"b": {"c": value}}}."""
    if "=" not in text:
        raise TandemError(f"--set expects key=value, got {text!r}")
    key, raw_value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise TandemError(f"--set: malformed key {key!r}")
    value = yaml_load(raw_value, f"--set {key}") if raw_value != "" else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML config; a top-level `extends: other.yaml` (relative to this file) is read first and this
    file's keys are merged over it, so an experiment states only what differs from its base."""
    if path.resolve() in seen:
        raise TandemError(f"{path}: 'extends' forms a cycle")
    loaded = read_yaml_file(path)
    if loaded is not None and not isinstance(loaded, dict):
        raise TandemError(f"{path}: the top level must be a mapping of config keys")
    raw = dict(loaded or {})
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise TandemError(f"{path}: 'extends' must be a file name, got {base!r}")
    return _merge(read_config_file(path.parent / base, (*seen, path.resolve())), raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """A checked Config from a mapping of config keys (as read from YAML)."""
    config = _build(Config, raw, "")
    validate(config)
    return config


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file (or start from defaults when `path` is None) and apply `key=value` overrides."""
    raw = read_config_file(Path(path)) if path is not None else {}
    for override in overrides:
        raw = _merge(raw, parse_override(override))
    return config_from_dict(raw)


def validate(config: Config) -> None:
    """Cross-field checks that a type alone cannot express."""
    if config.task not in TASKS:
        raise TandemError(f"config key 'task': expected one of {list(TASKS)}, got {config.task!r}")
    for section in ("retriever", "sampler", "loss", "scheme"):
        value = getattr(config, section)
        if not isinstance(value.get("name"), str):
            raise TandemError(f"config key '{section}.name' is required (a string)")
    if config.ranker is not None and not isinstance(config.ranker.get("name"), str):
        raise TandemError("config key 'ranker.name' is required (a string) when a ranker is configured")
    positive = {
        "train.epochs": config.train.epochs,
        "train.batch_size": config.train.batch_size,
        "train.num_negatives": config.train.num_negatives,
        "train.eval_batch_size": config.train.eval_batch_size,
        "eval.retrieval_cutoff": config.eval.retrieval_cutoff,
    }
    for key, value in positive.items():
        if value < 1:
            raise TandemError(f"config key {key!r}: must be >= 1, got {value}")
    if not 0 < config.train.lr < math.inf:
        raise TandemError(f"config key 'train.lr': must be a positive finite number, got {config.train.lr}")
    _check_numbers(config)
    _check_components(config)
    if not config.eval.cutoffs or min(config.eval.cutoffs) < 1:
        raise TandemError(f"config key 'eval.cutoffs': expected positive integers, got {config.eval.cutoffs}")
    if config.eval.monitor.split("@")[0] not in ("recall", "ndcg", "mrr", "hit") or "@" not in config.eval.monitor:
        raise TandemError(f"config key 'eval.monitor': expected e.g. 'ndcg@10', got {config.eval.monitor!r}")
    if config.eval.select not in ("pipeline", "stages"):
        raise TandemError(f"config key 'eval.select': expected 'pipeline' or 'stages', got {config.eval.select!r}")
    if config.data.split_order not in ("time", "random"):
        raise TandemError(f"config key 'data.split_order': expected 'time' or 'random', got {config.data.split_order!r}")
    if config.data.split_order == "random" and config.task != "general":
        raise TandemError("config key 'data.split_order': 'random' applies to the general task only")
    if config.train.device != "cpu" and not config.train.device.startswith("cuda"):
        raise TandemError(f"config key 'train.device': expected 'cpu' or 'cuda[:n]', got {config.train.device!r}")
    if config.train.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise TandemError(f"config key 'train.device' is {config.train.device!r} but no CUDA device is available")
    try:
        monitor_k = int(config.eval.monitor.split("@")[1])
    except ValueError:
        raise TandemError(f"config key 'eval.monitor': expected e.g. 'ndcg@10', got {config.eval.monitor!r}") from None
    if monitor_k not in config.eval.cutoffs:
        raise TandemError(f"config key 'eval.monitor': cutoff {monitor_k} is not in eval.cutoffs {config.eval.cutoffs}")


def _check_components(config: Config) -> None:
    """The data format's keys and every component section, through the registries (`tandem.registry`): names,
    options and their types, and what the scheme consumes (see `tandem.training.registry.check_config`)."""
    from tandem.data.readers import reader_arguments
    from tandem.training.registry import check_config

    reader_arguments(dataclasses.asdict(config.data))
    try:
        check_config(config)
    except ValueError as error:
        raise TandemError(str(error)) from None


SEED_RANGE = (0, 2**32 - 1)  # what numpy's seeding accepts


def _check_numbers(config: Config) -> None:
    """Ranges of the typed numeric keys that the other checks do not cover."""
    train, data = config.train, config.data
    if not SEED_RANGE[0] <= config.seed <= SEED_RANGE[1]:
        raise TandemError(f"config key 'seed': must be in 0..2**32-1, got {config.seed}")
    if not 0 <= train.weight_decay < math.inf:
        raise TandemError(f"config key 'train.weight_decay': must be a finite number >= 0, got {train.weight_decay}")
    at_least = {
        "train.eval_every": (train.eval_every, 1),
        "train.patience": (train.patience, 1),
        "train.threads": (train.threads, 0),
        "train.checkpoint_every": (train.checkpoint_every, 0),
        "data.max_seq_len": (data.max_seq_len, 1),
        "data.min_user_interactions": (data.min_user_interactions, 0),
        "data.min_item_interactions": (data.min_item_interactions, 0),
    }
    for key, (value, low) in at_least.items():
        if value < low:
            raise TandemError(f"config key {key!r}: must be >= {low}, got {value}")
    if data.rating_threshold is not None and not math.isfinite(data.rating_threshold):
        raise TandemError(f"config key 'data.rating_threshold': must be a finite number, got {data.rating_threshold}")
    ratios = data.split
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise TandemError(f"config key 'data.split': expected three non-negative ratios summing to 1, got {ratios}")
    if any(k < 1 for k in config.eval.cutoff_sweep):
        raise TandemError(f"config key 'eval.cutoff_sweep': expected positive integers, got {config.eval.cutoff_sweep}")
