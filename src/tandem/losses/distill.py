"""Distillation losses from a teacher (the ranker) to a student (the retriever) over a sampled item set S.

All take the scores of the same L sampled items, `teacher` [B, L] and `student` [B, L], and `log_q` [B, L], the log
of the (possibly unnormalised) proposal probability each item was drawn with (None = uniform), and return a loss
per row [B]. The teacher side never carries gradient: every function detaches it.

- `sampled_kl` (seed 000, sec. 3.3.2, Theorem 3.1): KL(P_teacher^S || P_student^S) with both score sets corrected
  by -log Q over S; converges a.s. to the full-catalogue KL(P_teacher || P_student) as |S| -> infinity.
- `corollary_kl_estimate` (Corollary 3.2): log L - H(softmax(Delta)) for Delta = R - M on S drawn from softmax(M),
  with the gradient of the KL (M held fixed where it stands for log Q); distill option 'corollary'.
- `rank_distill` (RankDistill, Tang & Wang, KDD 2018, ref [41] of seed 000; B.3).
- `co_distill` (Collaborative Distillation, Lee et al., ICDM 2019, ref [29] of seed 000; B.3).

Each registers itself with `@register_distill_loss("name")` (`tandem.registry.DISTILL_LOSSES`); its keyword-only
arguments are its options (settable from the config as `scheme.distill: {name: rankdistill, top_k: 5}`), except
`temperature`, the sampler's T, which the wiring supplies. `build_distill_loss(name, **options)` returns the loss
with its options bound.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from tandem.registry import DISTILL_LOSSES, register_distill_loss

DistillLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _check(teacher: torch.Tensor, student: torch.Tensor, log_q: torch.Tensor | None) -> None:
    if teacher.dim() != 2 or teacher.shape != student.shape:
        raise ValueError(f"expected teacher and student scores of the same shape [B, L], got "
                         f"{tuple(teacher.shape)} and {tuple(student.shape)}")
    if log_q is not None and log_q.shape != teacher.shape:
        raise ValueError(f"expected log_q of shape {tuple(teacher.shape)}, got {tuple(log_q.shape)}")


@register_distill_loss("kl")
def sampled_kl(teacher: torch.Tensor, student: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled KL divergence KL(P_teacher^S || P_student^S) per row, [B] (Theorem 3.1).

    P^S(j) = exp(s_j - log Q(j)) / sum_{i in S} exp(s_i - log Q(i)) for both score sets, S being the L sampled
    items (drawn with replacement from Q; a repeated item counts once per draw). Normalising constants of Q cancel,
    so `log_q` may be unnormalised. The teacher is detached: the gradient flows into the student only.
    """
    _check(teacher, student, log_q)
    teacher = teacher.detach()
    if log_q is not None:
        log_q = log_q.detach()
        teacher = teacher - log_q
        student = student - log_q
    log_p_teacher = F.log_softmax(_up(teacher), dim=-1)
    log_p_student = F.log_softmax(_up(student), dim=-1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)


