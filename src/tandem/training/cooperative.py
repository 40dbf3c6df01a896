"""Cooperative schemes: a retriever and a ranker trained together (seed 000 sec. 3 and its baselines, B.1).

- `independent`: each model alone; retriever on its sampler, ranker on uniform negatives.
- `corr`: Algorithm 1. Negatives S ~ Q(.|c) from the retriever's sampler, shared by both models; both use the
  log-Q corrected sampled softmax; the retriever also distils the ranker through the sampled KL divergence. The
  ranker's loss sends no gradient into the retriever (negatives and log Q are drawn without gradient) and the
  distillation loss sends none into the ranker (the teacher's scores are detached).
- `rankflow`: self-learning flow (the ranker learns to tell the positive from the retriever's exact top-k) and
  tutor-learning flow (the retriever learns to put the ranker's best candidates first).
- `icc`: joint cascade: the final score is a weighted sum of the stages' scores, the earlier stage weighted more,
  and the sum is trained end to end (plus the retriever's own loss so it stays a usable retriever).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from tandem.data.splits import EvalSet
from tandem.evaluation import evaluate_batches, full_ranking_metrics, two_stage_metrics
from tandem.losses.sampled_softmax import sampled_softmax
from tandem.models.retrievers.base import Retriever
from tandem.sampling.base import Sampler
from tandem.sampling.static import UniformSampler
from tandem.training.schemes import Batch, LossFn, Scheme, draw_negatives, retriever_loss

DistillFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class CooperativeScheme(Scheme):
    """Shared parts of the schemes that train a ranker too: re-ranking scores and two-stage evaluation."""

    cooperative = True

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 refresh: str | int = "epoch") -> None:
        super().__init__(retriever, sampler, num_negatives, refresh, ranker)

    def rerank_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        """The second stage's scores of candidate `items` [B, K]: the ranker's, unless a scheme says otherwise."""
        return self.ranker.score(batch, items)

    @torch.no_grad()
    def evaluate(self, eval_set: EvalSet, cutoffs: tuple[int, ...], batch_size: int, device: Any = "cpu",
                 retrieval_cutoff: int = 100, cutoff_sweep: tuple[int, ...] = (), **_: Any) -> dict[str, Any]:
        """{"retriever": full ranking, "pipeline": retrieve top-K then re-rank, "cutoff_sweep": {K: pipeline}}."""
        self.eval()

        def pipeline(k: int) -> dict[str, float]:
            metrics = two_stage_metrics(self.retriever.score_all, self.rerank_scores, k, cutoffs)
            return evaluate_batches(eval_set, metrics, batch_size, device)

        result: dict[str, Any] = {
            "retriever": evaluate_batches(
                eval_set, full_ranking_metrics(self.retriever.score_all, cutoffs), batch_size, device
            ),
            "pipeline": pipeline(retrieval_cutoff),
        }
        if cutoff_sweep:
            result["cutoff_sweep"] = {str(k): pipeline(k) for k in cutoff_sweep}
        return result


def ranker_loss(ranker: nn.Module, batch: Batch, negatives: torch.Tensor, neg_log_q: torch.Tensor | None,
                pos_log_q: torch.Tensor | None) -> torch.Tensor:
    """Sampled softmax of the ranker over the positive and `negatives` (log-Q corrected when given)."""
    candidates = torch.cat([batch["item"].unsqueeze(1), negatives], dim=1)
    scores = ranker.score(batch, candidates)
    return sampled_softmax(scores[:, 0], scores[:, 1:], pos_log_q, neg_log_q).mean()


class IndependentScheme(CooperativeScheme):
    """Retriever and ranker each trained alone (B.1); evaluated as a two-stage pipeline."""

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, loss: LossFn, num_negatives: int,
                 refresh: str | int = "epoch", seed: int = 0) -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh)
        self.loss = loss
        self.ranker_sampler = UniformSampler(retriever.num_items, torch.Generator().manual_seed(seed + 1))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        negatives, _ = self.ranker_sampler.sample(batch["item"].unsqueeze(1), self.num_negatives)
        return {
            "retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch),
            "ranker": ranker_loss(self.ranker, batch, negatives, None, None),  # uniform Q cancels
        }


class CoRRScheme(CooperativeScheme):
    """Algorithm 1 of seed 000."""

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 distill: DistillFn | None, distill_weight: float = 1.0, refresh: str | int = "epoch") -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh)
        self.distill = distill
        self.distill_weight = distill_weight

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        query = self.retriever.query(batch)
        positives = batch["item"]
        negatives, neg_log_q, pos_log_q = draw_negatives(
            self.sampler, query, positives, self.num_negatives, batch.get("context")
        )
        vectors = self.retriever.item_vectors()
        candidates = torch.cat([positives.unsqueeze(1), negatives], dim=1)
        retriever_scores = torch.einsum("bd,bld->bl", query, vectors[candidates])
        ranker_scores = self.ranker.score(batch, candidates)
        losses = {
            "retriever": sampled_softmax(retriever_scores[:, 0], retriever_scores[:, 1:], pos_log_q, neg_log_q).mean(),
            "ranker": sampled_softmax(ranker_scores[:, 0], ranker_scores[:, 1:], pos_log_q, neg_log_q).mean(),
        }
        if self.distill is not None and self.distill_weight > 0:
            teacher = ranker_scores[:, 1:].detach()
            losses["distill"] = self.distill_weight * self.distill(teacher, retriever_scores[:, 1:], neg_log_q).mean()
        return losses


def exact_top_k(query: torch.Tensor, vectors: torch.Tensor, k: int, exclude: torch.Tensor) -> torch.Tensor:
    """The retriever's exact top-k items per row, padding and `exclude` [B] (the positive) left out."""
    with torch.no_grad():
        scores = query.detach() @ vectors.detach().T
        scores[:, 0] = float("-inf")
        scores.scatter_(1, exclude.unsqueeze(1), float("-inf"))
        return scores.topk(k, dim=1).indices


