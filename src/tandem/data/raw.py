"""What every reader returns: interactions and optional side features, still keyed by raw tokens."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

RawFeatureKind = Literal["categorical", "multi", "numeric"]


@dataclass
class RawDataset:
    """A dataset as read from disk, before filtering, remapping and splitting.

    `interactions` has columns `user`, `item` (raw tokens, str or int), `timestamp` (float; the row order when the
    source has none) and optionally `rating` (float).
    `user_features` / `item_features` have the id column `user` / `item` plus one column per feature; a
    multi-valued feature holds a list of string tokens per row. `*_feature_kinds` names each feature's kind.
    """

    name: str
    interactions: pd.DataFrame
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    user_feature_kinds: dict[str, RawFeatureKind] = field(default_factory=dict)
    item_feature_kinds: dict[str, RawFeatureKind] = field(default_factory=dict)
