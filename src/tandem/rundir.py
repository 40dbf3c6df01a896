"""What makes a run directory self-contained and safe to write: the stored data and the writer's lock.

Layout of `DIR/data/` (no pickle anywhere: JSON and `.npz` read with `allow_pickle=False`):

- `manifest.json`: dataset name, `fingerprint` (sha256 of the preprocessed data: vocabulary, interactions,
  feature tables), sizes, duplicates dropped, and each feature table's kind, cardinality and vocabulary;
- `vocabulary.json`: raw id <-> index, `users` (index = position) and `items` (index = position + 1; 0 is padding);
- `interactions.npz`: `indptr` [U+1], `items` [nnz], `timestamps` [nnz], the CSR by user, time-ordered;
- `features.npz`: the user and item feature tables the ranker reads (keys named in the manifest).

With these a run is rebuilt without its data file. `interactions.npz` may be deleted to save space: evaluation then
re-reads the configured data file and refuses it unless it preprocesses to the same fingerprint.

`DIR/.lock` is held (flock) by the one `tandem train` writing into DIR; the kernel releases it when that process
ends, however it ends (kill -9 included), so a killed run never leaves a stale lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tandem.data.dataset import InteractionData
from tandem.data.features import FeatureTable, FeatureTables
from tandem.errors import TandemError
from tandem.utils import atomic_write_bytes, atomic_write_json, atomic_write_npz

DATA_DIR = "data"
DATA_FORMAT = 1
LOCK = ".lock"
PADDING_TOKEN = "[PAD]"


# ------------------------------------------------------------------------------------------------- fingerprint
def _plain(values: np.ndarray) -> list[Any]:
    """Tokens as JSON values (numpy scalars to Python ones)."""
    return [value.item() if isinstance(value, np.generic) else value for value in values.tolist()]


def _tokens(values: np.ndarray) -> dict[str, Any]:
    return {"dtype": values.dtype.str, "tokens": _plain(values)}


def _feature_meta(table: FeatureTable) -> dict[str, Any]:
    return {"name": table.name, "kind": table.kind, "cardinality": int(table.cardinality),
            "vocabulary": list(table.vocabulary)}


def fingerprint(data: InteractionData) -> str:
    """sha256 of the preprocessed data a model is trained on: vocabulary, interactions (CSR, timestamps) and
    feature tables. Equal fingerprints mean the same users, items, ids, histories and features."""
    digest = hashlib.sha256()

    def add(label: str, payload: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(payload).to_bytes(8, "little") + payload)

    def add_array(label: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        add(label, f"{array.dtype.str}{array.shape}".encode() + array.tobytes())

    add("users", json.dumps(_tokens(data.user_tokens)).encode())
    add("items", json.dumps(_tokens(data.item_tokens[1:])).encode())
    for name in ("indptr", "items", "timestamps"):
        add_array(name, getattr(data, name))
    for side, tables in (("user", data.user_features), ("item", data.item_features)):
        for name in tables:  # in the order the models build their fields
            add(f"{side}:{name}", json.dumps(_feature_meta(tables[name])).encode())
            add_array(f"{side}:{name}:values", tables[name].values.cpu().numpy())
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- storing
def save_data(run: Path, data: InteractionData) -> str:
    """Store `data` under `run/data/` (see the module docstring); returns its fingerprint."""
    folder = run / DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    digest = fingerprint(data)
    features: dict[str, np.ndarray] = {}
    described: dict[str, list[dict[str, Any]]] = {}
    for side, tables in (("user", data.user_features), ("item", data.item_features)):
        described[side] = []
        for index, name in enumerate(tables):  # order kept: models build fields in it
            key = f"{side}_{index}"
            features[key] = tables[name].values.cpu().numpy()
            described[side].append({**_feature_meta(tables[name]), "key": key})
    atomic_write_npz(folder / "interactions.npz",
                     {"indptr": data.indptr, "items": data.items, "timestamps": data.timestamps})
    atomic_write_npz(folder / "features.npz", features)
    vocabulary = {"users": _tokens(data.user_tokens), "items": _tokens(data.item_tokens[1:])}
    atomic_write_bytes(folder / "vocabulary.json", (json.dumps(vocabulary, ensure_ascii=False) + "\n").encode())
    atomic_write_json(folder / "manifest.json", {
        "format": DATA_FORMAT, "name": data.name, "fingerprint": digest, "users": data.num_users,
        "items": data.num_items, "interactions": data.num_interactions,
        "duplicates_dropped": int(data.duplicates_dropped),
        "user_features": described["user"], "item_features": described["item"],
    })  # last: a manifest means the files it describes are complete
    return digest


def stored_fingerprint(run: Path) -> str | None:
    """The fingerprint of the data `run` was trained on, or None for a run directory written before it was kept."""
    manifest = _read_json(run / DATA_DIR / "manifest.json") if (run / DATA_DIR / "manifest.json").is_file() else None
    return None if manifest is None else str(manifest.get("fingerprint"))


def has_stored_data(run: Path) -> bool:
    """Whether `run` holds everything `load_data` needs (manifest, vocabulary, interactions, features)."""
    folder = run / DATA_DIR
    return all((folder / name).is_file() for name in
               ("manifest.json", "vocabulary.json", "interactions.npz", "features.npz"))


def load_data(run: Path) -> InteractionData:
    """The data stored in `run/data/`, checked against its fingerprint (an edited or damaged file is refused)."""
    folder = run / DATA_DIR
    manifest = _read_json(folder / "manifest.json")
    if manifest.get("format") != DATA_FORMAT:
        raise TandemError(f"{folder / 'manifest.json'}: data format {manifest.get('format')!r} is not {DATA_FORMAT}")
    vocabulary = _read_json(folder / "vocabulary.json")
    arrays = _read_npz(folder / "interactions.npz")
    tables = _read_npz(folder / "features.npz")
    try:
        items = _from_tokens(vocabulary["items"])
        item_tokens = np.empty(len(items) + 1, dtype=object)
        item_tokens[0], item_tokens[1:] = PADDING_TOKEN, items
        data = InteractionData(
            name=str(manifest["name"]),
            user_tokens=_from_tokens(vocabulary["users"]),
            item_tokens=item_tokens,
            indptr=arrays["indptr"],
            items=arrays["items"],
            timestamps=arrays["timestamps"],
            user_features=_tables(manifest["user_features"], tables),
            item_features=_tables(manifest["item_features"], tables),
            duplicates_dropped=int(manifest["duplicates_dropped"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise TandemError(f"{folder} is damaged: {type(error).__name__} {error}") from None
    if fingerprint(data) != manifest.get("fingerprint"):
        raise TandemError(f"{folder} does not match its fingerprint: a data file in the run directory was changed")
    return data


def _from_tokens(stored: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(stored["dtype"])
    if dtype.kind == "O":
        values = np.empty(len(stored["tokens"]), dtype=object)
        values[:] = stored["tokens"]
        return values
    return np.array(stored["tokens"], dtype=dtype)


def _tables(described: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> FeatureTables:
    return {entry["name"]: FeatureTable(entry["name"], entry["kind"], torch.from_numpy(arrays[entry["key"]]),
                                        int(entry["cardinality"]), tuple(entry["vocabulary"]))
            for entry in described}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TandemError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TandemError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise TandemError(f"{path} is damaged: expected a JSON object")
    return value


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise TandemError(f"{path} is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise TandemError(f"cannot read {path}: {' '.join(str(error).split()) or type(error).__name__}") from None


# ------------------------------------------------------------------------------------------------------- lock
class RunLock:
    """Exclusive right to write into a run directory: an flock on `DIR/.lock`, held until `release` or until the
    process ends (the kernel drops it then, kill -9 included). The holder's pid is written in the file."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.handle: int | None = None
        self.held = False  # acquired (and not released) by this process

    def acquire(self) -> None:
        """Create `run` if needed and take the lock; a TandemError if another live process holds it. (Where the
        platform has no flock, the directory is created and nothing is locked.)"""
        self.run.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:
            self.held = True
            return
        handle = os.open(self.run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(handle)
            os.close(handle)
            raise TandemError(f"another tandem train{f' (pid {holder})' if holder else ''} is writing into "
                              f"{self.run}; wait for it to finish or choose another --out") from None
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self.handle, self.held = handle, True

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would let two writers lock different files)."""
        if self.handle is not None:
            os.close(self.handle)  # closing the descriptor releases the flock
            self.handle = None
        self.held = False


def lock_holder(run: Path) -> int | None:
    """The pid of the live process training into `run` (-1 when unknown), or None when nobody is."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        handle = os.open(run / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(handle) or -1
    finally:
        os.close(handle)
    return None


def _pid_in(handle: int) -> int | None:
    try:
        text = os.pread(handle, 32, 0).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, ValueError):
        return None
