"""Maximum-inner-product search over a retriever's item vectors with FAISS.

`ItemIndex` holds items 1..N (row 0 of the retriever's table is padding and is never added, so never returned).
Exact search uses `IndexFlatIP`; for large catalogues `exact=False` builds an `IndexIVFFlat` with the
inner-product metric, `nlist ~ 4 sqrt(N)` coarse cells and `nprobe` cells visited per query.

Per-row exclusion (a user's known items) is done by over-fetching `k + max excluded` neighbours and filtering them
with one vectorised membership test, so every row still gets `k` results when the catalogue has them.

>>> import numpy as np
>>> vectors = np.random.default_rng(0).normal(size=(11, 4)).astype("float32")
>>> index = ItemIndex(vectors)
>>> items, scores = index.search(vectors[[1, 2]], k=3, exclude=[[1], [2, 3]])
>>> items.shape, bool((items != 1)[0].all()), bool(np.isin([2, 3], items[1]).any())
((2, 3), True, False)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple, Sequence, Union

import faiss
import numpy as np

from tandem.errors import TandemError


class ExcludeCSR(NamedTuple):
    """Excluded item ids of every query row as a CSR: row r excludes `items[indptr[r]:indptr[r + 1]]`."""

    indptr: np.ndarray  # [B + 1]
    items: np.ndarray  # [nnz]


# rows' excluded item ids: one array (or list) per row, or an ExcludeCSR
Exclude = Union[Sequence[Sequence[int]], Sequence[np.ndarray], ExcludeCSR, None]


def default_nlist(num_items: int) -> int:
    """About 4 sqrt(N) coarse cells, at least 1 and at most N."""
    return int(max(1, min(num_items, round(4 * math.sqrt(num_items)))))


def exclusion_csr(exclude: Exclude, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalise `exclude` to a CSR (indptr [rows + 1], items [nnz]) of int64 item ids."""
    if exclude is None:
        return np.zeros(rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if isinstance(exclude, ExcludeCSR):
        indptr = np.asarray(exclude.indptr, dtype=np.int64)
        if indptr.shape != (rows + 1,):
            raise ValueError(f"exclude.indptr must have {rows + 1} entries (query rows + 1), got {indptr.shape}")
        items = np.asarray(exclude.items, dtype=np.int64)[indptr[0] : indptr[-1]]
        return indptr - indptr[0], items
    if len(exclude) != rows:
        raise ValueError(f"exclude must have one entry per query row ({rows}), got {len(exclude)}")
    arrays = [np.asarray(row, dtype=np.int64).reshape(-1) for row in exclude]
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=indptr[1:])
    items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return indptr, items