class RankFlowScheme(CooperativeScheme):
    """RankFlow (ref. [34] of seed 000), both flows in every step.

    Self-learning: the ranker's negatives are the retriever's exact top-`top_k` items (the positive excluded), no
    log-Q correction (a top-k set has no proposal distribution). The retriever keeps its own supervised loss on its
    sampler. Tutor-learning: over the same candidates, the ranker's `tutor_top` best items become soft targets for
    the retriever: a listwise cross-entropy pulling them to the top of the retriever's ranking of the candidates.
    """

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, loss: LossFn, num_negatives: int,
                 top_k: int = 20, tutor_top: int = 5, tutor_weight: float = 1.0, refresh: str | int = "epoch") -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh)
        if tutor_top > top_k:
            raise ValueError(f"tutor_top ({tutor_top}) must not exceed top_k ({top_k})")
        self.loss = loss
        self.top_k = top_k
        self.tutor_top = tutor_top
        self.tutor_weight = tutor_weight

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        query = self.retriever.query(batch)
        losses = {"retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch, query)}
        vectors = self.retriever.item_vectors()
        top = exact_top_k(query, vectors, self.top_k, batch["item"])
        losses["ranker"] = ranker_loss(self.ranker, batch, top, None, None)
        if self.tutor_weight > 0:
            with torch.no_grad():
                teacher_best = self.ranker.score(batch, top).topk(self.tutor_top, dim=1).indices
            student = torch.einsum("bd,bld->bl", query, vectors[top]).log_softmax(dim=1)
            losses["tutor"] = -self.tutor_weight * student.gather(1, teacher_best).mean()
        return losses


class ICCScheme(CooperativeScheme):
    """Joint cascade (ref. [11] of seed 000): final score = w_r * M(i, c) + w_k * R(i, c) with w_r > w_k.

    The weighted sum is trained with the sampled softmax on the sampler's negatives (gradient into both stages) and
    the retriever also keeps its own sampled softmax on the same candidates, so its first-stage retrieval stays
    meaningful.
    """

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 retriever_weight: float = 0.7, refresh: str | int = "epoch") -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh)
        if not 0.5 < retriever_weight <= 1.0:
            raise ValueError(f"retriever_weight must be in (0.5, 1] (the earlier stage weighs more), got {retriever_weight}")
        self.retriever_weight = retriever_weight

    def joint_scores(self, retriever_scores: torch.Tensor, ranker_scores: torch.Tensor) -> torch.Tensor:
        return self.retriever_weight * retriever_scores + (1 - self.retriever_weight) * ranker_scores

    def rerank_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        return self.joint_scores(self.retriever.score(batch, items), self.ranker.score(batch, items))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        query = self.retriever.query(batch)
        negatives, neg_log_q, pos_log_q = draw_negatives(
            self.sampler, query, batch["item"], self.num_negatives, batch.get("context")
        )
        candidates = torch.cat([batch["item"].unsqueeze(1), negatives], dim=1)
        retriever_scores = torch.einsum("bd,bld->bl", query, self.retriever.item_vectors()[candidates])
        joint = self.joint_scores(retriever_scores, self.ranker.score(batch, candidates))
        return {
            "retriever": sampled_softmax(retriever_scores[:, 0], retriever_scores[:, 1:], pos_log_q, neg_log_q).mean(),
            "joint": sampled_softmax(joint[:, 0], joint[:, 1:], pos_log_q, neg_log_q).mean(),
        }
