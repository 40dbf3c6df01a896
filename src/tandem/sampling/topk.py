"""Hard-negative baselines that score every item exactly: DNS (seed 003 sec. 4.2), TopRand and Top&Rand (seed 000
sec. 4.4). Cost O(B N d) per batch (plus a sort for DNS); items are streamed in query chunks so memory stays modest.
"""
from __future__ import annotations

import math

import torch

from tandem.registry import register_sampler
from tandem.sampling._common import CHUNK_ELEMENTS, VectorSampler


class _ExactScoreSampler(VectorSampler):
    """Shared: exact scores of all items for chunks of query rows."""

    def _query_chunks(self, query: torch.Tensor):
        """Yield (row slice, scores [rows, N]) with rows * N <= CHUNK_ELEMENTS (at least one row)."""
        vectors = self._require_vectors()
        rows = max(1, CHUNK_ELEMENTS // vectors.shape[0])
        for start in range(0, query.shape[0], rows):
            part = slice(start, start + rows)
            yield part, query[part] @ vectors.T

    @staticmethod
    def _check_num(num: int) -> int:
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        return num


@register_sampler("dns")
class DNSSampler(_ExactScoreSampler):
    """Dynamic negative sampling: each negative is the highest-scored of `candidate_size` uniform candidates.

    log_q is the exact probability of this procedure: with a_i items scored strictly above i and t_i items tied
    with it (i included), P(i) = [((N - a_i) / N)^m - ((N - a_i - t_i) / N)^m] / t_i for m = candidate_size -- the
    max of m uniform draws falls at or below i's score level. It sums to 1 over items and needs every item's score
    (a sort per query), so DNS here costs O(N log N) per query; the draws themselves only use the m candidates.
    """

    def __init__(self, num_items: int, candidate_size: int = 10, temperature: float = 1.0, seed: int | None = None,
                 exclude_padding: bool = True) -> None:
        super().__init__(num_items, temperature, seed, exclude_padding)
        if not isinstance(candidate_size, int) or candidate_size < 1:
            raise ValueError(f"candidate_size must be a positive integer, got {candidate_size!r}")
        self.candidate_size = candidate_size

    def _log_q(self, scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Exact log P(items) [b, L] given all scores [b, N] of the same rows."""
        n, m = self.num_items, self.candidate_size
        ordered = torch.sort(scores, dim=1).values
        s = scores.gather(1, items - 1)
        below_or_equal = torch.searchsorted(ordered, s, right=True)
        below = torch.searchsorted(ordered, s, right=False)
        above = (n - below_or_equal).double()
        ties = (below_or_equal - below).double()
        head = n - above  # items at or below i's level
        log_top = m * torch.log(head / n)
        log_gap = torch.log(-torch.expm1(m * torch.log1p(-ties / head)))
        return (log_top + log_gap - torch.log(ties)).to(scores.dtype)

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query = self._check_query(query)
        num = self._check_num(num)
        gen = self.generators(query.device)
        items_out, logq_out = [], []
        for part, scores in self._query_chunks(query):
            rows = scores.shape[0]
            cand = torch.randint(1, self.num_items + 1, (rows, num * self.candidate_size), generator=gen,
                                 device=query.device)
            cand_scores = scores.gather(1, cand - 1).view(rows, num, self.candidate_size)
            best = cand_scores.argmax(dim=2, keepdim=True)
            items = cand.view(rows, num, self.candidate_size).gather(2, best).squeeze(2)
            items_out.append(items)
            logq_out.append(self._log_q(scores, items))
        return torch.cat(items_out), torch.cat(logq_out)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        query = self._check_query(query)
        items = items.to(query.device)
        out = [self._log_q(scores, items[part].clamp_min(1)) for part, scores in self._query_chunks(query)]
        return torch.cat(out).masked_fill(items <= 0, float("-inf"))


@register_sampler("toprand")
class TopRandSampler(_ExactScoreSampler):
    """TopRand (seed 000 sec. 4.4): `num` items picked uniformly without replacement from the exact top
    `top_factor * num` items of each query.

    log_q has no proper meaning here (a deterministic top-k set has probability 0 outside it, which would make a
    corrected loss infinite for a positive outside the set). It is reported as the constant log(1 / |top set|),
    the uniform-within-candidate-set probability, for every item and by `log_prob` too: a constant log Q cancels
    in a softmax-type loss, so the loss is the uncorrected one, which is how the paper uses these baselines.
    |top set| uses the `num` of the latest `sample` call (`num_negatives` before the first). Padding (item 0) is
    never drawn and gets -inf.
    """

    def __init__(self, num_items: int, top_factor: int = 5, num_negatives: int = 20, temperature: float = 1.0,
                 seed: int | None = None, exclude_padding: bool = True) -> None:
        super().__init__(num_items, temperature, seed, exclude_padding)
        if not isinstance(top_factor, int) or top_factor < 1:
            raise ValueError(f"top_factor must be a positive integer, got {top_factor!r}")
        self.top_factor = top_factor
        self.num = self._check_num(num_negatives)

    def _log_q_const(self) -> float:
        return -math.log(min(self.top_factor * self.num, self.num_items))

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query = self._check_query(query)
        self.num = self._check_num(num)
        gen = self.generators(query.device)
        top = min(self.top_factor * num, self.num_items)
        out = []
        for _, scores in self._query_chunks(query):
            candidates = torch.topk(scores, top, dim=1).indices + 1  # [rows, top]
            keys = torch.rand(candidates.shape, generator=gen, device=query.device)
            order = torch.argsort(keys, dim=1)
            if num <= top:
                picks = order[:, :num]
            else:  # fewer candidates than draws: wrap around (with replacement beyond the set size)
                picks = order.repeat(1, math.ceil(num / top))[:, :num]
            out.append(candidates.gather(1, picks))
        items = torch.cat(out)
        return items, torch.full(items.shape, self._log_q_const(), device=query.device)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = torch.full(items.shape, self._log_q_const(), device=items.device)
        return out.masked_fill(items <= 0, float("-inf"))


@register_sampler("top&rand")
class TopAndRandSampler(_ExactScoreSampler):
    """Top&Rand (seed 000 sec. 4.4): the exact top num//2 items plus num - num//2 uniform items.

    log_q is the distribution of one slot picked at random among the `num`: q(i) = (n_top / num) 1[i in top] /
    n_top + (n_rand / num) / N. It is a proper distribution (sums to 1) and finite for every item, so a corrected
    loss stays finite; draws and `log_prob` report the same value. `num` is that of the latest `sample` call
    (`num_negatives` before the first).
    """

    def __init__(self, num_items: int, num_negatives: int = 20, temperature: float = 1.0, seed: int | None = None,
                 exclude_padding: bool = True) -> None:
        super().__init__(num_items, temperature, seed, exclude_padding)
        self.num = self._check_num(num_negatives)

    def _split(self) -> tuple[int, int]:
        n_top = min(self.num // 2, self.num_items)
        return n_top, self.num - n_top

    def _log_q(self, in_top: torch.Tensor) -> torch.Tensor:
        n_top, n_rand = self._split()
        uniform = n_rand / (self.num * self.num_items)
        top = 1.0 / self.num + uniform
        return torch.log(torch.where(in_top, torch.tensor(top), torch.tensor(uniform))).to(in_top.device)

    def _top_items(self, scores: torch.Tensor) -> torch.Tensor:
        n_top, _ = self._split()
        return torch.topk(scores, n_top, dim=1).indices + 1

    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query = self._check_query(query)
        self.num = self._check_num(num)
        gen = self.generators(query.device)
        n_top, n_rand = self._split()
        items_out, logq_out = [], []
        for _, scores in self._query_chunks(query):
            top = self._top_items(scores)
            rand = torch.randint(1, self.num_items + 1, (scores.shape[0], n_rand), generator=gen, device=query.device)
            items = torch.cat([top, rand], dim=1)
            in_top = (items.unsqueeze(2) == top.unsqueeze(1)).any(2)
            items_out.append(items)
            logq_out.append(self._log_q(in_top))
        return torch.cat(items_out), torch.cat(logq_out).to(query.dtype)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        query = self._check_query(query)
        items = items.to(query.device)
        out = []
        for part, scores in self._query_chunks(query):
            top = self._top_items(scores)
            out.append(self._log_q((items[part].unsqueeze(2) == top.unsqueeze(1)).any(2)))
        return torch.cat(out).to(query.dtype).masked_fill(items <= 0, float("-inf"))
