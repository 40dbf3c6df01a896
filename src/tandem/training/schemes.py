"""Training schemes: each turns a batch into the losses of the models it trains, and knows how to evaluate them.

The trainer sums a scheme's losses and takes one optimiser step. Each loss only reaches the parameters of the model
it belongs to (stop-gradients are placed by the scheme), so a summed step equals separate per-model steps.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from tandem.data.splits import EvalSet, TrainSet, iterate_batches
from tandem.errors import TandemError
from tandem.evaluation import evaluate_batches, full_ranking_metrics
from tandem.losses.registry import RetrieverLoss
from tandem.models.retrievers.base import Retriever, score_items
from tandem.registry import Registry, register_scheme
from tandem.sampling.base import Sampler

Batch = dict[str, torch.Tensor]
LossFn = Callable[..., torch.Tensor]


class SamplerRefresher:
    """Keeps an adaptive sampler in step with the retriever: every epoch, or every `every_steps` steps."""

    def __init__(self, sampler: Sampler, retriever: Retriever, policy: str | int = "epoch") -> None:
        if not (policy == "epoch" or (isinstance(policy, int) and policy >= 1)):
            raise ValueError(f"sampler.refresh must be 'epoch' or a positive number of steps, got {policy!r}")
        self.sampler = sampler
        self.retriever = retriever
        self.policy = policy

    @torch.no_grad()
    def refresh(self, train: TrainSet | None = None, batch_size: int = 2048) -> None:
        if not self.sampler.adaptive:
            return
        vectors = self.retriever.item_vectors().detach()
        self.sampler.refresh(vectors)
        refresh_pools = getattr(self.sampler, "refresh_pools", None)
        if refresh_pools is not None and train is not None:
            was_training = self.retriever.training
            self.retriever.eval()
            contexts, queries = [], []
            for batch in iterate_batches(train.tensors, batch_size):
                contexts.append(batch["context"])
                queries.append(self.retriever.query(batch))
            self.retriever.train(was_training)
            refresh_pools(torch.cat(contexts), torch.cat(queries), vectors)

    def on_epoch_start(self, train: TrainSet) -> None:
        self.refresh(train)

    def on_step(self, step: int, train: TrainSet) -> None:
        if isinstance(self.policy, int) and step > 0 and step % self.policy == 0:
            self.refresh(train)


def as_retriever_loss(loss: LossFn | RetrieverLoss) -> RetrieverLoss:
    """`loss` as a RetrieverLoss: one built by `build_loss` as it is, a plain function
    `(pos [B], neg [B, L], pos_log_q, neg_log_q, hit_mask=None) -> [B]` (e.g. `sampled_softmax`) wrapped."""
    if isinstance(loss, RetrieverLoss):
        return loss
    name = getattr(loss, "__name__", type(loss).__name__)
    return RetrieverLoss(name, lambda pos, neg, pos_q, neg_q, rank, hits: loss(pos, neg, pos_q, neg_q, hit_mask=hits),
                         {})


def draw_negatives(
    sampler: Sampler, query: torch.Tensor, positives: torch.Tensor, num: int, context: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negatives S ~ Q(.|c) with their log Q, and log Q of the positives, all without gradient."""
    query = query.detach()
    with torch.no_grad():
        negatives, neg_log_q = sampler.sample(query, num, context=context)
        pos_log_q = sampler.log_prob(query, positives.unsqueeze(1), context=context).squeeze(1)
    return negatives, neg_log_q, pos_log_q


