"""Preprocessing: rating threshold, iterative k-core, dense ids, time order, feature tables.

The result, `InteractionData`, keeps the interactions as a CSR by user (items ordered by time), items numbered
1..N with 0 reserved for padding and users numbered 0..U-1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from tandem.data.features import FeatureTable, FeatureTables
from tandem.data.raw import RawDataset, RawFeatureKind
from tandem.errors import TandemError


@dataclass
class InteractionData:
    """Filtered interactions of one dataset, as compact arrays."""

    name: str
    user_tokens: np.ndarray  # [U] raw token of each dense user id
    item_tokens: np.ndarray  # [N + 1] raw token of each item id, entry 0 is padding
    indptr: np.ndarray  # [U + 1] CSR offsets into items
    items: np.ndarray  # [nnz] item ids 1..N, time-ordered within a user
    timestamps: np.ndarray  # [nnz]
    user_features: FeatureTables = field(default_factory=dict)
    item_features: FeatureTables = field(default_factory=dict)
    duplicates_dropped: int = 0  # rows removed as duplicates by `preprocess` (see there)

    @property
    def num_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def num_items(self) -> int:
        return int(self.item_tokens.shape[0] - 1)

    @property
    def num_interactions(self) -> int:
        return int(self.items.shape[0])

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def item_counts(self) -> np.ndarray:
        """Interactions per item id, [N + 1] (entry 0 is 0)."""
        return np.bincount(self.items, minlength=self.num_items + 1)

    def stats(self) -> dict[str, int | float]:
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / max(1, self.num_users * self.num_items),
            "duplicates_dropped": self.duplicates_dropped,
        }


def k_core_mask(user_codes: np.ndarray, item_codes: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Rows kept by the iterative k-core on integer codes (0..n-1): users with >= min_user and items with
    >= min_item interactions, repeatedly, to a fixed point. One bincount per side and round, O(nnz) each."""
    rows = np.arange(user_codes.shape[0])
    users, items = user_codes, item_codes
    while rows.size:
        user_count = np.bincount(users)
        item_count = np.bincount(items)
        ok = (user_count[users] >= min_user) & (item_count[items] >= min_item)
        if bool(ok.all()):
            break
        rows, users, items = rows[ok], users[ok], items[ok]
    mask = np.zeros(user_codes.shape[0], dtype=bool)
    mask[rows] = True
    return mask


