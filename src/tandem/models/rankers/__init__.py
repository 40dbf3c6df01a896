"""Rankers: expressive models that re-score a retriever's candidates, `score(batch, items [B, L]) -> [B, L]`."""
from __future__ import annotations

from typing import Any

from tandem.models.rankers.base import Ranker
from tandem.models.rankers.deepfm import DeepFM
from tandem.models.rankers.din import DIN
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput

RANKERS: dict[str, type[Ranker]] = {"deepfm": DeepFM, "din": DIN}


def build_ranker(
    name: str,
    *,
    num_users: int,
    num_items: int,
    user_features: FeatureInput = None,
    item_features: FeatureInput = None,
    **options: Any,
) -> Ranker:
    """Build a ranker by its config name ('deepfm', 'din'); unknown names or options raise ValueError naming them.

    `user_features` / `item_features` are FeatureTables (a {name: table} mapping or a list), indexed by user id
    0..U-1 and item id 0..N (row 0 padding).
    """
    from tandem.utils import call_with_options

    if name not in RANKERS:
        raise ValueError(f"unknown ranker {name!r}; expected one of {sorted(RANKERS)}")
    context = {"num_users": num_users, "num_items": num_items,
               "user_features": user_features, "item_features": item_features}
    return call_with_options(RANKERS[name], context, options, what=f"ranker {name!r}")


__all__ = ["Ranker", "DeepFM", "DIN", "FeatureEmbedding", "RANKERS", "build_ranker"]
