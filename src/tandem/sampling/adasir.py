"""AdaSIR: per-context sample pools built by importance resampling (seed 003 sec. 3.1-3.3, Algorithm 1).

For each context c (a user, or a training example in the sequential task) a pool R_c is kept:
  1. draw |K_c| candidates from a static proposal Q (uniform or popularity),
  2. resample |R_c| of them with replacement, w_i = softmax_i(r_ci - log Q(i)) with r_ci = M(i, c) / T,
  3. merge with the previous pool: R_c <- |R_c| items drawn uniformly without replacement from R_c ∪ R'_c
     (Algorithm 1 lines 7-10; a random subset of i.i.d. softmax draws stays i.i.d., Corollary 3.3).
By Theorem 3.1 the pool's item frequencies approach softmax(r_c) as |K_c| grows. Negatives are then drawn uniformly
from the pool (Lemma 3.2). Each pool slot keeps the resampling weight w(i|c) its item had in step 2 (it moves with
the item when pools merge), and a draw reports log w(i|c) as its log-probability: the AdaSIR loss (eq. 1) weights it
by exp(r_ci - log w(i|c)), r being the current scores and w those of the refresh that admitted it. The candidates
K_c are kept for the rank estimate of eq. 2 (AdaSIR-W).

`refresh_pools` is called by the training loop after the retriever moves (every epoch by default, Algorithm 1
line 3); contexts whose pool was never built fall back to plain draws from the proposal.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tandem.registry import register_sampler
from tandem.sampling._common import CHUNK_ELEMENTS, VectorSampler, popularity_weights

PROPOSALS = ("uniform", "popularity")


@register_sampler("adasir")
class AdaSIRSampler(VectorSampler):
    """Importance-resampled per-context pools; negatives are drawn uniformly from the context's pool.

    What `log_q` means (seed 003 eq. 1): `sample` returns, for each draw, log w(i|c) = (r'_ci - log Q(i)) -
    log sum_{j in K_c} exp(r'_cj - log Q(j)), the normalised resampling weight the drawn slot's item had when it
    entered the pool (Algorithm 1 line 5; r' = the scores of that refresh, Q the static proposal). Slots kept from an
    older pool by the merge keep their older weight. The AdaSIR loss (`tandem.losses.adasir`) self-normalises
    softmax_j(r_cj - log w(j|c)) over the drawn negatives. `log_prob(items)` gives the same w for any item, computed
    with the context's query, item vectors and normaliser of the latest refresh (the weight the item would get, or
    got, in that refresh), so the `query` passed to it is only checked, not used. Contexts without a pool yet draw
    from the static proposal and report its log Q. Padding (item 0) has log-probability -inf.

    For a uniform proposal w(i|c) is proportional to the probability of drawing i (about |K_c| / N times it); for a
    popularity proposal the draw probability is about |K_c| Q(i) w(i|c), and eq. 1, which this follows, corrects
    by w alone.

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
        transform: str = "power",
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
            weights = popularity_weights(item_counts, num_items, beta, smoothing, transform)
            self.proposal_probs = weights / weights.sum()  # float64 [N+1], 0 for padding
            self.proposal_log_probs = torch.log(self.proposal_probs).float()
        else:
            self.proposal_probs = None
            self.proposal_log_probs = None
        storage = torch.int32 if num_items < 2**31 - 1 else torch.long
        self.pools = torch.zeros(self.num_contexts, self.pool_size, dtype=storage)
        self.pool_log_weights = torch.zeros(self.num_contexts, self.pool_size)  # log w(i|c) of each pool slot
        self.candidates = torch.zeros(self.num_contexts, self.candidate_size, dtype=storage)
        self.log_normalisers = torch.zeros(self.num_contexts)  # log sum_{K_c} exp(r' - log Q) of the latest refresh
        self.context_queries: torch.Tensor | None = None  # [C, d] query of each context at its latest refresh
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

        Each pool slot stores its item and the item's resampling weight log w(i|c) (line 8: R_c holds pairs (i, w_i));
        the merge of line 10 moves both together. Repeated ids (a user's many training rows) are handled once, with
        the first query seen. Work is done in chunks of contexts so memory stays O(chunk * |K_c| * d).
        """
        self.refresh(item_vectors)
        vectors = self.vectors
        contexts = self._check_contexts(contexts, queries.shape[0])
        if queries.dim() != 2 or queries.shape[1] != vectors.shape[1]:
            raise ValueError(f"queries must be [C, {vectors.shape[1]}], got shape {tuple(queries.shape)}")
        if self.context_queries is None or self.context_queries.shape[1] != vectors.shape[1]:
            self.context_queries = torch.zeros(self.num_contexts, vectors.shape[1], dtype=vectors.dtype)
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
            logits = (scores - self.proposal_log_prob(cand)).cpu()
            log_norm = torch.logsumexp(logits, dim=1)
            log_w = (logits - log_norm.unsqueeze(1)).float()  # line 5, normalised over K_c
            pick = torch.multinomial(log_w.exp(), self.pool_size, replacement=True, generator=gen)
            fresh, fresh_w = cand.cpu().gather(1, pick), log_w.gather(1, pick)
            union = torch.cat([self.pools[ids].long(), fresh], dim=1)
            union_w = torch.cat([self.pool_log_weights[ids], fresh_w], dim=1)
            keep = torch.argsort(torch.rand(union.shape, generator=gen), dim=1)[:, : self.pool_size]
            built = self.built[ids].unsqueeze(1)
            self.pools[ids] = torch.where(built, union.gather(1, keep), fresh).to(self.pools.dtype)
            self.pool_log_weights[ids] = torch.where(built, union_w.gather(1, keep), fresh_w)
            self.candidates[ids] = cand.cpu().to(self.candidates.dtype)
            self.log_normalisers[ids] = log_norm.float()
            self.context_queries[ids] = q.cpu().to(self.context_queries.dtype)
            self.built[ids] = True

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
        """`num` items per row drawn uniformly from the row's pool; log_q = log w(i|c) of each drawn slot (eq. 1)."""
        batch = query.shape[0]
        context = self._check_contexts(context, batch)
        gen = self.generators("cpu")
        slots = torch.randint(0, self.pool_size, (batch, num), generator=gen)
        items = self.pools[context].long().gather(1, slots)
        log_q = self.pool_log_weights[context].gather(1, slots)
        built = self.built[context]
        if not bool(built.all()):
            drawn = self.proposal_sample((batch, num), torch.device("cpu"))
            items = torch.where(built.unsqueeze(1), items, drawn)
            log_q = torch.where(built.unsqueeze(1), log_q, self.proposal_log_prob(drawn).to(log_q.dtype))
        return items.to(query.device), log_q.to(device=query.device, dtype=query.dtype)

    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log w(i|c) [B, L] of `items` under the latest refresh of each row's context (see the class); the static
        proposal's log Q for contexts without a pool; -inf for padding."""
        query = self._check_query(query)
        context = self._check_contexts(context, query.shape[0])
        items = items.to(query.device)
        out = self.proposal_log_prob(items.clamp_min(1)).to(query.dtype)
        built = self.built[context]
        if bool(built.any()):
            stored = self.context_queries[context].to(device=query.device, dtype=query.dtype)
            log_norm = self.log_normalisers[context].to(device=query.device, dtype=query.dtype)
            log_w = self.item_logits(stored, items) - out - log_norm.unsqueeze(1)
            out = torch.where(built.to(query.device).unsqueeze(1), log_w, out)
        return out.masked_fill(items <= 0, float("-inf"))

    @torch.no_grad()
    def estimate_rank(self, query: torch.Tensor, pos_items: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Estimated rank [B] (1 = top) of each positive among all N items, from the context's candidates K_c.

        Uniform proposal: seed 003 eq. 2, floor((N - 1) * #{j in K_c: r_cj > r_ci} / |K_c|) + 1 (Theorem 3.4 bounds
        the error). Popularity proposal: the importance-weighted count floor(mean_j 1[r_cj > r_ci] / Q(j)) + 1,
        which is unbiased for the number of higher-scored items. Copies of the positive in K_c never count (it is not
        scored above itself), so a top-scored positive gets rank 1. Scores use the current query and the item
        vectors of the last refresh; contexts without candidates get a fresh proposal draw.
        """
        query = self._check_query(query)
        context = self._check_contexts(context, query.shape[0])
        cand = self.candidates[context].long()
        built = self.built[context]
        if not bool(built.all()):
            cand = torch.where(built.unsqueeze(1), cand, self.proposal_sample(tuple(cand.shape), torch.device("cpu")))
        cand = cand.to(query.device)
        pos_items = pos_items.reshape(-1).to(query.device)
        # the positive and the candidates scored by one einsum, and the positive's own copies never counted: an ulp
        # between two ways of computing the same dot product must not put the positive above itself
        scores = torch.einsum("bd,bkd->bk", query, self.vectors[torch.cat([cand, pos_items.unsqueeze(1)], 1) - 1])
        higher = ((scores[:, :-1] > scores[:, -1:]) & (cand != pos_items.unsqueeze(1))).to(torch.float64)
        if self.proposal == "uniform":
            above = (self.num_items - 1) * higher.sum(1) / self.candidate_size
        else:
            inv_q = torch.exp(-self.proposal_log_probs.to(query.device)[cand].double())
            above = (higher * inv_q).mean(1).clamp(max=self.num_items - 1)
        return (torch.floor(above) + 1).to(query.dtype)
