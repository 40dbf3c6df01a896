"""Samplers whose distribution does not depend on the model: uniform and popularity."""
from __future__ import annotations

import math

import numpy as np
import torch

from tandem.registry import register_sampler
from tandem.sampling._common import popularity_weights
from tandem.sampling.base import Sampler


class UniformSampler(Sampler):
    """Q(i) = 1/N over items 1..N; padding (item 0) is never drawn and has log Q = -inf."""

    def __init__(self, num_items: int, generator: torch.Generator | None = None) -> None:
        super().__init__(num_items)
        self.generator = generator
        self._log_q = -math.log(num_items)

    def draw(self, rows: int, num: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """`num` uniform items [rows, num] per row (no query needed: the distribution ignores it)."""
        return torch.randint(1, self.num_items + 1, (rows, num), generator=self.generator, device=device)

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = query.shape[0]
        items = self.draw(batch, num, query.device)
        return items, torch.full((batch, num), self._log_q, device=query.device)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """-log N for items 1..N, -inf for padding (item 0)."""
        out = torch.full(items.shape, self._log_q, device=items.device)
        return out.masked_fill(items <= 0, float("-inf"))


class PopularitySampler(Sampler):
    """Q(i) proportional to (count(i) + smoothing)**beta (transform 'power', the classic popularity proposal) or to
    log(count(i) + smoothing)**beta (transform 'log', seed 003's log(1 + f)); padding has Q = 0."""

    def __init__(
        self,
        num_items: int,
        item_counts: np.ndarray | torch.Tensor,
        beta: float = 1.0,
        smoothing: float = 1.0,
        generator: torch.Generator | None = None,
        transform: str = "power",
    ) -> None:
        super().__init__(num_items)
        weights = popularity_weights(item_counts, num_items, beta, smoothing, transform)
        probs = weights / weights.sum()
        self.probs = probs.float()
        self.log_probs = torch.log(probs).float()
        self.generator = generator

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = query.shape[0]
        flat = torch.multinomial(self.probs, batch * num, replacement=True, generator=self.generator)
        items = flat.view(batch, num).to(query.device)
        return items, self.log_probs.to(query.device)[items]

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log Q(i); -inf for padding (its weight is 0)."""
        out = self.log_probs.to(items.device)[items.clamp_min(0)]
        return out.masked_fill(items <= 0, float("-inf"))


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


@register_sampler("uniform")
def uniform(num_items: int, seed: int | None = None) -> UniformSampler:
    """Q(i) = 1/N; `seed` seeds the draws."""
    return UniformSampler(num_items, _generator(seed))


@register_sampler("popularity")
def popularity(num_items: int, item_counts: np.ndarray | torch.Tensor, beta: float = 1.0, smoothing: float = 1.0,
               seed: int | None = None, transform: str = "power") -> PopularitySampler:
    """Q(i) proportional to (count(i) + smoothing) ** beta (or its log, `transform: log`); `item_counts` comes
    from the training data."""
    return PopularitySampler(num_items, item_counts, beta, smoothing, _generator(seed), transform)
