"""Rankers: expressive models that re-score a retriever's candidates, `score(batch, items [B, L]) -> [B, L]`.
Each lives in its own module and registers itself with `@register_ranker("name")`."""
from __future__ import annotations

from typing import Any

from tandem.models.rankers.base import Ranker
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput
from tandem.registry import RANKERS


def build_ranker(
    name: str,
    *,
    num_users: int,
    num_items: int,
    user_features: FeatureInput = None,
    item_features: FeatureInput = None,
    **options: Any,
) -> Ranker:
    """Build a ranker by its config name; unknown names or options raise ValueError naming them.

    `user_features` / `item_features` are FeatureTables (a {name: table} mapping or a list), indexed by user id
    0..U-1 and item id 0..N (row 0 padding).
    """
    context = {"num_users": num_users, "num_items": num_items,
               "user_features": user_features, "item_features": item_features}
    return RANKERS.build(name, context, options)


__all__ = ["Ranker", "FeatureEmbedding", "RANKERS", "build_ranker"]
