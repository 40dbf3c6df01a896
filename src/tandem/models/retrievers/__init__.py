"""Retrievers: query tower + item table, scored by inner product. Each lives in its own module and registers
itself with `@register_retriever("name")`; the registry imports every module here, so a new file is all it takes."""
from __future__ import annotations

from typing import Any

from tandem.models.retrievers.base import Retriever
from tandem.registry import RETRIEVERS


def build_retriever(
    name: str,
    *,
    num_users: int,
    num_items: int,
    max_seq_len: int,
    user_features: Any = None,
    item_features: Any = None,
    **options: Any,
) -> Retriever:
    """Build a retriever by its config name; unknown names or options raise ValueError naming them.

    Context a constructor may take: num_users, num_items, max_seq_len, user_features, item_features (FeatureTables
    indexed by user id 0..U-1 and item id 0..N, row 0 padding).
    """
    context = {"num_users": num_users, "num_items": num_items, "max_seq_len": max_seq_len,
               "user_features": user_features, "item_features": item_features}
    return RETRIEVERS.build(name, context, options)


__all__ = ["Retriever", "RETRIEVERS", "build_retriever"]