class ItemIndex:
    """FAISS inner-product index over item vectors [N + 1, d] (row 0 padding, not indexed).

    `exact=True`: `IndexFlatIP`. `exact=False`: `IndexIVFFlat` (inner product) with `nlist` cells (default
    ~4 sqrt(N)) trained on the item vectors, searching `nprobe` cells (default max(1, nlist // 8)); a row whose
    probed cells hold too few eligible items is searched again with twice the cells, so it still gets `k` results
    when the catalogue has them. With `nprobe == nlist` the result is exact.
    """

    def __init__(self, item_vectors: np.ndarray, exact: bool = True, nlist: int | None = None,
                 nprobe: int | None = None, seed: int = 0) -> None:
        vectors = np.ascontiguousarray(np.asarray(item_vectors, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(f"item_vectors must be [N + 1, d] with N >= 1 (row 0 padding), got {vectors.shape}")
        self.num_items = int(vectors.shape[0] - 1)
        self.dim = int(vectors.shape[1])
        self.exact = bool(exact)
        items = vectors[1:]
        if self.exact:
            self.index = faiss.IndexFlatIP(self.dim)
            self.nlist = 0
        else:
            self.nlist = int(nlist) if nlist is not None else default_nlist(self.num_items)
            if not 1 <= self.nlist <= self.num_items:
                raise ValueError(f"nlist must be in [1, {self.num_items}] (the number of items), got {self.nlist}")
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = int(seed)
            self.index.cp.min_points_per_centroid = 1  # small catalogues: no warnings, clustering still fine
            self.index.train(items)
            self._quantizer = quantizer  # keep the Python object alive as long as the index
        self.index.add(items)
        if not self.exact:
            self.nprobe = nprobe if nprobe is not None else max(1, self.nlist // 8)

    @property
    def nprobe(self) -> int:
        return int(self.index.nprobe) if not self.exact else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.exact:
            return
        value = int(value)
        if not 1 <= value <= self.nlist:
            raise ValueError(f"nprobe must be in [1, nlist={self.nlist}], got {value}")
        self.index.nprobe = value

    def describe(self) -> dict[str, int | str]:
        info: dict[str, int | str] = {"type": "flat-ip" if self.exact else "ivf-flat-ip", "items": self.num_items,
                                      "dim": self.dim}
        if not self.exact:
            info.update(nlist=self.nlist, nprobe=self.nprobe)
        return info

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` items [B, k] (ids 1..N) and their inner products [B, k] per query row, best first.

        `exclude`: per row, item ids never to return (a list of arrays, or an `ExcludeCSR`). Rows with
        fewer than `k` eligible items are padded with item 0 and score -inf.
        """
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got {queries.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows = queries.shape[0]
        indptr, excluded = exclusion_csr(exclude, rows)
        lengths = np.diff(indptr)
        fetch = int(min(self.num_items, k + (int(lengths.max()) if rows and lengths.size else 0)))
        stride = np.int64(self.num_items + 1)
        excluded_keys = np.repeat(np.arange(rows, dtype=np.int64), lengths) * stride + excluded

        def fetch_rows(which: np.ndarray, nprobe: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            params = None if nprobe is None else faiss.SearchParametersIVF(nprobe=nprobe)
            scores, labels = self.index.search(queries[which], fetch, params=params)
            items = np.where(labels >= 0, labels + 1, 0).astype(np.int64)
            keep = items > 0
            if excluded.size:  # membership of (row, item) in the exclusion set, through one key per pair
                keep &= ~np.isin(which[:, None].astype(np.int64) * stride + items, excluded_keys)
            return scores, items, keep

        everything = np.arange(rows)
        scores, items, keep = fetch_rows(everything, None)
        if not self.exact:
            # IVF returns only what the probed cells hold: re-search rows left short with twice the cells
            nprobe = self.nprobe
            short = everything[(keep.sum(1) < min(k, fetch)) & (items == 0).any(1)]
            while short.size and nprobe < self.nlist:
                nprobe = min(self.nlist, 2 * nprobe)
                scores[short], items[short], keep[short] = fetch_rows(short, nprobe)
                short = short[(keep[short].sum(1) < min(k, fetch)) & (items[short] == 0).any(1)]
        # kept entries first, each row's order otherwise unchanged (stable sort of a boolean key)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        items = np.take_along_axis(items, order, axis=1)
        scores = np.take_along_axis(scores.astype(np.float32), order, axis=1)
        kept = np.take_along_axis(keep, order, axis=1)
        items = np.where(kept, items, 0)
        scores = np.where(kept, scores, np.float32(-np.inf))
        if items.shape[1] < k:  # the catalogue is smaller than k
            pad = k - items.shape[1]
            items = np.pad(items, ((0, 0), (0, pad)))
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return items, scores

    def save(self, path: str | Path) -> None:
        """Write the FAISS index (faiss.write_index); `load` reads it back."""
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "ItemIndex":
        path = Path(path)
        if not path.is_file():
            raise TandemError(f"no FAISS index at {path}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as error:
            raise TandemError(f"{path} is not a readable FAISS index: {error}") from None
        self = cls.__new__(cls)
        self.index = index
        self.num_items = int(index.ntotal)
        self.dim = int(index.d)
        ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
        self.exact = ivf is None
        self.nlist = int(ivf.nlist) if ivf is not None else 0
        if ivf is not None and not hasattr(index, "nprobe"):
            self.index, self._owner = ivf, index  # the extracted view does not own its memory
        return self
