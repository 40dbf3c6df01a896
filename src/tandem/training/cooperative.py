"""Cooperative schemes: a retriever and a ranker trained together (seed 000 sec. 3 and its baselines, B.1).

- `independent`: each model alone; retriever on its sampler, ranker on uniform negatives (binary cross-entropy by
  default, as the authors' code trains it).
- `corr`: Algorithm 1. Negatives S ~ Q(.|c) from the retriever's sampler, shared by both models; both use the
  log-Q corrected sampled softmax; the retriever also distils the ranker through the sampled KL divergence. The
  ranker's loss sends no gradient into the retriever (negatives and log Q are drawn without gradient) and the
  distillation loss sends none into the ranker (the teacher's scores are detached).
- `rankflow`: self-learning flow (the ranker learns to tell the positive from the retriever's exact top-k) and
  tutor-learning flow (the retriever learns to put the ranker's best candidates first).
- `icc`: joint cascade: the final score is a weighted sum of the stages' scores, the earlier stage weighted more,
  and the sum is trained end to end (plus the retriever's own loss so it stays a usable retriever).

tandem's own options, off by default so that each scheme stays the paper's: `fusion` (the final order is a blend
of both stages' standardised scores, its weight chosen on validation; the blend with weight 0 is the retriever's
own order, so a fused pipeline is never worse than its retriever on validation), and for CoRR `distill_warmup`
(the KL weight ramps up over the first epochs) and `distill_gate` (distil only while the ranker's validation
pipeline beats the retriever alone).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from tandem.data.splits import EvalSet, TrainSet
from tandem.evaluation import evaluate_batches, full_ranking_metrics
from tandem.evaluation.metrics import metrics_from_ranks, top_k_by_score
from tandem.evaluation.ranking import masked_scores
from tandem.losses.sampled_softmax import sampled_softmax
from tandem.models.retrievers.base import Retriever, score_items, with_positive
from tandem.registry import DISTILL_LOSSES, register_scheme
from tandem.sampling.base import Sampler
from tandem.sampling.static import UniformSampler
from tandem.losses.pairwise import softmax_loss
from tandem.training.schemes import (Batch, LossFn, Scheme, apply_retriever_loss, as_retriever_loss, draw_negatives,
                                     retriever_loss)

DistillFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
RankBatch = Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]

FUSION_GRID = tuple(round(0.1 * step, 1) for step in range(11))  # weight of the ranker; 0 = retriever's order
RANKER_LOSSES = ("softmax", "bce")


def standardise(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-row z-scores of `scores` [B, K] over the `valid` entries (others come out as 0)."""
    weights = valid.to(scores.dtype)
    count = weights.sum(1, keepdim=True).clamp_min(1.0)
    clean = torch.where(valid, scores, torch.zeros_like(scores))
    mean = clean.sum(1, keepdim=True) / count
    var = (((clean - mean) * weights) ** 2).sum(1, keepdim=True) / count
    return torch.where(valid, (clean - mean) / var.sqrt().clamp_min(1e-6), torch.zeros_like(scores))


def fuse(retriever_scores: torch.Tensor, ranker_scores: torch.Tensor, valid: torch.Tensor,
         weight: float) -> torch.Tensor:
    """(1 - w) z(retriever) + w z(ranker); w = 1 is the ranker's order, w = 0 the retriever's."""
    if weight >= 1.0:
        return ranker_scores
    return (1.0 - weight) * standardise(retriever_scores, valid) + weight * standardise(ranker_scores, valid)


def candidate_ranks(final: torch.Tensor, order: torch.Tensor, valid: torch.Tensor,
                    targets: torch.Tensor) -> torch.Tensor:
    """0-based rank [B, T] of each target among the candidates `order` [B, K] re-sorted by `final` [B, K];
    ties keep the retrieval order (stable sort); a target outside the valid candidates has rank +inf."""
    final = torch.where(valid, final.float(), torch.full_like(final.float(), float("-inf")))
    resort = torch.argsort(final, dim=1, descending=True, stable=True)
    items = order.gather(1, resort)
    ok = valid.gather(1, resort)
    match = (items.unsqueeze(1) == targets.unsqueeze(2)) & ok.unsqueeze(1)  # [B, T, K]
    position = torch.arange(order.shape[1], device=order.device, dtype=torch.float64)
    return torch.where(match, position, torch.full_like(position, float("inf"))).min(2).values