class Scheme(nn.Module):
    """Base of all schemes: the models, the retriever's negative sampler and the hooks that keep it fresh.

    Subclasses implement `losses` and may extend `evaluate`. A scheme registers itself with
    `@register_scheme("name")`; its constructor's parameters are its config: the context it names (`retriever`,
    `ranker`, `sampler`, `loss`, `num_negatives`, `refresh`, `seed`) is what it consumes of the other config sections,
    every other parameter is a `scheme:` option.
    """

    cooperative: bool = False
    #: options that name a component of another registry: option -> (registry, default name), e.g. CoRR's
    #: `distill: kl` or `distill: {name: rankdistill, top_k: 5}`; the wiring builds them ('none' gives None)
    components: ClassVar[dict[str, tuple[Registry, str]]] = {}

    @classmethod
    def check_sections(cls, options: dict[str, Any], sections: dict[str, Any]) -> None:
        """Config-time checks of how this scheme can use the config's sections (`sections`: name -> the section,
        `options`: its own scheme options), beyond what its constructor's signature says; ValueError naming the
        key. The default: none."""

    def __init__(
        self,
        retriever: Retriever,
        sampler: Sampler,
        num_negatives: int,
        refresh: str | int = "epoch",
        ranker: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.retriever = retriever
        self.ranker = ranker
        self.sampler = sampler
        self.num_negatives = num_negatives
        self.refresher = SamplerRefresher(sampler, retriever, refresh)
        self.sparse_parameters: list[nn.Parameter] = []

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def use_sparse_embeddings(self) -> None:
        """`train.sparse_embeddings`: refused unless the scheme supports it (the retriever alone does)."""
        raise TandemError(f"train.sparse_embeddings is supported by the 'retriever' scheme only, not by "
                          f"{type(self).__name__}")

    def make_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name; the default is one Adam over every trainable parameter (with sparse embeddings:
        Adam over the dense ones, SparseAdam over the tables). A scheme that trains in phases (RankFlow) returns
        several and picks them per epoch with `active_optimizers`."""
        if not self.sparse_parameters:
            parameters = [p for p in self.parameters() if p.requires_grad]
            return {"adam": torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)}
        if weight_decay:
            raise TandemError("train.sparse_embeddings needs train.weight_decay 0 (SparseAdam has no weight decay)")
        optimizers: dict[str, torch.optim.Optimizer] = {}
        if self._dense_parameters():
            optimizers["adam"] = torch.optim.Adam(self._dense_parameters(), lr=lr)
        optimizers["sparse-adam"] = torch.optim.SparseAdam(self.sparse_parameters, lr=lr)
        return optimizers

    def _dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in sparse]

    def active_optimizers(self, epoch: int) -> tuple[str, ...]:
        """Names of the optimizers that step during `epoch` (1-based); the default: all of them."""
        if not self.sparse_parameters:
            return ("adam",)
        return ("adam", "sparse-adam") if self._dense_parameters() else ("sparse-adam",)

    def trained_models(self) -> tuple[str, ...]:
        """The models ('retriever', 'ranker') this step trains; the default: all of them."""
        return ("retriever",) if self.ranker is None else ("retriever", "ranker")

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The losses of a batch, with each trained model's `auxiliary_loss` (when not None) as
        '<model>_auxiliary'; `forward` so DistributedDataParallel can wrap a scheme."""
        losses = self.losses(batch)
        for name in self.trained_models():
            extra = getattr(self, name).auxiliary_loss(batch)
            if extra is not None:
                losses[f"{name}_auxiliary"] = extra
        return losses

    def on_epoch_start(self, train: TrainSet) -> None:
        """Refresh the sampler (index, pools) at the start of an epoch."""
        self.refresher.on_epoch_start(train)

    def on_step(self, step: int, train: TrainSet) -> None:
        """Refresh the sampler every `refresh` steps when so configured."""
        self.refresher.on_step(step, train)

    @torch.no_grad()
    def evaluate(
        self, eval_set: EvalSet, cutoffs: tuple[int, ...], batch_size: int, device: Any = "cpu", **_: Any
    ) -> dict[str, Any]:
        """Retriever-only full-ranking metrics."""
        self.eval()
        return evaluate_batches(eval_set, full_ranking_metrics(self.retriever.score_all, cutoffs), batch_size, device)


@register_scheme("retriever")
class RetrieverScheme(Scheme):
    """A retriever alone, trained with any retriever loss on any sampler's negatives."""

    def __init__(
        self, retriever: Retriever, sampler: Sampler, loss: LossFn, num_negatives: int, refresh: str | int = "epoch"
    ) -> None:
        super().__init__(retriever, sampler, num_negatives, refresh)
        self.loss = as_retriever_loss(loss)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"retriever": retriever_loss(self.retriever, self.sampler, self.loss, self.num_negatives, batch)}

    def use_sparse_embeddings(self) -> None:
        from tandem.training.sparse import enable_sparse_embeddings

        self.sparse_parameters = enable_sparse_embeddings(self.retriever)