def k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Drop users and items with too few interactions, repeatedly, until nothing changes (a fixed point)."""
    user_codes = pd.factorize(frame["user"])[0]
    item_codes = pd.factorize(frame["item"])[0]
    return frame[k_core_mask(user_codes, item_codes, min_user, min_item)]


DUPLICATES = ("rows", "pairs")


def check_timestamps(timestamps: np.ndarray, name: str) -> None:
    """Timestamps must be finite seconds >= 0; a TandemError names the first bad one."""
    bad = ~np.isfinite(timestamps) | (timestamps < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TandemError(f"dataset {name!r}, interaction {row + 1}: timestamp {timestamps[row]} is not a finite "
                          f"number of seconds >= 0")


def drop_duplicates(frame: pd.DataFrame, duplicates: str) -> pd.DataFrame:
    """`rows`: drop interactions equal to an earlier one in user, item and timestamp (a row given twice).
    `pairs`: keep one interaction per user-item pair, the earliest (then the first in the file): for the general
    task, where a pair seen again would be both a training item and a test target. Rows keep their file order."""
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    if duplicates == "rows":
        return frame[~frame.duplicated(["user", "item", "timestamp"], keep="first")]
    earliest = frame.sort_values(["timestamp", "_order"], kind="stable")
    return earliest[~earliest.duplicated(["user", "item"], keep="first")].sort_values("_order", kind="stable")


def _kept_after_duplicates(users: np.ndarray, timestamps: np.ndarray, pair_key: np.ndarray,
                           duplicates: str) -> np.ndarray:
    """Positions kept by `drop_duplicates`, for rows already sorted by user, then time, then file order (one
    integer key per user-item pair). `rows`: equal rows share user and timestamp, so only runs of tied
    (user, timestamp) are checked, the first of each duplicate kept. `pairs`: the first of each pair in this order
    is its earliest (then the first in the file)."""
    if duplicates == "pairs":
        return np.flatnonzero(~pd.Series(pair_key).duplicated(keep="first").to_numpy())
    tie = (users[1:] == users[:-1]) & (timestamps[1:] == timestamps[:-1])
    in_run = np.zeros(users.shape[0], dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    run_rows = np.flatnonzero(in_run)
    repeated = pd.DataFrame({"pair": pair_key[run_rows], "time": timestamps[run_rows]}).duplicated(keep="first")
    keep = np.ones(users.shape[0], dtype=bool)
    keep[run_rows[repeated.to_numpy()]] = False
    return np.flatnonzero(keep)


def preprocess(
    raw: RawDataset,
    rating_threshold: float | None = None,
    min_user_interactions: int = 10,
    min_item_interactions: int = 10,
    duplicates: str = "rows",
) -> InteractionData:
    """Filter, remap and order `raw` into an `InteractionData`: rating threshold, then duplicates dropped (see
    `drop_duplicates`; the count is kept in `duplicates_dropped`), then the iterative k-core."""
    frame = raw.interactions
    check_timestamps(frame["timestamp"].to_numpy(dtype=np.float64), raw.name)
    if rating_threshold is not None:
        if "rating" not in frame.columns:
            raise TandemError(f"data.rating_threshold is set but dataset {raw.name!r} has no rating column")
        frame = frame[frame["rating"] >= rating_threshold]
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    # integer codes in sorted token order, once: everything below is bincounts, masks and one stable sort
    user_codes, user_uniques = pd.factorize(frame["user"], sort=True)
    item_codes, item_uniques = pd.factorize(frame["item"], sort=True)
    if (user_codes < 0).any() or (item_codes < 0).any():
        raise TandemError(f"dataset {raw.name!r} has interactions without a user or item id")
    timestamps = frame["timestamp"].to_numpy(dtype=np.float64)
    # one stable sort: by user, then time, then file order -- the CSR order; everything after keeps it
    order = np.lexsort((timestamps, user_codes))
    user_codes, item_codes, timestamps = user_codes[order], item_codes[order], timestamps[order]
    rows = _kept_after_duplicates(user_codes, timestamps, user_codes * np.int64(len(item_uniques)) + item_codes,
                                  duplicates)
    dropped = len(frame) - rows.size
    rows = rows[k_core_mask(user_codes[rows], item_codes[rows], min_user_interactions, min_item_interactions)]
    if rows.size == 0:
        raise TandemError(
            f"dataset {raw.name!r} is empty after filtering (rating_threshold={rating_threshold}, "
            f"{min_user_interactions}-core on users, {min_item_interactions}-core on items); lower the thresholds"
        )
    user_codes, item_codes, timestamps = user_codes[rows], item_codes[rows], timestamps[rows]
    user_present = np.bincount(user_codes, minlength=len(user_uniques)) > 0
    item_present = np.bincount(item_codes, minlength=len(item_uniques)) > 0
    user_tokens = np.asarray(user_uniques)[user_present]
    item_tokens_sorted = np.asarray(item_uniques)[item_present]
    user_ids = (np.cumsum(user_present) - 1)[user_codes]  # monotone in the code: the order is kept
    item_ids = np.cumsum(item_present)[item_codes]  # 1..N
    indptr = np.zeros(len(user_tokens) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_ids, minlength=len(user_tokens)), out=indptr[1:])
    item_tokens = np.concatenate([np.array(["[PAD]"], dtype=object), item_tokens_sorted.astype(object)])
    return InteractionData(
        name=raw.name,
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        indptr=indptr,
        items=item_ids.astype(np.int64),
        timestamps=timestamps,
        user_features=_feature_tables(raw.user_features, "user", user_tokens, raw.user_feature_kinds, offset=0),
        item_features=_feature_tables(raw.item_features, "item", item_tokens_sorted, raw.item_feature_kinds, offset=1),
        duplicates_dropped=dropped,
    )


def _feature_tables(
    frame: pd.DataFrame | None,
    id_column: str,
    tokens: np.ndarray,
    kinds: dict[str, RawFeatureKind],
    offset: int,
) -> FeatureTables:
    """Turn a raw feature frame into dense tables aligned with the dense ids (offset 1 leaves row 0 as padding)."""
    if frame is None or frame.empty:
        return {}
    frame = frame.drop_duplicates(id_column, keep="first")
    aligned = frame.set_index(id_column).reindex(pd.Index(tokens))
    rows = len(tokens) + offset
    tables: FeatureTables = {}
    for name, kind in kinds.items():
        if name not in aligned.columns:
            continue
        column = aligned[name]
        if kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            finite = np.isfinite(values)
            mean = values[finite].mean() if finite.any() else 0.0
            std = values[finite].std() if finite.any() else 1.0
            values = np.where(finite, (values - mean) / (std if std > 0 else 1.0), 0.0)
            table = np.zeros(rows, dtype=np.float32)
            table[offset:] = values
            tables[name] = FeatureTable(name, "numeric", torch.from_numpy(table))
        elif kind == "categorical":
            codes, vocabulary = pd.factorize(column.astype("string"), use_na_sentinel=True)
            table = np.zeros(rows, dtype=np.int64)
            table[offset:] = codes + 1  # -1 (missing) becomes 0
            tables[name] = FeatureTable(
                name, "categorical", torch.from_numpy(table), len(vocabulary) + 1, tuple(map(str, vocabulary))
            )
        else:
            lists = [value if isinstance(value, (list, tuple, np.ndarray)) else [] for value in column]
            flat = [str(token) for values in lists for token in values]
            codes, vocabulary = pd.factorize(pd.Series(flat, dtype="string"))
            width = max(1, max((len(values) for values in lists), default=1))
            table = np.zeros((rows, width), dtype=np.int64)
            lengths = np.array([len(values) for values in lists], dtype=np.int64)
            row_index = np.repeat(np.arange(len(lists)), lengths) + offset
            col_index = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            table[row_index, col_index] = codes + 1
            tables[name] = FeatureTable(
                name, "multi", torch.from_numpy(table), len(vocabulary) + 1, tuple(map(str, vocabulary))
            )
    return tables