class CooperativeScheme(Scheme):
    """Shared parts of the schemes that train a ranker too: re-ranking, fusion, two-stage evaluation."""

    cooperative = True

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 refresh: str | int = "epoch", fusion: bool = False) -> None:
        super().__init__(retriever, sampler, num_negatives, refresh, ranker)
        self.fusion = bool(fusion)
        # weight of the ranker in the fused final score (chosen on validation when `fusion`); 1 = ranker alone
        self.register_buffer("fusion_weight", torch.tensor(1.0, dtype=torch.float64))
        # validation lift of the ranker's pipeline over the retriever alone (monitored metric); -inf = unknown
        self.register_buffer("ranker_lift", torch.tensor(float("-inf"), dtype=torch.float64))
        self.register_buffer("epochs_started", torch.tensor(0))

    def on_epoch_start(self, train: TrainSet) -> None:
        self.epochs_started += 1
        super().on_epoch_start(train)

    def second_stage_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        """The ranker-stage scores of candidate `items` [B, K] before any fusion (a scheme may override)."""
        return self.ranker.score(batch, items)

    def rerank_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        """The final scores of candidate `items` [B, K]: the ranker's, or the fused score when `fusion` is on."""
        scores = self.second_stage_scores(batch, items)
        weight = float(self.fusion_weight)
        if not self.fusion or weight >= 1.0:
            return scores
        valid = torch.ones_like(items, dtype=torch.bool)
        return fuse(self.retriever.score(batch, items), scores, valid, weight)

    def _pipeline_rank_fn(self, cutoffs: tuple[int, ...], retrieval_cutoff: int,
                          weights: tuple[float, ...] | None) -> RankBatch:
        """Per-row pipeline metrics; with `weights`, one set per fusion weight, named 'w=<w>|<metric>'."""

        def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
            query = self.retriever.query(batch)
            scores = masked_scores((query @ self.retriever.item_vectors().T).float(), known, targets)
            k = min(retrieval_cutoff, scores.shape[1] - 1)
            _, order = top_k_by_score(scores, k)  # exact top-k, equal scores by smaller id
            first = scores.gather(1, order)
            valid = torch.isfinite(first)
            second = self.second_stage_scores(batch, order).float()
            if weights is None:
                final = second if (not self.fusion or float(self.fusion_weight) >= 1.0) else fuse(
                    first, second, valid, float(self.fusion_weight))
                return metrics_from_ranks(candidate_ranks(final, order, valid, targets), targets > 0, cutoffs)
            out: dict[str, torch.Tensor] = {}
            for weight in weights:
                ranks = candidate_ranks(fuse(first, second, valid, weight), order, valid, targets)
                for name, values in metrics_from_ranks(ranks, targets > 0, cutoffs).items():
                    out[f"w={weight}|{name}"] = values
            return out

        return rank_batch

    def stage_rank_fns(self, cutoffs: tuple[int, ...], retrieval_cutoff: int = 100) -> dict[str, RankBatch]:
        """Per-row metric functions of each stage: 'retriever' (full ranking), 'pipeline' (as evaluated) and, with
        `fusion`, 'pipeline_ranker_only' (the ranker's order alone, the paper's pipeline), as `evaluate` reports."""
        stages = {
            "retriever": full_ranking_metrics(self.retriever.score_all, cutoffs),
            "pipeline": self._pipeline_rank_fn(cutoffs, retrieval_cutoff, None),
        }
        if self.fusion:
            ranker_weight = self._pipeline_rank_fn(cutoffs, retrieval_cutoff, (1.0,))

            def ranker_only(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
                return {name.split("|", 1)[1]: values for name, values in ranker_weight(batch, targets, known).items()}

            stages["pipeline_ranker_only"] = ranker_only
        return stages

    @torch.no_grad()
    def evaluate(self, eval_set: EvalSet, cutoffs: tuple[int, ...], batch_size: int, device: Any = "cpu",
                 retrieval_cutoff: int = 100, cutoff_sweep: tuple[int, ...] = (), calibrate: bool = False,
                 monitor: str = "ndcg@10", **_: Any) -> dict[str, Any]:
        """{"retriever": full ranking, "pipeline": retrieve top-K then re-rank, "cutoff_sweep": {K: pipeline}}.

        With `calibrate` (validation), also records the ranker's lift over the retriever on `monitor` and, when
        `fusion` is on, chooses the fusion weight that maximises `monitor`; the result then also holds
        "pipeline_ranker_only" (the paper's pipeline, ranker order alone) and "fusion": {"weight": w}.
        """
        self.eval()
        result: dict[str, Any] = {
            "retriever": evaluate_batches(eval_set, full_ranking_metrics(self.retriever.score_all, cutoffs),
                                          batch_size, device),
        }
        if calibrate:
            grid = FUSION_GRID if self.fusion else (1.0,)
            table = evaluate_batches(eval_set, self._pipeline_rank_fn(cutoffs, retrieval_cutoff, grid),
                                     batch_size, device)
            per_weight = {w: {name.split("|", 1)[1]: value for name, value in table.items()
                              if name.startswith(f"w={w}|")} for w in grid}
            ranker_only = per_weight[1.0]
            self.ranker_lift.fill_(ranker_only[monitor] - result["retriever"][monitor])
            best = max(grid, key=lambda w: (per_weight[w][monitor], w))  # ties: the larger ranker weight
            self.fusion_weight.fill_(best)
            result["pipeline"] = per_weight[best]
            if self.fusion:
                result["pipeline_ranker_only"] = ranker_only
                result["fusion"] = {"weight": best}
        else:
            result["pipeline"] = evaluate_batches(
                eval_set, self._pipeline_rank_fn(cutoffs, retrieval_cutoff, None), batch_size, device)
            if self.fusion:
                saved = float(self.fusion_weight)
                self.fusion_weight.fill_(1.0)
                result["pipeline_ranker_only"] = evaluate_batches(
                    eval_set, self._pipeline_rank_fn(cutoffs, retrieval_cutoff, None), batch_size, device)
                self.fusion_weight.fill_(saved)
                result["fusion"] = {"weight": saved}
        if cutoff_sweep:
            result["cutoff_sweep"] = {
                str(k): evaluate_batches(eval_set, self._pipeline_rank_fn(cutoffs, k, None), batch_size, device)
                for k in cutoff_sweep
            }
        return result


def excluded_negatives(batch: Batch, negatives: torch.Tensor, exclude_history: bool) -> torch.Tensor:
    """[B, L] mask of negatives to leave out: accidental hits (the row's positive drawn as a negative) and, with
    `exclude_history`, items of the row's history (known items, never candidates at evaluation)."""
    mask = negatives == batch["item"].unsqueeze(1)
    if exclude_history and "history" in batch:
        history = batch["history"]
        mask |= ((negatives.unsqueeze(2) == history.unsqueeze(1)) & (history.unsqueeze(1) > 0)).any(2)
    return mask


def masked_sampled_softmax(scores: torch.Tensor, pos_log_q: torch.Tensor | None, neg_log_q: torch.Tensor | None,
                           excluded: torch.Tensor) -> torch.Tensor:
    """Mean log-Q corrected sampled softmax over [positive | negatives] scores [B, 1 + L], `excluded` negatives
    left out of the normaliser."""
    return sampled_softmax(scores[:, 0], scores[:, 1:], pos_log_q, neg_log_q, hit_mask=excluded).mean()


def masked_bce(scores: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy: positive -> 1, each kept negative -> 0 (negatives averaged per row)."""
    positive = F.softplus(-scores[:, 0])
    kept = (~excluded).to(scores.dtype)
    negative = (F.softplus(scores[:, 1:]) * kept).sum(1) / kept.sum(1).clamp_min(1.0)
    return (positive + negative).mean()


def ranker_loss(ranker: nn.Module, batch: Batch, negatives: torch.Tensor, neg_log_q: torch.Tensor | None,
                pos_log_q: torch.Tensor | None, kind: str = "softmax", exclude_history: bool = False) -> torch.Tensor:
    """The ranker's loss over the positive and `negatives`: log-Q corrected sampled softmax, or BCE."""
    scores = ranker.score(batch, with_positive(batch["item"], negatives))
    excluded = excluded_negatives(batch, negatives, exclude_history)
    if kind == "bce":
        return masked_bce(scores, excluded)
    return masked_sampled_softmax(scores, pos_log_q, neg_log_q, excluded)


def _check_ranker_loss(kind: str) -> str:
    if kind not in RANKER_LOSSES:
        raise ValueError(f"ranker_loss must be one of {list(RANKER_LOSSES)}, got {kind!r}")
    return kind


def sparse_embedding_tables(scheme: CooperativeScheme) -> list[nn.Parameter]:
    """`train.sparse_embeddings` for a scheme that reads the retriever's items through `training_item_vectors`:
    the retriever's and the ranker's embedding tables, with sparse gradients (training/sparse.py)."""
    from tandem.training.sparse import enable_sparse_embeddings, enable_sparse_ranker_embeddings

    return enable_sparse_embeddings(scheme.retriever) + enable_sparse_ranker_embeddings(scheme.ranker)


@register_scheme("independent")
class IndependentScheme(CooperativeScheme):
    """Retriever and ranker each trained alone (B.1); evaluated as a two-stage pipeline.

    The ranker sees `num_negatives` uniform negatives and, by default, the binary cross-entropy the authors' code
    trains it with (`ranker_loss: softmax` for the sampled softmax)."""

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, loss: LossFn, num_negatives: int,
                 refresh: str | int = "epoch", seed: int = 0, ranker_loss: str = "bce",
                 ranker_exclude_history: bool = False, fusion: bool = False) -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh, fusion)
        self.loss = as_retriever_loss(loss)
        self.ranker_loss_kind = _check_ranker_loss(ranker_loss)
        self.ranker_exclude_history = ranker_exclude_history
        self.ranker_sampler = UniformSampler(retriever.num_items, torch.Generator().manual_seed(seed + 1))

    def use_sparse_embeddings(self) -> None:
        self.sparse_parameters = sparse_embedding_tables(self)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        negatives = self.ranker_sampler.draw(batch["item"].shape[0], self.num_negatives, batch["item"].device)
        return {
            "retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch),
            "ranker": ranker_loss(self.ranker, batch, negatives, None, None,  # uniform Q cancels
                                  self.ranker_loss_kind, self.ranker_exclude_history),
        }


