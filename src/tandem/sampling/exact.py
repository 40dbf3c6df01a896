"""Exact softmax sampling from the retriever, Q(i|c) = softmax_i(M(i, c) / T) over items 1..N (seed 000 sec. 3.2.2).

The reference every approximate sampler is measured against. Cost O(B N d) per batch; memory stays O(B * chunk)
because items are streamed in chunks: each chunk draws `num` candidates from its own softmax and reports its
log-mass, then each draw picks a chunk in proportion to the masses (a mixture draw, exactly the full softmax).
"""
from __future__ import annotations

import torch

from tandem.registry import register_sampler
from tandem.sampling._common import VectorSampler


@register_sampler("exact")
class ExactSampler(VectorSampler):
    """Draws from the exact softmax of the stored item vectors; log_q is the exact normalised log-probability.

    Call `refresh(item_vectors [N+1, d])` after the retriever's embeddings move (every epoch or every few steps;
    refreshing is the caller's business). Example::

        sampler = ExactSampler(num_items=N, temperature=1.0, seed=0)
        sampler.refresh(retriever.item_vectors())
        items, log_q = sampler.sample(query, 20)
    """

    def __init__(
        self, num_items: int, temperature: float = 1.0, seed: int | None = None, exclude_padding: bool = True
    ) -> None:
        super().__init__(num_items, temperature, seed, exclude_padding)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # (query, log Z) of the last call

    def refresh(self, item_vectors: torch.Tensor) -> None:
        super().refresh(item_vectors)
        self._cache = None

    def _cached_log_z(self, query: torch.Tensor) -> torch.Tensor | None:
        if self._cache is not None and self._cache[0].shape == query.shape and torch.equal(self._cache[0], query):
            return self._cache[1]
        return None

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query = self._check_query(query)
        gen = self.generators(query.device)
        chunk_lse, chunk_draws = [], []
        for start, logits in self.score_chunks(query):
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            probs = torch.exp(logits - lse)
            chunk_draws.append(torch.multinomial(probs, num, replacement=True, generator=gen) + start)
            chunk_lse.append(lse)
        lse_all = torch.cat(chunk_lse, dim=1)  # [B, C]
        log_z = torch.logsumexp(lse_all, dim=1)
        if len(chunk_draws) == 1:
            cols = chunk_draws[0]
        else:
            which = torch.multinomial(torch.softmax(lse_all, dim=1), num, replacement=True, generator=gen)
            stacked = torch.stack(chunk_draws, dim=1)  # [B, C, num]
            cols = stacked.gather(1, which.unsqueeze(1)).squeeze(1)
        items = cols + 1
        log_q = self.item_logits(query, items) - log_z.unsqueeze(1)
        self._cache = (query.clone(), log_z)
        return items, log_q

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        query = self._check_query(query)
        log_z = self._cached_log_z(query)
        if log_z is None:
            log_z = self.log_normaliser(query)
            self._cache = (query.clone(), log_z)
        items = items.to(query.device)
        out = self.item_logits(query, items) - log_z.unsqueeze(1)
        return out.masked_fill(items <= 0, float("-inf"))

    def full_log_prob(self, query: torch.Tensor) -> torch.Tensor:
        """log Q(i|c) [B, N] for every item (column j = item j + 1); small N only (O(B N) memory)."""
        query = self._check_query(query)
        return torch.log_softmax(self.all_logits(query), dim=1)
