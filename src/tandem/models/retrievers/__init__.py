"""Retrievers: query tower + item table, scored by inner product."""
from __future__ import annotations

from typing import Any

from tandem.models.retrievers.base import Retriever
from tandem.models.retrievers.mf import MF
from tandem.models.retrievers.sasrec import SASRec

RETRIEVERS: dict[str, type[Retriever]] = {"mf": MF, "sasrec": SASRec}


def build_retriever(name: str, *, num_users: int, num_items: int, max_seq_len: int, **options: Any) -> Retriever:
    """Build a retriever by its config name; unknown names or options raise ValueError naming them."""
    from tandem.utils import call_with_options

    if name not in RETRIEVERS:
        raise ValueError(f"unknown retriever {name!r}; expected one of {sorted(RETRIEVERS)}")
    context = {"num_users": num_users, "num_items": num_items, "max_seq_len": max_seq_len}
    return call_with_options(RETRIEVERS[name], context, options, what=f"retriever {name!r}")


__all__ = ["Retriever", "MF", "SASRec", "RETRIEVERS", "build_retriever"]