@register_scheme("corr")
class CoRRScheme(CooperativeScheme):
    """Algorithm 1 of seed 000 (with `distill_warmup`, `distill_gate` and `fusion` off, the defaults).

    The retriever's own loss is the configured `loss` (default, and Algorithm 1's: the log-Q corrected sampled
    softmax) over the row's sampled negatives, the same ones the ranker's sampled softmax and the distillation see;
    a loss that shares negatives across the batch (CROLoss's default) does not fit and is refused. Accidental hits
    (a negative equal to the row's positive) are left out of every loss."""

    components = {"distill": (DISTILL_LOSSES, "kl")}

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 distill: DistillFn | None, distill_weight: float = 1.0, refresh: str | int = "epoch",
                 distill_warmup: int = 0, distill_gate: bool = False, ranker_exclude_history: bool = False,
                 fusion: bool = False, loss: LossFn | None = None) -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh, fusion)
        if distill_weight < 0 or distill_warmup < 0:
            raise ValueError("distill_weight and distill_warmup must be >= 0")
        self.loss = as_retriever_loss(loss if loss is not None else softmax_loss())
        if self.loss.shares_negatives:
            raise ValueError(f"config key 'loss.shared_negatives': scheme 'corr' scores each row against its own "
                             f"sampled negatives (those the ranker and the distillation see); loss "
                             f"{self.loss.name!r} shares them across the batch: set loss.shared_negatives: false")
        self.distill = distill
        self.distill_weight = distill_weight
        self.distill_warmup = int(distill_warmup)
        self.distill_gate = bool(distill_gate)
        self.ranker_exclude_history = ranker_exclude_history

    def current_distill_weight(self) -> float:
        """distill_weight, ramped linearly over the first `distill_warmup` epochs, and 0 while the gate is shut
        (the ranker's last validation pipeline not above the retriever alone)."""
        weight = self.distill_weight
        if self.distill_warmup > 0:
            weight *= min(1.0, float(self.epochs_started) / self.distill_warmup)
        if self.distill_gate and not float(self.ranker_lift) > 0:
            weight = 0.0
        return weight

    def use_sparse_embeddings(self) -> None:
        self.sparse_parameters = sparse_embedding_tables(self)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        query = self.retriever.query(batch)
        positives = batch["item"]
        negatives, neg_log_q, pos_log_q = draw_negatives(
            self.sampler, query, positives, self.num_negatives, batch.get("context")
        )
        vectors = self.retriever.training_item_vectors()
        candidates = with_positive(positives, negatives)
        retriever_scores = score_items(query, vectors, candidates)
        ranker_scores = self.ranker.score(batch, candidates)
        ranker_excluded = excluded_negatives(batch, negatives, self.ranker_exclude_history)
        losses = {
            "retriever": apply_retriever_loss(self.loss, self.sampler, query, positives, retriever_scores[:, 0],
                                              retriever_scores[:, 1:], pos_log_q, neg_log_q, negatives,
                                              batch.get("context")),
            "ranker": masked_sampled_softmax(ranker_scores, pos_log_q, neg_log_q, ranker_excluded),
        }
        weight = self.current_distill_weight()
        if self.distill is not None and weight > 0:
            teacher = ranker_scores[:, 1:].detach()
            losses["distill"] = weight * self.distill(teacher, retriever_scores[:, 1:], neg_log_q).mean()
        return losses