def apply_retriever_loss(
    loss: RetrieverLoss,
    sampler: Sampler,
    query: torch.Tensor,
    positives: torch.Tensor,
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    pos_log_q: torch.Tensor | None,
    neg_log_q: torch.Tensor | None,
    compared: torch.Tensor,
    context: torch.Tensor | None,
) -> torch.Tensor:
    """Mean of `loss` over a batch whose rows are scored against the items `compared` [B, L]: accidental hits
    (a compared item equal to the row's positive) are masked, and a loss that needs it gets the sampler's estimate
    of each positive's rank."""
    extra: dict[str, torch.Tensor] = {"hit_mask": compared == positives.reshape(-1, 1).to(compared.device)}
    if loss.needs_rank_estimate:
        estimate_rank = getattr(sampler, "estimate_rank", None)
        if estimate_rank is None:
            raise ValueError("this loss needs a rank estimate of the positive; use the 'adasir' sampler")
        with torch.no_grad():
            extra["rank_estimate"] = estimate_rank(query.detach(), positives, context=context)
    return loss(pos_score, neg_score, pos_log_q, neg_log_q, **extra).mean()


def retriever_loss(
    retriever: Retriever,
    sampler: Sampler,
    loss: RetrieverLoss,
    num_negatives: int,
    batch: Batch,
    query: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean retriever loss of a batch: draw negatives from `sampler`, score them, apply `loss` with log Q.

    A loss with `shares_negatives` compares every positive with the whole batch's sampled items (in-batch
    sharing, as CROLoss does); those items were drawn by different rows, so with a context-dependent (adaptive)
    sampler their proposal, and the positive's, is the batch mixture (1/B) sum_j Q(.|c_j). A loss with
    `needs_rank_estimate` receives the sampler's rank estimate. Every loss gets `hit_mask` [B, L], True where a
    sampled negative is the row's own positive (an accidental hit), so that it is left out.
    """
    query = retriever.query(batch) if query is None else query
    positives = batch["item"]
    context = batch.get("context")
    negatives, neg_log_q, pos_log_q = draw_negatives(sampler, query, positives, num_negatives, context)
    vectors = retriever.training_item_vectors()
    pos_score = score_items(query, vectors, positives)
    if loss.shares_negatives:
        flat = negatives.reshape(-1)
        compared = flat.unsqueeze(0).expand(query.shape[0], -1)  # the items every row is compared with
        neg_score = query @ vectors[flat].T
        if sampler.adaptive:  # each shared item came from some row's Q(.|c_j): its proposal is the batch mixture
            with torch.no_grad():
                mixture = sampler.mixture_log_prob(query.detach(), torch.cat([flat, positives.reshape(-1)]), context)
            neg_log_q = mixture[: flat.shape[0]].unsqueeze(0).expand(query.shape[0], -1)
            pos_log_q = mixture[flat.shape[0]:]
        else:
            neg_log_q = neg_log_q.reshape(1, -1).expand(query.shape[0], -1)
    else:
        compared = negatives
        neg_score = score_items(query, vectors, negatives)
    return apply_retriever_loss(loss, sampler, query, positives, pos_score, neg_score, pos_log_q, neg_log_q,
                                compared, context)
