"""Small shared helpers: atomic writes, checkpoint loading, seeding, RNG state capture."""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _fsync(path: str | Path) -> None:
    """Flush a written file to disk (best effort: some file systems refuse fsync)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Numeric arrays in one compressed .npz, written atomically; read back with `np.load(allow_pickle=False)`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(path: str | Path, payload: Any) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill at any moment leaves the old file or the new
    one, never half of one (a checkpoint is what a resumed run trusts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as tensors and plain containers only: `weights_only=True` refuses any pickled object
    that would run code on load (a crafted `best.pt` must never execute). A refused or corrupt file is a
    TandemError naming it."""
    from tandem.errors import TandemError

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickler_detail(str(error))
        if "global" in detail.lower():  # an object to import and call: what a code-executing pickle needs
            raise TandemError(f"refusing to load {path}: it holds more than tensors ({detail})") from None
        raise TandemError(f"cannot read checkpoint {path}: not a tensor checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise TandemError(f"cannot read checkpoint {path}: {_unpickler_detail(str(error))}") from None
    if not isinstance(payload, dict):
        raise TandemError(f"cannot read checkpoint {path}: expected a mapping, got {type(payload).__name__}")
    return payload


def _unpickler_detail(message: str) -> str:
    """The one informative line of torch's long weights-only error (what it refused), or the first line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        lowered = line.lower()
        if ("global" in lowered or "unsupported" in lowered) and not lowered.startswith("weights only load failed"):
            return line
    return lines[0] if lines else "unreadable"


def flush_denormals() -> bool:
    """Treat float32 values below 1.2e-38 (denormals) as zero in this thread and in the threads it starts later.

    Training drives some numbers into that range: weights of dead ReLU units decaying under weight decay, Adam's
    first moments of parameters whose gradient has stopped. x86 CPUs compute on denormals through a slow microcode
    path, so a run slows down as they accumulate (an ICC epoch on ML-100K general went from 11 s to 49 s over 44
    epochs; `python benchmarks/denormals.py`). Flushing changes no value above 1.2e-38. Returns False where the CPU
    has no such mode (nothing changes then)."""
    return bool(torch.set_flush_denormal(True))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order and sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def rng_state() -> dict[str, Any]:
    """The state of every global random generator (Python, NumPy, torch CPU and CUDA), as tensors and plain
    containers (savable in a weights-only checkpoint)."""
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["position"],
                         saved["has_gauss"], saved["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
