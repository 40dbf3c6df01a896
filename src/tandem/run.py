"""From a config to a finished run: load data, split, build models/sampler/loss/scheme, train, report."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from tandem.config import Config, DataConfig
from tandem.data.dataset import InteractionData, preprocess
from tandem.data.splits import Split, split_general, split_sequential, without_known
from tandem.errors import TandemError, first_line
from tandem.utils import atomic_write_bytes, atomic_write_json, flush_denormals, load_checkpoint, seed_everything


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
        split = split_general(data, tuple(config.data.split), shuffle_seed)
    else:
        split = split_sequential(data, config.data.max_seq_len)
    if not config.eval.exclude_known:  # RecBole's sequential protocol: nothing masked at evaluation
        split.valid, split.test = without_known(split.valid), without_known(split.test)
    return split


@dataclass
class Prepared:
    data: InteractionData
    split: Split


def prepare(config: Config) -> Prepared:
    data = load_data(config.data, config.task)
    return Prepared(data, make_split(config, data))


def check_against_data(config: Config, prepared: Prepared, scheme: Any) -> None:
    """What the config asks that this data cannot give: one TandemError naming the key. A model reading
    batch["history"] (its `inputs`), which only the sequential task has, needs task: sequential."""
    data, split = prepared.data, prepared.split
    if config.task == "general":
        for section in ("retriever", "ranker"):
            model = getattr(scheme, section, None)
            if model is not None and "history" in model.inputs:
                name = getattr(config, section)["name"]
                raise TandemError(f"config key '{section}.name': {name!r} reads the user's item sequence and "
                                  f"needs task: sequential (this config has task: general)")
    for which, rows in (("validation", len(split.valid)), ("test", len(split.test))):
        if rows == 0:
            raise TandemError(f"dataset {data.name!r} has no {which} rows after filtering and splitting "
                              f"({data.num_users} users, {data.num_interactions} interactions; a user needs 3 or more "
                              f"interactions to be evaluated); lower data.min_* or give more data")
    if data.num_items < 2:
        raise TandemError(f"dataset {data.name!r} has {data.num_items} item after filtering: nothing to rank; "
                          f"lower data.min_* or give more data")
    if config.train.num_negatives >= data.num_items:
        raise TandemError(f"config key 'train.num_negatives': {config.train.num_negatives} negatives per example "
                          f"but the catalogue has {data.num_items} items; use fewer than {data.num_items}")
    largest = max(config.eval.cutoffs)
    if largest > data.num_items:
        raise TandemError(f"config key 'eval.cutoffs': top-{largest} lists but the catalogue has {data.num_items} "
                          f"items; use cutoffs of at most {data.num_items}")
    if config.ranker is not None and config.scheme.get("name") != "retriever":
        if config.eval.retrieval_cutoff < largest:
            raise TandemError(f"config key 'eval.retrieval_cutoff': {config.eval.retrieval_cutoff} candidates, "
                              f"fewer than the largest of eval.cutoffs ({largest}): the pipeline's @{largest} "
                              f"metrics would rank only {config.eval.retrieval_cutoff} items; use at least {largest}")
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
        raise TandemError(f"invalid configuration: {first_line(error)}") from None
    except (RuntimeError, MemoryError) as error:  # torch refusing a value (init_std < 0) or an allocation
        raise TandemError(f"cannot build the models as configured: {first_line(error)}") from None


def dataset_summary(prepared: Prepared) -> dict[str, Any]:
    stats = prepared.data.stats()
    return {"name": prepared.data.name, "users": stats["users"], "items": stats["items"],
            "interactions": stats["interactions"], "duplicates_dropped": stats["duplicates_dropped"],
            **prepared.split.stats()}


def train_run(config: Config, out_dir: str | Path | None, *, resume: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Train as configured into the run directory `out_dir` and return its report (also `report.json`).

    Everything that can fail on bad input happens before `out_dir` is created. The directory is self-contained
    (config, stored data with its fingerprint, checkpoints, see `tandem.rundir`); `report.json`, written last,
    marks it complete. A non-empty `out_dir` is refused unless `resume` (continue the run there from its last
    checkpoint, exactly; a complete run just returns its report; an empty or absent one starts) or `overwrite`
    (replace the tandem run there). One process at a time writes into a run directory (`RunLock`).
    """
    from tandem.rundir import RunLock, fingerprint, has_stored_data, save_data
    from tandem.training.distributed import init_from_environment
    from tandem.training.trainer import CHECKPOINT, Trainer, TrainerSettings

    if resume and overwrite:
        raise TandemError("--resume continues a run and --overwrite replaces it: give one of them")
    topology = init_from_environment(config.train.device)
    seed_everything(config.seed)
    flush_denormals()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    path = Path(out_dir) if out_dir is not None else None
    existing = path is not None and _holds_run_files(path)
    continuing = resume and existing
    if path is not None and topology.is_main and not continuing:
        _check_fresh_out(path, overwrite)
    if continuing:
        _check_run_directory(path, "--resume")
        report_path = path / "report.json"
        if report_path.is_file():
            return _read_report(report_path)
        check_resume_config(config, read_run_config(path))
        prepared = load_prepared(path, config, what="resume")
    else:
        prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    check_against_data(config, prepared, scheme)
    out = path if topology.is_main else None
    resume_from = None
    if continuing and (path / CHECKPOINT).is_file():  # every process reads it (torchrun: a shared directory)
        resume_from = load_checkpoint(path / CHECKPOINT)
    lock = RunLock(out) if out is not None else None
    created = out is not None and not out.exists()
    try:
        if lock is not None:
            lock.acquire()
            if continuing:
                _remove_temporaries(out)
                if resume_from is None:  # killed before its first checkpoint: start again in place
                    _clear(out, keep=("config.yaml", "data"))
            else:
                if overwrite:
                    _clear(out)
                elif _holds_run_files(out):
                    raise TandemError(f"output directory {out} was written by another process meanwhile; "
                                      f"choose another --out")
                atomic_write_bytes(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
            if not has_stored_data(out):
                save_data(out, prepared.data)
        result = Trainer(TrainerSettings.of(config), scheme, prepared.split, out, resume=resume_from).fit()
        report = {
            "valid": result.valid,
            "test": result.test,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            **({"retriever_epoch": result.retriever_epoch} if result.retriever_epoch is not None else {}),
            "seconds_per_epoch": result.seconds_per_epoch,
            "dataset": {**dataset_summary(prepared), "fingerprint": fingerprint(prepared.data)},
        }
        if out is not None:
            atomic_write_json(out / "report.json", report)  # last: the run is complete
            if not config.train.keep_checkpoint and (out / CHECKPOINT).exists():
                (out / CHECKPOINT).unlink()
    except OSError as error:  # read-only, full, gone: the run directory would be half-written
        if out is None:
            raise
        if not continuing and (created or (lock is not None and lock.held)):
            _discard(out, created)  # never a directory another process holds
        hint = "; free space and continue with --resume" if continuing else ""
        raise TandemError(f"cannot write the run directory {out}: {_os_message(error)}{hint}") from None
    except BaseException:
        if out is not None and not continuing and lock is not None and lock.held \
                and not (out / CHECKPOINT).exists() and not (out / "best.pt").exists():
            _discard(out, created)  # nothing worth keeping: no half-written run directory
        raise
    finally:
        if lock is not None:
            lock.release()
    return report


def _holds_run_files(path: Path) -> bool:
    """Whether `path` is a directory with anything in it but the lock file."""
    from tandem.rundir import LOCK

    return path.is_dir() and any(entry.name != LOCK for entry in path.iterdir())


def _foreign_entries(path: Path) -> list[str]:
    """What in run directory `path` (and its data/ folder) tandem did not write: a directory holding any of it
    is not a run, and --overwrite / --resume must not clear it."""
    from tandem.rundir import DATA_DIR, LOCK

    def written(name: str) -> bool:
        return name in _WRITTEN or name == LOCK or any(name.startswith(f".{known}.") for known in _WRITTEN)

    foreign = [entry.name for entry in path.iterdir() if entry.name != DATA_DIR and not written(entry.name)]
    data = path / DATA_DIR
    if data.is_dir() and not data.is_symlink():
        foreign += [f"{DATA_DIR}/{entry.name}" for entry in data.iterdir() if not written(entry.name)]
    elif data.exists():
        foreign.append(DATA_DIR)
    return sorted(foreign)


def _check_run_directory(path: Path, flag: str) -> None:
    """`flag` (--overwrite, --resume) acts on a tandem run directory only: config.yaml and nothing foreign."""
    if not (path / "config.yaml").is_file():
        raise TandemError(f"{flag} acts on a tandem run directory only; {path} has no config.yaml")
    foreign = _foreign_entries(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise TandemError(f"{flag} acts on a tandem run directory only; {path} also holds files tandem does not "
                          f"write ({shown}): choose another --out")


def _check_fresh_out(path: Path, overwrite: bool) -> None:
    """A new run goes into an absent or empty directory, or over a tandem run with `overwrite`."""
    if path.exists() and not path.is_dir():
        raise TandemError(f"--out {path} is a file; give a directory path")
    if not _holds_run_files(path):
        return
    if not overwrite:
        raise TandemError(f"output directory {path} already exists and is not empty; choose another --out, "
                          f"continue the run there with --resume, or replace it with --overwrite")
    _check_run_directory(path, "--overwrite")


def _clear(path: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove everything in `path` but the lock file and `keep`."""
    from tandem.rundir import LOCK

    for entry in path.iterdir():
        if entry.name == LOCK or entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


#: Files an atomic write in a run directory may leave half-written (as `.NAME.XXXXXXXX`) when the process is killed.
_WRITTEN = ("config.yaml", "best.pt", "checkpoint.pt", "metrics.jsonl", "report.json", "manifest.json",
            "vocabulary.json", "interactions.npz", "features.npz")


def _remove_temporaries(run: Path) -> None:
    """Remove what a killed process left of its atomic writes (never read: the renames did not happen)."""
    for folder in (run, run / "data"):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_file() and any(entry.name.startswith(f".{name}.") for name in _WRITTEN):
                    entry.unlink()


def _discard(path: Path, created: bool) -> None:
    """Remove a run directory this call created, or empty one it found empty."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            _clear(path)
            (path / ".lock").unlink(missing_ok=True)
        except OSError:
            pass


def _read_report(path: Path) -> dict[str, Any]:
    """A finished run's report.json, refused with one line when it is not the JSON object tandem writes."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TandemError(f"cannot read {path}: {' '.join(str(error).split())}") from None
    if not isinstance(report, dict) or not isinstance(report.get("test"), dict):
        raise TandemError(f"{path} is damaged (not a tandem report: no 'test' metrics); train the run again")
    return report


def _os_message(error: OSError) -> str:
    """'No space left on device: /path' from an OSError."""
    text = error.strerror or str(error) or type(error).__name__
    return f"{text}: {error.filename}" if error.filename else text


# --------------------------------------------------------------------------------------------- run config
def read_run_config(run: Path) -> Config:
    """The checked config stored in a run directory."""
    from tandem.config import config_from_dict, read_yaml_file

    raw = read_yaml_file(run / "config.yaml", what="run config")
    if not isinstance(raw, dict):
        raise TandemError(f"{run / 'config.yaml'} is not a tandem run config: expected a mapping of config keys")
    try:
        return config_from_dict(raw)
    except TandemError as error:
        raise TandemError(f"{run / 'config.yaml'}: {error}") from None


def config_differences(given: Config, stored: Config) -> list[str]:
    """Dotted keys whose values differ between two configs, leaving out those a resume may change."""
    from tandem.training.trainer import RESUME_FREE_KEYS

    free = {".".join(key) for key in RESUME_FREE_KEYS}

    def walk(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [key for name in sorted(set(a) | set(b), key=str)
                    for key in walk(a.get(name), b.get(name), f"{prefix}.{name}" if prefix else str(name))]
        return [] if a == b or prefix in free else [prefix]

    return walk(given.to_dict(), stored.to_dict(), "")


def check_resume_config(given: Config, stored: Config) -> None:
    """A resumed run computes with the config it started with: any other value is refused, naming the key."""
    differences = config_differences(given, stored)
    if differences:
        key = differences[0]
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise TandemError(f"--resume: config key {key!r} differs from the run's config.yaml{more}; resume with "
                          f"the run's own config (give no CONFIG) or train into a new --out")


def resume_config(out: Path, config_path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config `tandem train [CONFIG] --out DIR --resume` runs with: DIR's own config.yaml (CONFIG and --set,
    when given, must agree with it except train.progress, checkpoint_every, keep_checkpoint, which they set), or
    CONFIG when DIR holds no run yet."""
    from tandem.config import _merge, config_from_dict, load_config, parse_override
    from tandem.training.trainer import RESUME_FREE_KEYS

    if not (out / "config.yaml").is_file():
        if _holds_run_files(out) and config_path is None:
            raise TandemError(f"{out} is not a tandem run directory (no config.yaml): nothing to resume")
        if config_path is None:
            raise TandemError(f"{out} holds no run to resume; give a CONFIG to start one there")
        return load_config(config_path, overrides)
    stored = read_run_config(out)
    if config_path is None:
        raw = stored.to_dict()
        for override in overrides:
            raw = _merge(raw, parse_override(override))
        given = config_from_dict(raw)
    else:
        given = load_config(config_path, overrides)
    check_resume_config(given, stored)
    for section, key in RESUME_FREE_KEYS:
        setattr(getattr(stored, section), key, getattr(getattr(given, section), key))
    return stored


# -------------------------------------------------------------------------------------------------- loading
def load_prepared(run: Path, config: Config, what: str = "evaluation", raw_data: bool = False) -> Prepared:
    """The data and split of a run: from the run directory when it stores them, else from the configured data
    file, refused when that no longer preprocesses to the fingerprint the run recorded."""
    from tandem.rundir import fingerprint, has_stored_data, load_data as load_stored_data, stored_fingerprint

    if has_stored_data(run) and not raw_data:
        data = load_stored_data(run)
    else:
        expected = stored_fingerprint(run)
        if expected is None and (run / "report.json").is_file():  # data/ deleted: the report recorded it too
            expected = _read_report(run / "report.json").get("dataset", {}).get("fingerprint")
        data = load_data(config.data, config.task)
        if expected is not None and fingerprint(data) != expected:
            source = config.data.path or config.data.name or config.data.format
            raise TandemError(f"data {source} no longer matches the data {run} was trained on (fingerprint "
                              f"{fingerprint(data)[7:19]}... instead of {expected[7:19]}...); {what} needs the "
                              f"original file")
    return Prepared(data, make_split(config, data))


def load_run(run_dir: str | Path, *, allow_incomplete: bool = False, raw_data: bool = False
             ) -> tuple[Config, Prepared, Any]:
    """Rebuild a saved run's config, data and scheme, with the best checkpoint loaded, from the run directory
    alone (its config, stored vocabulary, interactions and feature tables). A run directory without stored
    interactions (written before they were kept, or deleted), or `raw_data=True`, re-reads the configured data
    file and refuses it unless it matches the run's fingerprint. An unfinished run (no report.json: killed,
    crashed or still training) is refused unless `allow_incomplete`."""
    from tandem.rundir import lock_holder

    run = Path(run_dir)
    if not run.is_dir():
        raise TandemError(f"{run} is not a tandem run directory: {'not found' if not run.exists() else 'a file'}")
    for name in ("config.yaml", "best.pt"):
        if not (run / name).is_file():
            raise TandemError(f"{run} is not a tandem run directory: {name} is missing")
    config = read_run_config(run)
    if not allow_incomplete and not (run / "report.json").is_file():
        holder = lock_holder(run)
        if holder is not None:
            who = f" (pid {holder})" if holder > 0 else ""
            raise TandemError(f"{run} is still being trained{who}: it has no report.json yet; wait for it to finish")
        raise TandemError(f"{run} is an unfinished run (killed or crashed before report.json was written); "
                          f"continue it with: tandem train --out {run} --resume")
    if not allow_incomplete:
        _read_report(run / "report.json")  # a damaged report is not a finished run
    seed_everything(config.seed)
    prepared = load_prepared(run, config, raw_data=raw_data)
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
