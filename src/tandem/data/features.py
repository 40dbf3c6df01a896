"""Side features of users and items, stored as dense tables indexed by id.

Rankers look features up by id themselves (batches carry only ids), so a batch stays small and any model can
ignore features it does not use. Row 0 of an item table is padding; user tables are indexed by user id 0..U-1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

FeatureKind = Literal["categorical", "multi", "numeric"]


@dataclass
class FeatureTable:
    """One feature column.

    - categorical: `values` [rows] long, ids in 0..cardinality-1, 0 meaning missing.
    - multi: `values` [rows, M] long, a padded (0) list of ids per row, e.g. a movie's genres.
    - numeric: `values` [rows] float, standardised to zero mean and unit variance.
    """

    name: str
    kind: FeatureKind
    values: torch.Tensor
    cardinality: int = 0
    vocabulary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "categorical" and self.values.dim() != 1:
            raise ValueError(f"categorical feature {self.name!r} needs a 1-d table")
        if self.kind == "multi" and self.values.dim() != 2:
            raise ValueError(f"multi-valued feature {self.name!r} needs a 2-d table")
        if self.kind == "numeric" and self.values.dim() != 1:
            raise ValueError(f"numeric feature {self.name!r} needs a 1-d table")

    @property
    def num_rows(self) -> int:
        return int(self.values.shape[0])


FeatureTables = dict[str, FeatureTable]
