"""Maximum-inner-product search over a retriever's item vectors with FAISS.

`ItemIndex` holds items 1..N (row 0 of the retriever's table is padding and is never added, so never returned).
Exact search uses `IndexFlatIP`; for large catalogues `exact=False` builds an `IndexIVFFlat` with the
inner-product metric, `nlist ~ 4 sqrt(N)` coarse cells and `nprobe` cells visited per query. Any other FAISS index
is chosen by its factory string (`factory="HNSW32"`, `"IVF4096,Flat"`, `"IVF1024,SQ8"`, `"Flat"`; inner-product
metric), with `nprobe` (IVF) and `ef_search` (HNSW) as its search-time knobs. Which to pick by catalogue size:
`recommended_factory`; measured trade-offs in benchmarks/results/serving_index.json.

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
import re
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


def recommended_factory(num_items: int) -> str:
    """A FAISS factory string for a catalogue of `num_items`: exact below 100k items (a flat scan of 64-d vectors
    costs about a millisecond there), IVF with ~4 sqrt(N) cells (a power of two) up to 10M -- at 1M items
    `IVF4096,Flat` with nprobe 8 measured recall@100 0.999 at 148x the flat index's throughput, against 0.945 and
    30x for HNSW32 at efSearch 256 (benchmarks/results/serving_index.json) -- and beyond 10M the same with an HNSW
    coarse quantiser, so that finding the cells to probe does not scan 65k centroids."""
    if num_items < 100_000:
        return "Flat"
    if num_items <= 10_000_000:
        return f"IVF{1 << max(4, round(math.log2(4 * math.sqrt(num_items))))},Flat"
    return "IVF65536_HNSW32,Flat"


def default_factory_nprobe(nlist: int) -> int:
    """IVF cells searched when a factory index is given no nprobe: nlist / 512, at least 8 (FAISS's own default,
    1, loses most neighbours: recall@100 0.95 needs 4 of 4096 cells on clustered vectors, 8 gives 0.999)."""
    return int(min(nlist, max(8, nlist // 512)))


def _build_from_factory(items: np.ndarray, factory: str, seed: int) -> faiss.Index:
    """`faiss.index_factory(d, factory, inner product)`, trained on (a subsample of) the items when it needs
    training; a string FAISS does not parse is one TandemError."""
    if not isinstance(factory, str) or not factory.strip():
        raise TandemError(f"index factory must be a FAISS factory string such as 'HNSW32' or 'IVF4096,Flat', "
                          f"got {factory!r}")
    for links in re.findall(r"HNSW(\d+)", factory):
        if int(links) < 2:  # FAISS aborts the whole process on HNSW0 / HNSW1 instead of raising
            raise TandemError(f"index factory {factory!r}: an HNSW graph needs at least 2 links per node "
                              f"(HNSW{links}); try HNSW32")
    try:
        index = faiss.index_factory(items.shape[1], factory.strip(), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise TandemError(f"index factory {factory!r} is not a FAISS factory string ({_faiss_detail(error)}); "
                          f"examples: 'Flat', 'HNSW32', 'IVF4096,Flat', 'IVF1024,SQ8'") from None
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            if ivf.nlist > items.shape[0]:
                raise TandemError(f"index factory {factory!r}: {ivf.nlist} IVF cells for {items.shape[0]} items; "
                                  f"use at most {items.shape[0]}")
            ivf.cp.seed = int(seed)
            ivf.cp.min_points_per_centroid = 1
            ivf.cp.max_points_per_centroid = 32  # k-means on <= 32 points per cell, 10 rounds: minutes ->
            ivf.cp.niter = 10  # seconds at 1M items, recall at a given nprobe barely changes
        sample = items
        cap = 32 * (ivf.nlist if ivf is not None else 2048)
        if items.shape[0] > cap:
            sample = items[np.sort(np.random.default_rng(seed).choice(items.shape[0], cap, replace=False))]
        try:
            index.train(np.ascontiguousarray(sample))
        except RuntimeError as error:  # e.g. PQ's 256 centroids per sub-quantizer on a small catalogue
            raise TandemError(f"index factory {factory!r} cannot be trained on {items.shape[0]} items: "
                              f"{_faiss_detail(error)}") from None
    return index


def _faiss_detail(error: RuntimeError) -> str:
    """FAISS's own message without its source location ('Error in ... at file.cpp:123: <message>')."""
    text = " ".join(str(error).split())
    found = re.search(r"\.cpp:\d+: (.*)$", text)
    return (found.group(1) if found else text)[:200]


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
    `factory`: any FAISS factory string instead (then `exact` and `nlist` are not used); `nprobe` sets its IVF
    cells searched (default `default_factory_nprobe`), `ef_search` its HNSW search breadth (default FAISS's 16;
    larger = better recall, slower).
    """

    def __init__(self, item_vectors: np.ndarray, exact: bool = True, nlist: int | None = None,
                 nprobe: int | None = None, seed: int = 0, factory: str | None = None,
                 ef_search: int | None = None) -> None:
        vectors = np.ascontiguousarray(np.asarray(item_vectors, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(f"item_vectors must be [N + 1, d] with N >= 1 (row 0 padding), got {vectors.shape}")
        self.num_items = int(vectors.shape[0] - 1)
        self.dim = int(vectors.shape[1])
        self.exact = bool(exact)
        items = vectors[1:]
        self.factory = factory.strip() if isinstance(factory, str) else None
        if factory is not None:
            self.index = _build_from_factory(items, factory, seed)
        elif self.exact:
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
        self._adopt(self.index)
        if factory is None and not self.exact:
            self.nprobe = nprobe if nprobe is not None else max(1, self.nlist // 8)
        elif nprobe is not None:
            if self._ivf is None:
                raise TandemError(f"nprobe applies to an IVF index; index factory {self.factory!r} has none")
            self.nprobe = nprobe
        elif self._ivf is not None:
            self.nprobe = default_factory_nprobe(self.nlist)
        if ef_search is not None:
            if self._hnsw is None:
                raise TandemError(f"ef_search applies to an HNSW index; "
                                  f"{'index factory ' + repr(self.factory) if self.factory else 'this index'} has none")
            self.ef_search = ef_search

    def _adopt(self, index: faiss.Index) -> None:
        """Record what kind of index `index` is: its IVF part (nprobe), its HNSW part (efSearch), exactness."""
        self._ivf = faiss.try_extract_index_ivf(index)
        hnsw = faiss.downcast_index(index)
        self._hnsw = hnsw if hasattr(hnsw, "hnsw") else None
        if self._hnsw is None and self._ivf is not None:  # an HNSW coarse quantiser (e.g. IVF65536_HNSW32,Flat)
            quantizer = faiss.downcast_index(self._ivf.quantizer)
            self._hnsw = quantizer if hasattr(quantizer, "hnsw") else None
        self.exact = isinstance(faiss.downcast_index(index), faiss.IndexFlat)
        self.nlist = int(self._ivf.nlist) if self._ivf is not None else 0

    _ivf: faiss.IndexIVF | None = None
    _hnsw: faiss.Index | None = None

    @property
    def nprobe(self) -> int:
        return int(self._ivf.nprobe) if self._ivf is not None else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._ivf is None:
            return
        value = int(value)
        if not 1 <= value <= self.nlist:
            raise ValueError(f"nprobe must be in [1, nlist={self.nlist}], got {value}")
        self._ivf.nprobe = value

    @property
    def ef_search(self) -> int:
        return int(self._hnsw.hnsw.efSearch) if self._hnsw is not None else 0

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        value = int(value)
        if value < 1:
            raise ValueError(f"ef_search must be >= 1, got {value}")
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = value

    def describe(self) -> dict[str, int | str]:
        if self.factory is not None:
            kind = f"factory:{self.factory}"
        else:
            kind = "flat-ip" if self.exact else "ivf-flat-ip"
        info: dict[str, int | str] = {"type": kind, "items": self.num_items, "dim": self.dim}
        if self.nlist:
            info.update(nlist=self.nlist, nprobe=self.nprobe)
        if self._hnsw is not None:
            info.update(ef_search=self.ef_search)
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
            params = None if nprobe is None else faiss.SearchParametersIVF(nprobe=nprobe)  # top-level IVF only
            scores, labels = self.index.search(queries[which], fetch, params=params)
            items = np.where(labels >= 0, labels + 1, 0).astype(np.int64)
            keep = items > 0
            if excluded.size:  # membership of (row, item) in the exclusion set, through one key per pair
                keep &= ~np.isin(which[:, None].astype(np.int64) * stride + items, excluded_keys)
            return scores, items, keep

        everything = np.arange(rows)
        scores, items, keep = fetch_rows(everything, None)
        if self.nlist and self._top_level_ivf():
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

    def _top_level_ivf(self) -> bool:
        """Whether the index itself is the IVF (per-search parameters then reach it without changing it)."""
        return isinstance(faiss.downcast_index(self.index), faiss.IndexIVF)

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
        self._adopt(index)
        plain = self.exact or isinstance(faiss.downcast_index(index), faiss.IndexIVFFlat)
        self.factory = None if plain else type(faiss.downcast_index(index)).__name__  # e.g. IndexHNSWFlat
        return self


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |found_r ∩ exact_r| / |exact_r|: the recall of an approximate top-k [B, k] against the
    exact top-k [B, k] (item ids; 0 is padding and never counts). Rows whose exact list is empty are left out."""
    found, exact = np.asarray(found, dtype=np.int64), np.asarray(exact, dtype=np.int64)
    if found.ndim != 2 or exact.ndim != 2 or found.shape[0] != exact.shape[0]:
        raise ValueError(f"found and exact must be [B, k] with the same B, got {found.shape} and {exact.shape}")
    stride = np.int64(max(int(found.max(initial=0)), int(exact.max(initial=0))) + 1)
    rows = np.arange(found.shape[0], dtype=np.int64)[:, None]
    found_keys = np.where(found > 0, rows * stride + found, -1)
    exact_keys = np.where(exact > 0, rows * stride + exact, -2)
    hits = np.isin(exact_keys, np.unique(found_keys)).sum(1)  # duplicates in `found` counted once
    sizes = (exact > 0).sum(1)
    kept = sizes > 0
    return float((hits[kept] / sizes[kept]).mean()) if kept.any() else float("nan")