def exact_top_k(query: torch.Tensor, vectors: torch.Tensor, k: int, exclude: torch.Tensor) -> torch.Tensor:
    """The retriever's exact top-k items per row, padding and `exclude` [B] (the positive) left out."""
    with torch.no_grad():
        scores = query.detach() @ vectors.detach().T
        scores[:, 0] = float("-inf")
        scores.scatter_(1, exclude.unsqueeze(1), float("-inf"))
        return scores.topk(k, dim=1).indices


RANKFLOW_SCHEDULES = ("phased", "joint")


@register_scheme("rankflow")
class RankFlowScheme(CooperativeScheme):
    """RankFlow (ref. [34] of seed 000). With `schedule: phased` (default) it trains as the authors' code does,
    in phases of whole epochs:

    1. `warmup_epochs` independent epochs (Adam, the configured lr): the retriever on its own loss over its
       sampler's negatives, the ranker with BCE on `num_negatives` uniform negatives;
    2. then cycles of `self_epochs` self-learning epochs (SGD, `self_lr`): the retriever on its own loss, the ranker
       with BCE over the retriever's exact top-`top_k` items (the row's history left out), labelled 1 where the
       item is the positive; and `tutor_epochs` tutor-learning epochs (SGD, `tutor_lr`) where only the retriever
       learns, over the same top-k: alpha * MSE(sigmoid(M), sigmoid(R)) + (1 - alpha) * ranking loss, the ranking
       loss being -log sigmoid(mean sigmoid(M) over the ranker's best `tutor_top` - sum sigmoid(M) over the rest
       / (top_k - tutor_top + 1)).

    `schedule: joint` is tandem's earlier simplification: both flows in every step with one Adam (self-learning
    with the sampled softmax over the top-k, tutor as a listwise cross-entropy on the ranker's best items).
    """

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, loss: LossFn, num_negatives: int,
                 top_k: int = 20, tutor_top: int = 5, tutor_weight: float = 1.0, refresh: str | int = "epoch",
                 fusion: bool = False, schedule: str = "phased", warmup_epochs: int = 5, self_epochs: int = 5,
                 tutor_epochs: int = 5, self_lr: float = 1e-3, tutor_lr: float = 1e-4, tutor_alpha: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh, fusion)
        if tutor_top >= top_k:
            raise ValueError(f"tutor_top ({tutor_top}) must be smaller than top_k ({top_k})")
        if schedule not in RANKFLOW_SCHEDULES:
            raise ValueError(f"RankFlow schedule must be one of {list(RANKFLOW_SCHEDULES)}, got {schedule!r}")
        if min(warmup_epochs, self_epochs, tutor_epochs) < 0 or self_epochs + tutor_epochs < 1:
            raise ValueError("RankFlow epochs must be >= 0, with self_epochs + tutor_epochs >= 1")
        if not (self_lr > 0 and tutor_lr > 0 and 0.0 <= tutor_alpha <= 1.0):
            raise ValueError("RankFlow needs self_lr > 0, tutor_lr > 0 and 0 <= tutor_alpha <= 1")
        self.loss = as_retriever_loss(loss)
        self.top_k, self.tutor_top, self.tutor_weight = top_k, tutor_top, tutor_weight
        self.schedule = schedule
        self.warmup_epochs, self.self_epochs, self.tutor_epochs = warmup_epochs, self_epochs, tutor_epochs
        self.self_lr, self.tutor_lr, self.tutor_alpha = self_lr, tutor_lr, tutor_alpha
        self.ranker_sampler = UniformSampler(retriever.num_items, torch.Generator().manual_seed(seed + 1))

    def phase(self, epoch: int | None = None) -> str:
        """'independent', 'self' or 'tutor' for a 1-based epoch (default: the current one); 'joint' when joint."""
        if self.schedule == "joint":
            return "joint"
        epoch = int(self.epochs_started) if epoch is None else epoch
        if epoch <= self.warmup_epochs:
            return "independent"
        cycle = (epoch - self.warmup_epochs - 1) % (self.self_epochs + self.tutor_epochs)
        return "self" if cycle < self.self_epochs else "tutor"

    def make_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        optimizers = super().make_optimizers(lr, weight_decay)
        if self.schedule == "phased":
            parameters = [p for p in self.parameters() if p.requires_grad]
            optimizers["sgd-self"] = torch.optim.SGD(parameters, lr=self.self_lr, weight_decay=weight_decay)
            optimizers["sgd-tutor"] = torch.optim.SGD(parameters, lr=self.tutor_lr, weight_decay=weight_decay)
        return optimizers

    def trained_models(self) -> tuple[str, ...]:
        return ("retriever",) if self.phase() == "tutor" else ("retriever", "ranker")

    def active_optimizers(self, epoch: int) -> tuple[str, ...]:
        phase = self.phase(epoch)
        return ("sgd-self",) if phase == "self" else ("sgd-tutor",) if phase == "tutor" else ("adam",)

    def retriever_top_k(self, batch: Batch, query: torch.Tensor) -> torch.Tensor:
        """The retriever's exact top-`top_k` items [B, k]: padding and the row's history left out (not the
        positive: self-learning labels it 1 when it is retrieved)."""
        with torch.no_grad():
            scores = query.detach() @ self.retriever.item_vectors().detach().T
            if "history" in batch:
                scores.scatter_(1, batch["history"], float("-inf"))
            scores[:, 0] = float("-inf")
            return scores.topk(self.top_k, dim=1).indices

    def tutor_loss(self, batch: Batch, query: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """alpha * MSE(sigmoid(M), sigmoid(R)) + (1 - alpha) * ranking loss over the top-k (the ranker detached)."""
        student = torch.sigmoid(score_items(query, self.retriever.item_vectors(), top))
        with torch.no_grad():
            teacher = torch.sigmoid(self.ranker.score(batch, top))
        mse = (student - teacher).pow(2).mean()
        best = teacher.topk(self.tutor_top, dim=1).indices
        best_sum = student.gather(1, best).sum(1)
        rest_sum = student.sum(1) - best_sum
        ranking = -F.logsigmoid(best_sum / self.tutor_top - rest_sum / (self.top_k - self.tutor_top + 1)).mean()
        return self.tutor_alpha * mse + (1 - self.tutor_alpha) * ranking

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        phase = self.phase()
        query = self.retriever.query(batch)
        if phase == "joint":
            return self._joint_losses(batch, query)
        if phase == "tutor":
            return {"tutor": self.tutor_loss(batch, query, self.retriever_top_k(batch, query))}
        losses = {"retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch,
                                              query)}
        if phase == "independent":
            negatives = self.ranker_sampler.draw(batch["item"].shape[0], self.num_negatives, batch["item"].device)
            losses["ranker"] = ranker_loss(self.ranker, batch, negatives, None, None, "bce")
        else:
            top = self.retriever_top_k(batch, query)
            scores = self.ranker.score(batch, top)
            labels = (top == batch["item"].unsqueeze(1)).to(scores.dtype)
            losses["ranker"] = F.binary_cross_entropy_with_logits(scores, labels)
        return losses

    def _joint_losses(self, batch: Batch, query: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {"retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch, query)}
        vectors = self.retriever.item_vectors()
        top = exact_top_k(query, vectors, self.top_k, batch["item"])
        losses["ranker"] = ranker_loss(self.ranker, batch, top, None, None)
        if self.tutor_weight > 0:
            with torch.no_grad():
                teacher_best = self.ranker.score(batch, top).topk(self.tutor_top, dim=1).indices
            student = score_items(query, vectors, top).log_softmax(dim=1)
            losses["tutor"] = -self.tutor_weight * student.gather(1, teacher_best).mean()
        return losses


ICC_FORMS = ("gated", "weighted")


def gated_cascade(retriever_scores: torch.Tensor, ranker_scores: torch.Tensor) -> torch.Tensor:
    """ICC's cascade probability as the authors' code computes it: stage probabilities p_k = sigmoid(score_k),
    gates g_k = sigmoid(p_k - tanh(k - 1)); the first stage keeps (1 - g_1) of its vote and passes g_1 on, so
    score = p_1 (1 - g_1) + p_2 (1 - g_2) g_1 — the earlier (retrieval) stage weighs more."""
    p1, p2 = torch.sigmoid(retriever_scores), torch.sigmoid(ranker_scores)
    g1, g2 = torch.sigmoid(p1), torch.sigmoid(p2 - math.tanh(1.0))
    return p1 * (1 - g1) + p2 * (1 - g2) * g1


@register_scheme("icc")
class ICCScheme(CooperativeScheme):
    """Joint cascade (ref. [11] of seed 000): one score combines both stages, the earlier stage weighing more, and
    the combination is trained end to end on the sampler's negatives (gradient into both models).

    `form: gated` (default, the authors' code): the sigmoid-gated cascade of `gated_cascade` trained with binary
    cross-entropy (positive 1, each negative 0). `form: weighted`: w_r M + (1 - w_r) R with w_r > 0.5, trained with
    the sampled softmax. `retriever_loss: true` adds the retriever's own loss, the configured `loss` (default the
    sampled softmax; off in the authors' code); without it the `loss` section must stay the default.
    """

    @classmethod
    def check_sections(cls, options: dict[str, Any], sections: dict[str, Any]) -> None:
        loss = dict(sections.get("loss") or {})
        if not options.get("retriever_loss", False) and loss != {"name": "softmax"}:
            raise ValueError(f"config key 'loss': scheme 'icc' trains the joint cascade score with its own loss "
                             f"(BCE for form 'gated', the sampled softmax for 'weighted'); the loss section {loss} "
                             f"is the retriever's own loss, used only with scheme.retriever_loss: true")

    def __init__(self, retriever: Retriever, ranker: nn.Module, sampler: Sampler, num_negatives: int,
                 retriever_weight: float = 0.7, refresh: str | int = "epoch", fusion: bool = False,
                 form: str = "gated", retriever_loss: bool = False, loss: LossFn | None = None) -> None:
        super().__init__(retriever, ranker, sampler, num_negatives, refresh, fusion)
        if not 0.5 < retriever_weight <= 1.0:
            raise ValueError(f"retriever_weight must be in (0.5, 1] (the earlier stage weighs more), got {retriever_weight}")
        if form not in ICC_FORMS:
            raise ValueError(f"ICC form must be one of {list(ICC_FORMS)}, got {form!r}")
        self.retriever_weight = retriever_weight
        self.form = form
        self.own_retriever_loss = bool(retriever_loss)
        self.loss = as_retriever_loss(loss if loss is not None else softmax_loss())

    def joint_scores(self, retriever_scores: torch.Tensor, ranker_scores: torch.Tensor) -> torch.Tensor:
        if self.form == "gated":
            return gated_cascade(retriever_scores, ranker_scores)
        return self.retriever_weight * retriever_scores + (1 - self.retriever_weight) * ranker_scores

    def second_stage_scores(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        return self.joint_scores(self.retriever.score(batch, items), self.ranker.score(batch, items))

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        query = self.retriever.query(batch)
        negatives, neg_log_q, pos_log_q = draw_negatives(
            self.sampler, query, batch["item"], self.num_negatives, batch.get("context")
        )
        candidates = with_positive(batch["item"], negatives)
        retriever_scores = score_items(query, self.retriever.item_vectors(), candidates)
        joint = self.joint_scores(retriever_scores, self.ranker.score(batch, candidates))
        hits = excluded_negatives(batch, negatives, False)
        losses: dict[str, torch.Tensor] = {}
        if self.form == "gated":
            probability = joint.clamp(1e-7, 1 - 1e-7)
            labels = torch.zeros_like(probability)
            labels[:, 0] = 1.0
            kept = torch.cat([torch.ones_like(hits[:, :1]), ~hits], dim=1).to(probability.dtype)
            bce = F.binary_cross_entropy(probability, labels, reduction="none")
            losses["joint"] = (bce * kept).sum() / kept.sum()
        else:
            losses["joint"] = masked_sampled_softmax(joint, pos_log_q, neg_log_q, hits)
        if self.own_retriever_loss:
            losses["retriever"] = apply_retriever_loss(self.loss, self.sampler, query, batch["item"],
                                                       retriever_scores[:, 0], retriever_scores[:, 1:], pos_log_q,
                                                       neg_log_q, negatives, batch.get("context"))
        return losses
