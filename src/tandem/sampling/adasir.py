"""AdaSIR: per-context sample pools built by importance resampling (seed 003 sec. 3.1-3.3, Algorithm 1).

For each context c (a user, or a training example in the sequential task) a pool R_c is kept:
  1. draw |K_c| candidates from a static proposal Q (uniform or popularity),
  2. resample |R_c| of them with replacement, w_i = softmax_i(r_ci - log Q(i)) with r_ci = M(i, c) / T,
  3. merge with the previous pool: R_c <- |R_c| items drawn uniformly without replacement from R_c ∪ R'_c
     (Algorithm 1 lines 7-10; a random subset of i.i.d. softmax draws stays i.i.d., Corollary 3.3).
By Theorem 3.1 the pool's item frequencies approach softmax(r_c) as |K_c| grows. Negatives are then drawn uniformly
from the pool (Lemma 3.2). The candidates K_c are kept for the rank estimate of eq. 2 (AdaSIR-W).

`refresh_pools` is called by the training loop after the retriever moves (every epoch by default, Algorithm 1
line 3); contexts whose pool was never built fall back to plain draws from the proposal.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tandem.sampling._common import CHUNK_ELEMENTS, VectorSampler, popularity_weights

PROPOSALS = ("uniform", "popularity")


class AdaSIRSampler(VectorSampler):
    """Importance-resampled per-context pools; negatives are drawn uniformly from the context's pool.

    What `log_q` means: `sample` and `log_prob` return log Q(i) of the STATIC PROPOSAL that generated the pool's
    candidates (-log N for 'uniform', log popularity share for 'popularity'), not the (intractable) probability of
    the two-pass draw. The AdaSIR loss (seed 003 eq. 1, `tandem.losses.adasir`) self-normalises the weights
    softmax_j(score_j - log_q_j) over the drawn negatives, which is exactly what it needs; a log-Q-corrected
    sampled softmax fed with these values corrects for the proposal only.

    Args:
        num_items: N. num_contexts: number of context ids (pools are keyed by id in 0..num_contexts-1).
        proposal: 'uniform' or 'popularity' (needs item_counts [N+1]).
        pool_size: |R_c|. candidate_size: |K_c| (the paper uses |K_c| = |R_c|).
        temperature: T in r = M / T. seed: seeds all draws.

    Example::

        sampler = AdaSIRSampler(num_items=N, num_contexts=U, pool_size=200, candidate_size=200, seed=0)
        sampler.refresh_pools(contexts, queries, item_vectors)       # once per epoch
        items, log_q = sampler.sample(query, 20, context=batch_contexts)
        rank = sampler.estimate_rank(query, positives, batch_contexts)  # for AdaSIR-W
    """

    def __init__(
        self,
        num_items: int,
        num_contexts: int,
        proposal: str = "uniform",
        pool_size: int = 200,
        candidate_size: int = 200,
        item_counts: np.ndarray | torch.Tensor | None = None,
        beta: float = 1.0,
        smoothing: float = 1.0,
        temperature: float = 1.0,
        seed: int | None = None,
        exclude_padding: bool = True,
    ) -> None:
        super().__init__(num_items, temperature, seed, exclude_padding)
        for name, value in (("num_contexts", num_contexts), ("pool_size", pool_size),
                            ("candidate_size", candidate_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        self.num_contexts = int(num_contexts)
        self.pool_size = int(pool_size)
        self.candidate_size = int(candidate_size)
        self.proposal = proposal
        if proposal == "popularity":
            if item_counts is None:
                raise ValueError("proposal='popularity' needs item_counts ([N+1] interaction counts)")
            weights = popularity_weights(item_counts, num_items, beta, smoothing)
            self.proposal_probs = weights / weights.sum()  # float64 [N+1], 0 for padding
            self.proposal_log_probs = torch.log(self.proposal_probs).float()
        else:
            self.proposal_probs = None
            self.proposal_log_probs = None
        storage = torch.int32 if num_items < 2**31 - 1 else torch.long
        self.pools = torch.zeros(self.num_contexts, self.pool_size, dtype=storage)
        self.candidates = torch.zeros(self.num_contexts, self.candidate_size, dtype=storage)
        self.built = torch.zeros(self.num_contexts, dtype=torch.bool)

    # ------------------------------------------------------------------------------------------------- proposal
    def proposal_sample(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Items drawn i.i.d. from the static proposal, any shape, ids 1..N."""
        gen = self.generators("cpu")
        if self.proposal == "uniform":
            items = torch.randint(1, self.num_items + 1, shape, generator=gen)
        else:
            flat = torch.multinomial(self.proposal_probs, math.prod(shape), replacement=True, generator=gen)
            items = flat.view(shape)
        return items.to(device)

    def proposal_log_prob(self, items: torch.Tensor) -> torch.Tensor:
        """log Q(i) of the static proposal for items of any shape."""
        if self.proposal == "uniform":
            return torch.full(items.shape, -math.log(self.num_items), device=items.device)
        return self.proposal_log_probs.to(items.device)[items]

    # ---------------------------------------------------------------------------------------------------- pools
    def _check_contexts(self, context: torch.Tensor | None, batch: int) -> torch.Tensor:
        if context is None:
            raise ValueError("AdaSIR keeps one pool per context: pass context=[B] context ids")
        context = torch.as_tensor(context).reshape(-1).long().cpu()
        if context.shape[0] != batch:
            raise ValueError(f"context must have {batch} ids like the query, got {context.shape[0]}")
        if context.numel() and (context.min() < 0 or context.max() >= self.num_contexts):
            raise ValueError(
                f"context ids must be in 0..{self.num_contexts - 1}, got range {int(context.min())}.."
                f"{int(context.max())}"
            )
        return context

    @torch.no_grad()
    def refresh_pools(self, contexts: torch.Tensor, queries: torch.Tensor, item_vectors: torch.Tensor) -> None:
        """Build or update the pools of `contexts` [C] from their `queries` [C, d] (Algorithm 1 lines 3-10).

        Repeated ids (a user's many training rows) are handled once, with the first query seen. Work is done in
        chunks of contexts so memory stays O(chunk * |K_c| * d).
        """
        self.refresh(item_vectors)
        vectors = self.vectors
        contexts = self._check_contexts(contexts, queries.shape[0])
        if queries.dim() != 2 or queries.shape[1] != vectors.shape[1]:
            raise ValueError(f"queries must be [C, {vectors.shape[1]}], got shape {tuple(queries.shape)}")
        uniq, inverse = torch.unique(contexts, return_inverse=True)
        first = torch.full((uniq.shape[0],), contexts.shape[0], dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(contexts.shape[0]), reduce="amin")
        queries = queries.detach().to(device=vectors.device, dtype=vectors.dtype)
        gen = self.generators("cpu")
        chunk = max(1, CHUNK_ELEMENTS // (self.candidate_size * vectors.shape[1]))
        for start in range(0, uniq.shape[0], chunk):
            ids = uniq[start:start + chunk]
            q = queries[first[start:start + chunk].to(queries.device)]
            cand = self.proposal_sample((ids.shape[0], self.candidate_size), vectors.device)
            scores = torch.einsum("cd,ckd->ck", q, vectors[cand - 1]) / self.temperature
            weights = torch.softmax(scores - self.proposal_log_prob(cand), dim=1).cpu()
            pick = torch.multinomial(weights, self.pool_size, replacement=True, generator=gen)
            fresh = cand.cpu().gather(1, pick)
            old = self.pools[ids].long()
            union = torch.cat([old, fresh], dim=1)
            keep = torch.argsort(torch.rand(union.shape, generator=gen), dim=1)[:, : self.pool_size]
            merged = torch.where(self.built[ids].unsqueeze(1), union.gather(1, keep), fresh)
            self.pools[ids] = merged.to(self.pools.dtype)
            self.candidates[ids] = cand.cpu().to(self.candidates.dtype)
            self.built[ids] = True

    def reset_pools(self) -> None:
        """Forget every pool (the next refresh_pools starts from empty pools, Algorithm 1 line 1)."""
        self.pools.zero_()
        self.candidates.zero_()
        self.built.zero_()

    def pool_distribution(self, contexts: torch.Tensor) -> torch.Tensor:
        """Empirical item frequencies of the pools [C, N+1] (column 0 = padding, always 0): the distribution that
        `sample` draws from for a built context (Theorem 3.1: approaches softmax(r_c) as |K_c| grows)."""
        contexts = self._check_contexts(contexts, torch.as_tensor(contexts).numel())
        if not bool(self.built[contexts].all()):
            raise ValueError("some contexts have no pool yet: call refresh_pools first")
        pools = self.pools[contexts].long()
        counts = torch.zeros(contexts.shape[0], self.num_items + 1).scatter_add_(1, pools, torch.ones(pools.shape))
        return counts / self.pool_size

    # -------------------------------------------------------------------------------------------------- protocol
    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`num` items per row drawn uniformly from the row's pool; log_q = log of the static proposal (see class)."""
        batch = query.shape[0]
        context = self._check_contexts(context, batch)
        gen = self.generators("cpu")
        slots = torch.randint(0, self.pool_size, (batch, num), generator=gen)
        items = self.pools[context].long().gather(1, slots)
        built = self.built[context]
        if not bool(built.all()):
            items = torch.where(built.unsqueeze(1), items, self.proposal_sample((batch, num), torch.device("cpu")))
        items = items.to(query.device)
        return items, self.proposal_log_prob(items)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log Q(i) of the static proposal that generated the candidates (what the AdaSIR loss corrects by)."""
        out = self.proposal_log_prob(items)
        return out.masked_fill(items <= 0, float("-inf"))

    @torch.no_grad()
    def estimate_rank(self, query: torch.Tensor, pos_items: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Estimated rank [B] (1 = top) of each positive among all N items, from the context's candidates K_c.

        Uniform proposal: seed 003 eq. 2, floor((N - 1) * #{j in K_c: r_cj > r_ci} / |K_c|) + 1 (Theorem 3.4 bounds
        the error). Popularity proposal: the importance-weighted count floor(mean_j 1[r_cj > r_ci] / Q(j)) + 1,
        which is unbiased for the number of higher-scored items. Scores use the current query and the item vectors
        of the last refresh; contexts without candidates get a fresh proposal draw.
        """
        query = self._check_query(query)
        context = self._check_contexts(context, query.shape[0])
        cand = self.candidates[context].long()
        built = self.built[context]
        if not bool(built.all()):
            cand = torch.where(built.unsqueeze(1), cand, self.proposal_sample(tuple(cand.shape), torch.device("cpu")))
        cand = cand.to(query.device)
        pos_items = pos_items.reshape(-1).to(query.device)
        vectors = self.vectors
        pos_score = (query * vectors[pos_items - 1]).sum(-1, keepdim=True)
        higher = (torch.einsum("bd,bkd->bk", query, vectors[cand - 1]) > pos_score).to(torch.float64)
        if self.proposal == "uniform":
            above = (self.num_items - 1) * higher.sum(1) / self.candidate_size
        else:
            inv_q = torch.exp(-self.proposal_log_probs.to(query.device)[cand].double())
            above = (higher * inv_q).mean(1).clamp(max=self.num_items - 1)
        return (torch.floor(above) + 1).to(query.dtype)
