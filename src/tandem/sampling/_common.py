"""Helpers shared by the model-based samplers: item-vector handling, seeded generators, chunked exact scoring."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from tandem.sampling.base import Sampler

#: Upper bound on the number of score entries ([rows, items]) materialised at once by chunked exact scoring.
CHUNK_ELEMENTS = 1 << 23


POPULARITY_TRANSFORMS = ("power", "log")


def popularity_weights(
    item_counts: np.ndarray | torch.Tensor,
    num_items: int,
    beta: float = 1.0,
    smoothing: float = 1.0,
    transform: str = "power",
) -> torch.Tensor:
    """Unnormalised popularity weights [N+1] (float64), weight 0 for padding item 0.

    transform 'power': (count + smoothing) ** beta (word2vec's 0.75 when beta = 0.75); 'log': log(count +
    smoothing) ** beta, which with the defaults is seed 003's log(1 + f_i) (sec. 4.1.3). Used by 'popularity',
    'midx-pop' and AdaSIR's popularity proposal alike, so they agree.
    """
    if transform not in POPULARITY_TRANSFORMS:
        raise ValueError(f"transform must be one of {list(POPULARITY_TRANSFORMS)}, got {transform!r}")
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64).reshape(-1)
    if counts.shape[0] != num_items + 1:
        raise ValueError(f"item_counts must have num_items + 1 = {num_items + 1} entries, got {counts.shape[0]}")
    if not torch.isfinite(counts).all():
        raise ValueError("item_counts must be finite")
    base = (counts + smoothing).clamp_min(0)
    if transform == "log":
        base = torch.log(base.clamp_min(1.0))
    weights = base ** beta
    weights[0] = 0.0
    if weights.sum() <= 0:
        raise ValueError("popularity weights are all zero")
    return weights


class SeededGenerators:
    """One `torch.Generator` per device, all seeded from one seed, so draws are reproducible on CPU and GPU."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def __call__(self, device: torch.device | str) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(torch.device(device))
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(self.seed))
            self._generators[key] = gen
        return self._generators[key]


class VectorSampler(Sampler):
    """Base of samplers that score items with the retriever's item vectors: inner product divided by temperature.

    `refresh(item_vectors)` stores the vectors of items 1..N. With `exclude_padding=True` (default) the tensor is
    [N+1, d] and row 0 (padding) is dropped; with `exclude_padding=False` it is already [N, d] for items 1..N.
    Either way item 0 is never drawn.
    """

    def __init__(
        self, num_items: int, temperature: float = 1.0, seed: int | None = None, exclude_padding: bool = True
    ) -> None:
        super().__init__(num_items)
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.exclude_padding = bool(exclude_padding)
        self.generators = SeededGenerators(seed)
        self.vectors: torch.Tensor | None = None  # [N, d], row j = item j + 1

    @property
    def adaptive(self) -> bool:
        return True

    def _item_rows(self, item_vectors: torch.Tensor) -> torch.Tensor:
        """The [N, d] float rows of items 1..N from what the caller passed to refresh()."""
        if item_vectors.dim() != 2:
            raise ValueError(f"item_vectors must be 2-D [N+1, d], got shape {tuple(item_vectors.shape)}")
        expected = self.num_items + 1 if self.exclude_padding else self.num_items
        if item_vectors.shape[0] != expected:
            layout = "[N+1, d] with row 0 = padding" if self.exclude_padding else "[N, d] (exclude_padding=False)"
            raise ValueError(f"item_vectors must be {layout}: expected {expected} rows, got {item_vectors.shape[0]}")
        rows = item_vectors[1:] if self.exclude_padding else item_vectors
        rows = rows.detach()
        if not rows.is_floating_point():
            rows = rows.float()
        return rows.contiguous()

    def refresh(self, item_vectors: torch.Tensor) -> None:
        """Store the item vectors (detached); call again whenever the retriever's embeddings move."""
        self.vectors = self._item_rows(item_vectors)

    def _require_vectors(self) -> torch.Tensor:
        if self.vectors is None:
            raise RuntimeError(f"{type(self).__name__} needs item vectors: call refresh(item_vectors) first")
        return self.vectors

    def _check_query(self, query: torch.Tensor) -> torch.Tensor:
        vectors = self._require_vectors()
        if query.dim() != 2 or query.shape[1] != vectors.shape[1]:
            raise ValueError(f"query must be [B, {vectors.shape[1]}], got shape {tuple(query.shape)}")
        return query.detach().to(device=vectors.device, dtype=vectors.dtype)

    def item_logits(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores/T [B, L] of items (ids 1..N) for each query row.

        When every row asks for the same items (an expanded [L] row, e.g. shared in-batch negatives) this is one
        [B, d] x [d, L] product instead of gathering B copies of the [L, d] rows.
        """
        vectors = self._require_vectors()
        items = items.to(vectors.device)
        if items.dim() == 2 and items.shape[0] > 1 and items.stride(0) == 0:  # check before any op copies it
            return (query @ vectors[(items[0] - 1).clamp_min(0)].T) / self.temperature
        return torch.einsum("bd,bld->bl", query, vectors[(items - 1).clamp_min(0)]) / self.temperature

    def score_chunks(self, query: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (start, logits [B, chunk]) over items 1..N in chunks: item id = start + column + 1."""
        vectors = self._require_vectors()
        chunk = max(1, CHUNK_ELEMENTS // max(1, query.shape[0]))
        for start in range(0, vectors.shape[0], chunk):
            yield start, (query @ vectors[start:start + chunk].T) / self.temperature

    def log_normaliser(self, query: torch.Tensor) -> torch.Tensor:
        """log sum_i exp(score_i / T) over items 1..N [B], streamed over item chunks (memory O(B * chunk))."""
        parts = [torch.logsumexp(logits, dim=1) for _, logits in self.score_chunks(query)]
        return torch.logsumexp(torch.stack(parts, dim=1), dim=1)

    def all_logits(self, query: torch.Tensor) -> torch.Tensor:
        """Scores/T [B, N] of every item for each query (column j = item j + 1); O(B N) memory, small N only."""
        return torch.cat([logits for _, logits in self.score_chunks(query)], dim=1)
