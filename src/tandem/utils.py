"""Small shared helpers: option checking against a constructor, atomic writes, seeding."""
from __future__ import annotations

import inspect
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def call_with_options(factory: Callable[..., Any], context: dict[str, Any], options: dict[str, Any], what: str) -> Any:
    """Call `factory` with the user's `options` plus whichever `context` arguments it accepts.

    An option the factory does not take is an error that names it, so a typo in a config never passes silently.
    """
    parameters = inspect.signature(factory).parameters
    accepted = {name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - (accepted - set(context)))
    if unknown:
        allowed = sorted(accepted - set(context))
        raise ValueError(f"unknown option(s) {unknown} for {what}; allowed: {allowed}")
    arguments = {key: value for key, value in context.items() if key in accepted}
    arguments.update(options)
    return factory(**arguments)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write_json(path: str | Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def atomic_torch_save(path: str | Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order and sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
