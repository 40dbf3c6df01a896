"""Serving a trained run: a FAISS index over the retriever's item vectors, the retrieve-then-rank pipeline, and a
small JSON HTTP service.

    from tandem.serving import Recommender
    recommender = Recommender.from_run("runs/corr")
    recommender.recommend(users=["196"], k=5)   # [[{"item": "50", "score": ..., "retriever_score": ...}, ...]]

Names are imported lazily so `tandem --help` does not load FAISS or torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExcludeCSR", "ItemIndex", "Recommender", "serve", "start_server"]

_WHERE = {
    "ExcludeCSR": "tandem.serving.index",
    "ItemIndex": "tandem.serving.index",
    "Recommender": "tandem.serving.pipeline",
    "serve": "tandem.serving.http",
    "start_server": "tandem.serving.http",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tandem.serving' has no attribute {name!r}")