@register_distill_loss("corollary")
def corollary_kl_estimate(
    teacher: torch.Tensor,
    student: torch.Tensor,
    log_q: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Corollary 3.2 of seed 000 per row, [B]: log L - H(softmax(Delta)), Delta = R - M, over S ~ softmax(M).

    When the L items were drawn from the student's own softmax, log Q(i|c) = M(i, c) up to a constant, so the sampled
    KL needs no separate log Q: P_teacher^S = softmax(R - M) and P_student^S = softmax(M - M) = 1/L, and the KL
    between them is log L - H(softmax(R - M)). With Q = softmax(M / T) (a sampler with temperature T) log Q is
    M / T instead. M enters twice and only as the model's scores does it carry gradient: as log Q it is the fixed
    proposal the items were drawn from. So d loss / d M_j = softmax(M - sg(M) / T)_j - softmax(R - M / T)_j, which
    is 1/L - P_teacher^S(j) at T = 1 and converges to P_M - P_R, the gradient of KL(P_R || P_M). (Differentiating
    the closed form through Delta instead gives p_j (log p_j + H), which is not a KL gradient.) `log_q` is unused:
    the corollary reads log Q off the student's scores. The teacher is detached.
    """
    _check(teacher, student, log_q)
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    teacher = _up(teacher.detach())
    student = _up(student)
    proposal = student.detach() / temperature  # log Q(i|c) up to a constant, held fixed
    log_p_teacher = F.log_softmax(teacher - proposal, dim=-1)
    log_p_student = F.log_softmax(student - proposal, dim=-1)  # = -log L in value at T = 1, gradient 1/L
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)


def _up(x: torch.Tensor) -> torch.Tensor:
    """Half-precision scores computed in float32; float32/float64 kept as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based descending rank of every entry within its row, [B, L] long (ties broken by position)."""
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks


@register_distill_loss("rankdistill")
def rank_distill(
    teacher: torch.Tensor,
    student: torch.Tensor,
    log_q: torch.Tensor | None = None,
    *,
    top_k: int = 10,
    position_temperature: float = 5.0,
    discrepancy_scale: float = 0.5,
    use_discrepancy: bool = True,
    likelihood: str = "softmax",
) -> torch.Tensor:
    """RankDistill (Tang & Wang, KDD 2018) on the sample S, per row [B].

    The teacher's top-k items within S (by raw teacher score) are treated as extra positives for the student, and
    their weighted negative log-likelihood is the loss:

        loss = - sum_{r=1..k} w_r log p_student(pi_r),     pi_r = the teacher's r-th best item in S,

    with RankDistill's hybrid weights w_r = w^a_r * w^b_r:
      - position importance w^a_r = exp(-r / position_temperature), normalised to sum to 1 over r = 1..k;
      - ranking discrepancy w^b_r = tanh(max(discrepancy_scale * (rhat_r - r), 0)), rhat_r being the student's
        rank of pi_r within S: only items the student still ranks below the teacher are pushed
        (`use_discrepancy=False` keeps w^a alone).
    Weights are computed without gradient. Likelihood (our choice, to fit CoRR's softmax-trained retriever):
    'softmax' uses p_student = P_student^S, the log-Q corrected softmax over S as in `sampled_kl`; 'sigmoid' uses
    the original paper's pointwise p = sigmoid(student score), ignoring `log_q`. The defaults of k, the
    temperature and the scale are ours (the sample is small, ~20 items, so ranks differ by a few places).
    """
    _check(teacher, student, log_q)
    if likelihood not in ("softmax", "sigmoid"):
        raise ValueError(f"unknown likelihood {likelihood!r}; expected 'softmax' or 'sigmoid'")
    teacher = teacher.detach()
    k = min(int(top_k), teacher.shape[-1])
    top = teacher.topk(k, dim=-1).indices  # [B, k], best first
    positions = torch.arange(1, k + 1, device=teacher.device, dtype=torch.float32)
    weights = torch.softmax(-positions / position_temperature, dim=0).expand(teacher.shape[0], k)
    if use_discrepancy:
        student_rank = _ranks(student.detach()).gather(-1, top).float() + 1  # 1-based rank of pi_r
        weights = weights * torch.tanh((discrepancy_scale * (student_rank - positions)).clamp_min(0))
    if likelihood == "softmax":
        corrected = student if log_q is None else student - log_q.detach()
        log_p = F.log_softmax(_up(corrected), dim=-1)
    else:
        log_p = F.logsigmoid(_up(student))
    return -(weights * log_p.gather(-1, top)).sum(-1)


@register_distill_loss("codistill")
def co_distill(
    teacher: torch.Tensor,
    student: torch.Tensor,
    log_q: torch.Tensor | None = None,
    *,
    num_samples: int = 10,
    rank_temperature: float = 5.0,
    teacher_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Collaborative Distillation (Lee et al., ICDM 2019) on the sample S, per row [B].

    1. Rank-based sampling: `num_samples` distinct items are drawn from S without replacement with probability
       proportional to exp(-rank_T(i) / rank_temperature), rank_T the 0-based rank of i within S by the teacher,
       so the teacher's top items are distilled most often while lower ones still appear.
    2. Soft labels: the teacher's score becomes a probability t_i = sigmoid(teacher_i / teacher_temperature).
    3. Loss: the binary cross-entropy between the soft label and the student's pointwise probability,
       mean over the drawn items of -[t_i log sigmoid(s_i) + (1 - t_i) log(1 - sigmoid(s_i))].
    `log_q` is unused (the method works on raw scores). Sampling uses `generator` (else torch's global RNG).
    """
    _check(teacher, student, log_q)
    teacher = teacher.detach()
    m = min(int(num_samples), teacher.shape[-1])
    probabilities = torch.exp(-_ranks(teacher).float() / rank_temperature)
    chosen = torch.multinomial(probabilities, m, replacement=False, generator=generator)  # [B, m]
    targets = torch.sigmoid(_up(teacher).gather(-1, chosen) / teacher_temperature)
    logits = _up(student).gather(-1, chosen)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)


def build_distill_loss(name: str, **options: Any) -> DistillLoss:
    """The distillation loss `name` as a function (teacher [B, L], student [B, L], log_q [B, L]) -> [B].

    Options are the keyword arguments of `rank_distill` / `co_distill` / `corollary_kl_estimate` ('temperature',
    the sampler's T); 'kl' takes none. An unknown name or option raises ValueError naming it.
    """
    context = {"temperature": options.pop("temperature")} if "temperature" in options else {}
    return DISTILL_LOSSES.build(name, context, options)


__all__ = ["sampled_kl", "corollary_kl_estimate", "rank_distill", "co_distill", "build_distill_loss"]
