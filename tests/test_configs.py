"""Every shipped config loads, and every MovieLens-100K config builds its whole scheme (models, sampler, loss)."""
from functools import lru_cache
from pathlib import Path

import pytest

from tandem.config import load_config
from tandem.run import build_scheme, prepare

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@lru_cache(maxsize=None)
def prepared_for(task: str):
    return prepare(load_config(None, [f"task={task}"]))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_builds(path):
    config = load_config(path)
    if config.data.format != "ml-100k":
        return  # other datasets are not shipped with the project; loading validated the keys
    scheme = build_scheme(config, prepared_for(config.task))
    assert scheme.cooperative == (config.ranker is not None and config.scheme["name"] != "retriever")
